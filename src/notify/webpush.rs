//! Web Push: the encrypted, VAPID-signed message that wakes the person's phone.
//!
//! An approval request is only useful if the right person sees it quickly, so the gateway sends a
//! Web Push message to each device the person subscribed. Push services relay the message without
//! being able to read it: the payload is encrypted to the browser's key (RFC 8291, with the
//! RFC 8188 `aes128gcm` content coding), and the gateway identifies itself to the push service
//! with a VAPID token (RFC 8292) signed by a P-256 key kept in the data directory.
//!
//! The message never carries authority: it names the request and links to the approval page,
//! where the passkey decides. That is why the payload may be read by the person's device, and why
//! a lost or replayed push message costs nothing but a notification.
//!
//! What is here:
//! - [`Subscription`] parses the browser's `PushSubscription.toJSON()` and refuses bad keys and
//!   non-https endpoints (unless the `danger_` loopback option is set, for tests);
//! - [`encrypt`] builds the encrypted body (one record, rs 4096, the ephemeral key as key id);
//!   [`decrypt`] and [`decrypt_aes128gcm`] are the receiving side, used by the tests and by
//!   anyone who wants to check what the gateway sent;
//! - [`VapidKey`] is the gateway's application-server key and signs the `Authorization` header;
//! - [`build_request`] puts it together as an `http::Request` for any HTTP client.

use aes_gcm::Aes128Gcm;
use aes_gcm::aead::{Aead as _, KeyInit as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use p256::elliptic_curve::sec1::ToSec1Point as _;
use p256::{PublicKey, SecretKey};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::storage::Storage;

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
/// The smallest record size RFC 8188 allows: one octet of delimiter plus the tag.
const MIN_RECORD_SIZE: u32 = 18;
/// VAPID tokens live at most this long: RFC 8292 caps them at 24 h; half of that leaves room for
/// a push service whose clock runs ahead of ours.
pub const VAPID_TOKEN_LIFETIME_SECS: i64 = 12 * 60 * 60;
const VAPID_KEY_FILE: &str = "vapid-key.json";

// ---------------------------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------------------------

/// Why a browser's push subscription was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubscriptionError {
    #[error("the push subscription is not valid JSON of the PushSubscription.toJSON() shape: {0}")]
    Json(String),
    #[error("the push subscription's endpoint is not a URL: {0}")]
    EndpointNotUrl(String),
    #[error(
        "the push subscription's endpoint must be https (got {0}:); plain http is allowed only \
         with danger_allow_http_push_endpoints"
    )]
    EndpointNotHttps(String),
    #[error("the push subscription's endpoint has no host")]
    EndpointWithoutHost,
    #[error("keys.{field} is not base64url")]
    NotBase64Url { field: &'static str },
    #[error("keys.{field} is {found} octets long, expected {expected}")]
    WrongLength {
        field: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("keys.p256dh is not an uncompressed point on P-256")]
    NotP256Point,
}

/// The browser's keys for one subscription: where the message is encrypted to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionKeys {
    /// The user agent's public key (`p256dh`), an uncompressed P-256 point.
    p256dh: PublicKey,
    /// The authentication secret (`auth`), 16 octets.
    auth: [u8; AUTH_SECRET_LEN],
}

impl SubscriptionKeys {
    /// Keys from their base64url forms, as in `PushSubscription.toJSON().keys`.
    pub fn from_base64url(p256dh: &str, auth: &str) -> Result<Self, SubscriptionError> {
        let p256dh_bytes = decode_b64url(p256dh, "p256dh")?;
        let auth_bytes = decode_b64url(auth, "auth")?;
        Self::from_bytes(&p256dh_bytes, &auth_bytes)
    }

    /// Keys from raw octets: a 65-octet uncompressed P-256 point and a 16-octet secret.
    pub fn from_bytes(p256dh: &[u8], auth: &[u8]) -> Result<Self, SubscriptionError> {
        if p256dh.len() != P256_POINT_LEN {
            return Err(SubscriptionError::WrongLength {
                field: "p256dh",
                expected: P256_POINT_LEN,
                found: p256dh.len(),
            });
        }
        if p256dh.first() != Some(&0x04) {
            return Err(SubscriptionError::NotP256Point);
        }
        let p256dh =
            PublicKey::from_sec1_bytes(p256dh).map_err(|_| SubscriptionError::NotP256Point)?;
        let auth: [u8; AUTH_SECRET_LEN] =
            auth.try_into()
                .map_err(|_| SubscriptionError::WrongLength {
                    field: "auth",
                    expected: AUTH_SECRET_LEN,
                    found: auth.len(),
                })?;
        Ok(Self { p256dh, auth })
    }

