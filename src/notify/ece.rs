//! Message encryption for Web Push (RFC 8291 over the RFC 8188 `aes128gcm` content coding).
//!
//! Push services relay the message without being able to read it: the payload is encrypted to the
//! browser's key with a fresh salt and ephemeral key per message. Only the sending side lives here;
//! the tests decrypt with an independent implementation (Python `http_ece`), as a browser would.

use aes_gcm::Aes128Gcm;
use aes_gcm::aead::{Aead as _, KeyInit as _};
use hkdf::Hkdf;
use p256::elliptic_curve::sec1::ToSec1Point as _;
use p256::{PublicKey, SecretKey};
use sha2::Sha256;

use super::subscription::SubscriptionKeys;

/// The record size the gateway writes: the size every push service must accept (RFC 8291 §4).
pub const RECORD_SIZE: u32 = 4096;
/// Length of an uncompressed P-256 point: `0x04 || x || y`.
pub const P256_POINT_LEN: usize = 65;
/// Length of the subscription's authentication secret (RFC 8291 §3.2).
pub const AUTH_SECRET_LEN: usize = 16;
const SALT_LEN: usize = 16;
const TAG_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const CEK_LEN: usize = 16;
/// salt (16) || rs (4) || idlen (1) || keyid (65): the header of every body we send.
const WEBPUSH_HEADER_LEN: usize = SALT_LEN + 4 + 1 + P256_POINT_LEN;
/// The largest plaintext that fits one 4096-octet body (RFC 8291 §4: 3993 octets).
pub const MAX_PLAINTEXT_LEN: usize = RECORD_SIZE as usize - WEBPUSH_HEADER_LEN - TAG_LEN - 1;

/// Why a body could not be encrypted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EceError {
    #[error("the plaintext is {len} octets; one Web Push record holds at most {max}")]
    PlaintextTooLong { len: usize, max: usize },
    #[error("key derivation failed")]
    KeyDerivation,
    #[error("no randomness: {0}")]
    Randomness(String),
}

/// The content-encryption key and nonce base derived for one body.
struct ContentKeys {
    cek: [u8; CEK_LEN],
    nonce: [u8; NONCE_LEN],
}

/// Every intermediate value of RFC 8291 §3.4, kept for the byte-for-byte test of Appendix A.
#[cfg_attr(not(test), allow(dead_code))]
struct WebPushKeys {
    ecdh_secret: [u8; 32],
    prk_key: [u8; 32],
    ikm: [u8; 32],
    prk: [u8; 32],
    content: ContentKeys,
}

/// RFC 8188 §2.2-2.3: PRK = HKDF-Extract(salt, IKM); CEK and NONCE expanded from it.
fn content_keys(salt: &[u8], ikm: &[u8]) -> Result<([u8; 32], ContentKeys), EceError> {
    let (prk, hkdf) = Hkdf::<Sha256>::extract(Some(salt), ikm);
    let mut cek = [0u8; CEK_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    hkdf.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .map_err(|_| EceError::KeyDerivation)?;
    hkdf.expand(b"Content-Encoding: nonce\0", &mut nonce)
        .map_err(|_| EceError::KeyDerivation)?;
    let mut prk_bytes = [0u8; 32];
    prk_bytes.copy_from_slice(&prk);
    Ok((prk_bytes, ContentKeys { cek, nonce }))
}

/// RFC 8291 §3.3-3.4: the IKM from ECDH and the auth secret, then the RFC 8188 keys.
fn webpush_keys(
    own_private: &SecretKey,
    peer_public: &PublicKey,
    ua_public: &[u8; P256_POINT_LEN],
    as_public: &[u8; P256_POINT_LEN],
    auth: &[u8; AUTH_SECRET_LEN],
    salt: &[u8],
) -> Result<WebPushKeys, EceError> {
    let shared = own_private.diffie_hellman(peer_public);
    let mut ecdh_secret = [0u8; 32];
    ecdh_secret.copy_from_slice(shared.raw_secret_bytes());
    let (prk_key, hkdf) = Hkdf::<Sha256>::extract(Some(auth), &ecdh_secret);
    let mut key_info = Vec::with_capacity(14 + 2 * P256_POINT_LEN);
    key_info.extend_from_slice(b"WebPush: info\0");
    key_info.extend_from_slice(ua_public);
    key_info.extend_from_slice(as_public);
    let mut ikm = [0u8; 32];
    hkdf.expand(&key_info, &mut ikm)
        .map_err(|_| EceError::KeyDerivation)?;
    let (prk, content) = content_keys(salt, &ikm)?;
    let mut prk_key_bytes = [0u8; 32];
    prk_key_bytes.copy_from_slice(&prk_key);
    Ok(WebPushKeys {
        ecdh_secret,
        prk_key: prk_key_bytes,
        ikm,
        prk,
        content,
    })
}

/// The nonce of record `seq`: NONCE XOR the sequence number, big-endian (RFC 8188 §2.3).
fn record_nonce(base: &[u8; NONCE_LEN], seq: u64) -> aes_gcm::aead::Nonce<Aes128Gcm> {
    let mut nonce = *base;
    for (n, s) in nonce[NONCE_LEN - 8..].iter_mut().zip(seq.to_be_bytes()) {
        *n ^= s;
    }
    nonce.into()
}

fn cipher(keys: &ContentKeys) -> Result<Aes128Gcm, EceError> {
    Aes128Gcm::new_from_slice(&keys.cek).map_err(|_| EceError::KeyDerivation)
}

/// Encrypts `plaintext` to the subscription's keys: the complete request body, with a fresh salt
/// and ephemeral key (header: salt, rs = 4096, idlen = 65, keyid = the ephemeral public key; one
/// record ending in the 0x02 delimiter, no further padding).
pub fn encrypt(keys: &SubscriptionKeys, plaintext: &[u8]) -> Result<Vec<u8>, EceError> {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|e| EceError::Randomness(e.to_string()))?;
    let ephemeral = random_secret_key().map_err(EceError::Randomness)?;
    encrypt_with(keys, plaintext, &salt, &ephemeral)
}

