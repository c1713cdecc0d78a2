//! Credential public keys as COSE_Key (RFC 9052 section 7, RFC 9053, RFC 8230 for RSA).
//!
//! Parsing is strict because a receipt is only as good as the key it is checked against: a key
//! that could be read two ways (duplicate labels, an algorithm that does not fit the key type, a
//! curve point given in fewer bytes) is refused rather than guessed at.

use ciborium::Value;
use serde_json::json;
use std::fmt;

use crate::base64url;

/// COSE key parameter labels (RFC 9052 section 7.1, RFC 9053 section 7, RFC 8230 section 4).
const LABEL_KTY: i64 = 1;
const LABEL_ALG: i64 = 3;
const LABEL_CRV: i64 = -1; // EC2 and OKP
const LABEL_X: i64 = -2; // EC2 and OKP
const LABEL_Y: i64 = -3; // EC2
const LABEL_N: i64 = -1; // RSA
const LABEL_E: i64 = -2; // RSA

/// COSE key types.
const KTY_OKP: i64 = 1;
const KTY_EC2: i64 = 2;
const KTY_RSA: i64 = 3;

/// COSE elliptic curves.
const CRV_P256: i64 = 1;
const CRV_ED25519: i64 = 6;

/// RSA moduli accepted, in bits: below 2048 is too weak to stand behind an approval; above 8192 no
/// authenticator produces.
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;

/// CBOR nesting allowed in a COSE key: a COSE_Key is a flat map.
const COSE_RECURSION_LIMIT: usize = 8;

/// A COSE algorithm this module verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoseAlgorithm {
    /// `ES256` (-7): ECDSA with SHA-256; WebAuthn requires the P-256 curve for it.
    Es256,
    /// `ESP256` (-9, RFC 9864): ECDSA on P-256 with SHA-256, fully specified.
    Esp256,
    /// `EdDSA` (-8): with a COSE key on the Ed25519 curve (WebAuthn's usage).
    EdDsa,
    /// `Ed25519` (-19, RFC 9864): EdDSA on Ed25519, fully specified.
    Ed25519,
    /// `RS256` (-257): RSASSA-PKCS1-v1_5 with SHA-256 (Windows Hello).
    Rs256,
}

impl CoseAlgorithm {
    /// Every supported algorithm.
    pub const ALL: [CoseAlgorithm; 5] = [
        Self::Es256,
        Self::Esp256,
        Self::EdDsa,
        Self::Ed25519,
        Self::Rs256,
    ];

    /// The algorithm's number in the IANA COSE Algorithms registry.
    pub const fn number(self) -> i64 {
        match self {
            Self::Es256 => -7,
            Self::Esp256 => -9,
            Self::EdDsa => -8,
            Self::Ed25519 => -19,
            Self::Rs256 => -257,
        }
    }

    /// The algorithm's name in the IANA COSE Algorithms registry.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Esp256 => "ESP256",
            Self::EdDsa => "EdDSA",
            Self::Ed25519 => "Ed25519",
            Self::Rs256 => "RS256",
        }
    }

    /// The supported algorithm with this number, if any.
    pub fn from_number(number: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.number() == number)
    }

    /// The COSE key type (`kty`) this algorithm's keys must have.
    const fn key_type(self) -> i64 {
        match self {
            Self::Es256 | Self::Esp256 => KTY_EC2,
            Self::EdDsa | Self::Ed25519 => KTY_OKP,
            Self::Rs256 => KTY_RSA,
        }
    }
}

impl fmt::Display for CoseAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.number())
    }
}

/// The IANA name of a COSE algorithm number, supported or not, for messages.
pub fn cose_algorithm_name(number: i64) -> Option<&'static str> {
    if let Some(alg) = CoseAlgorithm::from_number(number) {
        return Some(alg.name());
    }
    Some(match number {
        -35 => "ES384",
        -36 => "ES512",
        -37 => "PS256",
        -38 => "PS384",
        -39 => "PS512",
        -47 => "ES256K",
        -51 => "ESP384",
        -52 => "ESP512",
        -53 => "Ed448",
        -258 => "RS384",
        -259 => "RS512",
        -65535 => "RS1",
        _ => return None,
    })
}