    /// The user agent's public key, uncompressed.
    pub fn p256dh_bytes(&self) -> [u8; P256_POINT_LEN] {
        point_bytes(&self.p256dh)
    }

    pub fn auth(&self) -> &[u8; AUTH_SECRET_LEN] {
        &self.auth
    }
}

/// A push subscription: where to send (`endpoint`) and whom to encrypt to (`keys`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    endpoint: url::Url,
    /// Milliseconds since the epoch after which the browser drops the subscription, if it said.
    expiration_time: Option<i64>,
    keys: SubscriptionKeys,
}

/// `PushSubscription.toJSON()` as the browser sends it (and as we store it).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionJson {
    pub endpoint: String,
    #[serde(default)]
    pub expiration_time: Option<serde_json::Number>,
    pub keys: SubscriptionJsonKeys,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SubscriptionJsonKeys {
    pub p256dh: String,
    pub auth: String,
}

impl Subscription {
    /// Parses the JSON body of `POST /v1/push/subscriptions`. The endpoint must be https unless
    /// `danger_allow_http_push_endpoints` is set (loopback receivers in tests).
    pub fn from_json(
        json: &[u8],
        danger_allow_http_push_endpoints: bool,
    ) -> Result<Self, SubscriptionError> {
        let parsed: SubscriptionJson =
            serde_json::from_slice(json).map_err(|e| SubscriptionError::Json(e.to_string()))?;
        Self::from_parts(&parsed, danger_allow_http_push_endpoints)
    }

    /// Checks an already-deserialized subscription.
    pub fn from_parts(
        json: &SubscriptionJson,
        danger_allow_http_push_endpoints: bool,
    ) -> Result<Self, SubscriptionError> {
        let endpoint = url::Url::parse(&json.endpoint)
            .map_err(|e| SubscriptionError::EndpointNotUrl(e.to_string()))?;
        match endpoint.scheme() {
            "https" => {}
            "http" if danger_allow_http_push_endpoints => {}
            other => return Err(SubscriptionError::EndpointNotHttps(other.to_owned())),
        }
        if endpoint.host_str().is_none_or(str::is_empty) {
            return Err(SubscriptionError::EndpointWithoutHost);
        }
        let keys = SubscriptionKeys::from_base64url(&json.keys.p256dh, &json.keys.auth)?;
        // Browsers send an integer (or null); a fractional value is rounded down.
        let expiration_time = json.expiration_time.as_ref().and_then(|n| {
            n.as_i64()
                .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
        });
        Ok(Self {
            endpoint,
            expiration_time,
            keys,
        })
    }

    pub fn endpoint(&self) -> &url::Url {
        &self.endpoint
    }

    pub fn expiration_time(&self) -> Option<i64> {
        self.expiration_time
    }

    pub fn keys(&self) -> &SubscriptionKeys {
        &self.keys
    }

    /// The subscription in `PushSubscription.toJSON()` form, for storage.
    pub fn to_json(&self) -> SubscriptionJson {
        SubscriptionJson {
            endpoint: self.endpoint.to_string(),
            expiration_time: self.expiration_time.map(serde_json::Number::from),
            keys: SubscriptionJsonKeys {
                p256dh: URL_SAFE_NO_PAD.encode(self.keys.p256dh_bytes()),
                auth: URL_SAFE_NO_PAD.encode(self.keys.auth),
            },
        }
    }
}

/// Base64url with or without padding (browsers omit it; some libraries add it).
fn decode_b64url(text: &str, field: &'static str) -> Result<Vec<u8>, SubscriptionError> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| SubscriptionError::NotBase64Url { field })
}

