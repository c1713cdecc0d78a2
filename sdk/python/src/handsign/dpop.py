"""DPoP proofs (RFC 9449, `alg: EdDSA` only), as `handsign-protocol`'s `dpop` makes and checks
them: `jti` of 16 random bytes, `htm`, `htu` without query and fragment (compared after URL
normalization), `iat` within 60 s of the verifier's clock, and `ath` (the token's SHA-256) when
the proof accompanies an approval token."""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from . import _b64, _jws
from .keys import AgentKey, public_key_from_jwk, thumbprint, verify as verify_signature

__all__ = [
    "DPOP_TYP",
    "DpopError",
    "VerifiedProof",
    "access_token_hash",
    "create_proof",
    "verify_proof",
]

DPOP_TYP = "dpop+jwt"
MAX_PROOF_AGE_SECS = 60
_DEFAULT_PORTS = {"http": 80, "https": 443}


class DpopError(ValueError):
    """A proof that does not verify for this method, URL, time and token."""


@dataclass(frozen=True)
class VerifiedProof:
    jkt: str
    jti: str
    iat: int


def access_token_hash(token: str) -> str:
    """`ath`: base64url SHA-256 of the token."""
    return _b64.encode(hashlib.sha256(token.encode("ascii")).digest())


@functools.lru_cache(maxsize=1024)
def normalize_url(url: str) -> Optional[str]:
    """The URL without query and fragment, scheme and host lowercased, default port removed and
    an empty path made `/`, as the `url` crate serializes it; None when it is not an absolute
    http(s) URL."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    if parts.username is not None or parts.password is not None:
        return None
    return urlunsplit((scheme, netloc, parts.path or "/", "", ""))


def create_proof(
    key: AgentKey, method: str, url: str, iat: int, access_token: Optional[str] = None
) -> str:
    """A fresh proof for one request."""
    claims = {
        "jti": _b64.encode(os.urandom(16)),
        "htm": method,
        "htu": normalize_url(url) or url,
        "iat": iat,
    }
    if access_token is not None:
        claims["ath"] = access_token_hash(access_token)
    header = {"typ": DPOP_TYP, "alg": "EdDSA", "jwk": key.public_jwk()}
    return _jws.sign(key, header, claims)


def verify_proof(
    proof: str, *, method: str, url: str, now: int, access_token: Optional[str] = None
) -> VerifiedProof:
    """Checks a proof; returns its key's thumbprint, its `jti` and `iat`."""
    try:
        jws = _jws.CompactJws(proof)
        header = jws.header()
    except _jws.JwsError as error:
        raise DpopError(f"malformed DPoP proof: {error}") from None
    typ, alg, jwk = header.get("typ"), header.get("alg"), header.get("jwk")
    if typ != DPOP_TYP:
        raise DpopError(f"DPoP proof typ must be {DPOP_TYP!r}, got {typ!r}")
    if alg != "EdDSA":
        raise DpopError(f"DPoP proof alg must be EdDSA, got {alg!r}")
    if not isinstance(jwk, dict):
        raise DpopError("DPoP proof key unusable: the header has no jwk")
    try:
        raw = public_key_from_jwk(jwk)
        public_key = Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as error:
        raise DpopError(f"DPoP proof key unusable: {error}") from None
    if not verify_signature(public_key, raw, jws.signing_input, jws.signature):
        raise DpopError("DPoP proof signature does not verify under its jwk")
    try:
        claims = jws.payload()
    except _jws.JwsError as error:
        raise DpopError(f"malformed DPoP proof: {error}") from None
    jti, htm, htu, iat, ath = (claims.get(k) for k in ("jti", "htm", "htu", "iat", "ath"))
    if (
        not isinstance(jti, str)
        or not isinstance(htm, str)
        or not isinstance(htu, str)
        or type(iat) is not int
        or not isinstance(ath, (str, type(None)))
    ):
        raise DpopError("malformed DPoP proof: the payload is not valid JSON of the expected shape")
    if not _is_unicode(jti):
        # The service records the jti as UTF-8; Rust's JSON parser refuses lone surrogates too.
        raise DpopError("malformed DPoP proof: the jti holds a lone surrogate")
    if htm != method:
        raise DpopError(f"DPoP proof is for method {htm!r}, the request is {method!r}")
    wanted = normalize_url(url)
    if wanted is None or normalize_url(htu) != wanted:
        raise DpopError(f"DPoP proof is for URL {htu!r}, the request is {url!r}")
    if abs(iat - now) > MAX_PROOF_AGE_SECS:
        raise DpopError(
            f"DPoP proof iat {iat} is more than {MAX_PROOF_AGE_SECS} s from now ({now})"
        )
    if access_token is not None and ath != access_token_hash(access_token):
        raise DpopError("DPoP proof ath does not match the token sent with it")
    return VerifiedProof(jkt=thumbprint(raw), jti=jti, iat=iat)


def _is_unicode(text: str) -> bool:
    """False for a string holding a lone surrogate, which `json.loads` lets through."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
