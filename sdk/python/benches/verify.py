"""Service-side verification per request against its floor in Python.

SDK: `Verifier.verify` with a fixed key set and the in-memory replay store (header checks, params
canonicalized from the 1 KiB body and hashed, the token, the DPoP proof, the jti consumed).
Floor: PyJWT decoding and verifying the token (issuer, audience, EdDSA) plus `cryptography`
verifying the DPoP proof's signature under its embedded key. Each request presents a fresh token
and proof made before timing; the two alternate request by request.

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

    async def sdk(token: str, proof: str) -> None:
        await verifier.verify(action="flights.book", method="POST", path="/book",
                              headers=[("authorization", f"Approval {token}"), ("dpop", proof),
                                       ("content-type", "application/json")],
                              body=BODY)

    async def floor(token: str, proof: str) -> None:
        jwt.decode(token, gateway_key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER)
        parsed = _jws.CompactJws(proof)
        key = Ed25519PublicKey.from_public_bytes(_b64.decode(parsed.header()["jwk"]["x"]))
        key.verify(parsed.signature, parsed.signing_input)

    async def rounds() -> "dict[str, list[float]]":
        # The variants alternate request by request, so that the load of a shared machine falls
        # on both alike; one untimed round first.
        results: "dict[str, list[float]]" = {"floor": [], "sdk": []}
        for round_ in range(ROUNDS + 1):
            batch = requests(gateway, agent, 2 * PER_ROUND)
            spent = {"floor": 0.0, "sdk": 0.0}
            for i, (token, proof) in enumerate(batch):
                name, run = ("floor", floor) if i % 2 == 0 else ("sdk", sdk)
                started = time.perf_counter()
                await run(token, proof)
                spent[name] += time.perf_counter() - started
            if round_:
                for name in spent:
                    results[name].append(spent[name] / PER_ROUND * 1e6)
        return results

    results = asyncio.run(rounds())
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