fn point_bytes(key: &PublicKey) -> [u8; P256_POINT_LEN] {
    let point = key.to_sec1_point(false);
    let mut out = [0u8; P256_POINT_LEN];
    // An uncompressed point of a valid (non-identity) key is always 65 octets.
    if let Some(bytes) = point.as_bytes().get(..P256_POINT_LEN) {
        out.copy_from_slice(bytes);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Message encryption (RFC 8291 over RFC 8188 aes128gcm)
// ---------------------------------------------------------------------------------------------

/// Why a body could not be encrypted or was refused on decryption.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EceError {
    #[error("the plaintext is {len} octets; one Web Push record holds at most {max}")]
    PlaintextTooLong { len: usize, max: usize },
    #[error("the body is shorter than its aes128gcm header")]
    TruncatedHeader,
    #[error("record size {0} is below the minimum of 18")]
    RecordSizeTooSmall(u32),
    #[error("the key id is {found} octets; Web Push needs the sender's 65-octet P-256 key")]
    KeyIdLength { found: usize },
    #[error("the key id is not a P-256 public key")]
    InvalidSenderKey,
    #[error("the body has no record after its header")]
    NoRecords,
    #[error("record {record} is {len} octets, shorter than a tag and a delimiter")]
    TruncatedRecord { record: u64, len: usize },
    #[error("record {record} failed authentication: damaged, or encrypted to another key")]
    Authentication { record: u64 },
    #[error("record {record} is all zero: no padding delimiter")]
    AllZeroRecord { record: u64 },
    #[error("record {record} has delimiter {found:#04x}; records before the last end with 0x01")]
    RecordDelimiter { record: u64, found: u8 },
    #[error("the last record has delimiter {found:#04x}; the last record ends with 0x02")]
    LastRecordDelimiter { found: u8 },
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
        &keys.p256dh,
        &ua_public,
        &as_public,
        &keys.auth,
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

/// The parsed RFC 8188 header.
struct Header<'a> {
    salt: &'a [u8],
    rs: u32,
    keyid: &'a [u8],
    records: &'a [u8],
}

fn parse_header(body: &[u8]) -> Result<Header<'_>, EceError> {
    let (salt, rest) = body
        .split_at_checked(SALT_LEN)
        .ok_or(EceError::TruncatedHeader)?;
    let (rs, rest) = rest.split_at_checked(4).ok_or(EceError::TruncatedHeader)?;
    let rs = u32::from_be_bytes(rs.try_into().map_err(|_| EceError::TruncatedHeader)?);
    let (&idlen, rest) = rest.split_first().ok_or(EceError::TruncatedHeader)?;
    let (keyid, records) = rest
        .split_at_checked(usize::from(idlen))
        .ok_or(EceError::TruncatedHeader)?;
    if rs < MIN_RECORD_SIZE {
        return Err(EceError::RecordSizeTooSmall(rs));
    }
    Ok(Header {
        salt,
        rs,
        keyid,
        records,
    })
}

/// Decrypts the records of an aes128gcm body (RFC 8188 §2): every record but the last is exactly
/// `rs` octets and ends its plaintext with 0x01, the last with 0x02, each followed by optional zero
/// padding.
fn decrypt_records(header: &Header<'_>, keys: &ContentKeys) -> Result<Vec<u8>, EceError> {
    if header.records.is_empty() {
        return Err(EceError::NoRecords);
    }
    let aead = cipher(keys)?;
    let rs = usize::try_from(header.rs).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(header.records.len());
    let mut chunks = header.records.chunks(rs).peekable();
    let mut seq: u64 = 0;
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        if chunk.len() < TAG_LEN + 1 {
            return Err(EceError::TruncatedRecord {
                record: seq,
                len: chunk.len(),
            });
        }
        let plain = aead
            .decrypt(&record_nonce(&keys.nonce, seq), chunk)
            .map_err(|_| EceError::Authentication { record: seq })?;
        let end = plain
            .iter()
            .rposition(|&b| b != 0)
            .ok_or(EceError::AllZeroRecord { record: seq })?;
        let (data, delimiter) = (&plain[..end], plain[end]);
        match (last, delimiter) {
            (false, 0x01) | (true, 0x02) => {}
            (false, found) => return Err(EceError::RecordDelimiter { record: seq, found }),
            (true, found) => return Err(EceError::LastRecordDelimiter { found }),
        }
        out.extend_from_slice(data);
        seq += 1;
    }
    Ok(out)
}

/// Decrypts an `aes128gcm` body (RFC 8188) with the input keying material given directly. The
/// key id in the header is ignored.
pub fn decrypt_aes128gcm(ikm: &[u8], body: &[u8]) -> Result<Vec<u8>, EceError> {
    let header = parse_header(body)?;
    let (_, keys) = content_keys(header.salt, ikm)?;
    decrypt_records(&header, &keys)
}

/// Decrypts a Web Push body (RFC 8291) as the browser would: with the subscription's private key
/// and authentication secret, the sender's public key taken from the header's key id. Accepts one
/// record or several.
pub fn decrypt(
    receiver: &SecretKey,
    auth: &[u8; AUTH_SECRET_LEN],
    body: &[u8],
) -> Result<Vec<u8>, EceError> {
    let header = parse_header(body)?;
    let as_public: &[u8; P256_POINT_LEN] =
        header.keyid.try_into().map_err(|_| EceError::KeyIdLength {
            found: header.keyid.len(),
        })?;
    if as_public[0] != 0x04 {
        return Err(EceError::InvalidSenderKey);
    }
    let sender = PublicKey::from_sec1_bytes(as_public).map_err(|_| EceError::InvalidSenderKey)?;
    let ua_public = point_bytes(&receiver.public_key());
    let keys = webpush_keys(receiver, &sender, &ua_public, as_public, auth, header.salt)?;
    decrypt_records(&header, &keys.content)
}

