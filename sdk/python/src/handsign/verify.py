"""Every check a request passes before a service acts on it, in the order of the Rust middleware
(`handsign-verify`), so that no stateful or expensive work is done for a request already
refused:

1. `Authorization: Approval <token>` (`missing_token`);
2. the token's header: `alg`, `typ`, `kid` (no cryptography yet);
3. when the params are the body, a JSON `Content-Type` (`unsupported_media_type`), since the
   handler could not read anything else;
4. an announced `Content-Length` over the body limit (`body_too_large`);
5. the key for `kid` (the JWKS is fetched only for an unknown `kid`, at most once per refresh
   interval; `keys_unavailable`);
6. the body, up to the limit;
7. the params (the body unless given), canonicalized strictly (`invalid_params`), and their hash;
8. the token: signature, claims, issuer, audience, time, lifetime, action, params hash;
9. the DPoP proof for a key-bound token: method, URL, `ath`, key equal to `cnf.jkt`;
10. a token that could have been accepted before the replay store's record began (a store in
    memory, after a restart) is refused (`issued_before_start`): its use may have been forgotten;
11. last, the only writes: the proof's `jti` consumed until the proof is stale
    (`dpop_replayed`), then the token's `jti` until `exp + skew` (`token_replayed`;
    `replay_store_unavailable`). A refused request never uses up a token.

Only a proof that verified, with a token that verified, is recorded, so a caller who is not the
token's agent cannot make the service store anything; the record's key is a hash of the agent's
key and the `jti`, so its size does not depend on what the agent sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, List, Optional, Tuple, Union
from urllib.parse import urlsplit

from . import _b64, canonical
from .dpop import MAX_PROOF_AGE_SECS, DpopError, VerifiedProof, normalize_url, verify_proof
from .errors import (
    ApprovalRefused,
    BodyTooLarge,
    DpopKeyMismatch,
    DpopReplayed,
    DpopRequired,
    InvalidDpop,
    InvalidParams,
    IssuedBeforeStart,
    KeysUnavailable,
    MissingToken,
    ReplayStoreUnavailable,
    TokenReplayed,
    UnsupportedMediaType,
)
from .keys import KeySet
from .replay import MemoryReplayStore, ReplayStore, ReplayStoreUnavailableError
from .token import MAX_SKEW_SECS, ApprovalClaims, token_kid, verify_token

__all__ = ["Approved", "Verifier", "check_action"]

DEFAULT_BODY_LIMIT = 256 * 1024
_MAX_JWKS_BYTES = 256 * 1024
_ACTION = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_BODY = object()

Headers = Iterable[Tuple[str, str]]
BodyReader = Callable[[int], Awaitable[bytes]]


def check_action(action: str) -> str:
    """Refuses an action no token can carry: 1 to 128 of `A-Z a-z 0-9 . _ : -`."""
    if not _ACTION.fullmatch(action):
        raise ValueError(
            f"action {action!r} is not usable; actions are 1 to 128 of A-Z a-z 0-9 . _ : -"
        )
    return action


@dataclass(frozen=True)
class Approved:
    """A request that passed every check: its verified claims and the exact body hashed."""

    claims: ApprovalClaims
    body: bytes


def _values(headers: Headers, name: str) -> List[str]:
    return [value for key, value in headers if key.lower() == name]


class _JwksCache:
    """The gateway's keys from its JWKS: fetched for an unknown `kid` at most once per refresh
    interval, one fetch at a time, refreshed past the maximum age; cached keys stay usable while
    the gateway cannot be reached."""

    def __init__(self, url: str, refresh_interval: float, max_age: float, http: Any) -> None:
        self.url = url
        self.refresh_interval = refresh_interval
        self.max_age = max_age
        self._http = http
        self.keys = KeySet({})
        self.fetched_at: Optional[float] = None
        self.last_attempt: Optional[float] = None
        self.last_failed = False
        self._lock = asyncio.Lock()

    def _fresh_with(self, kid: str) -> bool:
        now = time.monotonic()
        fresh = self.fetched_at is not None and now - self.fetched_at < self.max_age
        return fresh and self.keys.get(kid) is not None

    async def for_kid(self, kid: str) -> KeySet:
        if self._fresh_with(kid):
            return self.keys
        async with self._lock:
            if self._fresh_with(kid):
                return self.keys
            now = time.monotonic()
            if self.last_attempt is None or now - self.last_attempt >= self.refresh_interval:
                await self._refresh()
            if self.keys.get(kid) is not None or not self.last_failed:
                return self.keys
            raise KeysUnavailable(
                "the token names a key this service does not know, and the gateway's keys "
                "cannot be fetched right now; try again later"
            )

    async def _refresh(self) -> None:
        import httpx

        self.last_attempt = time.monotonic()
        try:
            http = self._http or httpx.AsyncClient(timeout=5, follow_redirects=False)
            try:
                async with http.stream("GET", self.url) as response:
                    if response.status_code != 200:
                        raise ValueError(f"JWKS answer {response.status_code}")
                    content = bytearray()
                    async for chunk in response.aiter_bytes():
                        content += chunk
                        if len(content) > _MAX_JWKS_BYTES:
                            raise ValueError("the JWKS is larger than 256 KiB")
            finally:
                if self._http is None:
                    await http.aclose()
            self.keys = KeySet.from_jwks(json.loads(bytes(content)))
            self.fetched_at = time.monotonic()
            self.last_failed = False
        except Exception:  # the gateway's outage must not stop tokens it already issued
            self.last_failed = True


class Verifier:
    """The service's configuration: which gateway it trusts, who it is, where the keys come
    from, and where used tokens are recorded. Checked at construction, so a misconfiguration is
    an error at start rather than a hole at run time.

    `public_url` is the URL clients address this service with (scheme, host, port, and a path
    prefix if a proxy strips one): a DPoP proof must name it plus the request's path. Give the
    gateway's keys as `jwks_url` (https unless loopback) or `keys` (fixed). `clock` returns unix
    seconds and exists so tests can set the time."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        public_url: str,
        jwks_url: Optional[str] = None,
        keys: Optional[KeySet] = None,
        replay_store: Optional[ReplayStore] = None,
        clock_skew: int = MAX_SKEW_SECS,
        body_limit: int = DEFAULT_BODY_LIMIT,
        params_limits: canonical.Limits = canonical.Limits(),
        allow_unbound_tokens: bool = False,
        jwks_refresh_interval: float = 30,
        jwks_max_age: float = 300,
        allow_insecure_jwks_url: bool = False,
        http_client: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not issuer:
            raise ValueError("the issuer must be the gateway's public URL, got an empty string")
        if not audience:
            raise ValueError("the audience must be this service's audience string")
        normalized = normalize_url(public_url)
        if normalized is None or urlsplit(public_url).query or urlsplit(public_url).fragment:
            raise ValueError(
                f"public_url {public_url!r} is not usable; give the absolute http(s) URL clients "
                "address this service with, e.g. https://travel.example"
            )
        if clock_skew > MAX_SKEW_SECS or clock_skew < 0:
            raise ValueError(f"clock skew {clock_skew} is over the {MAX_SKEW_SECS} s allowed")
        if body_limit < 1:
            raise ValueError("the body limit must be at least 1 byte")
        if (jwks_url is None) == (keys is None):
            raise ValueError("give exactly one of jwks_url and keys")
        self.issuer = issuer
        self.audience = audience
        self.public_url = normalized.rstrip("/")
        self.skew = clock_skew
        self.body_limit = body_limit
        self.params_limits = params_limits
        self.allow_unbound_tokens = allow_unbound_tokens
        self.clock = clock
        self.replay_store: ReplayStore = (
            replay_store if replay_store is not None else MemoryReplayStore(clock)
        )
        self._fixed = keys
        self._jwks: Optional[_JwksCache] = None
        if jwks_url is not None:
            parts = urlsplit(jwks_url)
            loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
            if parts.scheme != "https" and not (
                parts.scheme == "http" and (loopback or allow_insecure_jwks_url)
            ):
                raise ValueError(
                    f"jwks_url {jwks_url!r} is not usable: it must be https unless the host is "
                    "loopback (allow_insecure_jwks_url)"
                )
            self._jwks = _JwksCache(jwks_url, jwks_refresh_interval, jwks_max_age, http_client)
        elif keys is not None and len(keys) == 0:
            raise ValueError("the fixed key set is empty: every token would be refused")

    async def verify(
        self,
        *,
        action: str,
        method: str,
        path: str,
        headers: Headers,
        body: Union[bytes, BodyReader],
        params: Any = _BODY,
    ) -> Approved:
        """Runs every check for a request to the route performing `action`; returns the
        claims, or raises the `ApprovalRefused` subclass of the first check that failed.

        `path` is the request's path as the client sent it; `body` its bytes, or a reader
        called with the body limit (which raises `BodyTooLarge` past it). The params are the
        body unless `params` is given (JSON text as bytes, or a value built in code)."""
        headers = list(headers)
        token = _approval_token(headers)
        kid = token_kid(token)
        if params is _BODY:
            _check_json_content_type(headers)
        for value in _values(headers, "content-length"):
            if value.strip().isdigit() and int(value) > self.body_limit:
                raise BodyTooLarge(
                    f"the request body is larger than this route's limit of {self.body_limit} bytes"
                )
        keys = await self._jwks.for_kid(kid) if self._jwks is not None else self._fixed
        assert keys is not None
        data = body if isinstance(body, bytes) else await body(self.body_limit)
        if len(data) > self.body_limit:
            raise BodyTooLarge(
                f"the request body is larger than this route's limit of {self.body_limit} bytes"
            )
        try:
            if params is _BODY:
                canonical_params = canonical.canonicalize(data, self.params_limits)
            elif isinstance(params, (bytes, bytearray)):
                canonical_params = canonical.canonicalize(bytes(params), self.params_limits)
            else:
                canonical_params = canonical.canonicalize_value(params, self.params_limits)
        except canonical.CanonicalError as error:
            raise InvalidParams(
                f"the params cannot be hashed exactly as approved: {error}"
            ) from None
        now = int(self.clock())
        claims = verify_token(
            token,
            keys,
            issuer=self.issuer,
            audience=self.audience,
            action=action,
            params_sha256=canonical.params_sha256(canonical_params),
            now=now,
            skew=self.skew,
        )
        proof = self._check_key_binding(headers, method, path, token, claims, now)
        self._check_replay_record_covers(claims)
        if proof is not None:
            await self._consume(
                _proof_record_id(proof),
                proof.iat + MAX_PROOF_AGE_SECS + 1,
                DpopReplayed(
                    "this DPoP proof was used already: make a new proof for every request"
                ),
            )
        await self._consume(
            claims.jti,
            claims.exp + self.skew,
            TokenReplayed(
                "this token was used already: an approval is good for one request; ask for a "
                "new approval"
            ),
        )
        return Approved(claims=claims, body=data)

    def _check_replay_record_covers(self, claims: ApprovalClaims) -> None:
        """Refuses a token the replay store cannot vouch for: one that could have been accepted
        (its `nbf` less the skew had come) by the time the store's record began, by a previous
        process whose record is gone. Tokens from the first `skew + 1` seconds after a start
        are refused too, since the gateway's clock may be ahead of this one by up to the
        skew."""
        since = self.replay_store.records_since()
        if since is not None and claims.nbf - self.skew <= since:
            raise IssuedBeforeStart(
                "this token was issued before the service started, and the service's record of "
                "used tokens (in memory) began then: whether it was used already cannot be "
                "known; ask for a new approval"
            )

    async def _consume(self, record_id: str, expires_at: int, replayed: ApprovalRefused) -> None:
        """Records `record_id` as used until `expires_at`; raises `replayed` when it was
        recorded already, and 503 when the store cannot say."""
        try:
            first_use = await self.replay_store.consume(record_id, expires_at)
        except ReplayStoreUnavailableError:
            raise ReplayStoreUnavailable(
                "the service cannot record the token's use right now; try again with a new approval"
            ) from None
        if not first_use:
            raise replayed

    def _check_key_binding(
        self,
        headers: List[Tuple[str, str]],
        method: str,
        path: str,
        token: str,
        claims: ApprovalClaims,
        now: int,
    ) -> Optional[VerifiedProof]:
        """The DPoP proof for a key-bound token, verified; an unbound token (no proof) only if
        the service allows it."""
        if claims.jkt is None:
            if self.allow_unbound_tokens:
                return None
            raise DpopRequired(
                "the token is not bound to an agent key (no cnf.jkt), and this service accepts "
                "key-bound tokens only"
            )
        proofs = _values(headers, "dpop")
        if not proofs:
            raise DpopRequired(
                "the token is bound to an agent key (cnf.jkt): send a DPoP header with a proof "
                "made with that key for this method and URL, with ath set to the token's hash"
            )
        if len(proofs) > 1:
            raise InvalidDpop("send exactly one DPoP header")
        try:
            verified = verify_proof(
                proofs[0],
                method=method,
                url=self.public_url + path,
                now=now,
                access_token=token,
            )
        except DpopError as error:
            raise InvalidDpop(str(error)) from None
        if verified.jkt != claims.jkt:
            raise DpopKeyMismatch(
                f"the DPoP proof is made with key {verified.jkt}, but the token is bound to key "
                f"{claims.jkt}"
            )
        return verified