fn describe_alg(number: i64) -> String {
    match cose_algorithm_name(number) {
        Some(name) => format!("{number} ({name})"),
        None => number.to_string(),
    }
}

fn describe_kty(kty: i64) -> String {
    match kty {
        KTY_OKP => "1 (OKP)".to_owned(),
        KTY_EC2 => "2 (EC2)".to_owned(),
        KTY_RSA => "3 (RSA)".to_owned(),
        other => other.to_string(),
    }
}

fn describe_crv(crv: i64) -> String {
    let name = match crv {
        1 => "P-256",
        2 => "P-384",
        3 => "P-521",
        4 => "X25519",
        5 => "X448",
        6 => "Ed25519",
        7 => "Ed448",
        8 => "secp256k1",
        _ => return crv.to_string(),
    };
    format!("{crv} ({name})")
}

/// Why bytes are not a usable credential public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoseKeyError {
    /// Not one well-formed CBOR item.
    #[error("COSE key is not well-formed CBOR: {0}")]
    NotCbor(String),
    /// Bytes after the key's CBOR map.
    #[error("COSE key has {count} trailing byte(s) after its CBOR map")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// The CBOR item is not a map.
    #[error("COSE key is not a CBOR map")]
    NotAMap,
    /// A label appears twice, so the key could be read two ways.
    #[error("COSE key has the label {label} more than once")]
    DuplicateLabel {
        /// The repeated label, as CBOR diagnostic text.
        label: String,
    },
    /// A required parameter is absent.
    #[error("COSE key lacks the parameter {parameter}")]
    MissingParameter {
        /// Name and label, e.g. `alg (3)`.
        parameter: &'static str,
    },
    /// A parameter has the wrong CBOR type or an out-of-range integer.
    #[error("COSE key parameter {parameter} must be {expected}")]
    WrongParameterType {
        /// Name and label.
        parameter: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// The algorithm is not one this verifier implements.
    #[error("unsupported COSE algorithm {}: supported are ES256 (-7), ESP256 (-9), EdDSA (-8), Ed25519 (-19) and RS256 (-257)", describe_alg(*.alg))]
    UnsupportedAlgorithm {
        /// The COSE algorithm number.
        alg: i64,
    },
    /// The key type does not fit the algorithm.
    #[error("COSE key type {} does not fit algorithm {alg}: it needs {}", describe_kty(*.kty), describe_kty(alg.key_type()))]
    KeyTypeMismatch {
        /// The declared algorithm.
        alg: CoseAlgorithm,
        /// The declared key type.
        kty: i64,
    },
    /// The curve does not fit the algorithm.
    #[error("COSE key curve {} does not fit algorithm {alg}", describe_crv(*.crv))]
    CurveMismatch {
        /// The declared algorithm.
        alg: CoseAlgorithm,
        /// The declared curve.
        crv: i64,
    },
    /// A coordinate or key byte string has the wrong length.
    #[error("COSE key parameter {parameter} is {actual} bytes long, expected {expected}")]
    WrongLength {
        /// Name and label.
        parameter: &'static str,
        /// Required length.
        expected: usize,
        /// Length found.
        actual: usize,
    },
    /// The coordinates are not a point on the curve (or not a valid encoding of one).
    #[error("COSE key for {alg} is not a valid point on its curve")]
    NotOnCurve {
        /// The declared algorithm.
        alg: CoseAlgorithm,
    },
    /// An Ed25519 key of small order, under which forged signatures can verify.
    #[error("COSE key is a weak (small-order) Ed25519 point")]
    WeakKey,
    /// An RSA integer with leading zero bytes (RFC 8230 requires the minimum number of octets).
    #[error("COSE RSA key parameter {parameter} is not minimally encoded")]
    NonMinimalInteger {
        /// Name and label.
        parameter: &'static str,
    },
    /// An RSA key the RSA checks refuse (size, exponent, even modulus).
    #[error("COSE RSA key is not acceptable: {reason}")]
    InvalidRsaKey {
        /// What is wrong.
        reason: String,
    },
}

