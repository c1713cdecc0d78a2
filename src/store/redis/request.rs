//! A request as created, as the Redis store writes it: one JSON string per request, kept small
//! because pending requests are most of what a busy gateway holds.
//!
//! The params are embedded as JSON, not as a string of JSON (which would escape every quote).
//! The id is in the key, the params hash follows from the params, and the state is in the
//! request's decision hash, where scripts change it.

use std::borrow::Cow;

use handsign_protocol::params::ParamsHash;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::unavailable;
use crate::domain::{ApprovalId, ApprovalKind, ApprovalRecord, ApprovalState, UserId};
use crate::params_order::ParamsOrder;
use crate::store::StoreError;

#[derive(Serialize, Deserialize)]
struct StoredRequest<'a> {
    user: Cow<'a, UserId>,
    kind: ApprovalKind,
    #[serde(borrow)]
    agent: Cow<'a, str>,
    #[serde(borrow)]
    agent_name: Cow<'a, str>,
    #[serde(borrow)]
    audience: Cow<'a, str>,
    #[serde(borrow)]
    action: Cow<'a, str>,
    #[serde(borrow)]
    params: &'a RawValue,
    /// The agent's key order, only when it is not the sorted one (most requests keep nothing).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    order: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    code: Cow<'a, str>,
    #[serde(borrow)]
    nonce: Cow<'a, str>,
    created_at: i64,
    expires_at: i64,
}

/// The stored form of a new request; its state is not part of it.
pub fn to_json(approval: &ApprovalRecord) -> Result<String, StoreError> {
    let params = RawValue::from_string(approval.params.clone()).map_err(unavailable)?;
    serde_json::to_string(&StoredRequest {
        user: Cow::Borrowed(&approval.user),
        kind: approval.kind,
        agent: Cow::Borrowed(&approval.agent),
        agent_name: Cow::Borrowed(&approval.agent_name),
        audience: Cow::Borrowed(&approval.audience),
        action: Cow::Borrowed(&approval.action),
        params: &params,
        order: (!approval.params_order.is_sorted())
            .then(|| Cow::Borrowed(approval.params_order.as_str())),
        message: approval.message.as_deref().map(Cow::Borrowed),
        code: Cow::Borrowed(&approval.code),
        nonce: Cow::Borrowed(&approval.nonce),
        created_at: approval.created_at,
        expires_at: approval.expires_at,
    })
    .map_err(unavailable)
}

/// Request `id` as created, pending: the caller applies its decision, if any.
pub fn from_json(id: &ApprovalId, json: &str) -> Result<ApprovalRecord, StoreError> {
    let stored: StoredRequest<'_> = serde_json::from_str(json)
        .map_err(|e| StoreError::Unavailable(format!("redis: unreadable request {id}: {e}")))?;
    // The params were stored verbatim from their canonical form.
    let params = stored.params.get().to_owned();
    Ok(ApprovalRecord {
        id: id.clone(),
        kind: stored.kind,
        agent: stored.agent.into_owned(),
        agent_name: stored.agent_name.into_owned(),
        user: stored.user.into_owned(),
        audience: stored.audience.into_owned(),
        action: stored.action.into_owned(),
        params_sha256: ParamsHash::of_canonical(params.as_bytes()),
        params,
        params_order: stored
            .order
            .map(|order| ParamsOrder::from_stored(order.into_owned()))
            .unwrap_or_default(),
        message: stored.message.map(Cow::into_owned),
        code: stored.code.into_owned(),
        nonce: stored.nonce.into_owned(),
        created_at: stored.created_at,
        expires_at: stored.expires_at,
        state: ApprovalState::Pending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use handsign_protocol::canonical::Limits;
    use handsign_protocol::params::CanonicalParams;

    fn approval(params: &str) -> ApprovalRecord {
        let params = CanonicalParams::parse(params.as_bytes(), &Limits::default()).unwrap();
        ApprovalRecord {
            id: ApprovalId::generate().unwrap(),
            kind: ApprovalKind::Enrollment,
            agent: "agent \"one\"".into(),
            agent_name: "Zoë's agent".into(),
            user: UserId::parse("alice").unwrap(),
            audience: "https://travel.example".into(),
            action: "flights.book".into(),
            params: params.as_str().into(),
            params_sha256: params.hash(),
            params_order: Default::default(),
            message: Some("line\nbreak \u{1F6EB}".into()),
            code: "4711".into(),
            nonce: "bm9uY2U".into(),
            created_at: 1_795_000_000,
            expires_at: 1_795_000_300,
            state: ApprovalState::Pending,
        }
    }

    #[test]
    fn a_request_reads_back_as_written() {
        let written = approval(r#"{"note":"say \"hi\"\n","to":"東京","n":[1,2.5,null]}"#);
        let json = to_json(&written).unwrap();
        let read = from_json(&written.id, &json).unwrap();
        assert_eq!(
            serde_json::to_value(&read).unwrap(),
            serde_json::to_value(&written).unwrap()
        );
        assert_eq!(read.params.as_bytes(), written.params.as_bytes());
    }

    #[test]
    fn the_agents_key_order_costs_a_few_bytes_and_only_when_it_is_not_sorted() {
        let sent = r#"{"to":"東京","note":"x","n":[1]}"#;
        let mut written = approval(sent);
        let sorted = to_json(&written).unwrap();
        assert!(!sorted.contains("order"), "{sorted}");
        written.params_order = ParamsOrder::of_agent_json(sent).unwrap();
        let json = to_json(&written).unwrap();
        assert!(json.contains(r#""order":"2,1,0""#), "{json}");
        assert_eq!(json.len() - sorted.len(), r#","order":"2,1,0""#.len());
        let read = from_json(&written.id, &json).unwrap();
        assert_eq!(read.params_order, written.params_order);
        assert_eq!(read.params, written.params);
        assert_eq!(read.params_sha256, written.params_sha256);
    }

    #[test]
    fn params_are_stored_as_json_not_as_an_escaped_string() {
        let written = approval(r#"{"a":"b"}"#);
        let json = to_json(&written).unwrap();
        assert!(json.contains(r#""params":{"a":"b"}"#), "{json}");
        assert!(!json.contains("params_sha256") && !json.contains(written.id.as_str()));
    }

    #[test]
    fn changed_params_give_their_own_hash() {
        let written = approval(r#"{"amount":100}"#);
        let json = to_json(&written).unwrap().replace("100", "900");
        let read = from_json(&written.id, &json).unwrap();
        assert_ne!(read.params_sha256, written.params_sha256);
        assert_eq!(
            read.params_sha256,
            CanonicalParams::parse(br#"{"amount":900}"#, &Limits::default())
                .unwrap()
                .hash()
        );
    }
}
