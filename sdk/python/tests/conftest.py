"""Real parts for the tests: the `handsign` binary, a gateway process with a registered person,
and a redis-server process, each on a free loopback port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator

import httpx
import pytest
import uvicorn
from handsign import AgentKey, Client, MemoryReplayStore, Verifier
from handsign.asgi import SCOPE_KEY, ApprovalMiddleware

from softpasskey import SoftPasskey

REPO = Path(__file__).resolve().parents[3]

if os.environ.get("HANDSIGN_SDK_INSTALLED"):
    import handsign

    # The tests must exercise the built package, not the source tree.
    assert "site-packages" in handsign.__file__, handsign.__file__


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def until(what: str, condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Waits for a condition (polling), failing with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="session")
def handsign_bin() -> str:
    path = os.environ.get("HANDSIGN_BIN", str(REPO / "target" / "debug" / "handsign"))
    assert Path(path).is_file(), f"build the gateway first (cargo build --bin handsign): {path}"
    return path


class Gateway:
    """A `handsign serve` process with one person, alice, registered with a software passkey."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.dir = tempfile.TemporaryDirectory()
        self.data_dir = Path(self.dir.name) / "data"
        port = free_port()
        self.url = f"http://localhost:{port}"
        self.process = subprocess.Popen(
            [
                binary,
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
                "--public-url",
                self.url,
                "--data-dir",
                str(self.data_dir),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "HANDSIGN_LOG": "warn"},
        )
        printed = []
        assert self.process.stdout is not None
        for line in self.process.stdout:
            printed.append(line)
            if "listening on" in line:
                break
        assert printed and "listening on" in printed[-1], f"the gateway did not start: {printed}"
        code = next(l.split("/setup?code=")[1].strip() for l in printed if "/setup?code=" in l)
        self.http = httpx.Client(base_url=self.url, headers={"Origin": self.url}, timeout=30)
        self.passkey = SoftPasskey(self.url, "localhost")
        options = self.post("/webauthn/register/options", {"code": code, "user": "alice"})
        finished = self.http.post(
            "/webauthn/register/finish",
            json={
                "ceremony": options["ceremony"],
                "credential": self.passkey.register(options),
                "name": "test",
            },
        )
        assert finished.status_code == 201, finished.text

    def post(self, path: str, body: Dict[str, Any]) -> Dict[str, Any]:
        response = self.http.post(path, json=body)
        assert response.status_code == 200, response.text
        result: Dict[str, Any] = response.json()
        return result

    def add_agent(self, public_jwk: Dict[str, str], name: str = "test agent") -> None:
        subprocess.run(
            [
                self.binary,
                "agent",
                "add",
                "--name",
                name,
                "--user",
                "alice",
                "--key",
                json.dumps(public_jwk),
                "--data-dir",
                str(self.data_dir),
            ],
            check=True,
            capture_output=True,
        )

    def decide(self, request_id: str, decision: str) -> httpx.Response:
        """Alice decides with her passkey, as the approval page does."""
        options = self.post(f"/approve/{request_id}/options", {"decision": decision})
        return self.http.post(
            f"/approve/{request_id}",
            json={
                "decision": decision,
                "ceremony": options["ceremony"],
                "credential": self.passkey.assert_(options),
            },
        )

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        self.http.close()
        self.dir.cleanup()


@pytest.fixture(scope="module")
def gateway(handsign_bin: str) -> Iterator[Gateway]:
    gw = Gateway(handsign_bin)
    yield gw
    gw.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    until("redis-server", answers)
    yield f"redis://127.0.0.1:{port}/0"
    process.kill()
    process.wait()


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
            issuer=gateway.url,
            audience=audience or self.url,
            public_url=self.url,
            jwks_url=f"{gateway.url}/.well-known/jwks.json",
            clock=self.clock,
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
        self.server = uvicorn.Server(
            uvicorn.Config(guarded, host="127.0.0.1", port=port, log_level="warning")
        )
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