/// The verifying key itself.
#[derive(Clone, Debug, PartialEq, Eq)]
enum KeyMaterial {
    P256 {
        key: p256::ecdsa::VerifyingKey,
        x: [u8; 32],
        y: [u8; 32],
    },
    Ed25519(ed25519_dalek::VerifyingKey),
    Rsa {
        key: rsa::RsaPublicKey,
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

/// A credential public key as recorded at registration, ready to verify assertions.
///
/// Holding one means the COSE bytes parsed strictly into a key of a supported algorithm; the
/// original bytes are kept so receipts can carry them unchanged.
#[derive(Clone, Debug)]
pub struct CredentialPublicKey {
    alg: CoseAlgorithm,
    key: KeyMaterial,
    cose: Vec<u8>,
}

/// Two keys are equal when they have the same algorithm and key, however the COSE was encoded.
impl PartialEq for CredentialPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.alg == other.alg && self.key == other.key
    }
}

impl Eq for CredentialPublicKey {}

/// A signature that does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureCheckError {
    /// Not an encoding of a signature for this algorithm (DER for ECDSA, 64 bytes for EdDSA).
    Malformed,
    /// Well-formed but wrong.
    Invalid,
}

impl CredentialPublicKey {
    /// Parses a COSE_Key: `kty`, `alg` and the key parameters of that algorithm (`crv`, `x`, `y`
    /// for EC2; `crv`, `x` for OKP; `n`, `e` for RSA). Other parameters (`kid`, `key_ops`, ...)
    /// are ignored; duplicates, trailing bytes and any mismatch are refused.
    pub fn from_cose(bytes: &[u8]) -> Result<Self, CoseKeyError> {
        let mut rest = bytes;
        let value: Value =
            ciborium::de::from_reader_with_recursion_limit(&mut rest, COSE_RECURSION_LIMIT)
                .map_err(|error| CoseKeyError::NotCbor(error.to_string()))?;
        if !rest.is_empty() {
            return Err(CoseKeyError::TrailingBytes { count: rest.len() });
        }
        let Value::Map(entries) = value else {
            return Err(CoseKeyError::NotAMap);
        };
        let params = Params::new(&entries)?;

        let kty = params.required_int(LABEL_KTY, "kty (1)")?;
        let alg_number = params.required_int(LABEL_ALG, "alg (3)")?;
        let alg = CoseAlgorithm::from_number(alg_number)
            .ok_or(CoseKeyError::UnsupportedAlgorithm { alg: alg_number })?;
        if kty != alg.key_type() {
            return Err(CoseKeyError::KeyTypeMismatch { alg, kty });
        }

        let key = match alg {
            CoseAlgorithm::Es256 | CoseAlgorithm::Esp256 => {
                let crv = params.required_int(LABEL_CRV, "crv (-1)")?;
                if crv != CRV_P256 {
                    return Err(CoseKeyError::CurveMismatch { alg, crv });
                }
                let x: [u8; 32] = params.fixed_bytes(LABEL_X, "x (-2)")?;
                let y: [u8; 32] = params.fixed_bytes(LABEL_Y, "y (-3)")?;
                let mut sec1 = Vec::with_capacity(65);
                sec1.push(0x04);
                sec1.extend_from_slice(&x);
                sec1.extend_from_slice(&y);
                let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                    .map_err(|_| CoseKeyError::NotOnCurve { alg })?;
                KeyMaterial::P256 { key, x, y }
            }
            CoseAlgorithm::EdDsa | CoseAlgorithm::Ed25519 => {
                let crv = params.required_int(LABEL_CRV, "crv (-1)")?;
                if crv != CRV_ED25519 {
                    return Err(CoseKeyError::CurveMismatch { alg, crv });
                }
                let x: [u8; 32] = params.fixed_bytes(LABEL_X, "x (-2)")?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map_err(|_| CoseKeyError::NotOnCurve { alg })?;
                if key.is_weak() {
                    return Err(CoseKeyError::WeakKey);
                }
                KeyMaterial::Ed25519(key)
            }
            CoseAlgorithm::Rs256 => {
                let n = params.minimal_unsigned(LABEL_N, "n (-1)")?;
                let e = params.minimal_unsigned(LABEL_E, "e (-2)")?;
                if n.len() > RSA_MAX_BITS / 8 {
                    return Err(CoseKeyError::InvalidRsaKey {
                        reason: format!("modulus larger than {RSA_MAX_BITS} bits"),
                    });
                }
                if e.len() > 8 {
                    return Err(CoseKeyError::InvalidRsaKey {
                        reason: "public exponent too large".to_owned(),
                    });
                }
                let modulus = rsa::BoxedUint::from_be_slice_vartime(n);
                let bits = usize::try_from(modulus.bits_vartime()).unwrap_or(usize::MAX);
                if bits < RSA_MIN_BITS {
                    return Err(CoseKeyError::InvalidRsaKey {
                        reason: format!("modulus of {bits} bits, fewer than {RSA_MIN_BITS}"),
                    });
                }
                let key = rsa::RsaPublicKey::new_with_max_size(
                    modulus,
                    rsa::BoxedUint::from_be_slice_vartime(e),
                    RSA_MAX_BITS,
                )
                .map_err(|error| CoseKeyError::InvalidRsaKey {
                    reason: error.to_string(),
                })?;
                KeyMaterial::Rsa {
                    key,
                    n: n.to_vec(),
                    e: e.to_vec(),
                }
            }
        };
        Ok(Self {
            alg,
            key,
            cose: bytes.to_vec(),
        })
    }

