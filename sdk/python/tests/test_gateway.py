"""End to end against a real gateway: the Python agent asks, alice approves with a software
passkey, and a Python service (the ASGI middleware under uvicorn) verifies; then the refusals."""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any

import httpx
import pytest
from handsign import (
    AgentKey,
    AsyncClient,
    CanonicalError,
    Client,
    Denied,
    Refused,
    requires_approval,
)

from conftest import PARAMS, Gateway, Service


def approved(gateway: Gateway, agent: Client, service: Service, params: Any = PARAMS) -> Any:
    pending = agent.request_approval("flights.book", params, service.url, message="Book it")
    assert pending.approval_url.startswith(gateway.url) and len(pending.code) == 7
    assert gateway.decide(pending.id, "approve").status_code == 200
    return pending.wait(timeout=30)


def book(service: Service, agent: Client, approval: Any, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{service.url}/book",
        content=body,
        auth=agent.auth(approval),
        headers={"content-type": "application/json"},
    )


def error(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    code: str = response.json()["error"]
    assert response.headers["www-authenticate"].startswith(f'Approval error="{code}"')
    return code


def test_approve_then_call_the_service_once(
    gateway: Gateway, agent: Client, service: Service
) -> None:
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
    assert (
        error(book(service, agent, approved(gateway, agent, service), other_params))
        == "params_mismatch"
    )
    thief = Client(gateway.url, AgentKey.generate())
    assert (
        error(book(service, thief, approved(gateway, agent, service), body)) == "dpop_key_mismatch"
    )
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
    assert book(service, agent, approval, body).status_code == 200, (
        "refusals leave the token unused"
    )
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
    def book_flight(
        flight: str, date: str, price: float, seats: "list[int]", *, approval: Any
    ) -> int:
        return book(
            service, agent, approval, json_of(flight=flight, date=date, price=price, seats=seats)
        ).status_code

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
                response = await http.post(
                    f"{service.url}/book",
                    content=json_of(**PARAMS),
                    auth=client.auth(approval),
                    headers={"content-type": "application/json"},
                )
            assert response.status_code == 200

    asyncio.run(run())


def json_of(**params: Any) -> bytes:
    import json

    return json.dumps(params).encode()


def test_timeouts_and_revocation(gateway: Gateway, service: Service) -> None:
    import subprocess

    from handsign import TimedOut

    key = AgentKey.generate()
    gateway.add_agent(key.public_jwk(), name="short-lived agent")
    client = Client(gateway.url, key)
    pending = client.request_approval("flights.book", PARAMS, service.url)
    with pytest.raises(TimedOut):
        pending.wait(timeout=0, keep_pending=True)  # still pending, to be waited on again
    subprocess.run(
        [gateway.binary, "agent", "revoke", key.id, "--data-dir", str(gateway.data_dir)],
        check=True,
        capture_output=True,
    )
    with pytest.raises(Refused) as refused:
        pending.wait(timeout=5)
    assert refused.value.code == "agent_revoked"
