//! DPoP: the RFC 9449 examples, and a replay cache's view of proofs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use handsign_protocol::dpop::{self, DpopError, Expected};
use handsign_protocol::keys::{Jwk, thumbprint};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("vectors/dpop/rfc9449_dpop_examples.json")).unwrap()
}

#[test]
fn rfc9449_jkt_and_ath_are_reproduced() {
    let v = vectors();
    let jwk: Jwk = serde_json::from_value(v["proofs"][0]["header"]["jwk"].clone()).unwrap();
    assert_eq!(
        thumbprint(&jwk).unwrap(),
        v["jkt_expected"].as_str().unwrap()
    );
    assert_eq!(
        dpop::access_token_hash(v["access_token"].as_str().unwrap()),
        v["ath_expected"].as_str().unwrap()
    );
}

#[test]
fn rfc9449_es256_proofs_are_refused_by_alg() {
    // Handsign agents sign with EdDSA only; an ES256 proof, however valid, is refused by name.
    for proof in vectors()["proofs"].as_array().unwrap() {
        let request = &proof["request"];
        let expected = Expected {
            method: request["method"].as_str().unwrap(),
            url: request["url"].as_str().unwrap(),
            now: proof["claims"]["iat"].as_i64().unwrap(),
            access_token: None,
        };
        assert_eq!(
            dpop::verify(proof["dpop_proof"].as_str().unwrap(), &expected),
            Err(DpopError::WrongAlg("ES256".into()))
        );
    }
}
