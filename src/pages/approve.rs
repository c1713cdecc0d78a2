//! The approval page (`GET /approve/{id}`): what the person reads before deciding.
//!
//! It shows, server-rendered, exactly what a decision signs: the agent, the user, the audience,
//! the action and every parameter, each agent-chosen string through [`ShownText`] so that no
//! invisible or look-alike character can make it read as something else. The agent's message is
//! marked as the agent's words, because an agent can write anything there: the parameters are
//! what counts. The match code lets the person tell this request from a flood of look-alike
//! ones. Once the request is no longer pending the page says so and offers no buttons.
//!
//! The page's script (`static/approve.js`) runs the passkey ceremony; nothing on the page is
//! trusted for the decision itself, which the gateway binds to the statement it signs.

use askama::Template;
use askama_web::WebTemplate;

use super::params_view::{Label, ParamsView, Part, Row, Scalar, ShownText};
use super::{format_duration, format_utc};
use crate::domain::{
    AGENT_GAP_SECS, ApprovalKind, ApprovalRecord, ApprovalState, ApprovalStatus,
    COLLECT_WITHIN_SECS,
};

/// The approval page for one request, as of one moment.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "approve.html")]
pub struct ApprovePage {
    /// What the page is about now: a request, or what became of it.
    pub heading: &'static str,
    /// The approval id, for the script's calls and the details list.
    pub id: String,
    /// An agent asking to be enrolled rather than to perform an action.
    pub enrollment: bool,
    /// The agent's id: its key's thumbprint, shown on demand (43 characters wrap badly).
    pub agent_id: String,
    /// The start of the agent id, always shown.
    pub agent_fingerprint: String,
    pub agent_name: ShownText,
    /// The name the agent had when it asked, shown when it has been renamed since.
    pub agent_name_then: Option<ShownText>,
    pub user: String,
    pub audience: ShownText,
    pub action: ShownText,
    pub params: ParamsView,
    /// The agent's own words, if it wrote any.
    pub message: Option<ShownText>,
    pub code: String,
    pub params_sha256: String,
    /// The gateway's issuer URL: the `iss` of the statement the person signs.
    pub issuer: String,
    pub created_at: String,
    pub expires_at: String,
    /// Whether the request can still be decided; only then are there buttons.
    pub pending: bool,
    /// What happened to it, when it is no longer pending.
    pub outcome: Option<Outcome>,
    /// Whether a person decided it, so there is a receipt to link to.
    pub has_receipt: bool,
    pub seconds_left: i64,
    pub time_left: String,
    /// How long the agent's token will be valid once collected.
    pub token_lifetime: i64,
    /// Seconds until the agent no longer counts as waiting for the outcome (0 or less: it has
    /// stopped), and when it last asked.
    pub agent_waiting_for: i64,
    pub agent_last_asked: String,
    /// Whether the agent may still collect a token for this request (an action pending, or
    /// approved and not yet collected): then the page follows it, to say whether it was used.
    pub token_awaited: bool,
}

/// Why a request can no longer be decided, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: ApprovalStatus,
    pub sentence: String,
    /// For an approval, whether its token was collected (the page updates it live).
    pub token: Option<&'static str>,
    /// The reason given for a cancellation.
    pub reason: Option<ShownText>,
}

/// The stored params are not JSON; they were canonicalized on the way in, so this means the
/// record is damaged.
#[derive(Debug, thiserror::Error)]
#[error("approval {id}: stored params are not valid JSON: {source}")]
pub struct DamagedParams {
    pub id: String,
    #[source]
    pub source: serde_json::Error,
}

