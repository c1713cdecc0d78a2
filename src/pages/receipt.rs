//! The receipt page (`GET /dashboard/approvals/{id}/receipt` from a browser): the evidence of a
//! decision in words (what was decided, by which passkey, when, and how anyone can check it),
//! with the receipt file to download and the command that checks it offline.
//!
//! The facts come from the receipt itself, which is what the download holds and what the
//! command checks, so the page cannot say something the file does not.

use askama::Template;
use askama_web::WebTemplate;

use super::approve::fingerprint;
use super::format_utc;
use super::params_view::{Label, ParamsView, Part, Row, Scalar, ShownText};
use crate::domain::{ApprovalRecord, ApprovalState};

/// A decided request's receipt, for its user.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "receipt.html")]
pub struct ReceiptPage {
    pub id: String,
    /// `approve` or `deny`.
    pub decision: &'static str,
    pub action: ShownText,
    pub audience: ShownText,
    pub agent_name: ShownText,
    pub agent_fingerprint: String,
    pub user: String,
    pub decided_at: String,
    /// The passkey's name as its owner gave it, when it is still registered.
    pub passkey_name: Option<ShownText>,
    pub credential_id: String,
    pub params: ParamsView,
    pub params_sha256: String,
    pub rp_id: String,
    /// The name the download is saved under.
    pub file_name: String,
    /// Where the gateway's keys are, for the command that checks the downloaded file.
    pub jwks_url: String,
}

impl ReceiptPage {
    /// The page for `approval`, which must have been decided (else `None`); `passkey_name` is
    /// the name of the passkey that decided, if it is still registered; `issuer` is the
    /// gateway's public URL.
    pub fn new(
        approval: &ApprovalRecord,
        passkey_name: Option<&str>,
        issuer: &str,
    ) -> Option<ReceiptPage> {
        let (decided_at, receipt) = match &approval.state {
            ApprovalState::Approved {
                decided_at,
                receipt,
                ..
            }
            | ApprovalState::Denied {
                decided_at,
                receipt,
            } => (*decided_at, receipt),
            _ => return None,
        };
        let body = &receipt.body;
        let statement = &body.statement;
        let file_name = file_name(&approval.id.to_string());
        Some(ReceiptPage {
            id: approval.id.to_string(),
            decision: statement.decision.as_str(),
            action: ShownText::new(&statement.action),
            audience: ShownText::new(&statement.aud),
            agent_name: ShownText::new(&approval.agent_name),
            agent_fingerprint: fingerprint(&statement.act),
            user: statement.sub.clone(),
            decided_at: format_utc(decided_at),
            passkey_name: passkey_name.map(ShownText::new),
            credential_id: body.evidence.credential_id.clone(),
            // The params as the receipt holds them, in the agent's order when it is known.
            params: ParamsView::parse(&body.params.to_string(), &approval.params_order)
                .unwrap_or_else(|_| ParamsView::new(&body.params)),
            params_sha256: statement.params_sha256.to_string(),
            rp_id: body.rp_id.clone(),
            jwks_url: format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')),
            file_name,
        })
    }
}

/// What a downloaded receipt is called: after its request.
pub fn file_name(id: &str) -> String {
    format!("{id}.receipt.json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ApprovalId, ApprovalKind, UserId};
    use crate::pages::test_support::decided;
    use crate::params_order::ParamsOrder;
    use handsign_protocol::params::CanonicalParams;
    use handsign_protocol::statement::Decision;

    #[test]
    fn the_receipt_page_says_what_who_when_and_how_to_check() {
        let params =
            CanonicalParams::parse(br#"{"to":"NYC","from":"SFO"}"#, &Default::default()).unwrap();
        let mut approval = ApprovalRecord {
            id: ApprovalId::parse("apr_AAAAAAAAAAAAAAAAAAAAAA").unwrap(),
            kind: ApprovalKind::Action,
            agent: "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".into(),
            agent_name: "travel-bot".into(),
            user: UserId::parse("alice").unwrap(),
            audience: "https://travel.example".into(),
            action: "flights.book".into(),
            params: params.as_str().to_owned(),
            params_sha256: params.hash(),
            params_order: ParamsOrder::of_agent_json(r#"{"to":"NYC","from":"SFO"}"#).unwrap(),
            message: None,
            code: "123-456".into(),
            nonce: "n".repeat(43),
            created_at: 1_740_837_800,
            expires_at: 1_740_838_100,
            state: ApprovalState::Pending,
        };
        approval.state = decided(&approval, Decision::Approve, 1_740_837_909, None);
        let html = ReceiptPage::new(&approval, Some("phone"), "https://gw.example")
            .unwrap()
            .render()
            .unwrap();
        let id = approval.id.to_string();
        for needle in [
            "approved".to_owned(),
            ">flights.book<".to_owned(),
            ">phone<".to_owned(),
            "2025-03-01 14:05:09 UTC".to_owned(),
            format!(
                r#"href="/dashboard/approvals/{id}/receipt.json" download="{id}.receipt.json""#
            ),
            format!(
                "<code>handsign receipt verify {id}.receipt.json --jwks \
                 https://gw.example/.well-known/jwks.json</code>"
            ),
            approval.params_sha256.to_string(),
        ] {
            assert!(html.contains(&needle), "{needle} missing from {html}");
        }
        // The agent's order: `to` before `from`.
        assert!(html.find(">to<").unwrap() < html.find(">from<").unwrap());
        approval.state = ApprovalState::Pending;
        assert!(ReceiptPage::new(&approval, None, "https://gw.example").is_none());
    }
}
