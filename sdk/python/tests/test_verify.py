"""Every service-side check, with the Rust middleware's codes, on tokens minted here with a
gateway key; time is the verifier's injected clock, never a sleep."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
from handsign import (
    REFUSALS,
    AgentKey,
    ApprovalRefused,
    KeyFileError,
    KeySet,
    MemoryReplayStore,
    Verifier,
    _b64,
    _jws,
)
from handsign.canonical import canonicalize, params_sha256
from handsign.dpop import access_token_hash, create_proof, verify_proof

from conftest import REPO

ISSUER = "https://gw.example"
AUDIENCE = "https://travel.example"
BODY = b'{"to": "LIS", "price": 120.5}'
NOW = 1_800_000_000
JSON = ("content-type", "application/json")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def claims(agent: AgentKey, **changes: Any) -> Dict[str, Any]:
    base: Dict[str, Any] = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": AUDIENCE,
        "act": {"sub": agent.id},
        "action": "flights.book",
        "params_sha256": params_sha256(canonicalize(BODY)),
        "approval": "req1",
        "jti": _b64.encode(os.urandom(16)),
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 30,
        "cnf": {"jkt": agent.id},
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def mint(key: AgentKey, payload: Dict[str, Any], **header: Any) -> str:
    head = {"alg": "EdDSA", "typ": "handsign-approval+jwt", "kid": key.id, **header}
    return _jws.sign(key, {k: v for k, v in head.items() if v is not None}, payload)


class Setup:
    def __init__(self) -> None:
        self.gateway = AgentKey.generate()
        self.agent = AgentKey.generate()
        self.clock = Clock(NOW + 1)
        self.store = MemoryReplayStore(Clock(NOW - 100))
        self.verifier = Verifier(
            issuer=ISSUER,
            audience=AUDIENCE,
            public_url="https://travel.example",
            keys=KeySet.of([self.gateway.raw_public]),
            replay_store=self.store,
            clock=self.clock,
        )

    def headers(
        self,
        token: str,
        agent: Optional[AgentKey] = None,
        method: str = "POST",
        url: str = "https://travel.example/book",
    ) -> List[Tuple[str, str]]:
        proof = create_proof(agent or self.agent, method, url, int(self.clock.now), token)
        return [("authorization", f"Approval {token}"), ("dpop", proof), JSON]

    def check(
        self, headers: List[Tuple[str, str]], body: bytes = BODY, action: str = "flights.book"
    ) -> Any:
        return asyncio.run(
            self.verifier.verify(
                action=action, method="POST", path="/book", headers=headers, body=body
            )
        )

    def refused(
        self, headers: List[Tuple[str, str]], body: bytes = BODY, action: str = "flights.book"
    ) -> ApprovalRefused:
        with pytest.raises(ApprovalRefused) as refused:
            self.check(headers, body, action)
        return refused.value


@pytest.fixture
def s() -> Setup:
    return Setup()


def test_a_good_request_passes_once(s: Setup) -> None:
    token = mint(s.gateway, claims(s.agent))
    approved = s.check(s.headers(token))
    assert approved.claims.approval == "req1" and approved.body == BODY
    # Same token, fresh proof: refused as a replay.
    assert s.refused(s.headers(token)).code == "token_replayed"


def test_a_dpop_proof_is_accepted_once(s: Setup) -> None:
    token = mint(s.gateway, claims(s.agent))
    headers = s.headers(token)
    assert s.check(headers)
    # The very same request again: its proof was recorded with the token.
    refusal = s.refused(headers)
    assert (refusal.code, refusal.status) == ("dpop_replayed", 401)
    # Recorded as the Rust middleware records it, until the proof is stale (iat + 61).
    proof = verify_proof(
        headers[1][1], method="POST", url="https://travel.example/book", now=NOW + 1
    )
    digest = hashlib.sha256(f"{proof.jkt}:{proof.jti}".encode()).digest()
    assert s.store._seen["dpop:" + _b64.encode(digest)] == proof.iat + 61
    s.store._clock = Clock(proof.iat + 60)
    assert s.store.consume_now("other", NOW + 100)
    assert "dpop:" + _b64.encode(digest) in s.store._seen
    s.store._clock = Clock(proof.iat + 61)
    assert s.store.consume_now("another", NOW + 100)
    assert "dpop:" + _b64.encode(digest) not in s.store._seen


def test_a_token_issued_before_the_memory_store_began_is_refused() -> None:
    """A memory store knows nothing of what the process before it accepted: a token that could
    have been accepted by then (nbf - skew <= start) is refused with its own code, unused."""
    s = Setup()
    s.store.started_at = NOW
    for nbf in (NOW - 10, NOW, NOW + 5):
        token = mint(s.gateway, claims(s.agent, iat=nbf, nbf=nbf, exp=nbf + 30))
        refusal = s.refused(s.headers(token))
        assert (refusal.code, refusal.status) == ("issued_before_start", 401), nbf
    assert len(s.store) == 0, "the refusal records neither the token nor the proof"
    token = mint(s.gateway, claims(s.agent, iat=NOW + 6, nbf=NOW + 6, exp=NOW + 36))
    assert s.check(s.headers(token))


def test_a_json_route_refuses_other_content_types_before_using_the_token(s: Setup) -> None:
    token = mint(s.gateway, claims(s.agent))
    auth_and_proof = s.headers(token)[:2]
    for content_type in [
        [],
        [("content-type", "text/plain")],
        [("content-type", "application/x-www-form-urlencoded")],
        [("content-type", "application/jsonx")],
        [("content-type", "application/geojson")],
        [("content-type", "text/json")],
    ]:
        refusal = s.refused(auth_and_proof + content_type)
        assert (refusal.code, refusal.status) == ("unsupported_media_type", 415), content_type
        assert refusal.headers() == []
    assert len(s.store) == 0, "the token and the proof are still unused"
    for content_type in ["Application/JSON; charset=utf-8", "application/merge-patch+json"]:
        token = mint(s.gateway, claims(s.agent))
        assert s.check(s.headers(token)[:2] + [("content-type", content_type)]), content_type
    # Params given in code are not the body: the body's type is the route's business.
    token = mint(s.gateway, claims(s.agent))
    approved = asyncio.run(
        s.verifier.verify(
            action="flights.book",
            method="POST",
            path="/book",
            headers=s.headers(token)[:2],
            body=b"",
            params=BODY,
        )
    )
    assert approved.claims.approval == "req1"


def test_params_are_compared_canonically(s: Setup) -> None:
    token = mint(s.gateway, claims(s.agent))
    assert s.check(s.headers(token), body=b'{"price":120.50,"to":"LIS"}')


def codes_of(s: Setup, token: str, **kw: Any) -> str:
    return s.refused(s.headers(token), **kw).code


def test_every_token_check_has_its_code(s: Setup) -> None:
    g, a = s.gateway, s.agent
    other = AgentKey.generate()
    cases = {
        "malformed_token": "a.b",
        "wrong_alg": mint(g, claims(a), alg="ES256"),
        "wrong_typ": mint(g, claims(a), typ="JWT"),
        "unknown_kid": mint(g, claims(a), kid=None),
        "bad_signature": mint(other, claims(a), kid=g.id),
        "malformed_claims": mint(g, claims(a, iat="now")),
        "wrong_issuer": mint(g, claims(a, iss="https://evil.example")),
        "wrong_audience": mint(g, claims(a, aud="https://other.example")),
        "expired": mint(g, claims(a, iat=NOW - 40, nbf=NOW - 40, exp=NOW - 10)),
        "not_yet_valid": mint(g, claims(a, iat=NOW + 20, nbf=NOW + 20, exp=NOW + 40)),
        "lifetime_too_long": mint(g, claims(a, exp=NOW + 31)),
        "action_mismatch": mint(g, claims(a, action="flights.cancel")),
        "params_mismatch": mint(g, claims(a, params_sha256=params_sha256(b"{}"))),
    }
    for code, token in cases.items():
        assert codes_of(s, token) == code, code
    assert codes_of(s, mint(g, claims(a)), body=b'{"a":1,"a":2}') == "invalid_params"
    assert len(s.store) == 0, "no refused request consumes a token"


def test_unknown_kid_is_named(s: Setup) -> None:
    assert codes_of(s, mint(s.gateway, claims(s.agent), kid="nope")) == "unknown_kid"


def test_expiry_follows_the_verifiers_clock(s: Setup) -> None:
    token = mint(s.gateway, claims(s.agent))
    s.clock.now = NOW + 30 + 5  # exp + skew
    assert codes_of(s, token) == "expired"
    s.clock.now = NOW + 34
    assert s.check(s.headers(token))


def test_dpop_checks(s: Setup) -> None:
    token = mint(s.gateway, claims(s.agent))
    auth = ("authorization", f"Approval {token}")
    assert s.refused([auth, JSON]).code == "dpop_required"
    assert s.refused(s.headers(token, agent=AgentKey.generate())).code == "dpop_key_mismatch"
    assert s.refused(s.headers(token, method="GET")).code == "invalid_dpop"
    assert s.refused(s.headers(token, url="https://travel.example/other")).code == "invalid_dpop"
    other_token = mint(s.gateway, claims(s.agent))
    proof_for_other = s.headers(other_token)[1]
    assert s.refused([auth, proof_for_other, JSON]).code == "invalid_dpop"
    assert s.refused(s.headers(token) + [s.headers(token)[1]]).code == "invalid_dpop"
    unbound = mint(s.gateway, claims(s.agent, cnf=None))
    assert s.refused(s.headers(unbound)).code == "dpop_required"
    lone_surrogate = _jws.sign(
        s.agent,
        {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": s.agent.public_jwk()},
        {
            "jti": "\ud800",
            "htm": "POST",
            "htu": "https://travel.example/book",
            "iat": NOW + 1,
            "ath": access_token_hash(token),
        },
    )
    assert s.refused([auth, ("dpop", lone_surrogate), JSON]).code == "invalid_dpop"
    assert len(s.store) == 0, "no refused proof is recorded"
    assert s.check(s.headers(token)), "none of the refusals used the token up"


def test_missing_token_and_body_limit(s: Setup) -> None:
    assert s.refused([]).code == "missing_token"
    assert s.refused([("authorization", "Bearer x")]).code == "missing_token"
    token = mint(s.gateway, claims(s.agent))
    assert s.refused([("authorization", f"Approval {token}")] * 2).code == "missing_token"
    big = s.headers(token) + [("content-length", str(300 * 1024))]
    refusal = s.refused(big)
    assert (refusal.code, refusal.status) == ("body_too_large", 413)


def test_memory_store_says_when_its_record_began() -> None:
    assert MemoryReplayStore(Clock(NOW)).records_since() == NOW
    assert MemoryReplayStore(Clock(NOW), record_began_at=NOW - 60).records_since() == NOW - 60


def test_memory_store_forgets_expired_entries() -> None:
    clock = Clock(NOW)
    store = MemoryReplayStore(Clock(NOW - 100))
    store._clock = clock
    for i in range(100):
        assert store.consume_now(f"t{i}", NOW + 30)
    assert not store.consume_now("t0", NOW + 30)
    clock.now = NOW + 31
    assert store.consume_now("new", NOW + 60)
    assert len(store) == 1


def test_refusal_answers_match_the_rust_middleware() -> None:
    refusal = REFUSALS["token_replayed"]('used "once"')
    assert refusal.headers() == [
        ("www-authenticate", 'Approval error="token_replayed", error_description="used \\"once\\""')
    ]
    assert refusal.body() == {"error": "token_replayed", "message": 'used "once"'}


def test_the_code_table_is_the_rust_one() -> None:
    """Every code the Rust middleware and token checks answer with is in REFUSALS with the same
    status, and REFUSALS has no other (the Rust-only `approval_layer_missing` is a routing
    mistake Python cannot make)."""
    sources = [p.read_text() for p in (REPO / "crates/handsign-verify/src").rglob("*.rs")]
    sources.append((REPO / "crates/handsign-protocol/src/token.rs").read_text())
    names = {name for text in sources for name in re.findall(r"ErrorCode::(\w+)", text)}
    rust = {re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower() for name in names}
    rust -= {"approval_layer_missing", "unknown"}
    assert rust == set(REFUSALS)
    status = {
        "unsupported_media_type": 415,
        "body_too_large": 413,
        "invalid_body": 400,
        "keys_unavailable": 503,
        "replay_store_unavailable": 503,
    }
    for code, cls in REFUSALS.items():
        assert cls.status == status.get(code, 401), code


def test_base64url_is_strict() -> None:
    for n in range(40):
        data = os.urandom(n)
        assert _b64.decode(_b64.encode(data)) == data
    for bad in ["A", "AB==", "a+b/", "QR", "QUJ", "Q Q"]:
        with pytest.raises(ValueError):
            _b64.decode(bad)


class JwksServer:
    """The gateway's JWKS on a real HTTP server: its document, status and how often it was read."""

    def __init__(self) -> None:
        import http.server
        import threading

        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                server.reads += 1
                self.send_response(server.status)
                self.end_headers()
                self.wfile.write(server.document)

            def log_message(self, *args: Any) -> None:
                pass

        self.reads, self.status, self.document = 0, 200, b""
        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def publish(self, *keys: AgentKey) -> None:
        self.document = json.dumps(
            {"keys": [{**k.public_jwk(), "kid": k.id, "use": "sig", "alg": "EdDSA"} for k in keys]}
        ).encode()