impl ApprovePage {
    /// The page for `approval` at `now` (unix seconds). `agent_name` is the agent's current
    /// name from its record; `issuer` is the gateway's public URL.
    pub fn new(
        approval: &ApprovalRecord,
        agent_name: &str,
        issuer: &str,
        now: i64,
    ) -> Result<ApprovePage, DamagedParams> {
        let params =
            ParamsView::parse(&approval.params, &approval.params_order).map_err(|source| {
                DamagedParams {
                    id: approval.id.to_string(),
                    source,
                }
            })?;
        let status = approval.status(now);
        let seconds_left = (approval.expires_at - now).max(0);
        let enrollment = approval.kind == ApprovalKind::Enrollment;
        Ok(ApprovePage {
            heading: heading(enrollment, status),
            id: approval.id.to_string(),
            enrollment,
            agent_id: approval.agent.clone(),
            agent_fingerprint: fingerprint(&approval.agent),
            agent_name: ShownText::new(agent_name),
            agent_name_then: (approval.agent_name != agent_name)
                .then(|| ShownText::new(&approval.agent_name)),
            user: approval.user.to_string(),
            audience: ShownText::new(&approval.audience),
            action: ShownText::new(&approval.action),
            params,
            message: approval.message.as_deref().map(ShownText::new),
            code: approval.code.clone(),
            params_sha256: approval.params_sha256.to_string(),
            issuer: issuer.to_owned(),
            created_at: format_utc(approval.created_at),
            expires_at: format_utc(approval.expires_at),
            pending: status == ApprovalStatus::Pending,
            outcome: outcome(approval, status),
            has_receipt: approval.receipt().is_some(),
            seconds_left,
            time_left: format_duration(seconds_left),
            token_lifetime: 30,
            agent_waiting_for: 0,
            agent_last_asked: String::new(),
            token_awaited: !enrollment
                && match &approval.state {
                    ApprovalState::Pending => status == ApprovalStatus::Pending,
                    ApprovalState::Approved {
                        token_delivered_at, ..
                    } => token_delivered_at.is_none() && status == ApprovalStatus::Approved,
                    _ => false,
                },
        }
        .with_agent_waiting_until(approval.agent_waiting_until(None), now))
    }

    /// Sets until when the agent counts as waiting
    /// ([`ApprovalRecord::agent_waiting_until`]), so that the page says when nobody waits for
    /// the decision any more.
    pub fn with_agent_waiting_until(mut self, until: i64, now: i64) -> ApprovePage {
        self.agent_waiting_for = until - now;
        self.agent_last_asked = format_utc(until - AGENT_GAP_SECS);
        self
    }

    /// Sets how long tokens are valid (the gateway's configured lifetime, at most 30 s), for
    /// the sentence shown after approving.
    pub fn with_token_lifetime(mut self, seconds: i64) -> ApprovePage {
        self.token_lifetime = seconds;
        self
    }
}

fn heading(enrollment: bool, status: ApprovalStatus) -> &'static str {
    match status {
        ApprovalStatus::Pending if enrollment => "An agent asks to act for you",
        ApprovalStatus::Pending => "An agent asks for your approval",
        ApprovalStatus::Approved => "Approved",
        ApprovalStatus::Denied => "Denied",
        ApprovalStatus::Expired => "Expired",
        ApprovalStatus::Cancelled => "Cancelled: the agent is no longer waiting",
    }
}

/// The first characters of an agent id followed by an ellipsis: enough to tell agents apart at
/// a glance; the full id is a tap away.
pub fn fingerprint(agent_id: &str) -> String {
    let start: String = agent_id.chars().take(10).collect();
    if start.len() < agent_id.len() {
        format!("{start}…")
    } else {
        start
    }
}

