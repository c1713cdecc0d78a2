//! The dashboard (`GET /`): a logged-in person's pending requests, their history, their agents,
//! their passkeys, and invitations for other people.
//!
//! Agents write the agent name, the action and the audience, so the dashboard shows them exactly
//! as the approval page does: through [`ShownText`] and the same template macros, so that a
//! request cannot look different here than where it is decided. The two request lists are
//! askama partials (`templates/dashboard_pending.html`, `templates/dashboard_history.html`)
//! rendered into the page and, on their own, into the JSON of `GET /dashboard/approvals`; the
//! page's script swaps those server-rendered fragments in when a change arrives, so there is one
//! rendering of agent-written text and the script never builds markup from data.
//!
//! Nothing on the dashboard decides a request: each pending one links to its approval page,
//! where the person reads every parameter and signs with a passkey.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use serde_json::Value;

use super::params_view::{Part, ShownText};
use super::{format_duration, format_utc};
use crate::domain::{
    AGENT_GAP_SECS, AgentRecord, AgentStatus, ApprovalKind, ApprovalRecord, ApprovalState,
    ApprovalStatus, COLLECT_WITHIN_SECS, PasskeyRecord,
};

/// The dashboard of one user, as of one moment.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "dashboard.html")]
pub struct DashboardPage {
    pub user: String,
    /// Admins see the invitation form; the gateway refuses others' invitations anyway.
    pub admin: bool,
    pub pending: Vec<PendingRow>,
    pub history: Vec<HistoryRow>,
    pub agents: Vec<AgentRow>,
    pub passkeys: Vec<PasskeyRow>,
}

/// The pending list on its own: the fragment `GET /dashboard/approvals` carries.
#[derive(Debug, Template)]
#[template(path = "dashboard_pending.html")]
pub struct PendingList<'a> {
    pub pending: &'a [PendingRow],
}

/// A name the person chose (a device's), marked as on the pages, for a list the dashboard's
/// script builds.
#[derive(Debug, Template)]
#[template(
    source = "{% import \"params.html\" as p %}{% call p::inline(text) %}{% endcall %}",
    ext = "html"
)]
pub struct InlineText<'a> {
    pub text: &'a ShownText,
}

/// The history list on its own.
#[derive(Debug, Template)]
#[template(path = "dashboard_history.html")]
pub struct HistoryList<'a> {
    pub history: &'a [HistoryRow],
}

/// A request waiting for the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRow {
    pub id: String,
    /// An agent asking to be enrolled rather than to perform an action.
    pub enrollment: bool,
    pub agent_id: String,
    pub agent_name: ShownText,
    pub action: ShownText,
    pub audience: ShownText,
    pub code: String,
    /// The params' first members on one line, to tell look-alike requests apart.
    pub summary: String,
    pub seconds_left: i64,
    pub time_left: String,
    pub expires_at: String,
    /// Seconds until the agent no longer counts as waiting for the outcome (0 or less: it has
    /// stopped), and when it last asked.
    pub agent_waiting_for: i64,
    pub agent_last_asked: String,
}

/// A request that can no longer be decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    pub id: String,
    pub status: ApprovalStatus,
    pub enrollment: bool,
    pub agent_id: String,
    pub agent_name: ShownText,
    pub action: ShownText,
    pub audience: ShownText,
    pub code: String,
    /// The params' first members on one line, to tell look-alike requests apart.
    pub summary: String,
    /// What happened and when, e.g. "Approved 2025-03-01 14:05:09 UTC; token collected".
    pub sentence: String,
    /// The reason given for a cancellation.
    pub reason: Option<ShownText>,
    /// Whether a person decided it, so there is a receipt to link to.
    pub has_receipt: bool,
    /// For an approval whose token may still be collected: seconds until the time to collect
    /// it runs out, when the page looks again to show it expired unused.
    pub token_due_in: Option<i64>,
}

/// An agent acting for the user, with what may be done to it from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRow {
    pub id: String,
    pub name: ShownText,
    pub status: AgentStatus,
    pub created_at: String,
    pub buttons: AgentButtons,
}

/// Which status buttons an agent's row shows (`static/dashboard.js` applies the same rule after
/// a change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentButtons {
    pub suspend: bool,
    pub resume: bool,
    pub revoke: bool,
}