/// A fresh P-256 private key from the operating system's randomness.
fn random_secret_key() -> Result<SecretKey, String> {
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

// ---------------------------------------------------------------------------------------------
// VAPID (RFC 8292)
// ---------------------------------------------------------------------------------------------

/// Why a VAPID header could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VapidError {
    #[error("the VAPID subject must be a mailto: or https: URL, got {0:?}")]
    Subject(String),
    #[error("the push endpoint has no origin to use as the token's audience")]
    NoOrigin,
    #[error("cannot serialize the VAPID token: {0}")]
    Json(String),
}

/// The gateway's application-server key (VAPID): browsers bind each subscription to its public
/// key, and push services accept messages only with tokens it signed.
#[derive(Clone)]
pub struct VapidKey {
    signing: p256::ecdsa::SigningKey,
    public: [u8; P256_POINT_LEN],
}

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKey")
            .field("public", &self.public_key_b64url())
            .finish_non_exhaustive()
    }
}

/// The key file: a private JWK (`kty`, `crv`, `x`, `y`, `d`).
#[derive(Serialize, Deserialize)]
struct VapidKeyFile {
    kty: String,
    crv: String,
    x: String,
    y: String,
    d: String,
}

impl VapidKey {
    /// A new random key.
    pub fn generate() -> anyhow::Result<Self> {
        let secret = random_secret_key().map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        Ok(Self::from_secret(&secret))
    }

    /// The key with the given 32-octet private scalar.
    pub fn from_private_bytes(d: &[u8]) -> anyhow::Result<Self> {
        let secret = SecretKey::from_slice(d)
            .map_err(|_| anyhow::anyhow!("not a P-256 private key (32 octets, in range)"))?;
        Ok(Self::from_secret(&secret))
    }

    fn from_secret(secret: &SecretKey) -> Self {
        Self {
            signing: p256::ecdsa::SigningKey::from(secret),
            public: point_bytes(&secret.public_key()),
        }
    }

    /// Loads the key kept in `storage` (`vapid-key.json` in the data directory, or in Redis),
    /// creating it on first start. Changing this key invalidates every subscription.
    pub async fn load_or_create(storage: &Storage) -> anyhow::Result<Self> {
        storage
            .load_or_create_secret(VAPID_KEY_FILE, Self::from_key_file, || {
                let key = Self::generate()?;
                let contents = serde_json::to_vec_pretty(&key.key_file())?;
                Ok((key, contents))
            })
            .await
    }

    fn key_file(&self) -> VapidKeyFile {
        VapidKeyFile {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: URL_SAFE_NO_PAD.encode(&self.public[1..33]),
            y: URL_SAFE_NO_PAD.encode(&self.public[33..]),
            d: URL_SAFE_NO_PAD.encode(self.signing.to_bytes()),
        }
    }

    fn from_key_file(bytes: &[u8]) -> anyhow::Result<Self> {
        let file: VapidKeyFile = serde_json::from_slice(bytes)?;
        anyhow::ensure!(
            file.kty == "EC" && file.crv == "P-256",
            "not a P-256 key (kty {:?}, crv {:?})",
            file.kty,
            file.crv
        );
        let d = URL_SAFE_NO_PAD
            .decode(&file.d)
            .map_err(|_| anyhow::anyhow!("d is not base64url"))?;
        let key = Self::from_private_bytes(&d)?;
        let stored = (
            URL_SAFE_NO_PAD.decode(&file.x).ok(),
            URL_SAFE_NO_PAD.decode(&file.y).ok(),
        );
        anyhow::ensure!(
            stored.0.as_deref() == Some(&key.public[1..33])
                && stored.1.as_deref() == Some(&key.public[33..]),
            "the public key (x, y) does not match the private key (d)"
        );
        Ok(key)
    }

    /// The public key as an uncompressed point.
    pub fn public_key_bytes(&self) -> [u8; P256_POINT_LEN] {
        self.public
    }

