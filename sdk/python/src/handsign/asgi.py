"""The verifier in front of ASGI applications: a middleware for any ASGI app, and a FastAPI
(Starlette) dependency.

Both check the route's action against the exact body bytes received, and hand the application
those same bytes afterwards, so what was verified is what the handler reads. A refused request
never reaches the handler, and a request the checks could not complete (keys or replay store
down) is refused with 503: nothing runs unchecked.
"""

import json
from typing import Any, Awaitable, Callable, Dict, List, Mapping, MutableMapping, Tuple

from .errors import ApprovalRefused, BodyTooLarge, InvalidBody
from .verify import Approved, Verifier, check_action

__all__ = ["ApprovalMiddleware", "SCOPE_KEY", "refusal_response", "require_approval"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SCOPE_KEY = "handsign.approved"
"""Where the middleware puts the `Approved` of a request it let through (in the ASGI scope)."""


def _request_path(scope: Scope) -> str:
    """The path the client addressed, before any mount stripped a prefix."""
    raw = scope.get("raw_path")
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw).decode("latin-1").split("?", 1)[0]
    return str(scope.get("root_path", "")) + str(scope["path"])


def _headers(scope: Scope) -> List[Tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])]


def _body_reader(receive: Receive) -> Callable[[int], Awaitable[bytes]]:
    async def read(limit: int) -> bytes:
        chunks: List[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise InvalidBody("the request body could not be read: the client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(
                    f"the request body is larger than this route's limit of {limit} bytes"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    return read


async def refusal_response(refusal: ApprovalRefused, send: Send) -> None:
    """Sends the refusal as the Rust middleware answers it."""
    body = json.dumps(refusal.body()).encode()
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in refusal.headers()]
    headers.append((b"content-type", b"application/json"))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ApprovalMiddleware:
    """Guards the routes in `routes` (`{("POST", "/flights/book"): "flights.book"}`, paths as
    the app sees them in `scope["path"]`): the app runs for them only with a token approving that action with exactly the request's body, and
    finds the `Approved` in `scope["handsign.approved"]`. Other routes pass untouched."""

    def __init__(
        self, app: ASGIApp, verifier: Verifier, routes: Mapping[Tuple[str, str], str]
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.routes: Dict[Tuple[str, str], str] = {
            (method.upper(), path): check_action(action)
            for (method, path), action in routes.items()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Matched on the decoded path the app routes on (so `/bo%6Fk` is `/book`); the DPoP proof
        # is checked against the path the client sent.
        method = scope["method"]
        # Frameworks answer HEAD with the GET handler, which then runs: guard it the same.
        action = self.routes.get(("GET" if method == "HEAD" else method, str(scope["path"])))
        if action is None:
            await self.app(scope, receive, send)
            return
        try:
            approved = await self.verifier.verify(
                action=action,
                method=scope["method"],
                path=_request_path(scope),
                headers=_headers(scope),
                body=_body_reader(receive),
            )
        except ApprovalRefused as refusal:
            await refusal_response(refusal, send)
            return
        scope[SCOPE_KEY] = approved
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": approved.body, "more_body": False}

        await self.app(scope, replay, send)


def require_approval(verifier: Verifier, action: str) -> Callable[..., Awaitable[Approved]]:
    """A FastAPI dependency: `approved: Approved = Depends(require_approval(verifier,
    "flights.book"))`. It reads the exact body bytes the route receives; a refusal is an
    `HTTPException` with the refusal's status, headers and `{"error", "message"}` as detail."""
    check_action(action)
    from fastapi import HTTPException, Request

    async def dependency(request: Request) -> Approved:
        async def read(limit: int) -> bytes:
            chunks: List[bytes] = []
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(
                        f"the request body is larger than this route's limit of {limit} bytes"
                    )
                chunks.append(chunk)
            body = b"".join(chunks)
            # The handler reads the very bytes that were verified.
            request._body = body
            return body

        try:
            return await verifier.verify(
                action=action,
                method=request.method,
                path=_request_path(request.scope),
                headers=_headers(request.scope),
                body=read,
            )
        except ApprovalRefused as refusal:
            raise HTTPException(
                status_code=refusal.status, detail=refusal.body(), headers=dict(refusal.headers())
            ) from None

    return dependency