    /// The key's COSE algorithm.
    pub fn alg(&self) -> CoseAlgorithm {
        self.alg
    }

    /// The COSE_Key bytes this key was parsed from, unchanged.
    pub fn cose_bytes(&self) -> &[u8] {
        &self.cose
    }

    /// The key as a JWK (RFC 7517/7518/8037), for people and tools that read JWKs:
    /// `{"kty":"EC","crv":"P-256","x","y"}`, `{"kty":"OKP","crv":"Ed25519","x"}` or
    /// `{"kty":"RSA","n","e"}`, values in base64url without padding.
    pub fn to_jwk(&self) -> serde_json::Value {
        match &self.key {
            KeyMaterial::P256 { x, y, .. } => json!({
                "kty": "EC",
                "crv": "P-256",
                "x": base64url::encode(x),
                "y": base64url::encode(y),
            }),
            KeyMaterial::Ed25519(key) => json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": base64url::encode(key.as_bytes()),
            }),
            KeyMaterial::Rsa { n, e, .. } => json!({
                "kty": "RSA",
                "n": base64url::encode(n),
                "e": base64url::encode(e),
            }),
        }
    }

    /// Verifies `signature` over `message` (for WebAuthn, `authenticatorData || SHA-256(clientDataJSON)`).
    ///
    /// ES256 signatures are ASN.1 DER and both low-S and high-S forms are accepted: authenticators
    /// produce either, and ECDSA malleability does not let anyone sign a different message.
    /// Ed25519 uses `verify_strict` (no small-order or non-canonical components).
    pub(crate) fn verify_signature(
        &self,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureCheckError> {
        match &self.key {
            KeyMaterial::P256 { key, .. } => {
                use p256::ecdsa::signature::Verifier as _;
                let signature = p256::ecdsa::Signature::from_der(signature)
                    .map_err(|_| SignatureCheckError::Malformed)?;
                key.verify(message, &signature)
                    .map_err(|_| SignatureCheckError::Invalid)
            }
            KeyMaterial::Ed25519(key) => {
                let bytes: &[u8; 64] = signature
                    .try_into()
                    .map_err(|_| SignatureCheckError::Malformed)?;
                let signature = ed25519_dalek::Signature::from_bytes(bytes);
                key.verify_strict(message, &signature)
                    .map_err(|_| SignatureCheckError::Invalid)
            }
            KeyMaterial::Rsa { key, .. } => {
                use rsa::signature::Verifier as _;
                let verifier = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key.clone());
                let signature = rsa::pkcs1v15::Signature::try_from(signature)
                    .map_err(|_| SignatureCheckError::Malformed)?;
                verifier
                    .verify(message, &signature)
                    .map_err(|_| SignatureCheckError::Invalid)
            }
        }
    }
}

/// The entries of a COSE_Key map, with integer labels looked up.
struct Params<'a> {
    entries: &'a [(Value, Value)],
}

impl<'a> Params<'a> {
    fn new(entries: &'a [(Value, Value)]) -> Result<Self, CoseKeyError> {
        for (index, (label, _)) in entries.iter().enumerate() {
            let earlier = entries.get(..index).unwrap_or_default();
            if earlier.iter().any(|(other, _)| other == label) {
                return Err(CoseKeyError::DuplicateLabel {
                    label: format!("{label:?}"),
                });
            }
        }
        Ok(Self { entries })
    }