    /// The public key in base64url: the `applicationServerKey` for `pushManager.subscribe` and
    /// the `k` parameter of the header.
    pub fn public_key_b64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public)
    }

    /// The signed ES256 JWT for one push service: `aud` is the endpoint's origin, `exp` is
    /// `now` + 12 h, `sub` the operator's contact (`mailto:` or `https:` URL).
    pub fn token(
        &self,
        endpoint: &url::Url,
        subject: &str,
        now: i64,
    ) -> Result<String, VapidError> {
        use p256::ecdsa::signature::Signer as _;
        check_subject(subject)?;
        let origin = endpoint.origin();
        if !origin.is_tuple() {
            return Err(VapidError::NoOrigin);
        }
        let claims = serde_json::json!({
            "aud": origin.ascii_serialization(),
            "exp": now.saturating_add(VAPID_TOKEN_LIFETIME_SECS),
            "sub": subject,
        });
        let claims = serde_json::to_vec(&claims).map_err(|e| VapidError::Json(e.to_string()))?;
        let mut jwt = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(claims));
        let signature: p256::ecdsa::Signature = self.signing.sign(jwt.as_bytes());
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(signature.to_bytes()));
        Ok(jwt)
    }

    /// The `Authorization` header value: `vapid t=<JWT>, k=<public key>` (RFC 8292 §3).
    pub fn authorization(
        &self,
        endpoint: &url::Url,
        subject: &str,
        now: i64,
    ) -> Result<String, VapidError> {
        Ok(format!(
            "vapid t={}, k={}",
            self.token(endpoint, subject, now)?,
            self.public_key_b64url()
        ))
    }
}

/// RFC 8292 §2.1: the contact is a `mailto:` or `https:` URI.
fn check_subject(subject: &str) -> Result<(), VapidError> {
    let ok = match url::Url::parse(subject) {
        Ok(url) if url.scheme() == "mailto" => url.path().contains('@'),
        Ok(url) if url.scheme() == "https" => url.host_str().is_some_and(|h| !h.is_empty()),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(VapidError::Subject(subject.to_owned()))
    }
}

// ---------------------------------------------------------------------------------------------
// The push request (RFC 8030)
// ---------------------------------------------------------------------------------------------

/// How soon the push service should deliver (RFC 8030 §5.3). Approval requests are `High`: the
/// person is waiting on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Urgency {
    VeryLow,
    Low,
    Normal,
    High,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::VeryLow => "very-low",
            Urgency::Low => "low",
            Urgency::Normal => "normal",
            Urgency::High => "high",
        }
    }
}

/// Why a push request could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Encryption(#[from] EceError),
    #[error(transparent)]
    Vapid(#[from] VapidError),
    #[error("cannot build the HTTP request: {0}")]
    Http(#[from] http::Error),
}

/// Who the gateway says it is to push services, and how its messages should be delivered.
#[derive(Clone, Copy, Debug)]
pub struct PushOptions<'a> {
    /// The operator's contact for the push service: `mailto:` or `https:` URL.
    pub subject: &'a str,
    /// Seconds the push service may keep an undelivered message (`TTL`).
    pub ttl_secs: u32,
    pub urgency: Urgency,
    /// Unix seconds, for the VAPID token's expiry.
    pub now: i64,
}

