"""Every refusal of the service-side checks, with the code and status the Rust middleware
(`handsign-verify`) answers with: one class per code, all listed in `REFUSALS`.

A refusal is answered with its status, `WWW-Authenticate: Approval error="<code>",
error_description="..."` for a 401, `Retry-After` for a 503, and the JSON body
`{"error": "<code>", "message": "..."}`.
"""

from __future__ import annotations

from typing import Dict, List, Tuple, Type

__all__ = [
    "ApprovalError",
    "ApprovalExpired",
    "BadAnswer",
    "Cancelled",
    "Denied",
    "Refused",
    "TimedOut",
    "TokenAlreadyCollected",
    "Unreachable",
    "ApprovalRefused",
    "REFUSALS",
    "MissingToken",
    "MalformedToken",
    "WrongAlg",
    "WrongTyp",
    "UnknownKid",
    "BadSignature",
    "MalformedClaims",
    "WrongIssuer",
    "WrongAudience",
    "Expired",
    "NotYetValid",
    "LifetimeTooLong",
    "ActionMismatch",
    "ParamsMismatch",
    "InvalidParams",
    "DpopRequired",
    "InvalidDpop",
    "DpopKeyMismatch",
    "DpopReplayed",
    "IssuedBeforeStart",
    "TokenReplayed",
    "UnsupportedMediaType",
    "BodyTooLarge",
    "InvalidBody",
    "KeysUnavailable",
    "ReplayStoreUnavailable",
]


class ApprovalRefused(Exception):
    """A request the handler must not run for; `code` says which check failed."""

    code: str = ""
    status: int = 401

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def headers(self) -> List[Tuple[str, str]]:
        """The headers of the refusal's answer."""
        if self.status == 401:
            challenge = (
                f"Approval error={_quoted(self.code)}, error_description={_quoted(self.message)}"
            )
            return [("www-authenticate", challenge)]
        if self.status == 503:
            return [("retry-after", "1")]
        return []

    def body(self) -> Dict[str, str]:
        return {"error": self.code, "message": self.message}


class MissingToken(ApprovalRefused):
    """No single `Authorization: Approval <token>` header. (401)"""

    code = "missing_token"
    status = 401


class MalformedToken(ApprovalRefused):
    """Not three base64url parts with a JSON header and payload. (401)"""

    code = "malformed_token"
    status = 401


class WrongAlg(ApprovalRefused):
    """The token's `alg` is not EdDSA. (401)"""

    code = "wrong_alg"
    status = 401


class WrongTyp(ApprovalRefused):
    """The token's `typ` is not `handsign-approval+jwt`. (401)"""

    code = "wrong_typ"
    status = 401


class UnknownKid(ApprovalRefused):
    """No `kid`, or no key with that `kid` in the gateway's key set. (401)"""

    code = "unknown_kid"
    status = 401


class BadSignature(ApprovalRefused):
    """The signature does not verify under the named key. (401)"""

    code = "bad_signature"
    status = 401


class MalformedClaims(ApprovalRefused):
    """Claims missing or of the wrong type. (401)"""

    code = "malformed_claims"
    status = 401


class WrongIssuer(ApprovalRefused):
    """`iss` is not the configured gateway. (401)"""

    code = "wrong_issuer"
    status = 401


class WrongAudience(ApprovalRefused):
    """`aud` is not this service. (401)"""

    code = "wrong_audience"
    status = 401


class Expired(ApprovalRefused):
    """`now >= exp + skew`. (401)"""

    code = "expired"
    status = 401


class NotYetValid(ApprovalRefused):
    """`nbf - skew > now`. (401)"""

    code = "not_yet_valid"
    status = 401


class LifetimeTooLong(ApprovalRefused):
    """`exp - min(iat, nbf)` is over 30 seconds. (401)"""

    code = "lifetime_too_long"
    status = 401


class ActionMismatch(ApprovalRefused):
    """The token approves another action than this route's. (401)"""

    code = "action_mismatch"
    status = 401


class ParamsMismatch(ApprovalRefused):
    """The token approves other params than this request's. (401)"""

    code = "params_mismatch"
    status = 401


class InvalidParams(ApprovalRefused):
    """The params are not JSON that RFC 8785 represents exactly. (401)"""

    code = "invalid_params"
    status = 401


class DpopRequired(ApprovalRefused):
    """A key-bound token without a DPoP proof, or an unbound token. (401)"""

    code = "dpop_required"
    status = 401


class InvalidDpop(ApprovalRefused):
    """The DPoP proof does not verify for this method, URL, time and token. (401)"""

    code = "invalid_dpop"
    status = 401


class DpopKeyMismatch(ApprovalRefused):
    """The DPoP proof is made with another key than `cnf.jkt`. (401)"""

    code = "dpop_key_mismatch"
    status = 401


class DpopReplayed(ApprovalRefused):
    """The DPoP proof was accepted once already. (401)"""

    code = "dpop_replayed"
    status = 401