impl AgentButtons {
    /// A pending agent (asking to enroll) can only be revoked from here: making it active takes
    /// the person's passkey on its enrollment request, and suspending it first would let a
    /// resume skip that. A revoked agent stays revoked.
    pub fn for_status(status: AgentStatus) -> AgentButtons {
        AgentButtons {
            suspend: status == AgentStatus::Active,
            resume: status == AgentStatus::Suspended,
            revoke: status != AgentStatus::Revoked,
        }
    }
}

/// One of the user's passkeys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRow {
    pub name: ShownText,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

/// Agent names by agent id: the names the agents have now (an operator may have renamed one
/// since it asked), as on the approval page.
pub type AgentNames = HashMap<String, String>;

impl PendingRow {
    pub fn new(approval: &ApprovalRecord, names: &AgentNames, now: i64) -> PendingRow {
        let seconds_left = (approval.expires_at - now).max(0);
        PendingRow {
            id: approval.id.to_string(),
            enrollment: approval.kind == ApprovalKind::Enrollment,
            agent_id: approval.agent.clone(),
            agent_name: ShownText::new(agent_name(approval, names)),
            action: ShownText::new(&approval.action),
            audience: ShownText::new(&approval.audience),
            code: approval.code.clone(),
            summary: params_summary(approval),
            seconds_left,
            time_left: format_duration(seconds_left),
            expires_at: format_utc(approval.expires_at),
            agent_waiting_for: 0,
            agent_last_asked: String::new(),
        }
        .with_agent_waiting_until(approval.agent_waiting_until(None), now)
    }

    /// As [`ApprovePage::with_agent_waiting_until`](crate::pages::approve::ApprovePage::with_agent_waiting_until).
    pub fn with_agent_waiting_until(mut self, until: i64, now: i64) -> PendingRow {
        self.agent_waiting_for = until - now;
        self.agent_last_asked = format_utc(until - AGENT_GAP_SECS);
        self
    }
}

impl HistoryRow {
    pub fn new(approval: &ApprovalRecord, names: &AgentNames, now: i64) -> HistoryRow {
        let status = approval.status(now);
        let mut token_due_in = None;
        let (sentence, reason) = match &approval.state {
            ApprovalState::Approved {
                decided_at,
                token_delivered_at,
                ..
            } => {
                let token = match (token_delivered_at, status) {
                    (Some(_), _) => "token collected",
                    (None, ApprovalStatus::Expired) => "token not collected in time",
                    (None, _) => {
                        token_due_in = Some(decided_at + COLLECT_WITHIN_SECS - now);
                        "token not collected yet"
                    }
                };
                (
                    format!("Approved {}; {token}", format_utc(*decided_at)),
                    None,
                )
            }
            ApprovalState::Denied { decided_at, .. } => {
                (format!("Denied {}", format_utc(*decided_at)), None)
            }
            ApprovalState::Cancelled { at, reason } => (
                format!("Cancelled {}", format_utc(*at)),
                Some(ShownText::new(reason)),
            ),
            ApprovalState::Pending => (
                format!(
                    "Expired {} without a decision",
                    format_utc(approval.expires_at)
                ),
                None,
            ),
        };
        HistoryRow {
            id: approval.id.to_string(),
            status,
            enrollment: approval.kind == ApprovalKind::Enrollment,
            agent_id: approval.agent.clone(),
            agent_name: ShownText::new(agent_name(approval, names)),
            action: ShownText::new(&approval.action),
            audience: ShownText::new(&approval.audience),
            code: approval.code.clone(),
            summary: params_summary(approval),
            sentence,
            reason,
            has_receipt: approval.receipt().is_some(),
            token_due_in,
        }
    }
}

/// How long a card's summary of the params may be, in characters.
const SUMMARY_CHARS: usize = 90;

