"""The agent's side: ask the gateway for an approval, wait for the person's decision, and send
the token with a fresh DPoP proof to the service.

`Client` and `AsyncClient` share one protocol: each step is a generator that yields the HTTP
calls (and pauses) it needs and receives their answers, and each client only performs them.
Waiting is the gateway's long poll (`?wait=60`, repeated), answered the moment the request is
decided; nothing sleeps except between retries after a failure. Reads are retried on a broken
connection and on 502/503/504, always on the same request; creating a request is retried only
when the connection could not even be opened, so the person is never asked twice.

A wait that ends without a decision (its timeout passed, its task was cancelled, Ctrl-C) cancels
the request at the gateway, so that the person is not asked about something nobody waits for.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import (
    Any,
    Callable,
    Dict,
    Generator,
    Optional,
    TypeVar,
    Union,
    cast,
)
from urllib.parse import urlsplit

import httpx

from . import canonical
from .dpop import create_proof
from .errors import (
    ApprovalError,
    ApprovalExpired,
    BadAnswer,
    Cancelled,
    Denied,
    Refused,
    TimedOut,
    TokenAlreadyCollected,
    Unreachable,
)
from .keys import AgentKey
from .token import ApprovalClaims, read_claims_unverified

__all__ = [
    "Approval",
    "AsyncClient",
    "Client",
    "PendingApproval",
    "RetryPolicy",
    "requires_approval",
]

MAX_WAIT_SECS = 60
# The reason a request is cancelled with when its wait ends without a decision (as the Rust SDK).
_STOPPED_WAITING = "the agent stopped waiting for a decision"
_ANSWER_SLACK = 30.0
_CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed call is tried again."""

    attempts: int = 10
    first_backoff: float = 0.25
    max_backoff: float = 8.0

    def backoff(self, failures: int, retry_after: Optional[float]) -> float:
        doubled = self.first_backoff * float(2 ** max(failures - 1, 0))
        return min(max(doubled, retry_after or 0.0), self.max_backoff)


# --- the protocol, without I/O --------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    query: str
    body: Optional[bytes]
    hold: float


@dataclass(frozen=True)
class _Pause:
    seconds: float


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    retry_after: Optional[float]


@dataclass(frozen=True)
class _Broken:
    """No answer: `unsent` when the connection could not even be opened."""

    message: str
    unsent: bool


_Step = Union[_Call, _Pause]
_Flow = Generator[_Step, Union[_Answer, _Broken, None], Any]


