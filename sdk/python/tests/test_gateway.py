"""End to end against a real gateway: the Python agent asks, alice approves with a software
passkey, and a Python service (the ASGI middleware under uvicorn) verifies; then the refusals."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import Any, Dict, Iterator, Tuple

import httpx
import pytest
import uvicorn

from conftest import Gateway, free_port, until
from handsign import (
    AgentKey,
    AsyncClient,
    CanonicalError,
    Client,
    Denied,
    MemoryReplayStore,
    Refused,
    Verifier,
    requires_approval,
)
from handsign.asgi import SCOPE_KEY, ApprovalMiddleware

PARAMS = {"flight": "LIS-JFK", "date": "2026-12-24", "price": 420.5, "seats": [1, 2]}


class Clock:
    offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Service:
    """A service that books flights, behind the middleware, on its own port."""

    def __init__(self, gateway: Gateway, audience: str = "") -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.clock = Clock()
        self.verifier = Verifier(
            issuer=gateway.url, audience=audience or self.url, public_url=self.url,
            jwks_url=f"{gateway.url}/.well-known/jwks.json", clock=self.clock,
            # A service that started a while ago: a fresh memory store refuses every token that
            # could have been accepted before it started (nbf up to the skew after its start).
            replay_store=MemoryReplayStore(lambda: time.time() - 10),
        )
        self.booked: "list[bytes]" = []

        async def app(scope: Dict[str, Any], receive: Any, send: Any) -> None:
            body = (await receive())["body"]
            self.booked.append(body)
            approval = scope[SCOPE_KEY].claims.approval.encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": approval})

        guarded = ApprovalMiddleware(app, self.verifier, {("POST", "/book"): "flights.book"})
        self.server = uvicorn.Server(uvicorn.Config(guarded, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        until("the service to listen", lambda: self.server.started)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join()


@pytest.fixture(scope="module")
def agent(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    key_path = tmp_path_factory.mktemp("agent") / "agent.jwk"
    client = Client(gateway.url, key_path)
    assert (key_path.stat().st_mode & 0o777) == 0o600
    assert AgentKey.load(key_path).id == client.agent_id
    gateway.add_agent(client.key.public_jwk())
    yield client
    client.close()


@pytest.fixture(scope="module")
def service(gateway: Gateway) -> Iterator[Service]:
    s = Service(gateway)
    yield s
    s.stop()


def approved(gateway: Gateway, agent: Client, service: Service, params: Any = PARAMS) -> Any:
    pending = agent.request_approval("flights.book", params, service.url, message="Book it")
    assert pending.approval_url.startswith(gateway.url) and len(pending.code) == 7
    assert gateway.decide(pending.id, "approve").status_code == 200
    return pending.wait(timeout=30)


def book(service: Service, agent: Client, approval: Any, body: bytes) -> httpx.Response:
    return httpx.post(f"{service.url}/book", content=body, auth=agent.auth(approval),
                      headers={"content-type": "application/json"})


def error(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    code: str = response.json()["error"]
    assert response.headers["www-authenticate"].startswith(f'Approval error="{code}"')
    return code


def test_approve_then_call_the_service_once(gateway: Gateway, agent: Client, service: Service) -> None:
    approval = approved(gateway, agent, service)
    assert approval.claims.jkt == agent.agent_id
    body = b'{"seats":[1,2],"price":420.50,"date":"2026-12-24","flight":"LIS-JFK"}'
    response = book(service, agent, approval, body)
    assert (response.status_code, response.text) == (200, approval.claims.approval)
    assert service.booked[-1] == body
    assert error(book(service, agent, approval, body)) == "token_replayed"


def test_refusals(gateway: Gateway, agent: Client, service: Service) -> None:
    import json

    body = json.dumps(PARAMS).encode()
    other_params = json.dumps({**PARAMS, "price": 4205}).encode()
    assert error(book(service, agent, approved(gateway, agent, service), other_params)) == "params_mismatch"
    thief = Client(gateway.url, AgentKey.generate())
    assert error(book(service, thief, approved(gateway, agent, service), body)) == "dpop_key_mismatch"
    elsewhere = Service(gateway, audience="https://other.example")
    try:
        approval = approved(gateway, agent, service)
        assert error(book(elsewhere, agent, approval, body)) == "wrong_audience"
    finally:
        elsewhere.stop()
    approval = approved(gateway, agent, service)
    service.clock.offset = 40
    try:
        assert error(book(service, agent, approval, body)) == "expired"
    finally:
        service.clock.offset = 0
    count = len(service.booked)
    assert book(service, agent, approval, body).status_code == 200, "refusals leave the token unused"
    assert len(service.booked) == count + 1


def test_outcomes_are_typed(gateway: Gateway, agent: Client, service: Service) -> None:
    pending = agent.request_approval("flights.book", PARAMS, service.url)
    assert gateway.decide(pending.id, "deny").status_code == 200
    with pytest.raises(Denied):
        pending.wait()
    with pytest.raises(CanonicalError):
        agent.request_approval("flights.book", {"amount": 2**60}, service.url)
    with pytest.raises(Refused) as refused:
        agent.request_approval("handsign.agent.enroll", {}, service.url)
    assert refused.value.status == 400 and refused.value.code
    stranger = Client(gateway.url, AgentKey.generate())
    with pytest.raises(Refused) as refused:
        stranger.request_approval("flights.book", PARAMS, service.url)
    assert refused.value.code == "unknown_agent"


def test_async_client_and_the_decorator(gateway: Gateway, agent: Client, service: Service) -> None:
    created: "queue.Queue[str]" = queue.Queue()
    original = agent.request_approval

    def spy(*args: Any, **kwargs: Any) -> Any:
        pending = original(*args, **kwargs)
        created.put(pending.id)
        return pending

    agent.request_approval = spy  # type: ignore[method-assign]
    decider = threading.Thread(target=lambda: gateway.decide(created.get(timeout=30), "approve"))
    decider.start()

    @requires_approval(agent, action="flights.book", audience=service.url)
    def book_flight(flight: str, date: str, price: float, seats: "list[int]", *, approval: Any) -> int:
        return book(service, agent, approval, json_of(flight=flight, date=date, price=price, seats=seats)).status_code

    try:
        assert book_flight("LIS-JFK", "2026-12-24", 420.5, [1, 2]) == 200
    finally:
        decider.join()
        del agent.request_approval

    async def run() -> None:
        async with AsyncClient(gateway.url, agent.key) as client:
            pending = await client.request_approval("flights.book", PARAMS, service.url)
            await asyncio.to_thread(gateway.decide, pending.id, "approve")
            approval = await pending.wait(timeout=30)
            async with httpx.AsyncClient() as http:
                response = await http.post(f"{service.url}/book", content=json_of(**PARAMS), auth=client.auth(approval))
            assert response.status_code == 200

    asyncio.run(run())


def json_of(**params: Any) -> bytes:
    import json

    return json.dumps(params).encode()