def test_jwks_is_fetched_for_unknown_kids_at_most_once_per_interval() -> None:
    s, jwks = Setup(), JwksServer()
    try:
        jwks.publish(s.gateway)

        def verifier(interval: float) -> Verifier:
            return Verifier(
                issuer=ISSUER,
                audience=AUDIENCE,
                public_url="https://travel.example",
                jwks_url=jwks.url,
                jwks_refresh_interval=interval,
                replay_store=s.store,
                clock=s.clock,
            )

        s.verifier = verifier(30)
        assert s.check(s.headers(mint(s.gateway, claims(s.agent))))
        rotated = AgentKey.generate()
        for _ in range(3):  # made-up or new kids do not make the service hammer the gateway
            assert s.refused(s.headers(mint(rotated, claims(s.agent)))).code == "unknown_kid"
        assert jwks.reads == 1
        jwks.publish(rotated, s.gateway)
        s.verifier = verifier(0)
        assert s.check(s.headers(mint(rotated, claims(s.agent))))
        jwks.status = 500  # the gateway is down: known keys still work, unknown ones are 503
        assert s.check(s.headers(mint(s.gateway, claims(s.agent))))
        refusal = s.refused(s.headers(mint(AgentKey.generate(), claims(s.agent))))
        assert (refusal.code, refusal.status) == ("keys_unavailable", 503)
        jwks.status, jwks.document = 200, b'{"keys": [' + b" " * 300 * 1024 + b"]}"
        s.verifier = verifier(0)
        assert s.refused(s.headers(mint(s.gateway, claims(s.agent)))).code == "keys_unavailable"
    finally:
        jwks.http.shutdown()


