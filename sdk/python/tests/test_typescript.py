"""The TypeScript SDK against the same gateway: a TypeScript agent calls a TypeScript service
(then the refusals), a Python agent calls the TypeScript service, and a TypeScript agent calls
the Python service. The TypeScript package is the one `sdk/typescript/test.sh` packed and
installed into a clean folder; one agent key file is shared by both SDKs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterator, List

import httpx
import pytest
from handsign import AgentKey, Client

from conftest import PARAMS, REPO, Gateway, Service

TS_DIR = Path(
    os.environ.get("HANDSIGN_TS_DIR", REPO / "target" / "test-env" / "sdk-typescript-clean")
)
BODY = json.dumps(PARAMS)
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def ts_dir() -> Path:
    assert (TS_DIR / "node_modules" / "handsign").is_dir(), (
        f"no installed TypeScript package in {TS_DIR}: run sdk/typescript/test.sh first"
    )
    return TS_DIR


class TsService:
    def __init__(self, ts_dir: Path, gateway: Gateway, audience: str = "") -> None:
        self.process = subprocess.Popen(
            ["node", str(ts_dir / "e2e" / "service.mjs")],
            cwd=ts_dir,
            text=True,
            stdout=subprocess.PIPE,
            env={**os.environ, "ISSUER": gateway.url, "AUDIENCE": audience},
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("listening "), line
        self.url = line.split()[1]

    def set_clock_offset(self, seconds: int) -> None:
        httpx.post(f"{self.url}/clock?offset={seconds}").raise_for_status()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture(scope="module")
def ts_service(ts_dir: Path, gateway: Gateway) -> Iterator[TsService]:
    started = TsService(ts_dir, gateway)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def key_file(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A key written by the Python SDK, used by the TypeScript agent."""
    path = tmp_path_factory.mktemp("ts-agent") / "agent.jwk"
    key = AgentKey.load_or_create(path)
    gateway.add_agent(key.public_jwk(), name="typescript agent")
    return path


def ts_agent(
    ts_dir: Path,
    gateway: Gateway,
    key_file: Path,
    service_url: str,
    calls: List[Dict[str, Any]],
    decision: str = "approve",
) -> List[Dict[str, Any]]:
    """Runs the TypeScript agent; alice decides once it has printed the request."""
    process = subprocess.Popen(
        [
            "node",
            str(ts_dir / "e2e" / "agent.mjs"),
            gateway.url,
            str(key_file),
            service_url,
            BODY,
            json.dumps(calls),
        ],
        cwd=ts_dir,
        text=True,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    created = json.loads(process.stdout.readline())
    assert created["approval_url"].startswith(gateway.url) and len(created["code"]) == 7
    assert gateway.decide(created["id"], decision).status_code == 200
    results = [json.loads(line) for line in process.stdout]
    assert process.wait(timeout=60) == 0
    return results


def test_typescript_agent_calls_the_typescript_service(
    ts_dir: Path, gateway: Gateway, key_file: Path, ts_service: TsService
) -> None:
    results = ts_agent(ts_dir, gateway, key_file, ts_service.url, [{"body": BODY}, {"body": BODY}])
    assert [r["status"] for r in results] == [200, 401]
    assert results[1]["error"] == "token_replayed"


def test_typescript_refusals(
    ts_dir: Path, gateway: Gateway, key_file: Path, ts_service: TsService
) -> None:
    other = json.dumps({**PARAMS, "price": 4205})
    errors = lambda calls, url=ts_service.url: [  # noqa: E731
        r["error"] for r in ts_agent(ts_dir, gateway, key_file, url, calls)
    ]
    assert errors([{"body": other}, {"body": BODY}]) == ["params_mismatch", None]
    assert errors([{"body": BODY, "thief": True}, {"body": BODY}]) == ["dpop_key_mismatch", None]
    elsewhere = TsService(ts_dir, gateway, audience="https://other.example")
    try:
        assert errors([{"body": BODY}], elsewhere.url) == ["wrong_audience"]
    finally:
        elsewhere.stop()
    ts_service.set_clock_offset(40)
    try:
        assert errors([{"body": BODY}]) == ["expired"]
    finally:
        ts_service.set_clock_offset(0)
    denied = ts_agent(ts_dir, gateway, key_file, ts_service.url, [], decision="deny")
    assert denied == [{"outcome": "denied"}]


def test_python_agent_calls_the_typescript_service(
    gateway: Gateway, agent: Client, ts_service: TsService
) -> None:
    pending = agent.request_approval("flights.book", PARAMS, ts_service.url)
    assert gateway.decide(pending.id, "approve").status_code == 200
    approval = pending.wait(timeout=30)
    response = httpx.post(f"{ts_service.url}/book", content=BODY, auth=agent.auth(approval), headers=JSON)
    assert (response.status_code, response.text) == (200, pending.id)
    again = httpx.post(f"{ts_service.url}/book", content=BODY, auth=agent.auth(approval), headers=JSON)
    assert again.json()["error"] == "token_replayed"


def test_typescript_agent_calls_the_python_service(
    ts_dir: Path, gateway: Gateway, key_file: Path, service: Service
) -> None:
    results = ts_agent(ts_dir, gateway, key_file, service.url, [{"body": BODY}, {"body": BODY}])
    assert [r["status"] for r in results] == [200, 401]
    assert results[1]["error"] == "token_replayed"
    assert service.booked[-1] == BODY.encode()