    fn get(&self, label: i64) -> Option<&'a Value> {
        self.entries
            .iter()
            .find(|(key, _)| matches!(key, Value::Integer(int) if i128::from(*int) == i128::from(label)))
            .map(|(_, value)| value)
    }

    fn required(&self, label: i64, parameter: &'static str) -> Result<&'a Value, CoseKeyError> {
        self.get(label)
            .ok_or(CoseKeyError::MissingParameter { parameter })
    }

    fn required_int(&self, label: i64, parameter: &'static str) -> Result<i64, CoseKeyError> {
        let wrong = CoseKeyError::WrongParameterType {
            parameter,
            expected: "an integer",
        };
        match self.required(label, parameter)? {
            Value::Integer(int) => i64::try_from(i128::from(*int)).map_err(|_| wrong),
            _ => Err(wrong),
        }
    }

    fn bytes(&self, label: i64, parameter: &'static str) -> Result<&'a [u8], CoseKeyError> {
        match self.required(label, parameter)? {
            Value::Bytes(bytes) => Ok(bytes),
            _ => Err(CoseKeyError::WrongParameterType {
                parameter,
                expected: "a byte string",
            }),
        }
    }

    fn fixed_bytes<const N: usize>(
        &self,
        label: i64,
        parameter: &'static str,
    ) -> Result<[u8; N], CoseKeyError> {
        let bytes = self.bytes(label, parameter)?;
        bytes.try_into().map_err(|_| CoseKeyError::WrongLength {
            parameter,
            expected: N,
            actual: bytes.len(),
        })
    }

    /// An unsigned big-endian integer in the minimum number of octets (RFC 8230 section 4).
    fn minimal_unsigned(
        &self,
        label: i64,
        parameter: &'static str,
    ) -> Result<&'a [u8], CoseKeyError> {
        let bytes = self.bytes(label, parameter)?;
        match bytes.first() {
            None | Some(0) => Err(CoseKeyError::NonMinimalInteger { parameter }),
            Some(_) => Ok(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(value, &mut out).unwrap();
        out
    }

    fn int(n: i64) -> Value {
        Value::Integer(n.into())
    }

    /// A P-256 key: the generator point (x, y of G from SEC 2).
    fn p256_entries() -> Vec<(Value, Value)> {
        let x = hex_literal("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296");
        let y = hex_literal("4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5");
        vec![
            (int(1), int(2)),
            (int(3), int(-7)),
            (int(-1), int(1)),
            (int(-2), Value::Bytes(x)),
            (int(-3), Value::Bytes(y)),
        ]
    }

    fn hex_literal(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn with(mut entries: Vec<(Value, Value)>, label: i64, value: Value) -> Vec<u8> {
        entries.retain(|(key, _)| key != &int(label));
        entries.push((int(label), value));
        encode(&Value::Map(entries))
    }

    #[test]
    fn parses_p256_and_exports_jwk() {
        let bytes = encode(&Value::Map(p256_entries()));
        let key = CredentialPublicKey::from_cose(&bytes).unwrap();
        assert_eq!(key.alg(), CoseAlgorithm::Es256);
        assert_eq!(key.alg().to_string(), "ES256 (-7)");
        assert_eq!(key.cose_bytes(), bytes.as_slice());
        let jwk = key.to_jwk();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["x"], "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY");
    }

    #[test]
    fn refuses_each_malformation_with_its_own_error() {
        let base = p256_entries();
        let cases: Vec<(Vec<u8>, CoseKeyError)> = vec![
            (vec![0xff], CoseKeyError::NotCbor(String::new())),
            (encode(&Value::Array(vec![])), CoseKeyError::NotAMap),
            (
                with(base.clone(), 3, int(-35)),
                CoseKeyError::UnsupportedAlgorithm { alg: -35 },
            ),
            (
                with(base.clone(), 1, int(1)),
                CoseKeyError::KeyTypeMismatch {
                    alg: CoseAlgorithm::Es256,
                    kty: 1,
                },
            ),
            (
                with(base.clone(), -1, int(2)),
                CoseKeyError::CurveMismatch {
                    alg: CoseAlgorithm::Es256,
                    crv: 2,
                },
            ),
            (
                with(base.clone(), -2, Value::Bytes(vec![1; 31])),
                CoseKeyError::WrongLength {
                    parameter: "x (-2)",
                    expected: 32,
                    actual: 31,
                },
            ),
            (
                with(base.clone(), -3, Value::Bytes(vec![1; 32])),
                CoseKeyError::NotOnCurve {
                    alg: CoseAlgorithm::Es256,
                },
            ),
            (
                with(base.clone(), -3, Value::Bool(true)),
                CoseKeyError::WrongParameterType {
                    parameter: "y (-3)",
                    expected: "a byte string",
                },
            ),
            (
                with(base.clone(), 3, Value::Text("ES256".into())),
                CoseKeyError::WrongParameterType {
                    parameter: "alg (3)",
                    expected: "an integer",
                },
            ),
        ];
        for (bytes, expected) in cases {
            let error = CredentialPublicKey::from_cose(&bytes).unwrap_err();
            match (&error, &expected) {
                (CoseKeyError::NotCbor(_), CoseKeyError::NotCbor(_)) => {}
                _ => assert_eq!(error, expected),
            }
        }

        let mut missing = base.clone();
        missing.retain(|(key, _)| key != &int(3));
        assert_eq!(
            CredentialPublicKey::from_cose(&encode(&Value::Map(missing))).unwrap_err(),
            CoseKeyError::MissingParameter {
                parameter: "alg (3)"
            }
        );

        let mut duplicated = base.clone();
        duplicated.push((int(3), int(-7)));
        assert!(matches!(
            CredentialPublicKey::from_cose(&encode(&Value::Map(duplicated))),
            Err(CoseKeyError::DuplicateLabel { .. })
        ));

        let mut trailing = encode(&Value::Map(base));
        trailing.push(0);
        assert_eq!(
            CredentialPublicKey::from_cose(&trailing).unwrap_err(),
            CoseKeyError::TrailingBytes { count: 1 }
        );
    }

    #[test]
    fn refuses_small_order_ed25519_keys() {
        // The identity point (y = 1) has order 1.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let bytes = encode(&Value::Map(vec![
            (int(1), int(1)),
            (int(3), int(-8)),
            (int(-1), int(6)),
            (int(-2), Value::Bytes(identity.to_vec())),
        ]));
        assert_eq!(
            CredentialPublicKey::from_cose(&bytes).unwrap_err(),
            CoseKeyError::WeakKey
        );
    }

    #[test]
    fn refuses_non_minimal_and_small_rsa_keys() {
        let key = |n: Vec<u8>, e: Vec<u8>| {
            encode(&Value::Map(vec![
                (int(1), int(3)),
                (int(3), int(-257)),
                (int(-1), Value::Bytes(n)),
                (int(-2), Value::Bytes(e)),
            ]))
        };
        let mut padded = vec![0u8];
        padded.extend(vec![0xc5; 256]);
        assert_eq!(
            CredentialPublicKey::from_cose(&key(padded, vec![1, 0, 1])).unwrap_err(),
            CoseKeyError::NonMinimalInteger {
                parameter: "n (-1)"
            }
        );
        let mut small = vec![0xc5; 128];
        if let Some(last) = small.last_mut() {
            *last = 0xc7;
        }
        assert!(matches!(
            CredentialPublicKey::from_cose(&key(small, vec![1, 0, 1])),
            Err(CoseKeyError::InvalidRsaKey { .. })
        ));
    }

    #[test]
    fn error_messages_name_the_algorithm() {
        assert_eq!(
            CoseKeyError::UnsupportedAlgorithm { alg: -36 }.to_string(),
            "unsupported COSE algorithm -36 (ES512): supported are ES256 (-7), ESP256 (-9), EdDSA (-8), Ed25519 (-19) and RS256 (-257)"
        );
        assert_eq!(
            CoseKeyError::KeyTypeMismatch {
                alg: CoseAlgorithm::EdDsa,
                kty: 2
            }
            .to_string(),
            "COSE key type 2 (EC2) does not fit algorithm EdDSA (-8): it needs 1 (OKP)"
        );
    }
}