/// [`encrypt`] with the salt and the ephemeral private key given: reproducible, for the RFC 8291
/// example. Never reuse a salt or ephemeral key outside tests.
fn encrypt_with(
    keys: &SubscriptionKeys,
    plaintext: &[u8],
    salt: &[u8; SALT_LEN],
    ephemeral: &SecretKey,
) -> Result<Vec<u8>, EceError> {
    encrypt_with_keys(keys, plaintext, salt, ephemeral).map(|(body, _)| body)
}

fn encrypt_with_keys(
    keys: &SubscriptionKeys,
    plaintext: &[u8],
    salt: &[u8; SALT_LEN],
    ephemeral: &SecretKey,
) -> Result<(Vec<u8>, WebPushKeys), EceError> {
    if plaintext.len() > MAX_PLAINTEXT_LEN {
        return Err(EceError::PlaintextTooLong {
            len: plaintext.len(),
            max: MAX_PLAINTEXT_LEN,
        });
    }
    let as_public = point_bytes(&ephemeral.public_key());
    let ua_public = keys.p256dh_bytes();
    let derived = webpush_keys(
        ephemeral,
        keys.p256dh(),
        &ua_public,
        &as_public,
        keys.auth(),
        salt,
    )?;
    let mut record = Vec::with_capacity(plaintext.len() + 1);
    record.extend_from_slice(plaintext);
    record.push(0x02);
    let sealed = cipher(&derived.content)?
        .encrypt(&record_nonce(&derived.content.nonce, 0), record.as_slice())
        .map_err(|_| EceError::KeyDerivation)?;
    let mut body = Vec::with_capacity(WEBPUSH_HEADER_LEN + sealed.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(P256_POINT_LEN as u8);
    body.extend_from_slice(&as_public);
    body.extend_from_slice(&sealed);
    Ok((body, derived))
}

/// An uncompressed P-256 point.
pub(super) fn point_bytes(key: &PublicKey) -> [u8; P256_POINT_LEN] {
    let point = key.to_sec1_point(false);
    let mut out = [0u8; P256_POINT_LEN];
    // An uncompressed point of a valid (non-identity) key is always 65 octets.
    if let Some(bytes) = point.as_bytes().get(..P256_POINT_LEN) {
        out.copy_from_slice(bytes);
    }
    out
}

/// A fresh P-256 private key from the operating system's randomness.
pub(super) fn random_secret_key() -> Result<SecretKey, String> {
    // A random 256-bit string is a valid scalar except with probability about 2^-32; retrying a
    // few times makes failure a matter of a broken random source only.
    for _ in 0..8 {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| e.to_string())?;
        if let Ok(key) = SecretKey::from_slice(&bytes) {
            return Ok(key);
        }
    }
    Err("the random source gave no valid P-256 key in 8 tries".to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::Value;

    use super::*;

    const RFC8291: &str = include_str!("../../tests/vectors/webpush/rfc8291_webpush_example.json");
    const RFC8188: &str = include_str!("../../tests/vectors/webpush/rfc8188_examples.json");

    fn b64(v: &Value) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(v.as_str().unwrap()).unwrap()
    }

    #[test]
    fn reproduces_the_rfc8291_example_byte_for_byte() {
        let v: Value = serde_json::from_str(RFC8291).unwrap();
        let i = &v["intermediate"];
        let keys = SubscriptionKeys::from_base64url(
            v["ua_public"].as_str().unwrap(),
            v["auth_secret"].as_str().unwrap(),
        )
        .unwrap();
        let ephemeral = SecretKey::from_slice(&b64(&v["as_private"])).unwrap();
        assert_eq!(
            point_bytes(&ephemeral.public_key()).to_vec(),
            b64(&v["as_public"])
        );
        let salt: [u8; 16] = b64(&v["salt"]).try_into().unwrap();
        let plaintext = b64(&v["plaintext_b64url"]);
        assert_eq!(plaintext, v["plaintext_utf8"].as_str().unwrap().as_bytes());

        let (body, d) = encrypt_with_keys(&keys, &plaintext, &salt, &ephemeral).unwrap();
        assert_eq!(
            d.ecdh_secret.to_vec(),
            b64(&i["ecdh_secret"]),
            "ecdh secret"
        );
        assert_eq!(d.prk_key.to_vec(), b64(&i["PRK_key"]), "PRK_key");
        assert_eq!(d.ikm.to_vec(), b64(&i["IKM"]), "IKM");
        assert_eq!(d.prk.to_vec(), b64(&i["PRK"]), "PRK");
        assert_eq!(d.content.cek.to_vec(), b64(&i["CEK"]), "CEK");
        assert_eq!(d.content.nonce.to_vec(), b64(&i["NONCE"]), "NONCE");
        assert_eq!(body[..86].to_vec(), b64(&i["header_86_octets"]), "header");
        assert_eq!(body[86..].to_vec(), b64(&i["ciphertext"]), "ciphertext");
        assert_eq!(body, b64(&v["body_b64url"]), "body");
        assert_eq!(body.len() as u64, v["body_octets"].as_u64().unwrap());
        assert_eq!(
            encrypt_with(&keys, &plaintext, &salt, &ephemeral).unwrap(),
            body
        );
    }

    #[test]
    fn fresh_encryptions_differ_and_fill_at_most_one_record() {
        let ua = random_secret_key().unwrap();
        let keys =
            SubscriptionKeys::from_bytes(&point_bytes(&ua.public_key()), &[7u8; 16]).unwrap();
        let a = encrypt(&keys, b"{\"x\":1}").unwrap();
        let b = encrypt(&keys, b"{\"x\":1}").unwrap();
        assert_ne!(a, b);
        assert_ne!(a[..16], b[..16], "a fresh salt");
        assert_ne!(a[21..86], b[21..86], "a fresh ephemeral key");
        assert_eq!(a.len(), 86 + 7 + 1 + 16);
        assert_eq!(&a[16..20], &4096u32.to_be_bytes());
        assert_eq!(a[20], 65);
        // The largest plaintext fits in exactly 4096 octets; one more is refused.
        assert_eq!(
            encrypt(&keys, &[b'a'; MAX_PLAINTEXT_LEN]).unwrap().len(),
            4096
        );
        assert_eq!(
            encrypt(&keys, &[b'a'; MAX_PLAINTEXT_LEN + 1]),
            Err(EceError::PlaintextTooLong {
                len: MAX_PLAINTEXT_LEN + 1,
                max: MAX_PLAINTEXT_LEN
            })
        );
    }

    #[test]
    fn derives_the_rfc8188_content_keys() {
        let v: Value = serde_json::from_str(RFC8188).unwrap();
        let mut checked = 0;
        for example in v["examples"].as_array().unwrap() {
            if let Some(i) = example.get("intermediate") {
                let (prk, keys) = content_keys(&b64(&i["salt"]), &b64(&example["ikm"])).unwrap();
                assert_eq!(prk.to_vec(), b64(&i["PRK"]));
                assert_eq!(keys.cek.to_vec(), b64(&i["CEK"]));
                assert_eq!(keys.nonce.to_vec(), b64(&i["NONCE"]));
                checked += 1;
            }
        }
        assert!(checked > 0);
    }
}
