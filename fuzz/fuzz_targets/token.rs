//! Approval token verification: mode 0 verifies the input as a token; mode 1 signs the input as
//! the claims with the trusted gateway key and a correct header, so every claims check sees it.
//! A token that verifies must satisfy the time window and lifetime rules.
#![no_main]

use handsign_fuzz::{ACTION, AUDIENCE, ISSUER, NOW, gateway, gateway_keys, mode, params_hash};
use handsign_protocol::jws;
use handsign_protocol::token::{self, MAX_LIFETIME_SECS, TOKEN_TYP};
use libfuzzer_sys::fuzz_target;

const SKEW: i64 = 5;

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = mode(data) else {
        return;
    };
    let token = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let key = gateway();
        let header = format!(
            r#"{{"alg":"EdDSA","typ":"{TOKEN_TYP}","kid":"{}"}}"#,
            key.kid()
        );
        jws::sign_bytes(&key, header.as_bytes(), rest)
    };
    let hash = params_hash();
    let expected = token::Expected {
        issuer: ISSUER,
        audience: AUDIENCE,
        action: ACTION,
        params_sha256: &hash,
        now: NOW,
        skew: SKEW,
    };
    if let Ok(claims) = token::verify(&token, &gateway_keys(), &expected) {
        assert!(i128::from(NOW) < i128::from(claims.exp) + i128::from(SKEW));
        assert!(i128::from(claims.nbf) - i128::from(SKEW) <= i128::from(NOW));
        assert!(
            i128::from(claims.exp) - i128::from(claims.iat.min(claims.nbf))
                <= i128::from(MAX_LIFETIME_SECS)
        );
        assert_eq!(claims.params_sha256, hash);
    }
});
