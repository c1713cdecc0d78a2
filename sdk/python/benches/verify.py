"""Service-side verification per request against its floor in Python.

SDK: `Verifier.verify` with a fixed key set and the in-memory replay store (header checks, params
canonicalized from the 1 KiB body and hashed, the token, the DPoP proof, the jti consumed).
Floor: PyJWT decoding and verifying the token (issuer, audience, EdDSA) plus `cryptography`
verifying the DPoP proof's signature under its embedded key. Each request presents a fresh token
and proof made before timing; interleaved rounds.

Run: python benches/verify.py (with handsign, PyJWT and cryptography installed).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable, List, Tuple

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from handsign import AgentKey, KeySet, MemoryReplayStore, Verifier, _b64, _jws
from handsign.canonical import canonicalize, params_sha256
from handsign.dpop import create_proof

ROOT = Path(__file__).resolve().parents[3]
BODY = (ROOT / "crates/handsign-protocol/benches/params_1k.json").read_bytes()
ISSUER, AUDIENCE, URL = "https://gw.example", "https://travel.example", "https://travel.example/book"
ROUNDS, PER_ROUND = 10, 500


def requests(gateway: AgentKey, agent: AgentKey, n: int) -> List[Tuple[str, str]]:
    now = int(time.time())
    out = []
    for _ in range(n):
        claims = {
            "iss": ISSUER, "sub": "alice", "aud": AUDIENCE, "act": {"sub": agent.id},
            "action": "flights.book", "params_sha256": params_sha256(canonicalize(BODY)),
            "approval": "req", "jti": _b64.encode(os.urandom(16)), "iat": now, "nbf": now,
            "exp": now + 30, "cnf": {"jkt": agent.id},
        }
        header = {"alg": "EdDSA", "typ": "handsign-approval+jwt", "kid": gateway.id}
        token = _jws.sign(gateway, header, claims)
        out.append((token, create_proof(agent, "POST", URL, now, token)))
    return out


def main() -> None:
    gateway, agent = AgentKey.generate(), AgentKey.generate()
    verifier = Verifier(issuer=ISSUER, audience=AUDIENCE, public_url=AUDIENCE,
                        keys=KeySet.of([gateway.raw_public]),
                        replay_store=MemoryReplayStore(lambda: time.time() - 60))
    gateway_key = Ed25519PublicKey.from_public_bytes(gateway.raw_public)

    async def sdk(batch: List[Tuple[str, str]]) -> None:
        for token, proof in batch:
            await verifier.verify(action="flights.book", method="POST", path="/book",
                                  headers=[("authorization", f"Approval {token}"), ("dpop", proof)],
                                  body=BODY)

    async def floor(batch: List[Tuple[str, str]]) -> None:
        for token, proof in batch:
            jwt.decode(token, gateway_key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER)
            parsed = _jws.CompactJws(proof)
            key = Ed25519PublicKey.from_public_bytes(_b64.decode(parsed.header()["jwk"]["x"]))
            key.verify(parsed.signature, parsed.signing_input)

    results = {"floor": [], "sdk": []}  # type: dict[str, list[float]]
    for run in (floor, sdk):  # one untimed round of each first
        asyncio.run(run(requests(gateway, agent, PER_ROUND)))
    for _ in range(ROUNDS):
        for name, run in (("floor", floor), ("sdk", sdk)):
            batch = requests(gateway, agent, PER_ROUND)
            started = time.perf_counter()
            asyncio.run(run(batch))
            results[name].append((time.perf_counter() - started) / PER_ROUND * 1e6)
    f, s = statistics.median(results["floor"]), statistics.median(results["sdk"])
    print(
        json.dumps(
            {
                "body_bytes": len(BODY),
                "floor_us": round(f, 1),
                "sdk_us": round(s, 1),
                "ratio": round(s / f, 2),
                "floor_min_us": round(min(results["floor"]), 1),
                "sdk_min_us": round(min(results["sdk"]), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