/// The push message for one subscription: `POST endpoint` with the encrypted payload, `TTL`,
/// `Urgency`, `Content-Encoding: aes128gcm` and the VAPID `Authorization`. Send it with any HTTP
/// client; a 201 means accepted, a 404 or 410 that the subscription is gone.
pub fn build_request(
    subscription: &Subscription,
    payload_json: &[u8],
    vapid: &VapidKey,
    options: &PushOptions<'_>,
) -> Result<http::Request<Vec<u8>>, PushError> {
    let body = encrypt(&subscription.keys, payload_json)?;
    let authorization =
        vapid.authorization(&subscription.endpoint, options.subject, options.now)?;
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(subscription.endpoint.as_str())
        .header("TTL", options.ttl_secs.to_string())
        .header("Urgency", options.urgency.as_str())
        .header(http::header::CONTENT_ENCODING, "aes128gcm")
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .header(http::header::CONTENT_LENGTH, body.len().to_string())
        .header(http::header::AUTHORIZATION, authorization)
        .body(body)?;
    Ok(request)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::Value;

    const RFC8291: &str = include_str!("../../tests/vectors/webpush/rfc8291_webpush_example.json");
    const RFC8188: &str = include_str!("../../tests/vectors/webpush/rfc8188_examples.json");
    const NEGATIVE: &str =
        include_str!("../../tests/vectors/webpush/aes128gcm_negative_vectors.json");

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

        // The receiving side: the user agent's private key opens it.
        let ua_private = SecretKey::from_slice(&b64(&v["ua_private"])).unwrap();
        let auth: [u8; 16] = b64(&v["auth_secret"]).try_into().unwrap();
        assert_eq!(decrypt(&ua_private, &auth, &body).unwrap(), plaintext);
        // The wrong auth secret does not.
        let mut wrong = auth;
        wrong[0] ^= 1;
        assert_eq!(
            decrypt(&ua_private, &wrong, &body),
            Err(EceError::Authentication { record: 0 })
        );
    }

    #[test]
    fn fresh_encryptions_differ_and_round_trip() {
        let ua = random_secret_key().unwrap();
        let auth = [7u8; 16];
        let keys = SubscriptionKeys::from_bytes(&point_bytes(&ua.public_key()), &auth).unwrap();
        let a = encrypt(&keys, b"{\"x\":1}").unwrap();
        let b = encrypt(&keys, b"{\"x\":1}").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 86 + 7 + 1 + 16);
        assert_eq!(&a[16..20], &4096u32.to_be_bytes());
        assert_eq!(a[20], 65);
        assert_eq!(decrypt(&ua, &auth, &a).unwrap(), b"{\"x\":1}");
        assert_eq!(decrypt(&ua, &auth, &b).unwrap(), b"{\"x\":1}");
        // The largest plaintext fits in exactly 4096 octets; one more is refused.
        let max = vec![b'a'; MAX_PLAINTEXT_LEN];
        let body = encrypt(&keys, &max).unwrap();
        assert_eq!(body.len(), 4096);
        assert_eq!(decrypt(&ua, &auth, &body).unwrap(), max);
        assert_eq!(
            encrypt(&keys, &[b'a'; MAX_PLAINTEXT_LEN + 1]),
            Err(EceError::PlaintextTooLong {
                len: MAX_PLAINTEXT_LEN + 1,
                max: MAX_PLAINTEXT_LEN
            })
        );
    }

    #[test]
    fn decrypts_the_rfc8188_examples() {
        let v: Value = serde_json::from_str(RFC8188).unwrap();
        for example in v["examples"].as_array().unwrap() {
            let body = b64(&example["body_b64url"]);
            // Header + per record (data, delimiter, padding, tag). The RFC's §3.1 example says
            // "Content-Length: 54" over a 53-octet body (see tests/vectors/webpush/README.md).
            let expected_len = match example["section"].as_str().unwrap() {
                s if s.starts_with("3.1") => 21 + 15 + 1 + 16,
                _ => example["content_length"].as_u64().unwrap(),
            };
            assert_eq!(body.len() as u64, expected_len);
            let plain = decrypt_aes128gcm(&b64(&example["ikm"]), &body).unwrap();
            assert_eq!(
                plain,
                example["plaintext_utf8"].as_str().unwrap().as_bytes()
            );
            if let Some(i) = example.get("intermediate") {
                let (prk, keys) = content_keys(&b64(&i["salt"]), &b64(&example["ikm"])).unwrap();
                assert_eq!(prk.to_vec(), b64(&i["PRK"]));
                assert_eq!(keys.cek.to_vec(), b64(&i["CEK"]));
                assert_eq!(keys.nonce.to_vec(), b64(&i["NONCE"]));
            }
        }
    }

    #[test]
    fn refuses_every_negative_vector_with_its_specific_error() {
        let v: Value = serde_json::from_str(NEGATIVE).unwrap();
        let vectors = v["vectors"].as_array().unwrap();
        assert_eq!(vectors.len(), 4);
        for vector in vectors {
            let name = vector["name"].as_str().unwrap();
            let body = b64(&vector["body_b64url"]);
            let got = decrypt_aes128gcm(&b64(&vector["key_b64url"]), &body);
            let expected = match name {
                "test_overlong_padding" => EceError::AllZeroRecord { record: 0 },
                "test_bad_early_delimiter" => EceError::RecordDelimiter {
                    record: 0,
                    found: 0x02,
                },
                "test_bad_final_delimiter" => EceError::LastRecordDelimiter { found: 0x01 },
                "test_damage" => EceError::Authentication { record: 0 },
                other => panic!("unknown vector {other}"),
            };
            assert_eq!(got, Err(expected), "{name}");
            assert_eq!(
                parse_header(&body).unwrap().rs as u64,
                vector["rs"].as_u64().unwrap()
            );
        }
    }

    #[test]
    fn refuses_malformed_bodies() {
        let ikm = [1u8; 16];
        assert_eq!(
            decrypt_aes128gcm(&ikm, &[0; 20]),
            Err(EceError::TruncatedHeader)
        );
        let mut header = vec![0u8; 16];
        header.extend_from_slice(&17u32.to_be_bytes());
        header.push(0);
        assert_eq!(
            decrypt_aes128gcm(&ikm, &header),
            Err(EceError::RecordSizeTooSmall(17))
        );
        let mut header = vec![0u8; 16];
        header.extend_from_slice(&4096u32.to_be_bytes());
        header.push(3);
        header.extend_from_slice(b"ab");
        assert_eq!(
            decrypt_aes128gcm(&ikm, &header),
            Err(EceError::TruncatedHeader)
        );
        header.push(b'c');
        assert_eq!(decrypt_aes128gcm(&ikm, &header), Err(EceError::NoRecords));
        header.extend_from_slice(&[0; 16]);
        assert_eq!(
            decrypt_aes128gcm(&ikm, &header),
            Err(EceError::TruncatedRecord { record: 0, len: 16 })
        );
        // Web Push needs a 65-octet sender key as key id.
        let receiver = random_secret_key().unwrap();
        assert_eq!(
            decrypt(&receiver, &[0; 16], &header),
            Err(EceError::KeyIdLength { found: 3 })
        );
        let mut body = vec![0u8; 16];
        body.extend_from_slice(&4096u32.to_be_bytes());
        body.push(65);
        body.push(0x04);
        body.extend_from_slice(&[0xff; 64]);
        body.extend_from_slice(&[0; 40]);
        assert_eq!(
            decrypt(&receiver, &[0; 16], &body),
            Err(EceError::InvalidSenderKey)
        );
    }

    #[test]
    fn multi_record_round_trip_with_our_own_writer() {
        // Records written by hand with rs = 40: 23 octets of data per record.
        let ikm = [9u8; 16];
        let salt = [3u8; 16];
        let (_, keys) = content_keys(&salt, &ikm).unwrap();
        let aead = cipher(&keys).unwrap();
        let message: Vec<u8> = (0..60u8).collect();
        let mut body = salt.to_vec();
        body.extend_from_slice(&40u32.to_be_bytes());
        body.push(0);
        let chunks: Vec<&[u8]> = message.chunks(23).collect();
        for (seq, chunk) in chunks.iter().enumerate() {
            let mut record = chunk.to_vec();
            let last = seq + 1 == chunks.len();
            record.push(if last { 2 } else { 1 });
            let sealed = aead
                .encrypt(&record_nonce(&keys.nonce, seq as u64), record.as_slice())
                .unwrap();
            body.extend_from_slice(&sealed);
        }
        assert_eq!(decrypt_aes128gcm(&ikm, &body).unwrap(), message);
        // Dropping the last record leaves a body whose last record says "more follows".
        let cut = 21 + 2 * 40;
        assert_eq!(
            decrypt_aes128gcm(&ikm, &body[..cut]),
            Err(EceError::LastRecordDelimiter { found: 1 })
        );
        // Swapping two records breaks authentication.
        let mut swapped = body[..21].to_vec();
        swapped.extend_from_slice(&body[61..101]);
        swapped.extend_from_slice(&body[21..61]);
        swapped.extend_from_slice(&body[101..]);
        assert_eq!(
            decrypt_aes128gcm(&ikm, &swapped),
            Err(EceError::Authentication { record: 0 })
        );
    }

    #[test]
    fn subscription_json_is_checked() {
        let ua = random_secret_key().unwrap();
        let p256dh = URL_SAFE_NO_PAD.encode(point_bytes(&ua.public_key()));
        let auth = URL_SAFE_NO_PAD.encode([5u8; 16]);
        let json = |endpoint: &str, p256dh: &str, auth: &str| {
            serde_json::json!({
                "endpoint": endpoint, "expirationTime": null,
                "keys": {"p256dh": p256dh, "auth": auth}
            })
            .to_string()
        };
        let ok = Subscription::from_json(
            json("https://push.example.net/p/abc", &p256dh, &auth).as_bytes(),
            false,
        )
        .unwrap();
        assert_eq!(ok.endpoint().as_str(), "https://push.example.net/p/abc");
        assert_eq!(ok.expiration_time(), None);
        assert_eq!(ok.keys().auth(), &[5u8; 16]);
        let round = serde_json::to_vec(&ok.to_json()).unwrap();
        assert_eq!(Subscription::from_json(&round, false).unwrap(), ok);
        // Padded base64url is accepted too.
        let padded = format!("{auth}==");
        assert!(
            Subscription::from_json(
                json("https://p.example/x", &p256dh, &padded).as_bytes(),
                false
            )
            .is_ok()
        );

        let http = json("http://127.0.0.1:9/x", &p256dh, &auth);
        assert_eq!(
            Subscription::from_json(http.as_bytes(), false),
            Err(SubscriptionError::EndpointNotHttps("http".into()))
        );
        assert!(Subscription::from_json(http.as_bytes(), true).is_ok());
        assert_eq!(
            Subscription::from_json(json("ftp://x.example/", &p256dh, &auth).as_bytes(), true),
            Err(SubscriptionError::EndpointNotHttps("ftp".into()))
        );
        assert!(matches!(
            Subscription::from_json(json("not a url", &p256dh, &auth).as_bytes(), false),
            Err(SubscriptionError::EndpointNotUrl(_))
        ));
        assert_eq!(
            Subscription::from_json(
                json(
                    "https://p.example/x",
                    &p256dh,
                    &URL_SAFE_NO_PAD.encode([1u8; 15])
                )
                .as_bytes(),
                false
            ),
            Err(SubscriptionError::WrongLength {
                field: "auth",
                expected: 16,
                found: 15
            })
        );
        let compressed = URL_SAFE_NO_PAD.encode(ua.public_key().to_sec1_point(true).as_bytes());
        assert_eq!(
            Subscription::from_json(
                json("https://p.example/x", &compressed, &auth).as_bytes(),
                false
            ),
            Err(SubscriptionError::WrongLength {
                field: "p256dh",
                expected: 65,
                found: 33
            })
        );
        let mut off_curve = point_bytes(&ua.public_key());
        off_curve[64] ^= 1;
        assert_eq!(
            Subscription::from_json(
                json(
                    "https://p.example/x",
                    &URL_SAFE_NO_PAD.encode(off_curve),
                    &auth
                )
                .as_bytes(),
                false
            ),
            Err(SubscriptionError::NotP256Point)
        );
        assert_eq!(
            Subscription::from_json(json("https://p.example/x", "***", &auth).as_bytes(), false),
            Err(SubscriptionError::NotBase64Url { field: "p256dh" })
        );
        assert!(matches!(
            Subscription::from_json(br#"{"endpoint":"https://p.example/x"}"#, false),
            Err(SubscriptionError::Json(_))
        ));
    }

    #[tokio::test]
    async fn vapid_key_is_created_owner_only_and_reloaded() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let key = {
            let storage = Storage::embedded(&data).unwrap();
            VapidKey::load_or_create(&storage).await.unwrap()
        };
        let path = data.join(VAPID_KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(&data).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let storage = Storage::embedded(&data).unwrap();
        let again = VapidKey::load_or_create(&storage).await.unwrap();
        assert_eq!(again.public_key_bytes(), key.public_key_bytes());
        assert_eq!(key.public_key_b64url().len(), 87);
        // No temporary files left behind.
        let hidden = std::fs::read_dir(&data)
            .unwrap()
            .filter(|entry| {
                entry
                    .as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count();
        assert_eq!(hidden, 0);
        // A key file whose public half does not match is refused.
        let mut file: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        file["x"] = Value::String(URL_SAFE_NO_PAD.encode([0u8; 32]));
        std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
        let err = VapidKey::load_or_create(&storage).await.unwrap_err();
        assert!(format!("{err:#}").contains("does not match"), "{err:#}");
    }

    #[test]
    fn vapid_subject_and_claims() {
        let key = VapidKey::generate().unwrap();
        let endpoint = url::Url::parse("https://push.example.net:8443/wpush/v2/abc?x=1").unwrap();
        for bad in [
            "push@example.com",
            "http://example.com",
            "mailto:",
            "https://",
        ] {
            assert_eq!(
                key.authorization(&endpoint, bad, 0),
                Err(VapidError::Subject(bad.into())),
                "{bad}"
            );
        }
        let header = key
            .authorization(&endpoint, "mailto:ops@example.com", 1_000)
            .unwrap();
        let (t, k) = header
            .strip_prefix("vapid t=")
            .unwrap()
            .split_once(", k=")
            .unwrap();
        assert_eq!(k, key.public_key_b64url());
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            claims,
            serde_json::json!({"aud": "https://push.example.net:8443", "exp": 1_000 + 43_200,
                               "sub": "mailto:ops@example.com"})
        );
    }

    #[test]
    fn build_request_sets_the_web_push_headers() {
        let ua = random_secret_key().unwrap();
        let keys_json = serde_json::json!({
            "endpoint": "https://push.example.net/p/1",
            "keys": {
                "p256dh": URL_SAFE_NO_PAD.encode(point_bytes(&ua.public_key())),
                "auth": URL_SAFE_NO_PAD.encode([2u8; 16]),
            }
        });
        let subscription =
            Subscription::from_json(keys_json.to_string().as_bytes(), false).unwrap();
        let vapid = VapidKey::generate().unwrap();
        let options = PushOptions {
            subject: "https://gw.example",
            ttl_secs: 60,
            urgency: Urgency::High,
            now: 1_700_000_000,
        };
        let request = build_request(&subscription, br#"{"a":1}"#, &vapid, &options).unwrap();
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(request.uri(), "https://push.example.net/p/1");
        let h = request.headers();
        assert_eq!(h["ttl"], "60");
        assert_eq!(h["urgency"], "high");
        assert_eq!(h["content-encoding"], "aes128gcm");
        assert_eq!(h["content-type"], "application/octet-stream");
        assert_eq!(h["content-length"], request.body().len().to_string());
        assert!(
            h["authorization"]
                .to_str()
                .unwrap()
                .starts_with("vapid t=ey")
        );
        assert_eq!(
            decrypt(&ua, &[2u8; 16], request.body()).unwrap(),
            br#"{"a":1}"#
        );
    }
}
