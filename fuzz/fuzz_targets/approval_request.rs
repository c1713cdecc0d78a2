//! The body of an agent's approval request (`POST /v1/approvals`) as far as the protocol crate
//! handles it: read with the serde shape of the gateway's request (its struct is private to the
//! gateway, which this crate does not build: it is a web server with a database), the params
//! canonicalized strictly, and the approval statement built from the request and hashed. The
//! params hash must be the same whether computed from the raw text or the parsed value.
#![no_main]

use handsign_fuzz::{ISSUER, NOW, agent};
use handsign_protocol::canonical::Limits;
use handsign_protocol::params::CanonicalParams;
use handsign_protocol::statement::{Decision, STATEMENT_VERSION, Statement};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The members of the gateway's create request, with the same serde attributes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct CreateRequest {
    action: String,
    params: Box<RawValue>,
    audience: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    ttl: Option<i64>,
}

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<CreateRequest>(data) else {
        return;
    };
    let limits = Limits::default();
    let Ok(params) = CanonicalParams::parse(request.params.get().as_bytes(), &limits) else {
        return;
    };
    let value: serde_json::Value =
        serde_json::from_str(request.params.get()).expect("canonicalizable params are JSON");
    let from_value =
        CanonicalParams::from_value(&value, &limits).expect("the parsed params canonicalize");
    assert_eq!(
        from_value.hash(),
        params.hash(),
        "text and value hash alike"
    );
    let statement = Statement {
        v: STATEMENT_VERSION.into(),
        id: "apr_fuzz".into(),
        iss: ISSUER.into(),
        sub: request.user.unwrap_or_else(|| "alice".into()),
        act: agent().kid().into(),
        aud: request.audience,
        action: request.action,
        params_sha256: params.hash(),
        decision: Decision::Approve,
        nonce: "AAAA".into(),
        iat: NOW,
    };
    let _ = statement.digest();
});