def _refusal(answer: _Answer) -> Refused:
    try:
        parsed = json.loads(answer.body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        return Refused(answer.status, parsed["error"], str(parsed.get("message", "")))
    # Not the gateway's own error format: probably a proxy in front of it.
    text = answer.body.decode("utf-8", "replace")[:200]
    return Refused(answer.status, f"http_{answer.status}", text)


def _transient(outcome: Union[_Answer, _Broken]) -> bool:
    return isinstance(outcome, _Broken) or outcome.status in (502, 503, 504)


def _json(answer: _Answer) -> Dict[str, Any]:
    try:
        value = json.loads(answer.body)
    except ValueError as error:
        raise BadAnswer(f"a {answer.status} answer that is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise BadAnswer(f"a {answer.status} answer that is not a JSON object")
    return value


@dataclass(frozen=True)
class _Created:
    id: str
    approval_url: str
    params_sha256: str
    code: str
    expires_at: int


def _send_once_flow(path: str, body: Optional[bytes], retry: RetryPolicy) -> _Flow:
    """A POST that changes state, sent again only when the connection could not even be opened
    (so that it never happens twice); its answer."""
    failures = 0
    while True:
        outcome = yield _Call("POST", path, "", body, 0.0)
        assert outcome is not None
        if isinstance(outcome, _Answer):
            return outcome
        failures += 1
        if not outcome.unsent or failures >= retry.attempts:
            raise Unreachable(outcome.message)
        yield _Pause(retry.backoff(failures, None))


def _create_flow(body: bytes, local_hash: str, retry: RetryPolicy) -> _Flow:
    outcome = yield from _send_once_flow("/v1/approvals", body, retry)
    if outcome.status != 201:
        raise _refusal(outcome)
    answer = _json(outcome)
    try:
        created = _Created(
            id=str(answer["id"]),
            approval_url=str(answer["approval_url"]),
            params_sha256=str(answer["params_sha256"]),
            code=str(answer["code"]),
            expires_at=int(answer["expires_at"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise BadAnswer(f"the answer to a new request is incomplete: {error}") from None
    if created.params_sha256 != local_hash:
        raise BadAnswer(
            f"the gateway recorded params_sha256 {created.params_sha256} but the params sent "
            f"hash to {local_hash}; the request may have been altered on the way, so it is "
            "not waited on"
        )
    return created


def _decided(answer: Dict[str, Any], request_id: str) -> Optional[str]:
    """The token when approved, None while pending; raises for every other outcome."""
    if answer.get("id") != request_id:
        raise BadAnswer(
            f"asked about request {request_id}, the answer is about {answer.get('id')!r}"
        )
    status = answer.get("status")
    if status == "pending":
        return None
    if status == "approved":
        token = answer.get("token")
        if isinstance(token, str):
            return token
        if token is not None:
            raise BadAnswer("the token is not a string")
        if answer.get("token_delivered") is True:
            raise TokenAlreadyCollected(
                "the request was approved, but its token was already collected by an earlier "
                "read and is never returned twice; ask for a new approval"
            )
        raise BadAnswer("approved, but the token was neither delivered nor marked delivered")
    if status == "denied":
        raise Denied("the request was denied")
    if status == "expired":
        raise ApprovalExpired("the request expired before it was decided and collected")
    if status == "cancelled":
        reason = answer.get("reason")
        raise Cancelled(reason if isinstance(reason, str) else None)
    raise BadAnswer(f"unknown request status {status!r}")


def _wait_flow(
    created: _Created, deadline: Optional[float], retry: RetryPolicy, gateway: str
) -> _Flow:
    path = f"/v1/approvals/{created.id}"
    failures = 0
    last_failure: Optional[str] = None
    first = True
    while True:
        wait = MAX_WAIT_SECS
        if deadline is not None:
            wait = int(min(max(deadline - time.monotonic(), 0), MAX_WAIT_SECS))
        if wait == 0 and not first:
            if last_failure is not None:
                raise Unreachable(last_failure)
            raise TimedOut("no decision before the deadline; the request is still pending")
        first = False
        outcome = yield _Call("GET", path, f"?wait={wait}", None, float(wait))
        assert outcome is not None
        if isinstance(outcome, _Answer) and outcome.status == 200:
            try:
                token = _decided(_json(outcome), created.id)
            except BadAnswer as error:
                if "neither delivered" not in str(error):
                    raise
                failure = str(error)
            else:
                if token is not None:
                    return token
                failures, last_failure = 0, None
                continue
        elif _transient(outcome):
            failure = outcome.message if isinstance(outcome, _Broken) else str(_refusal(outcome))
        else:
            assert isinstance(outcome, _Answer)
            raise _refusal(outcome)
        failures += 1
        message = f"{failure} (reading request {created.id} at {gateway}, attempt {failures})"
        if failures >= retry.attempts:
            raise Unreachable(message)
        last_failure = message
        pause = retry.backoff(
            failures, outcome.retry_after if isinstance(outcome, _Answer) else None
        )
        if deadline is not None:
            pause = min(pause, max(deadline - time.monotonic(), 0))
        yield _Pause(pause)


def _cancel_flow(request_id: str, reason: Optional[str], retry: RetryPolicy) -> _Flow:
    """Withdraws the request."""
    body = None if reason is None else json.dumps({"reason": reason}).encode("utf-8")
    outcome = yield from _send_once_flow(f"/v1/approvals/{request_id}/cancel", body, retry)
    if outcome.status != 200:
        raise _refusal(outcome)
    answer = _json(outcome)
    if answer.get("id") != request_id or answer.get("status") != "cancelled":
        raise BadAnswer(
            f"asked to cancel request {request_id}, the answer says {answer.get('id')!r} "
            f"{answer.get('status')!r}"
        )


def _give_up_flow(created: _Created, retry: RetryPolicy, gateway: str) -> _Flow:
    """After the wait ran out: cancel the request, unless a decision came first; then that
    decision's outcome is the wait's."""
    try:
        yield from _cancel_flow(created.id, _STOPPED_WAITING, retry)
    except Refused as refused:
        if refused.code != "not_pending":
            raise
        return (yield from _wait_flow(created, time.monotonic(), retry, gateway))
    raise TimedOut("no decision before the deadline; the request was cancelled")


# --- what the agent holds -------------------------------------------------------------------


class Approval:
    """An approved request: the token (good once, for 30 seconds) and its claims."""

    def __init__(self, token: str, claims: ApprovalClaims) -> None:
        self.token = token
        self.claims = claims

    def __repr__(self) -> str:
        return f"Approval(approval={self.claims.approval!r}, action={self.claims.action!r})"


def _approval(token: str, created: _Created, agent_id: str) -> Approval:
    try:
        claims = read_claims_unverified(token)
    except Exception as error:
        raise BadAnswer(f"the token cannot be read: {error}") from None
    if claims.approval != created.id:
        raise BadAnswer(f"the token is for request {claims.approval}")
    if claims.params_sha256 != created.params_sha256:
        raise BadAnswer("the token approves other params than those asked for")
    if claims.jkt is not None and claims.jkt != agent_id:
        raise BadAnswer("the token is bound to another agent's key")
    return Approval(token, claims)


class _PendingBase:
    def __init__(self, created: _Created) -> None:
        self._created = created
        self.id = created.id
        self.approval_url = created.approval_url
        self.code = created.code
        self.expires_at = created.expires_at
        self.params_sha256 = created.params_sha256

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, code={self.code!r})"


class PendingApproval(_PendingBase):
    """A request waiting for the person: show `approval_url` and `code` to them."""

    def __init__(self, client: "Client", created: _Created) -> None:
        super().__init__(created)
        self._client = client

    def wait(self, timeout: Optional[float] = None, *, keep_pending: bool = False) -> Approval:
        """The approval, or the `ApprovalError` subclass of the outcome. When `timeout` seconds
        pass first, the request is cancelled and `TimedOut` raised (a decision that arrives
        meanwhile wins); with `keep_pending`, it stays pending, to be waited on again. Ctrl-C
        (`KeyboardInterrupt`) cancels it too."""
        client = self._client
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            try:
                token = client._run(
                    _wait_flow(self._created, deadline, client.retry, client.gateway_url)
                )
            except TimedOut:
                if keep_pending:
                    raise
                token = client._run(
                    _give_up_flow(self._created, client.retry, client.gateway_url)
                )
        except KeyboardInterrupt:
            try:
                self.cancel(_STOPPED_WAITING)
            except ApprovalError:
                pass  # decided meanwhile, or unreachable: the interruption is what is reported
            raise
        return _approval(token, self._created, client.agent_id)

    def cancel(self, reason: Optional[str] = None) -> None:
        """Withdraws the request: the person is no longer asked, and it can never be approved
        nor yield a token. A request no longer pending is `Refused` with `not_pending`."""
        self._client._run(_cancel_flow(self.id, reason, self._client.retry))


class AsyncPendingApproval(_PendingBase):
    """`PendingApproval` for `AsyncClient`."""

    def __init__(self, client: "AsyncClient", created: _Created) -> None:
        super().__init__(created)
        self._client = client

    async def wait(
        self, timeout: Optional[float] = None, *, keep_pending: bool = False
    ) -> Approval:
        """As `PendingApproval.wait`; cancelling the task that waits (`task.cancel()`,
        `asyncio.timeout`, `asyncio.wait_for`) cancels the request before `CancelledError`
        goes on."""
        client = self._client
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            try:
                token = await client._run(
                    _wait_flow(self._created, deadline, client.retry, client.gateway_url)
                )
            except TimedOut:
                if keep_pending:
                    raise
                token = await client._run(
                    _give_up_flow(self._created, client.retry, client.gateway_url)
                )
        except asyncio.CancelledError:
            try:
                await self.cancel(_STOPPED_WAITING)
            except ApprovalError:
                pass  # decided meanwhile, or unreachable: the cancellation is what is reported
            raise
        return _approval(token, self._created, client.agent_id)

    async def cancel(self, reason: Optional[str] = None) -> None:
        """As `PendingApproval.cancel`."""
        await self._client._run(_cancel_flow(self.id, reason, self._client.retry))


class _ApprovalAuth(httpx.Auth):
    """`Authorization: Approval <token>` and a fresh DPoP proof (with `ath`) per request."""

    def __init__(self, key: AgentKey, token: str) -> None:
        self._key = key
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        url = str(request.url.copy_with(query=None, fragment=None))
        request.headers["Authorization"] = f"Approval {self._token}"
        request.headers["DPoP"] = create_proof(
            self._key, request.method, url, int(time.time()), self._token
        )
        yield request


class _ClientBase:
    def __init__(
        self,
        gateway_url: str,
        key: Union[AgentKey, str, Path],
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        parts = urlsplit(gateway_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"invalid gateway URL {gateway_url!r}: the scheme must be http or https (expected "
                "e.g. https://handsign.example.com)"
            )
        if parts.query or parts.fragment:
            raise ValueError(
                f"invalid gateway URL {gateway_url!r}: a gateway URL has no query or fragment"
            )
        self.gateway_url = gateway_url.rstrip("/")
        self.key = key if isinstance(key, AgentKey) else AgentKey.load_or_create(key)
        self.agent_id = self.key.id
        self.retry = retry

    def _request_body(
        self,
        action: str,
        params: Any,
        audience: str,
        user: Optional[str],
        message: Optional[str],
        ttl: Optional[int],
    ) -> "tuple[bytes, str]":
        # Generous limits: the gateway enforces its own; this recomputes the hash it must report.
        params_text = canonical.canonicalize_value(
            params, canonical.Limits(max_bytes=64 * 1024 * 1024, max_depth=128)
        )
        members = [
            f'"action":{json.dumps(action)}',
            f'"params":{params_text.decode("utf-8")}',
            f'"audience":{json.dumps(audience)}',
        ]
        for name, value in (("user", user), ("message", message), ("ttl", ttl)):
            if value is not None:
                members.append(f"{json.dumps(name)}:{json.dumps(value)}")
        return ("{" + ",".join(members) + "}").encode("utf-8"), canonical.params_sha256(params_text)

    def _prepare(self, call: _Call) -> "tuple[str, Dict[str, str], float]":
        url = self.gateway_url + call.path
        headers = {"DPoP": create_proof(self.key, call.method, url, int(time.time()))}
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        return url + call.query, headers, call.hold + _ANSWER_SLACK

    def auth(self, approval: Union[Approval, str]) -> httpx.Auth:
        """An `httpx` auth that sends the approval's token with a fresh DPoP proof on each
        request: `httpx.post(url, content=body, auth=client.auth(approval))`."""
        token = approval.token if isinstance(approval, Approval) else approval
        return _ApprovalAuth(self.key, token)


def _outcome_of(error: httpx.HTTPError) -> _Broken:
    unsent = isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout))
    return _Broken(f"{type(error).__name__}: {error}", unsent)


def _answer_of(response: httpx.Response) -> _Answer:
    retry_after = response.headers.get("retry-after", "").strip()
    return _Answer(
        response.status_code,
        response.content,
        float(retry_after) if retry_after.isdigit() else None,
    )


class Client(_ClientBase):
    """One gateway and one agent key. `key` is an `AgentKey` or the path of its private JWK
    file (created owner-only on first use; the same format as the Rust SDK and the CLI)."""

    def __init__(
        self,
        gateway_url: str,
        key: Union[AgentKey, str, Path],
        retry: RetryPolicy = RetryPolicy(),
        http: Optional[httpx.Client] = None,
    ) -> None:
        super().__init__(gateway_url, key, retry)
        self._http = http or httpx.Client(timeout=httpx.Timeout(None, connect=_CONNECT_TIMEOUT))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, flow: _Flow) -> Any:
        outcome: Union[_Answer, _Broken, None] = None
        try:
            while True:
                step = flow.send(outcome)
                if isinstance(step, _Pause):
                    time.sleep(step.seconds)
                    outcome = None
                    continue
                url, headers, timeout = self._prepare(step)
                try:
                    response = self._http.request(
                        step.method, url, headers=headers, content=step.body, timeout=timeout
                    )
                    outcome = _answer_of(response)
                except httpx.HTTPError as error:
                    outcome = _outcome_of(error)
        except StopIteration as done:
            return done.value

    def request_approval(
        self,
        action: str,
        params: Any,
        audience: str,
        user: Optional[str] = None,
        message: Optional[str] = None,
        ttl: Optional[int] = None,
    ) -> PendingApproval:
        """Asks for `action` with exactly `params` for the service `audience`; returns at once
        with the approval link and match code."""
        body, local_hash = self._request_body(action, params, audience, user, message, ttl)
        created = self._run(_create_flow(body, local_hash, self.retry))
        return PendingApproval(self, created)


class AsyncClient(_ClientBase):
    """`Client` for asyncio."""

    def __init__(
        self,
        gateway_url: str,
        key: Union[AgentKey, str, Path],
        retry: RetryPolicy = RetryPolicy(),
        http: Optional[httpx.AsyncClient] = None,
    ) -> None:
        super().__init__(gateway_url, key, retry)
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=_CONNECT_TIMEOUT)
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self, flow: _Flow) -> Any:
        outcome: Union[_Answer, _Broken, None] = None
        try:
            while True:
                step = flow.send(outcome)
                if isinstance(step, _Pause):
                    await asyncio.sleep(step.seconds)
                    outcome = None
                    continue
                url, headers, timeout = self._prepare(step)
                try:
                    response = await self._http.request(
                        step.method, url, headers=headers, content=step.body, timeout=timeout
                    )
                    outcome = _answer_of(response)
                except httpx.HTTPError as error:
                    outcome = _outcome_of(error)
        except StopIteration as done:
            return done.value

    async def request_approval(
        self,
        action: str,
        params: Any,
        audience: str,
        user: Optional[str] = None,
        message: Optional[str] = None,
        ttl: Optional[int] = None,
    ) -> AsyncPendingApproval:
        body, local_hash = self._request_body(action, params, audience, user, message, ttl)
        created = await self._run(_create_flow(body, local_hash, self.retry))
        return AsyncPendingApproval(self, created)


