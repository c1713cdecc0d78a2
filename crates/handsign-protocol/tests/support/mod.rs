//! A software authenticator (P-256 and Ed25519) for tests: it registers credentials and makes
//! assertions the way a browser and an authenticator would.
#![allow(dead_code)]

use ciborium::Value;
use handsign_protocol::base64url;
use handsign_protocol::keys::SigningKey;
use handsign_protocol::receipt::{Credential, Evidence, Receipt, ReceiptBody};
use handsign_protocol::statement::Statement;
use handsign_protocol::webauthn::{Assertion, AttestedCredential};
use sha2::{Digest as _, Sha256};

pub const RP_ID: &str = "localhost";
pub const ORIGIN: &str = "http://localhost:8080";

/// Flags: UP + UV.
pub const UP_UV: u8 = 0x05;
/// Flags: UP only.
pub const UP: u8 = 0x01;

pub enum Key {
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

/// A software authenticator holding one credential.
pub struct SoftAuthenticator {
    pub key: Key,
    pub credential_id: Vec<u8>,
    pub counter: u32,
}

fn cbor(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).unwrap();
    out
}

fn int(n: i64) -> Value {
    Value::Integer(n.into())
}

impl SoftAuthenticator {
    pub fn p256(seed: u8) -> Self {
        let key = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
        Self {
            key: Key::P256(key),
            credential_id: vec![seed; 16],
            counter: 0,
        }
    }

    pub fn ed25519(seed: u8) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        Self {
            key: Key::Ed25519(key),
            credential_id: vec![seed; 16],
            counter: 0,
        }
    }

    /// The credential public key as a COSE_Key, in CTAP2 canonical order.
    pub fn cose_key(&self) -> Vec<u8> {
        match &self.key {
            Key::P256(key) => {
                let point = key.verifying_key().to_sec1_point(false);
                let bytes = point.as_bytes();
                cbor(&Value::Map(vec![
                    (int(1), int(2)),
                    (int(3), int(-7)),
                    (int(-1), int(1)),
                    (int(-2), Value::Bytes(bytes[1..33].to_vec())),
                    (int(-3), Value::Bytes(bytes[33..65].to_vec())),
                ]))
            }
            Key::Ed25519(key) => cbor(&Value::Map(vec![
                (int(1), int(1)),
                (int(3), int(-8)),
                (int(-1), int(6)),
                (
                    int(-2),
                    Value::Bytes(key.verifying_key().as_bytes().to_vec()),
                ),
            ])),
        }
    }

    pub fn authenticator_data_head(&self, rp_id: &str, flags: u8) -> Vec<u8> {
        let mut out = Sha256::digest(rp_id.as_bytes()).to_vec();
        out.push(flags);
        out.extend_from_slice(&self.counter.to_be_bytes());
        out
    }

    /// A `none` attestation object, flags UP + UV + AT, zero AAGUID.
    pub fn attestation_object(&self) -> Vec<u8> {
        let mut auth_data = self.authenticator_data_head(RP_ID, 0x45);
        auth_data.extend_from_slice(&[0; 16]);
        auth_data.extend_from_slice(
            &u16::try_from(self.credential_id.len())
                .unwrap()
                .to_be_bytes(),
        );
        auth_data.extend_from_slice(&self.credential_id);
        auth_data.extend_from_slice(&self.cose_key());
        cbor(&Value::Map(vec![
            (Value::Text("fmt".into()), Value::Text("none".into())),
            (Value::Text("attStmt".into()), Value::Map(vec![])),
            (Value::Text("authData".into()), Value::Bytes(auth_data)),
        ]))
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.key {
            Key::P256(key) => {
                use p256::ecdsa::signature::Signer as _;
                let signature: p256::ecdsa::Signature = key.sign(message);
                signature.to_der().as_bytes().to_vec()
            }
            Key::Ed25519(key) => {
                use ed25519_dalek::Signer as _;
                key.sign(message).to_bytes().to_vec()
            }
        }
    }

    /// Signs `authenticatorData || SHA-256(clientDataJSON)` as an authenticator does.
    pub fn assert_raw(
        &mut self,
        authenticator_data: Vec<u8>,
        client_data_json: String,
    ) -> Assertion {
        let mut message = authenticator_data.clone();
        message.extend_from_slice(&Sha256::digest(client_data_json.as_bytes()));
        let signature = self.sign(&message);
        Assertion {
            authenticator_data,
            client_data_json: client_data_json.into_bytes(),
            signature,
        }
    }

    /// A `navigator.credentials.get` through a browser at `origin`.
    pub fn assert(&mut self, challenge: &[u8], origin: &str, flags: u8) -> Assertion {
        self.counter += 1;
        let client_data = client_data_json("webauthn.get", challenge, origin, "");
        let authenticator_data = self.authenticator_data_head(RP_ID, flags);
        self.assert_raw(authenticator_data, client_data)
    }
}

pub fn client_data_json(ceremony: &str, challenge: &[u8], origin: &str, extra: &str) -> String {
    format!(
        r#"{{"type":"{ceremony}","challenge":"{}","origin":"{origin}","crossOrigin":false{extra}}}"#,
        base64url::encode(challenge)
    )
}

/// What a gateway does on a decision: the person's authenticator signs the statement digest at
/// [`ORIGIN`] with `flags`, and the gateway assembles the receipt and signs it.
pub fn issue_receipt(
    authenticator: &mut SoftAuthenticator,
    statement: Statement,
    params: serde_json::Value,
    flags: u8,
    gateway: &SigningKey,
) -> Receipt {
    let registered =
        AttestedCredential::from_attestation_object(&authenticator.attestation_object()).unwrap();
    let assertion = authenticator.assert(&statement.digest().unwrap(), ORIGIN, flags);
    ReceiptBody {
        v: "handsign-receipt/1".into(),
        statement,
        params,
        evidence: Evidence {
            credential_id: base64url::encode(registered.credential_id()),
            authenticator_data: base64url::encode(&assertion.authenticator_data),
            client_data_json: base64url::encode(&assertion.client_data_json),
            signature: base64url::encode(&assertion.signature),
            user_handle: Some(base64url::encode(b"alice")),
        },
        credential: Credential {
            public_key_cose: base64url::encode(registered.credential_public_key_cose()),
            public_key_jwk: registered.credential_public_key().to_jwk(),
        },
        rp_id: RP_ID.into(),
        origins: vec![ORIGIN.into()],
    }
    .sign(gateway)
    .unwrap()
}
