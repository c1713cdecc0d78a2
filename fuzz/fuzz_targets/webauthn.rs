//! The passkey side: mode 0 parses a COSE public key, mode 1 an attestation object (as
//! registration does), mode 2 verifies an assertion (authenticatorData, clientDataJSON and
//! signature, each length-prefixed) against the ES256 credential of the W3C WebAuthn Level 3
//! test vectors. An assertion that verifies carries the expected challenge, RP ID and origin.
#![no_main]

use std::sync::OnceLock;

use handsign_fuzz::{mode, parts};
use handsign_protocol::webauthn::{
    Assertion, AssertionExpectations, AttestedCredential, CredentialPublicKey, verify_assertion,
};
use libfuzzer_sys::fuzz_target;

/// The credential public key of the W3C vectors' "ES256 Credential with No Attestation".
const COSE_KEY: [u8; 77] = [
    0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20, 0xaf, 0xef, 0xa1, 0x6f, 0x97, 0xca,
    0x9b, 0x2d, 0x23, 0xeb, 0x86, 0xcc, 0xb6, 0x40, 0x98, 0xd2, 0x0d, 0xb9, 0x08, 0x56, 0x06, 0x2e,
    0xb2, 0x49, 0xc3, 0x3a, 0x9b, 0x67, 0x2f, 0x26, 0xdf, 0x61, 0x22, 0x58, 0x20, 0x93, 0x0a, 0x56,
    0xb8, 0x7a, 0x2f, 0xca, 0x66, 0x33, 0x4b, 0x03, 0x45, 0x8a, 0xbf, 0x87, 0x97, 0x17, 0xc1, 0x2c,
    0xc6, 0x8e, 0xd7, 0x32, 0x90, 0xaf, 0x2e, 0x26, 0x64, 0x79, 0x6b, 0x92, 0x20,
];
/// The challenge of that vector's authentication.
const CHALLENGE: [u8; 32] = [
    0x39, 0xc0, 0xe7, 0x52, 0x14, 0x17, 0xba, 0x54, 0xd4, 0x3e, 0x8d, 0xc9, 0x51, 0x74, 0xf4, 0x23,
    0xde, 0xe9, 0xbf, 0x3c, 0xd8, 0x04, 0xff, 0x6d, 0x65, 0xc8, 0x57, 0xc9, 0xab, 0xf4, 0xd4, 0x08,
];

fn key() -> &'static CredentialPublicKey {
    static KEY: OnceLock<CredentialPublicKey> = OnceLock::new();
    KEY.get_or_init(|| CredentialPublicKey::from_cose(&COSE_KEY).expect("the vector's key parses"))
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = mode(data) else {
        return;
    };
    match mode % 3 {
        0 => {
            if let Ok(key) = CredentialPublicKey::from_cose(rest) {
                let _ = key.to_jwk();
            }
        }
        1 => {
            if let Ok(credential) = AttestedCredential::from_attestation_object(rest) {
                let _ = credential.credential_public_key().to_jwk();
                let _ = credential.is_for_rp_id("example.org");
            }
        }
        _ => {
            let Some([authenticator_data, client_data_json, signature]) = parts::<3>(rest) else {
                return;
            };
            let assertion = Assertion {
                authenticator_data: authenticator_data.to_vec(),
                client_data_json: client_data_json.to_vec(),
                signature: signature.to_vec(),
            };
            let origins = ["https://example.org".to_owned()];
            let expected = AssertionExpectations {
                challenge: &CHALLENGE,
                rp_id: "example.org",
                allowed_origins: &origins,
                require_user_verified: false,
            };
            if verify_assertion(key(), &assertion, &expected).is_ok() {
                let text = String::from_utf8_lossy(client_data_json);
                assert!(text.contains("webauthn.get"), "{text}");
            }
        }
    }
});
