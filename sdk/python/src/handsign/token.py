"""The approval token: an EdDSA JWT bound to one action, its params and the agent's key.

The checks and their order are those of `handsign-protocol`'s `token::verify`, each failure
raising the class of `errors` with the same code. Nothing from the claims is read before the
signature holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

from . import _b64
from ._jws import CompactJws, JwsError, JwsJsonError
from .errors import (
    ActionMismatch,
    BadSignature,
    Expired,
    LifetimeTooLong,
    MalformedClaims,
    MalformedToken,
    NotYetValid,
    ParamsMismatch,
    UnknownKid,
    WrongAlg,
    WrongAudience,
    WrongIssuer,
    WrongTyp,
)
from .keys import KeySet, verify as verify_signature

__all__ = [
    "ApprovalClaims",
    "TOKEN_TYP",
    "MAX_LIFETIME_SECS",
    "MAX_SKEW_SECS",
    "token_kid",
    "verify_token",
]

TOKEN_TYP = "handsign-approval+jwt"
MAX_LIFETIME_SECS = 30
MAX_SKEW_SECS = 5
_I64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class ApprovalClaims:
    """The claims of a verified token (as the design lists them)."""

    iss: str
    sub: str
    aud: str
    agent: str
    action: str
    params_sha256: str
    approval: str
    jti: str
    iat: int
    nbf: int
    exp: int
    jkt: Optional[str]

    @classmethod
    def parse(cls, claims: Dict[str, Any]) -> "ApprovalClaims":
        """Reads claims, refusing missing or ill-typed members (`malformed_claims`)."""

        def text(obj: Dict[str, Any], name: str) -> str:
            value = obj.get(name)
            if not isinstance(value, str):
                raise MalformedClaims(f"malformed claims: {name!r} is missing or not a string")
            return value

        def integer(name: str) -> int:
            value = claims.get(name)
            if type(value) is not int or not _I64[0] <= value <= _I64[1]:
                raise MalformedClaims(f"malformed claims: {name!r} is missing or not an integer")
            return value

        def member(name: str, optional: bool) -> Optional[Dict[str, Any]]:
            value = claims.get(name)
            if value is None and optional:
                return None
            if not isinstance(value, dict):
                raise MalformedClaims(f"malformed claims: {name!r} is missing or not an object")
            return value

        act = member("act", False)
        cnf = member("cnf", True)
        params_hash = text(claims, "params_sha256")
        try:
            valid_hash = len(_b64.decode(params_hash)) == 32
        except ValueError:
            valid_hash = False
        if not valid_hash:
            raise MalformedClaims(
                "malformed claims: params_sha256 must be base64url (no padding) of a 32-byte "
                f"SHA-256 digest, got {params_hash!r}"
            )
        return cls(
            iss=text(claims, "iss"),
            sub=text(claims, "sub"),
            aud=text(claims, "aud"),
            agent=text(act, "sub") if act is not None else "",
            action=text(claims, "action"),
            params_sha256=params_hash,
            approval=text(claims, "approval"),
            jti=text(claims, "jti"),
            iat=integer("iat"),
            nbf=integer("nbf"),
            exp=integer("exp"),
            jkt=text(cnf, "jkt") if cnf is not None else None,
        )


def token_kid(token: str) -> str:
    """The token's `kid` after the header checks that need no key, in the order and with the
    errors of `verify_token` (the middleware makes them before fetching any key)."""
    return _parse(token)[1]


def _parse(token: str) -> "tuple[CompactJws, str]":
    try:
        jws = CompactJws(token)
        header = jws.header()
    except JwsError as error:
        raise MalformedToken(f"malformed token: {error}") from None
    alg, typ, kid = header.get("alg"), header.get("typ"), header.get("kid")
    if (
        not isinstance(alg, str)
        or not isinstance(typ, (str, type(None)))
        or not isinstance(kid, (str, type(None)))
    ):
        raise MalformedToken("malformed token: the header is not valid JSON of the expected shape")
    if alg != "EdDSA":
        raise WrongAlg(f"wrong alg {alg!r}: approval tokens are signed with EdDSA only")
    if typ != TOKEN_TYP:
        raise WrongTyp(f"wrong typ {typ!r}: expected {TOKEN_TYP!r}")
    if kid is None:
        raise UnknownKid("the token has no kid, so no key can be chosen to verify it")
    return jws, kid


def verify_token(
    token: str,
    keys: KeySet,
    *,
    issuer: str,
    audience: str,
    action: str,
    params_sha256: str,
    now: int,
    skew: int = MAX_SKEW_SECS,
) -> ApprovalClaims:
    """Verifies a token for this issuer, audience, action and params hash at `now`."""
    jws, kid = _parse(token)
    entry = keys.get(kid)
    if entry is None:
        raise UnknownKid(f"unknown kid {kid!r}: no key with this id in the gateway's key set")
    public_key, raw = entry
    if not verify_signature(public_key, raw, jws.signing_input, jws.signature):
        raise BadSignature(
            f"bad signature: the token was not signed by the key {kid!r} or was altered"
        )
    try:
        payload = jws.payload()
    except JwsJsonError as error:
        raise MalformedClaims(f"malformed claims: {error}") from None
    except JwsError as error:
        raise MalformedToken(f"malformed token: {error}") from None
    claims = ApprovalClaims.parse(payload)
    if claims.iss != issuer:
        raise WrongIssuer(f"wrong issuer {claims.iss!r}: expected {issuer!r}")
    if claims.aud != audience:
        raise WrongAudience(f"wrong audience {claims.aud!r}: this service is {audience!r}")
    skew = min(max(skew, 0), MAX_SKEW_SECS)
    if now >= claims.exp + skew:
        raise Expired(f"expired at {claims.exp} (now {now}, skew {skew} s)")
    if claims.nbf - skew > now:
        raise NotYetValid(f"not yet valid: nbf {claims.nbf} (now {now}, skew {skew} s)")
    lifetime = claims.exp - min(claims.iat, claims.nbf)
    if lifetime > MAX_LIFETIME_SECS:
        raise LifetimeTooLong(f"lifetime {lifetime} s is over the {MAX_LIFETIME_SECS} s allowed")
    if claims.action != action:
        raise ActionMismatch(
            f"action differs: the token approves {claims.action!r}, this route performs {action!r}"
        )
    if claims.params_sha256 != params_sha256:
        raise ParamsMismatch(
            f"params hash differs: the token approves params_sha256 {claims.params_sha256}, the "
            f"request carries {params_sha256}"
        )
    return claims


def read_claims_unverified(token: str) -> ApprovalClaims:
    """The claims of a token the agent received, for its own checks; nothing is verified."""
    try:
        return ApprovalClaims.parse(CompactJws(token).payload())
    except JwsError as error:
        raise MalformedToken(f"malformed token: {error}") from None
