//! DPoP proof verification: mode 0 verifies the input as a proof; mode 1 signs the input as the
//! claims with the agent's key and a correct header, so the method, URL, age and token-hash
//! checks see arbitrary claims. A proof that verifies is fresh and names the expected token.
#![no_main]

use handsign_fuzz::{NOW, URL, agent, mode};
use handsign_protocol::dpop::{self, DPOP_TYP, MAX_PROOF_AGE_SECS};
use handsign_protocol::jws;
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.e30.c2ln";

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = mode(data) else {
        return;
    };
    let key = agent();
    let proof = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let jwk = serde_json::to_string(&key.public_jwk()).expect("a JWK serializes");
        let header = format!(r#"{{"typ":"{DPOP_TYP}","alg":"EdDSA","jwk":{jwk}}}"#);
        jws::sign_bytes(&key, header.as_bytes(), rest)
    };
    let expected = dpop::Expected {
        method: "POST",
        url: URL,
        now: NOW,
        access_token: Some(TOKEN),
    };
    if let Ok(verified) = dpop::verify(&proof, &expected) {
        assert!(
            (i128::from(verified.iat) - i128::from(NOW)).abs() <= i128::from(MAX_PROOF_AGE_SECS)
        );
        if mode % 2 == 1 {
            assert_eq!(verified.jkt, key.kid());
        }
    }
});