fn outcome(approval: &ApprovalRecord, status: ApprovalStatus) -> Option<Outcome> {
    let mut token = None;
    let (sentence, reason) = match (&approval.state, status) {
        (_, ApprovalStatus::Pending) => return None,
        (
            ApprovalState::Approved {
                decided_at,
                token_delivered_at,
                ..
            },
            ApprovalStatus::Approved,
        ) => {
            token = Some(if token_delivered_at.is_some() {
                "The agent has collected its token."
            } else {
                "The agent has not collected its token yet."
            });
            (
                format!("This request was approved at {}.", format_utc(*decided_at)),
                None,
            )
        }
        (ApprovalState::Approved { decided_at, .. }, ApprovalStatus::Expired) => (
            format!(
                "This request was approved at {}, but the agent did not collect its token \
                 within {} seconds, so it has expired. The agent cannot act on it.",
                format_utc(*decided_at),
                COLLECT_WITHIN_SECS
            ),
            None,
        ),
        (ApprovalState::Denied { decided_at, .. }, _) => (
            format!("This request was denied at {}.", format_utc(*decided_at)),
            None,
        ),
        (ApprovalState::Cancelled { at, reason }, _) => (
            format!("This request was cancelled at {}.", format_utc(*at)),
            Some(ShownText::new(reason)),
        ),
        _ => (
            format!(
                "This request expired at {} without a decision.",
                format_utc(approval.expires_at)
            ),
            None,
        ),
    };
    Some(Outcome {
        status,
        sentence: format!("{sentence} Nothing more can be decided here."),
        token,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ApprovalId, UserId};
    use handsign_protocol::params::CanonicalParams;
    use handsign_protocol::statement::Decision;

    use crate::pages::test_support::decided;
    use crate::params_order::ParamsOrder;

    const NOW: i64 = 1_740_837_909;

    fn record(params: &serde_json::Value) -> ApprovalRecord {
        let canonical =
            CanonicalParams::parse(params.to_string().as_bytes(), &Default::default()).unwrap();
        ApprovalRecord {
            id: ApprovalId::parse("apr_AAAAAAAAAAAAAAAAAAAAAA").unwrap(),
            kind: ApprovalKind::Action,
            agent: "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".into(),
            agent_name: "travel-bot".into(),
            user: UserId::parse("alice").unwrap(),
            audience: "https://travel.example".into(),
            action: "flights.book".into(),
            params: canonical.as_str().to_owned(),
            params_sha256: canonical.hash(),
            params_order: Default::default(),
            message: Some("Booking your trip <b>now</b>\u{202E}!".into()),
            code: "4821".into(),
            nonce: "n".repeat(43),
            created_at: NOW - 28,
            expires_at: NOW + 272,
            state: ApprovalState::Pending,
        }
    }

    fn long_string() -> String {
        (0..2000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect()
    }

    fn hostile_params() -> serde_json::Value {
        serde_json::json!({
            "note": "<script>alert(1)</script>",
            "rlo": "\u{202E}gpj.exe",
            "zwsp": "pay\u{200B}pal",
            "mixed": "p\u{0430}ypal",
            "nested": {"list": [1, "1", [true, null], {"deep": {"deeper": []}}], "empty": {}},
            "long": long_string(),
            "number": 1,
            "numeric_string": "1",
            "lines": "first\nsecond\tcol",
            "edges": " padded ",
            "\u{202E}key": "value",
        })
    }

    fn render(approval: &ApprovalRecord, now: i64) -> String {
        ApprovePage::new(approval, "travel-bot", "https://gw.example", now)
            .unwrap()
            .render()
            .unwrap()
    }

    #[test]
    fn agent_text_is_escaped_by_askama() {
        let html = render(&record(&hostile_params()), NOW);
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(
            html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{html}"
        );
        assert!(!html.contains("<b>now"), "{html}");
    }

    #[test]
    fn no_marked_character_is_emitted_raw() {
        let mut params = hostile_params();
        let all: String = super::super::params_view::tests::MARKED.iter().collect();
        params["all"] = all.clone().into();
        let mut approval = record(&params);
        approval.message = Some(all.clone());
        approval.audience = format!("https://travel.example{all}");
        let html = render(&approval, NOW);
        for c in all.chars() {
            assert!(!html.contains(c), "U+{:04X} emitted raw", u32::from(c));
        }
        // Tabs and newlines inside values are markers; the template's own layout may use
        // newlines between tags, but never a tab.
        assert!(!html.contains('\t'));
        assert!(html.contains("U+202E RIGHT-TO-LEFT OVERRIDE"));
        assert!(html.contains("U+200B ZERO WIDTH SPACE"));
        assert!(html.contains("U+E0041 TAG A"));
        assert!(html.contains(r#"<span class="mk">\n</span><br>"#), "{html}");
        assert!(html.contains(r#"<span class="mk">\t</span>"#));
    }

    #[test]
    fn mixed_script_letters_are_marked_with_their_code_point() {
        let html = render(&record(&hostile_params()), NOW);
        assert!(
            html.contains(
                "p<span class=\"fl\">\u{0430}</span><span class=\"cp\">U+0430 Cyrillic</span>ypal"
            ),
            "{html}"
        );
        assert!(html.contains("mixed scripts: Latin + Cyrillic"));
    }

    #[test]
    fn every_value_is_shown_in_full_and_typed() {
        let html = render(&record(&hostile_params()), NOW);
        assert!(html.contains(&long_string()), "the long string is cut");
        // The number 1 and the string "1" look different and say what they are.
        assert!(html.contains(r#"<span class="n"><span class="sr">number </span>1</span>"#));
        assert!(html.contains(r#"<span class="s"><span class="sr">string </span>1</span>"#));
        assert!(html.contains(r#"<span class="l"><span class="sr">boolean </span>true</span>"#));
        assert!(html.contains(r#"<span class="l">null</span>"#));
        assert!(html.contains("empty object"));
        assert!(html.contains("empty array"));
        for key in ["nested", "list", "deep", "deeper", "numeric_string"] {
            assert!(html.contains(&format!(">{key}<")), "key {key} missing");
        }
        assert!(
            html.contains(r#"<span class="mk">space</span>padded<span class="mk">space</span>"#)
        );
    }

    #[test]
    fn the_page_shows_who_what_and_the_code() {
        let html = render(&record(&hostile_params()), NOW);
        for needle in [
            "travel-bot",
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
            ">alice<",
            "https://travel.example",
            "flights.book",
            "4821",
            "apr_AAAAAAAAAAAAAAAAAAAAAA",
            "https://gw.example",
            "4 min 32 s",
            "data-seconds-left=\"272\"",
            "Written by the agent",
            "data-decision=\"approve\"",
            "data-decision=\"deny\"",
        ] {
            assert!(html.contains(needle), "{needle} missing");
        }
        let approval = record(&hostile_params());
        assert!(html.contains(approval.params_sha256.as_str()));
        assert!(!html.contains("autofocus"));
    }

    #[test]
    fn no_inline_script_or_style() {
        let html = render(&record(&hostile_params()), NOW);
        assert!(!html.contains("<style"));
        assert!(!html.contains("style="));
        for tag in html.split('<').skip(1) {
            let tag = tag.split('>').next().unwrap();
            assert!(
                !tag.split_whitespace().any(|a| a.starts_with("on")),
                "inline event handler in <{tag}>"
            );
        }
        let mut rest = html.as_str();
        while let Some(at) = rest.find("<script") {
            let tag_end = rest[at..].find('>').unwrap() + at;
            assert!(rest[at..tag_end].contains(" src="), "inline script");
            assert!(rest[tag_end..].starts_with("></script>"));
            rest = &rest[tag_end..];
        }
    }

    #[test]
    fn a_decided_request_has_no_buttons() {
        let mut approval = record(&hostile_params());
        approval.state = ApprovalState::Cancelled {
            at: NOW - 5,
            reason: "agent revoked\u{200B}".into(),
        };
        let html = render(&approval, NOW);
        assert!(!html.contains("<button"));
        assert!(html.contains("This request was cancelled at 2025-03-01 14:05:04 UTC."));
        assert!(html.contains(r#"agent revoked<span class="mk">U+200B ZERO WIDTH SPACE</span>"#));

        let pending = record(&hostile_params());
        let expired = render(&pending, pending.expires_at);
        assert!(!expired.contains("<button"));
        assert!(expired.contains("expired at 2025-03-01 14:09:41 UTC without a decision"));
    }

    #[test]
    fn decisions_are_stated_plainly() {
        let mut approval = record(&realistic_params());
        approval.state = decided(&approval, Decision::Approve, NOW - 20, None);
        let html = render(&approval, NOW);
        assert!(!html.contains("<button"));
        assert!(html.contains(
            "This request was approved at 2025-03-01 14:04:49 UTC. Nothing more can be decided \
             here. <span id=\"token-now\">The agent has not collected its token yet.</span>"
        ));
        let uncollected = render(&approval, NOW - 20 + COLLECT_WITHIN_SECS);
        assert!(uncollected.contains("did not collect its token within 120 seconds"));

        approval.state = decided(&approval, Decision::Deny, NOW - 20, None);
        let html = render(&approval, NOW);
        assert!(!html.contains("<button"));
        assert!(html.contains("This request was denied at 2025-03-01 14:04:49 UTC."));
    }

    #[test]
    fn params_are_shown_in_the_agents_order_and_the_hash_is_the_canonical_one() {
        let sent = r#"{"from":"SFO","to":"NYC","date":"2026-12-01","passenger":"Alice Ng","legs":[{"seat":"12A","flight":"UA 15"}]}"#;
        let canonical = CanonicalParams::parse(sent.as_bytes(), &Default::default()).unwrap();
        let mut approval = record(&serde_json::json!({}));
        approval.params = canonical.as_str().to_owned();
        approval.params_sha256 = canonical.hash();
        approval.params_order = ParamsOrder::of_agent_json(sent).unwrap();
        let html = render(&approval, NOW);
        let at = |key: &str| {
            html.find(&format!(">{key}<"))
                .unwrap_or_else(|| panic!("{key} missing"))
        };
        let keys = ["from", "to", "date", "passenger", "legs", "seat", "flight"];
        for pair in keys.windows(2) {
            assert!(at(pair[0]) < at(pair[1]), "{} after {}", pair[0], pair[1]);
        }
        // What is signed does not move: the stored params stay canonical, and the hash on the
        // page and in the statement is the hash of the canonical form (as Python's
        // `json.dumps(sort_keys=True, separators=(",", ":"))` writes it for these params).
        assert!(
            approval
                .params
                .starts_with(r#"{"date":"2026-12-01","from":"SFO""#)
        );
        assert_eq!(
            approval.params_sha256.as_str(),
            "AUnllEPaY00yN1JyObNRWKHnP58L31-hqMqU7-z-wBo"
        );
        assert!(html.contains(approval.params_sha256.as_str()));
    }

    #[test]
    fn the_page_says_what_approving_grants_and_shows_a_short_agent_key() {
        let html = render(&record(&realistic_params()), NOW);
        assert!(html.contains(
            r#"Approving lets <span class="val">travel-bot</span> do <span class="val">flights.book</span> with exactly these parameters, once, within 30 seconds of collecting its token."#
        ), "{html}");
        assert!(
            html.contains("<summary>key <code>NzbLsXh8uD…</code></summary>"),
            "{html}"
        );
        // The parameters come before the agent's message.
        assert!(html.find("Parameters<").unwrap() < html.find("Message from the agent").unwrap());
        assert!(html.contains(r#"<h1 id="heading">An agent asks for your approval</h1>"#));
    }

    #[test]
    fn a_decided_page_says_so_in_its_heading_and_links_onwards() {
        let mut approval = record(&realistic_params());
        approval.state = decided(&approval, Decision::Deny, NOW - 20, None);
        let html = render(&approval, NOW);
        assert!(html.contains(r#"<h1 id="heading">Denied</h1>"#), "{html}");
        assert!(html.contains(r#"<a href="/">Dashboard</a>"#));
        assert!(html.contains(r#"href="/dashboard/approvals/apr_AAAAAAAAAAAAAAAAAAAAAA/receipt""#));
        approval.state = ApprovalState::Cancelled {
            at: NOW - 5,
            reason: "timed out".into(),
        };
        let html = render(&approval, NOW);
        assert!(
            html.contains("Cancelled: the agent is no longer waiting</h1>"),
            "{html}"
        );
        assert!(!html.contains("/receipt"));
    }

    #[test]
    fn the_approved_sentence_names_the_action_and_the_token_lifetime() {
        let approval = record(&realistic_params());
        let html = ApprovePage::new(&approval, "travel-bot", "https://gw.example", NOW)
            .unwrap()
            .with_token_lifetime(20)
            .render()
            .unwrap();
        assert!(html.contains(
            r#"Approved. The agent can now perform <span class="val">flights.book</span> once, within 20 seconds of collecting its token."#
        ), "{html}");
    }

    #[test]
    fn a_renamed_agent_shows_both_names() {
        let approval = record(&serde_json::json!({}));
        let html = ApprovePage::new(&approval, "new-name", "https://gw.example", NOW)
            .unwrap()
            .render()
            .unwrap();
        assert!(html.contains("new-name"));
        assert!(html.contains("travel-bot"));
    }

    #[test]
    fn page_weight_is_small() {
        let html = render(&record(&realistic_params()), NOW);
        let total = html.len()
            + include_bytes!("../../static/handsign.css").len()
            + include_bytes!("../../static/handsign.js").len()
            + include_bytes!("../../static/approve.js").len();
        assert!(total < 50 * 1024, "page weight {total} bytes");
        println!(
            "page weight: html {} + css {} + js {} = {total} bytes",
            html.len(),
            include_bytes!("../../static/handsign.css").len(),
            include_bytes!("../../static/handsign.js").len()
                + include_bytes!("../../static/approve.js").len()
        );
    }

    /// The notice that the agent stopped waiting is shown once the time it counts as waiting
    /// is over, hidden before (the page's script reveals it then), and never hides the buttons.
    #[test]
    fn the_page_says_when_the_agent_stopped_waiting() {
        let approval = record(&serde_json::json!({"to": "LIS"}));
        let page = |until: i64| {
            ApprovePage::new(&approval, "travel-bot", "https://gw.example", NOW)
                .unwrap()
                .with_agent_waiting_until(until, NOW)
                .render()
                .unwrap()
        };
        let waiting = page(NOW + 5);
        assert!(
            waiting.contains(r#"data-agent-waiting-for="5" hidden>"#),
            "{waiting}"
        );
        let gone = page(NOW - 1);
        assert!(gone.contains(r#"data-agent-waiting-for="-1">"#), "{gone}");
        assert!(
            gone.contains("is no longer waiting for an answer: it last asked at "),
            "{gone}"
        );
        assert!(gone.contains(r#"data-decision="approve""#), "{gone}");
        // Never polled: counted from the request's creation.
        assert_eq!(
            approval.agent_waiting_until(None),
            approval.created_at + AGENT_GAP_SECS
        );
        assert_eq!(approval.agent_waiting_until(Some(NOW + 60)), NOW + 60);
    }

    /// A realistic 1 KiB params object.
    fn realistic_params() -> serde_json::Value {
        let params = serde_json::json!({
            "passengers": [
                {"name": "Alice Example", "birth_date": "1990-04-01", "passport": "X1234567"},
                {"name": "Bob Example", "birth_date": "1988-11-23", "passport": "Y7654321"}
            ],
            "outbound": {"flight": "BA 304", "from": "LHR", "to": "CDG", "date": "2025-04-12",
                         "departs": "07:15", "fare_class": "economy", "seats": ["14A", "14B"]},
            "return": {"flight": "BA 311", "from": "CDG", "to": "LHR", "date": "2025-04-16",
                       "departs": "18:40", "fare_class": "economy", "seats": ["21C", "21D"]},
            "price": {"amount": "642.80", "currency": "GBP"},
            "payment": {"card": "visa ending 4242", "billing_postcode": "SW1A 1AA"},
            "contact": {"email": "alice@example.com", "phone": "+44 20 7946 0000"},
            "baggage": {"checked": 1, "cabin": 2},
            "insurance": false,
            "notes": "Window seats if possible; vegetarian meals for both passengers.",
            "loyalty": {"programme": "Executive Club", "number": "12345678", "tier": "silver"},
            "hotel": {"name": "Hôtel du Louvre", "check_in": "2025-04-12", "nights": 4,
                      "room": "double", "breakfast": true, "rate": "189.00", "currency": "EUR"},
            "max_total": 1500,
            "hold_until": "2025-03-02T18:00:00Z"
        });
        let size = params.to_string().len();
        assert!((1000..1100).contains(&size), "{size}");
        params
    }
}
