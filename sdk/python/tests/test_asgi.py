"""The ASGI middleware and the FastAPI dependency hand the handler the exact bytes verified,
answer refusals as the Rust middleware does, and the Redis store consumes a token once across
instances."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any, Dict, List

import httpx
import redis.asyncio
from fastapi import Depends, FastAPI, Request
from handsign import Approved, RedisReplayStore, _b64
from handsign.dpop import verify_proof
from handsign.asgi import SCOPE_KEY, ApprovalMiddleware, require_approval

from test_verify import BODY, NOW, Setup, claims, mint


def claims_jti(token: str) -> str:
    jti: str = json.loads(_b64.decode(token.split(".")[1]))["jti"]
    return jti


def seen_app(seen: List[bytes]) -> Any:
    async def app(scope: Dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        seen.append(message["body"])
        assert scope[SCOPE_KEY].claims.action == "flights.book"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"booked"})

    return app


async def post(app: Any, headers: Any, body: bytes = BODY) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://travel.example") as http:
        return await http.post("/book", content=body, headers=headers)


def test_middleware_runs_the_app_once_with_the_verified_bytes() -> None:
    s = Setup()
    seen: List[bytes] = []
    app = ApprovalMiddleware(seen_app(seen), s.verifier, {("POST", "/book"): "flights.book"})
    token = mint(s.gateway, claims(s.agent))
    response = asyncio.run(post(app, s.headers(token)))
    assert (response.status_code, response.text, seen) == (200, "booked", [BODY])
    again = asyncio.run(post(app, s.headers(token)))
    assert again.status_code == 401
    assert again.headers["www-authenticate"].startswith('Approval error="token_replayed"')
    assert again.json()["error"] == "token_replayed"
    other = asyncio.run(post(app, s.headers(mint(s.gateway, claims(s.agent))), b'{"to":"JFK"}'))
    assert other.json()["error"] == "params_mismatch"
    assert seen == [BODY]


def as_text(headers: Any) -> Any:
    return [(k, v) for k, v in headers if k != "content-type"] + [("content-type", "text/plain")]


def test_middleware_refuses_a_body_not_sent_as_json_and_keeps_the_token() -> None:
    s = Setup()
    seen: List[bytes] = []
    app = ApprovalMiddleware(seen_app(seen), s.verifier, {("POST", "/book"): "flights.book"})
    token = mint(s.gateway, claims(s.agent))
    refused = asyncio.run(post(app, as_text(s.headers(token))))
    assert (refused.status_code, refused.json()["error"]) == (415, "unsupported_media_type")
    assert "www-authenticate" not in refused.headers and seen == []
    assert asyncio.run(post(app, s.headers(token))).status_code == 200
    assert seen == [BODY]


def test_fastapi_dependency() -> None:
    s = Setup()
    api = FastAPI()

    @api.post("/book")
    async def book(
        request: Request, approved: Approved = Depends(require_approval(s.verifier, "flights.book"))
    ) -> Dict[str, Any]:
        return {"approval": approved.claims.approval, "body": (await request.body()).decode()}

    token = mint(s.gateway, claims(s.agent))
    response = asyncio.run(post(api, s.headers(token)))
    assert response.json() == {"approval": "req1", "body": BODY.decode()}
    again = asyncio.run(post(api, s.headers(token)))
    assert again.status_code == 401
    assert again.headers["www-authenticate"].startswith('Approval error="token_replayed"')
    fresh = mint(s.gateway, claims(s.agent))
    refused = asyncio.run(post(api, as_text(s.headers(fresh))))
    assert (refused.status_code, refused.json()["detail"]["error"]) == (
        415,
        "unsupported_media_type",
    )
    assert asyncio.run(post(api, s.headers(fresh))).status_code == 200, "the token was kept"


def test_redis_store_is_shared_and_fails_closed(redis_url: str) -> None:
    async def run() -> None:
        a, b = (
            RedisReplayStore.from_url(redis_url, "t:"),
            RedisReplayStore.from_url(redis_url, "t:"),
        )
        results = await asyncio.gather(
            *[store.consume("jti-1", NOW + 10**6) for store in (a, b) * 5]
        )
        assert sorted(results) == [False] * 9 + [True]
        assert a.records_since() is None
        # Redis outlives the process, so no token is refused for the service's start; a proof
        # accepted on one instance is refused on another, and kept until it is stale.
        s = Setup()
        s.verifier.replay_store = a
        token = mint(s.gateway, claims(s.agent))
        headers = s.headers(token)
        await s.verifier.verify(
            action="flights.book", method="POST", path="/book", headers=headers, body=BODY
        )
        s.verifier.replay_store = b  # another instance
        refusal: object = None
        try:
            await s.verifier.verify(
                action="flights.book", method="POST", path="/book", headers=headers, body=BODY
            )
        except Exception as error:
            refusal = error
        assert getattr(refusal, "code", None) == "dpop_replayed"
        proof = verify_proof(
            headers[1][1], method="POST", url="https://travel.example/book", now=NOW + 1
        )
        digest = hashlib.sha256(f"{proof.jkt}:{proof.jti}".encode()).digest()
        raw = redis.asyncio.Redis.from_url(redis_url)
        assert await raw.expiretime("t:dpop:" + _b64.encode(digest)) == proof.iat + 61
        assert await raw.expiretime("t:" + claims_jti(token)) == NOW + 30 + 5
        await raw.aclose()
        s = Setup()
        s.verifier.replay_store = RedisReplayStore.from_url("redis://127.0.0.1:1/0")
        token = mint(s.gateway, claims(s.agent))
        refusal = None
        try:
            await s.verifier.verify(
                action="flights.book",
                method="POST",
                path="/book",
                headers=s.headers(token),
                body=BODY,
            )
        except Exception as error:
            refusal = error
        assert getattr(refusal, "code", None) == "replay_store_unavailable"
        assert getattr(refusal, "status", None) == 503

    asyncio.run(run())


def test_middleware_guards_the_path_the_app_routes_on() -> None:
    """A percent-encoded spelling of a guarded path reaches the same route, so it is guarded."""
    s = Setup()
    seen: List[bytes] = []
    app = ApprovalMiddleware(seen_app(seen), s.verifier, {("POST", "/book"): "flights.book"})

    async def post_raw(path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="https://travel.example"
        ) as http:
            return await http.post(path, content=BODY)

    for path in ["/bo%6Fk", "/%62ook"]:
        response = asyncio.run(post_raw(path))
        assert response.status_code == 401, path
    assert seen == []