/// The params on one line: the first members in the agent's order as `key: value`, strings as
/// notifications write them (markers in brackets), nested values as `{…}` and `[…]`, cut after
/// [`SUMMARY_CHARS`] with `…`. Only a summary: the approval page shows every value in full.
pub fn params_summary(approval: &ApprovalRecord) -> String {
    let Ok(params) = serde_json::from_str::<Value>(&approval.params) else {
        return String::new();
    };
    let line = match &params {
        Value::Object(map) if !map.is_empty() => {
            let members: Vec<(&String, &Value)> = map.iter().collect();
            let order = approval.params_order.objects().next_object(members.len());
            order
                .into_iter()
                .filter_map(|i| members.get(i))
                .map(|(key, value)| {
                    format!(
                        "{}: {}",
                        ShownText::new(key).plain_line(SUMMARY_CHARS),
                        summary_value(value)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
        other => summary_value(other),
    };
    match line.char_indices().nth(SUMMARY_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

fn summary_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("\"{}\"", ShownText::new(s).plain_line(SUMMARY_CHARS)),
        Value::Object(map) if map.is_empty() => "{}".to_owned(),
        Value::Object(_) => "{…}".to_owned(),
        Value::Array(items) if items.is_empty() => "[]".to_owned(),
        Value::Array(_) => "[…]".to_owned(),
        other => other.to_string(),
    }
}

fn agent_name<'a>(approval: &'a ApprovalRecord, names: &'a AgentNames) -> &'a str {
    names
        .get(&approval.agent)
        .map_or(approval.agent_name.as_str(), String::as_str)
}

impl AgentRow {
    pub fn new(agent: &AgentRecord) -> AgentRow {
        AgentRow {
            id: agent.id.clone(),
            name: ShownText::new(&agent.name),
            status: agent.status,
            created_at: format_utc(agent.created_at),
            buttons: AgentButtons::for_status(agent.status),
        }
    }
}

impl PasskeyRow {
    pub fn new(passkey: &PasskeyRecord) -> PasskeyRow {
        PasskeyRow {
            name: ShownText::new(&passkey.name),
            created_at: format_utc(passkey.created_at),
            last_used_at: passkey.last_used_at.map(format_utc),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{ApprovalId, COLLECT_WITHIN_SECS, UserId};
    use handsign_protocol::params::CanonicalParams;
    use handsign_protocol::statement::Decision;

    use crate::pages::test_support::decided;

    const NOW: i64 = 1_740_837_909;

    /// Fails if `html` holds inline script or style: a `<style>` element, a `style=` attribute,
    /// an `on...=` event handler, or a `<script>` without `src`. The gateway's
    /// Content-Security-Policy would block them; a page relying on one would be broken.
    pub(crate) fn assert_no_inline_code(html: &str) {
        assert!(!html.contains("<style"), "inline <style>");
        assert!(!html.contains("style="), "inline style attribute");
        for tag in html.split('<').skip(1) {
            let tag = tag.split('>').next().unwrap();
            assert!(
                !tag.split_whitespace().any(|a| a.starts_with("on")),
                "inline event handler in <{tag}>"
            );
        }
        let mut rest = html;
        while let Some(at) = rest.find("<script") {
            let tag_end = rest[at..].find('>').unwrap() + at;
            assert!(rest[at..tag_end].contains(" src="), "inline script");
            assert!(rest[tag_end..].starts_with("></script>"), "inline script");
            rest = &rest[tag_end..];
        }
    }

    fn record(n: u8, state: ApprovalState) -> ApprovalRecord {
        let canonical = CanonicalParams::parse(br#"{"to":"NYC"}"#, &Default::default()).unwrap();
        let id = format!("apr_{}", handsign_protocol::base64url::encode([n; 16]));
        ApprovalRecord {
            id: ApprovalId::parse(&id).unwrap(),
            kind: ApprovalKind::Action,
            agent: "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".into(),
            agent_name: "old name".into(),
            user: UserId::parse("alice").unwrap(),
            audience: "https://trаvel.example".into(),
            action: "flights.book".into(),
            params: canonical.as_str().to_owned(),
            params_sha256: canonical.hash(),
            params_order: Default::default(),
            message: None,
            code: "482-113".into(),
            nonce: "n".repeat(43),
            created_at: NOW - 28,
            expires_at: NOW + 272,
            state,
        }
    }

    fn names() -> AgentNames {
        HashMap::from([(
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".to_owned(),
            "travel\u{202E}bot <b>".to_owned(),
        )])
    }

    fn page() -> DashboardPage {
        let pending = record(1, ApprovalState::Pending);
        let cancelled = record(
            2,
            ApprovalState::Cancelled {
                at: NOW - 5,
                reason: "agent revoked".into(),
            },
        );
        let mut expired = record(3, ApprovalState::Pending);
        expired.expires_at = NOW - 60;
        let agent = |id: &str, status| AgentRecord {
            id: id.into(),
            name: "travel\u{200B}bot".into(),
            user: UserId::parse("alice").unwrap(),
            public_jwk: None,
            status,
            created_at: NOW - 3600,
            enrollment_expires_at: None,
        };
        DashboardPage {
            user: "alice".into(),
            admin: true,
            pending: vec![PendingRow::new(&pending, &names(), NOW)],
            history: vec![
                HistoryRow::new(&cancelled, &names(), NOW),
                HistoryRow::new(&expired, &names(), NOW),
            ],
            agents: vec![
                AgentRow::new(&agent("agent-a", AgentStatus::Active)),
                AgentRow::new(&agent("agent-p", AgentStatus::Pending)),
                AgentRow::new(&agent("agent-r", AgentStatus::Revoked)),
            ],
            passkeys: vec![PasskeyRow {
                name: ShownText::new("phone <3"),
                created_at: format_utc(NOW - 7200),
                last_used_at: None,
            }],
        }
    }

    #[test]
    fn the_dashboard_renders_without_inline_code() {
        let html = page().render().unwrap();
        assert_no_inline_code(&html);
        for needle in [
            "/static/handsign.js?v=",
            "/static/dashboard.js?v=",
            r#"<ul id="pending""#,
            r#"<ul id="history""#,
            r#"href="/approve/apr_AQEBAQEBAQEBAQEBAQEBAQ""#,
            "482-113",
            r#"data-seconds-left="272""#,
            "4 min 32 s",
            "Cancelled 2025-03-01 14:05:04 UTC",
            "Expired 2025-03-01 14:04:09 UTC without a decision",
            r#"<form id="add-passkey""#,
            r#"<form id="invite""#,
            r#"<button id="logout""#,
            "phone &#60;3",
            "never",
        ] {
            assert!(html.contains(needle), "{needle} missing in {html}");
        }
        // A request without a receipt has no receipt link.
        assert!(!html.contains("/receipt"));
    }

    #[test]
    fn agent_written_text_gets_the_approval_pages_markers() {
        let html = page().render().unwrap();
        assert!(
            html.contains(
                r#"travel<span class="mk">U+202E RIGHT-TO-LEFT OVERRIDE</span>bot &#60;b&#62;"#
            ),
            "{html}"
        );
        assert!(html.contains(r#"travel<span class="mk">U+200B ZERO WIDTH SPACE</span>bot"#));
        // The Cyrillic "а" in the audience.
        assert!(
            html.contains(r#"<span class="fl">а</span><span class="cp">U+0430 Cyrillic</span>"#)
        );
        assert!(html.contains("mixed scripts: Latin + Cyrillic"));
        assert!(!html.contains('\u{202E}') && !html.contains('\u{200B}'));
        assert!(!html.contains("bot <b>"));
    }

    #[test]
    fn agent_buttons_follow_the_status() {
        let html = page().render().unwrap();
        let row = |id: &str| {
            let start = html.find(&format!(r#"data-agent-id="{id}""#)).unwrap();
            let end = html[start..].find("</li>").unwrap() + start;
            html[start..end].to_owned()
        };
        let shown = |row: &str, status: &str| {
            let at = row.find(&format!(r#"data-set-status="{status}""#)).unwrap();
            !row[at..].split('>').next().unwrap().contains("hidden")
        };
        let active = row("agent-a");
        assert!(shown(&active, "suspended") && !shown(&active, "active"));
        assert!(shown(&active, "revoked"));
        let pending = row("agent-p");
        assert!(!shown(&pending, "suspended") && !shown(&pending, "active"));
        assert!(shown(&pending, "revoked"));
        let revoked = row("agent-r");
        assert!(!revoked.contains("<button"), "{revoked}");
    }

    #[test]
    fn the_list_fragments_match_the_page() {
        let page = page();
        let html = page.render().unwrap();
        let pending = PendingList {
            pending: &page.pending,
        }
        .render()
        .unwrap();
        let history = HistoryList {
            history: &page.history,
        }
        .render()
        .unwrap();
        assert!(html.contains(pending.trim()), "{pending}");
        assert!(html.contains(history.trim()), "{history}");
        assert_no_inline_code(&pending);
        assert_no_inline_code(&history);
        assert!(pending.trim_start().starts_with("<li"));
    }

    #[test]
    fn empty_lists_say_so() {
        let pending = PendingList { pending: &[] }.render().unwrap();
        assert!(pending.contains("Nothing is waiting for you."), "{pending}");
        let history = HistoryList { history: &[] }.render().unwrap();
        assert!(history.contains("No decided requests yet."), "{history}");
    }

    #[test]
    fn history_says_what_happened_and_links_receipts() {
        let row = |decision, delivered: bool| {
            let mut approval = record(4, ApprovalState::Pending);
            approval.state = decided(&approval, decision, NOW - 10, delivered.then_some(NOW - 9));
            HistoryRow::new(&approval, &names(), NOW)
        };
        let approved = row(Decision::Approve, true);
        assert_eq!(approved.status, ApprovalStatus::Approved);
        assert_eq!(
            approved.sentence,
            "Approved 2025-03-01 14:04:59 UTC; token collected"
        );
        assert!(approved.has_receipt);
        assert_eq!(
            row(Decision::Approve, false).sentence,
            "Approved 2025-03-01 14:04:59 UTC; token not collected yet"
        );
        let denied = row(Decision::Deny, false);
        assert_eq!(denied.status, ApprovalStatus::Denied);
        assert_eq!(denied.sentence, "Denied 2025-03-01 14:04:59 UTC");

        let html = HistoryList { history: &[denied] }.render().unwrap();
        assert!(
            html.contains(r#"href="/dashboard/approvals/apr_BAQEBAQEBAQEBAQEBAQEBA/receipt""#),
            "{html}"
        );
        assert_no_inline_code(&html);
    }

    #[test]
    fn an_approval_whose_token_was_never_collected_reads_expired() {
        let mut approval = record(5, ApprovalState::Pending);
        approval.state = decided(&approval, Decision::Approve, NOW - 10, None);
        let later = NOW + COLLECT_WITHIN_SECS;
        let row = HistoryRow::new(&approval, &names(), later);
        assert_eq!(row.status, ApprovalStatus::Expired);
        assert!(row.sentence.ends_with("token not collected in time"));
        assert_eq!(row.token_due_in, None);
        // Before then, the card says when to look again.
        let row = HistoryRow::new(&approval, &names(), NOW);
        assert!(row.sentence.ends_with("token not collected yet"));
        assert_eq!(row.token_due_in, Some(COLLECT_WITHIN_SECS - 10));
        let html = HistoryList { history: &[row] }.render().unwrap();
        assert!(
            html.contains(&format!(
                r#"data-token-due-in="{}""#,
                COLLECT_WITHIN_SECS - 10
            )),
            "{html}"
        );
    }

    #[test]
    fn cards_summarize_the_params_in_the_agents_order_on_one_line() {
        let sent = r#"{"from":"SFO","to":"NYC","date":"2026-12-01","passenger":"Alice\u200b Ng","legs":[1],"price":{"amount":"412.30"},"note":"a long note that does not fit on the card"}"#;
        let canonical = CanonicalParams::parse(sent.as_bytes(), &Default::default()).unwrap();
        let mut approval = record(1, ApprovalState::Pending);
        approval.params = canonical.as_str().to_owned();
        approval.params_order = crate::params_order::ParamsOrder::of_agent_json(sent).unwrap();
        let summary = params_summary(&approval);
        assert_eq!(
            summary,
            r#"from: "SFO", to: "NYC", date: "2026-12-01", passenger: "Alice[U+200B ZERO WIDTH SPACE] Ng"…"#
        );
        let rows = PendingRow::new(&approval, &AgentNames::new(), NOW);
        let html = PendingList { pending: &[rows] }.render().unwrap();
        assert!(
            html.contains(r#"<p class="item-summary">from: &#34;SFO&#34;, to:"#),
            "{html}"
        );
        assert_eq!(
            params_summary(&record(2, ApprovalState::Pending)),
            r#"to: "NYC""#
        );
    }
}