def _proof_record_id(proof: VerifiedProof) -> str:
    """The replay store's id for a proof, as the Rust middleware makes it: `dpop:` and base64url
    SHA-256 of the agent's key thumbprint, `:` and the proof's `jti`, so that agents cannot
    collide and the record's size is fixed whatever the `jti`'s length. Token `jti`s, chosen by
    the gateway, never start with `dpop:`."""
    digest = hashlib.sha256(f"{proof.jkt}:{proof.jti}".encode()).digest()
    return "dpop:" + _b64.encode(digest)


def _check_json_content_type(headers: List[Tuple[str, str]]) -> None:
    """Refuses a body that the route reads as JSON but that is not sent as JSON
    (`application/json` or `application/*+json`): the handler's JSON parsing would refuse it
    after the token was used."""
    found = _values(headers, "content-type")
    content_type = found[0] if found else ""
    essence = content_type.split(";", 1)[0].strip().lower()
    subtype = essence[len("application/") :] if essence.startswith("application/") else None
    if subtype is not None and (subtype == "json" or subtype.endswith("+json")):
        return
    if not content_type:
        raise UnsupportedMediaType(
            "this route's params are the JSON body: send it with Content-Type: application/json"
        )
    shown = json.dumps(content_type[:100])
    raise UnsupportedMediaType(
        f"this route's params are the JSON body, but the Content-Type is {shown}: send "
        "application/json"
    )


def _approval_token(headers: List[Tuple[str, str]]) -> str:
    values = _values(headers, "authorization")
    if len(values) != 1:
        raise MissingToken("send exactly one Authorization header: Authorization: Approval <token>")
    value = values[0]
    if not value.isascii():
        raise MissingToken("the Authorization header is not ASCII")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "approval":
        raise MissingToken(
            "the Authorization header does not use the Approval scheme: send "
            "Authorization: Approval <token>"
        )
    token = token.strip(" ")
    if not token:
        raise MissingToken("the Authorization: Approval header holds no token")
    return token