def test_key_files_are_those_of_the_cli(handsign_bin: str, tmp_path: Path) -> None:
    import subprocess

    path = tmp_path / "cli.jwk"
    made = subprocess.run(
        [handsign_bin, "agent", "keygen", "--key", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    assert AgentKey.load(path).id == made.stdout.split()[0]
    ours = tmp_path / "ours.jwk"
    key = AgentKey.load_or_create(ours)
    assert json.loads(ours.read_text()).keys() == json.loads(path.read_text()).keys()
    assert AgentKey.load_or_create(ours).id == key.id, "an existing key is never replaced"
    ours.chmod(0o640)
    with pytest.raises(KeyFileError):
        AgentKey.load(ours)


def _edwards_order_divides_8(y: int) -> bool:
    """Whether the Ed25519 point with this y (either x) has order dividing 8 (pure Python)."""
    p = 2**255 - 19
    d = -121665 * pow(121666, p - 2, p) % p
    y %= p
    u, v = (y * y - 1) % p, (d * y * y + 1) % p
    x2 = u * pow(v, p - 2, p) % p
    x = pow(x2, (p + 3) // 8, p)
    if (x * x - x2) % p:
        x = x * pow(2, (p - 1) // 4, p) % p
    assert (x * x - x2) % p == 0

    def add(a: Tuple[int, int], b: Tuple[int, int]) -> Tuple[int, int]:
        (x1, y1), (x2_, y2) = a, b
        t = d * x1 * x2_ * y1 * y2 % p
        return (
            (x1 * y2 + x2_ * y1) * pow(1 + t, p - 2, p) % p,
            (y1 * y2 + x1 * x2_) * pow(1 - t, p - 2, p) % p,
        )

    point = (x, y)
    for _ in range(3):
        point = add(point, point)
    return point == (0, 1)


def test_small_order_keys_and_signatures_are_refused() -> None:
    from handsign import keys

    assert all(_edwards_order_divides_8(y) for y in keys._SMALL_ORDER_Y)
    # With the identity as key and R, and S = 0, every message "verifies" (OpenSSL accepts it).
    identity = b"\x01" + bytes(31)
    forged_key = {"kty": "OKP", "crv": "Ed25519", "x": _b64.encode(identity)}
    header = _b64.encode(
        json.dumps({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": forged_key}).encode()
    )
    payload = _b64.encode(
        json.dumps(
            {"jti": "j", "htm": "POST", "htu": "https://travel.example/book", "iat": NOW}
        ).encode()
    )
    proof = f"{header}.{payload}.{_b64.encode(identity + bytes(32))}"
    from handsign.dpop import DpopError, verify_proof

    with pytest.raises(DpopError, match="signature"):
        verify_proof(proof, method="POST", url="https://travel.example/book", now=NOW)