F = TypeVar("F", bound=Callable[..., Any])


def requires_approval(
    client: Union[Client, AsyncClient],
    *,
    action: str,
    audience: str,
    user: Optional[str] = None,
    message: Optional[str] = None,
    timeout: Optional[float] = None,
) -> Callable[[F], F]:
    """Runs the decorated function only once the person approved `action` with the function's
    bound arguments as params; the function receives the `Approval` as its `approval` keyword
    argument. A denial or any other outcome raises the `ApprovalError` subclass instead."""

    def decorate(function: F) -> F:
        signature = inspect.signature(function)
        if "approval" not in signature.parameters:
            raise TypeError(f"{function.__name__} must take an 'approval' keyword argument")

        def params_of(args: Any, kwargs: Any) -> Dict[str, Any]:
            bound = signature.bind_partial(*args, **kwargs)
            bound.apply_defaults()
            return {k: v for k, v in bound.arguments.items() if k != "approval"}

        if inspect.iscoroutinefunction(function):
            if not isinstance(client, AsyncClient):
                raise TypeError("an async function needs an AsyncClient")

            @functools.wraps(function)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                pending = await client.request_approval(
                    action, params_of(args, kwargs), audience, user=user, message=message
                )
                approval = await pending.wait(timeout)
                return await function(*args, **kwargs, approval=approval)

            return cast(F, run_async)
        if not isinstance(client, Client):
            raise TypeError("a plain function needs a Client")

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            pending = client.request_approval(
                action, params_of(args, kwargs), audience, user=user, message=message
            )
            return function(*args, **kwargs, approval=pending.wait(timeout))

        return cast(F, run)

    return decorate
