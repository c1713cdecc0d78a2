// Service-side verification per request against its floor in TypeScript.
//
// SDK: Verifier.verify with a fixed key set and the in-memory replay store (header checks,
// params canonicalized from the 1 KiB body and hashed, the token, the DPoP proof, the jti
// consumed). Floor: jose verifying the token (jwtVerify: issuer, audience, EdDSA) and the DPoP
// proof under its embedded key (EmbeddedJWK). Each request presents a fresh token and proof made
// before timing; the two alternate request by request. Run after `npm run build`: node bench/verify.mjs
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { EmbeddedJWK, importJWK, jwtVerify } from "jose";
import { AgentKey, KeySet, MemoryReplayStore, Verifier, canonicalize, createProof, paramsSha256 } from "../dist/index.js";

const BODY = readFileSync(new URL("../../../crates/handsign-protocol/benches/params_1k.json", import.meta.url));
const ISSUER = "https://gw.example", AUDIENCE = "https://travel.example", URL_ = "https://travel.example/book";
const ROUNDS = 10, PER_ROUND = 500;
const b64 = (s) => Buffer.from(s).toString("base64url");

const gateway = await AgentKey.generate();
const agent = await AgentKey.generate();
const hash = paramsSha256(canonicalize(BODY));

async function requests(n) {
  const now = Math.floor(Date.now() / 1000);
  const out = [];
  for (let i = 0; i < n; i++) {
    const claims = { iss: ISSUER, sub: "alice", aud: AUDIENCE, act: { sub: agent.id }, action: "flights.book",
      params_sha256: hash, approval: "req", jti: randomBytes(16).toString("base64url"), iat: now, nbf: now, exp: now + 30, cnf: { jkt: agent.id } };
    const input = `${b64(JSON.stringify({ alg: "EdDSA", typ: "handsign-approval+jwt", kid: gateway.id }))}.${b64(JSON.stringify(claims))}`;
    const token = `${input}.${b64(await gateway.sign(Buffer.from(input)))}`;
    out.push([token, await createProof(agent, "POST", URL_, now, token)]);
  }
  return out;
}

const keys = await KeySet.fromJwks({ keys: [{ ...gateway.publicJwk(), kid: gateway.id }] });
const verifier = new Verifier({ issuer: ISSUER, audience: AUDIENCE, publicUrl: AUDIENCE, keys, replayStore: new MemoryReplayStore(() => Date.now() / 1000 - 60) });
const gatewayKey = await importJWK(gateway.publicJwk(), "EdDSA");
const body = new Uint8Array(BODY);

const variants = {
  floor: async ([token, proof]) => {
    await jwtVerify(token, gatewayKey, { issuer: ISSUER, audience: AUDIENCE, algorithms: ["EdDSA"] });
    await jwtVerify(proof, EmbeddedJWK, { algorithms: ["EdDSA"], typ: "dpop+jwt" });
  },
  sdk: async ([token, proof]) => {
    await verifier.verify({ action: "flights.book", method: "POST", path: "/book", headers: [["authorization", `Approval ${token}`], ["dpop", proof], ["content-type", "application/json"]], body });
  },
};

// The variants alternate request by request, so that the load of a shared machine falls on
// both alike; one untimed round first, for the JIT.
const results = { floor: [], sdk: [] };
for (let round = 0; round <= ROUNDS; round++) {
  const batch = await requests(2 * PER_ROUND);
  const spent = { floor: 0, sdk: 0 };
  for (let i = 0; i < batch.length; i++) {
    const name = i % 2 === 0 ? "floor" : "sdk";
    const started = performance.now();
    await variants[name](batch[i]);
    spent[name] += performance.now() - started;
  }
  if (round) for (const name of Object.keys(spent)) results[name].push((spent[name] / PER_ROUND) * 1000);
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const min = (xs) => Math.min(...xs);
const [f, s] = [median(results.floor), median(results.sdk)];
console.log(JSON.stringify({ body_bytes: BODY.length, floor_us: +f.toFixed(1), sdk_us: +s.toFixed(1), ratio: +(s / f).toFixed(2),
  floor_min_us: +min(results.floor).toFixed(1), sdk_min_us: +min(results.sdk).toFixed(1) }));