class IssuedBeforeStart(ApprovalRefused):
    """The token could have been accepted before the replay store's record began (a store in
    memory, emptied when the service started), so its single use cannot be vouched for. (401)"""

    code = "issued_before_start"
    status = 401


class TokenReplayed(ApprovalRefused):
    """The token was accepted once already. (401)"""

    code = "token_replayed"
    status = 401


class UnsupportedMediaType(ApprovalRefused):
    """The params are the JSON body, and the `Content-Type` is not JSON (`application/json` or
    `application/*+json`). (415)"""

    code = "unsupported_media_type"
    status = 415


class BodyTooLarge(ApprovalRefused):
    """The body is larger than the route's limit. (413)"""

    code = "body_too_large"
    status = 413


class InvalidBody(ApprovalRefused):
    """The body could not be read. (400)"""

    code = "invalid_body"
    status = 400


class KeysUnavailable(ApprovalRefused):
    """The gateway's keys could not be fetched for an unknown `kid`. (503)"""

    code = "keys_unavailable"
    status = 503


class ReplayStoreUnavailable(ApprovalRefused):
    """The token's single use cannot be recorded right now. (503)"""

    code = "replay_store_unavailable"
    status = 503


# The table to compare with crates/handsign-verify/src/refusal.rs, the token checks of
# crates/handsign-protocol/src/token.rs and docs/protocol.md: code -> class (and its status).
REFUSALS: Dict[str, Type[ApprovalRefused]] = {
    "missing_token": MissingToken,
    "malformed_token": MalformedToken,
    "wrong_alg": WrongAlg,
    "wrong_typ": WrongTyp,
    "unknown_kid": UnknownKid,
    "bad_signature": BadSignature,
    "malformed_claims": MalformedClaims,
    "wrong_issuer": WrongIssuer,
    "wrong_audience": WrongAudience,
    "expired": Expired,
    "not_yet_valid": NotYetValid,
    "lifetime_too_long": LifetimeTooLong,
    "action_mismatch": ActionMismatch,
    "params_mismatch": ParamsMismatch,
    "invalid_params": InvalidParams,
    "dpop_required": DpopRequired,
    "invalid_dpop": InvalidDpop,
    "dpop_key_mismatch": DpopKeyMismatch,
    "dpop_replayed": DpopReplayed,
    "issued_before_start": IssuedBeforeStart,
    "token_replayed": TokenReplayed,
    "unsupported_media_type": UnsupportedMediaType,
    "body_too_large": BodyTooLarge,
    "invalid_body": InvalidBody,
    "keys_unavailable": KeysUnavailable,
    "replay_store_unavailable": ReplayStoreUnavailable,
}

_MAX_DESCRIPTION_CHARS = 400


def _quoted(value: str) -> str:
    """An HTTP quoted-string: quotes and backslashes escaped, characters a header cannot carry
    replaced by `?`, cut to 400 characters, as the Rust middleware writes it."""
    out = ['"']
    for i, c in enumerate(value):
        if i == _MAX_DESCRIPTION_CHARS:
            out.append("...")
            break
        if c in '"\\':
            out.append("\\" + c)
        elif " " <= c <= "~":
            out.append(c)
        else:
            out.append("?")
    out.append('"')
    return "".join(out)


# --- the agent's side: why no approval token came back --------------------------------------


class ApprovalError(Exception):
    """Why `wait()` (or asking) gave no approval; one subclass per outcome."""


class Denied(ApprovalError):
    """The person denied the request with their passkey: an answer to respect."""


class ApprovalExpired(ApprovalError):
    """Nobody decided before the request's ttl ran out, or the approval was not collected in
    time; asking again is reasonable."""


class Cancelled(ApprovalError):
    """The request was cancelled: by the gateway (for example because the agent was revoked)
    or by the agent; `reason` says why."""

    def __init__(self, reason: "str | None") -> None:
        super().__init__("the request was cancelled" + (f": {reason}" if reason else ""))
        self.reason = reason


class TimedOut(ApprovalError):
    """The caller's deadline passed with the request still pending; it was cancelled at the
    gateway (or, waited on with `keep_pending=True`, it stays pending: wait on it again rather
    than ask again)."""


class Refused(ApprovalError):
    """The gateway answered with an error; `code` is its stable code (`invalid_params`,
    `unknown_agent`, `rate_limited`, ...)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"the gateway refused ({status} {code}): {message}")
        self.status = status
        self.code = code
        self.message = message


class Unreachable(ApprovalError):
    """The gateway could not be reached, or the connection kept breaking, after the retries."""


class TokenAlreadyCollected(ApprovalError):
    """Approved, but the token went to an earlier read and is never returned twice: ask again."""


class BadAnswer(ApprovalError):
    """The gateway answered something the protocol does not allow; nothing in it is trusted."""
