"""A wait that ends without a decision cancels the request at the real gateway: its timeout
passed, its asyncio task was cancelled, or Ctrl-C; unless the caller keeps it pending, and a
decision that arrives while cancelling wins."""

from __future__ import annotations

import asyncio
from typing import Callable, List

import httpx
import pytest
from handsign import AsyncClient, Cancelled, Client, Refused, TimedOut

from conftest import PARAMS, Gateway, Service

STOPPED_WAITING = "the agent stopped waiting for a decision"


def with_hook(gateway: Gateway, agent: Client, hook: Callable[[httpx.Request], None]) -> Client:
    """`agent`'s key, through an HTTP client that calls `hook` before each request goes out."""
    http = httpx.Client(timeout=httpx.Timeout(None, connect=10), event_hooks={"request": [hook]})
    return Client(gateway.url, agent.key, http=http)


def outcome_of(pending: object) -> BaseException:
    """The outcome a further wait reports: the request is final, so it is read at once."""
    try:
        pending.wait(timeout=0, keep_pending=True)  # type: ignore[attr-defined]
    except Exception as error:  # noqa: BLE001 (the outcome is the exception)
        return error
    raise AssertionError("the request was approved")


def test_a_wait_that_times_out_cancels_the_request(
    gateway: Gateway, agent: Client, service: Service
) -> None:
    pending = agent.request_approval("flights.book", PARAMS, service.url)
    with pytest.raises(TimedOut, match="cancelled"):
        pending.wait(timeout=0)
    outcome = outcome_of(pending)
    assert isinstance(outcome, Cancelled) and outcome.reason == STOPPED_WAITING, outcome
    # Cancelled, it can no longer be decided.
    refused = gateway.http.post(f"/approve/{pending.id}/options", json={"decision": "approve"})
    assert (refused.status_code, refused.json()["error"]) == (409, "not_pending")


def test_keep_pending_leaves_the_request_to_be_waited_on_again(
    gateway: Gateway, agent: Client, service: Service
) -> None:
    pending = agent.request_approval("flights.book", PARAMS, service.url)
    with pytest.raises(TimedOut, match="pending"):
        pending.wait(timeout=0, keep_pending=True)
    assert gateway.decide(pending.id, "approve").status_code == 200
    assert pending.wait(timeout=30).claims.approval == pending.id


def test_a_decision_that_arrives_while_cancelling_wins(
    gateway: Gateway, agent: Client, service: Service
) -> None:
    decided: List[str] = []

    def decide_before_the_cancel(request: httpx.Request) -> None:
        if request.url.path.endswith("/cancel"):
            request_id = request.url.path.split("/")[3]
            assert gateway.decide(request_id, "approve").status_code == 200
            decided.append(request_id)

    client = with_hook(gateway, agent, decide_before_the_cancel)
    pending = client.request_approval("flights.book", PARAMS, service.url)
    approval = pending.wait(timeout=0)
    assert decided == [pending.id] and approval.claims.approval == pending.id


def test_ctrl_c_during_a_wait_cancels_the_request(
    gateway: Gateway, agent: Client, service: Service
) -> None:
    interrupted: List[str] = []

    def interrupt_the_long_poll(request: httpx.Request) -> None:
        if request.method == "GET" and not interrupted:
            interrupted.append(request.url.path)
            raise KeyboardInterrupt  # as Python raises it on SIGINT, mid-call

    client = with_hook(gateway, agent, interrupt_the_long_poll)
    pending = client.request_approval("flights.book", PARAMS, service.url)
    with pytest.raises(KeyboardInterrupt):
        pending.wait()
    outcome = outcome_of(pending)
    assert isinstance(outcome, Cancelled) and outcome.reason == STOPPED_WAITING, outcome


def test_cancelling_the_waiting_task_cancels_the_request(
    gateway: Gateway, agent: Client, service: Service
) -> None:
    async def run() -> None:
        polling = asyncio.Event()

        async def note_the_long_poll(request: httpx.Request) -> None:
            if request.method == "GET":
                polling.set()

        http = httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=10), event_hooks={"request": [note_the_long_poll]}
        )
        async with AsyncClient(gateway.url, agent.key, http=http) as client:
            pending = await client.request_approval("flights.book", PARAMS, service.url)
            waiting = asyncio.create_task(pending.wait())
            await polling.wait()
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            with pytest.raises(Cancelled) as cancelled:
                await pending.wait(timeout=0, keep_pending=True)
            assert cancelled.value.reason == STOPPED_WAITING

            # asyncio's own timeouts cancel the task the same way.
            pending = await client.request_approval("flights.book", PARAMS, service.url)
            polling.clear()
            scopes: "List[asyncio.Timeout]" = []

            async def wait_in_a_timeout_scope() -> None:
                async with asyncio.timeout(None) as scope:
                    scopes.append(scope)
                    await pending.wait()

            waiting = asyncio.create_task(wait_in_a_timeout_scope())
            await polling.wait()
            scopes[0].reschedule(asyncio.get_running_loop().time())  # the timeout is due now
            with pytest.raises(TimeoutError):
                await waiting
            with pytest.raises(Cancelled):
                await pending.wait(timeout=0, keep_pending=True)

            # The agent may withdraw a request itself; then it is no longer pending.
            pending = await client.request_approval("flights.book", PARAMS, service.url)
            await pending.cancel("plans changed")
            with pytest.raises(Cancelled) as cancelled:
                await pending.wait(timeout=0)
            assert cancelled.value.reason == "plans changed"
            with pytest.raises(Refused) as refused:
                await pending.cancel()
            assert refused.value.code == "not_pending"

    asyncio.run(run())
