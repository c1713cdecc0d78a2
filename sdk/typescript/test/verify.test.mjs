// Every service-side check with the Rust middleware's codes, on tokens minted here with a
// gateway key; time is the verifier's injected clock, never a sleep. Then the guard as
// node:http/Express middleware and as a Web Request handler, and the Redis store.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { createServer } from "node:http";
import { spawn } from "node:child_process";
import { createConnection } from "node:net";
import { createClient } from "redis";
import {
  AgentKey, ApprovalRefused, KeySet, MemoryReplayStore, REFUSALS, RedisReplayStore, Verifier,
  canonicalize, createProof, paramsSha256, verifyApproval, verifyProof,
} from "handsign";

const ISSUER = "https://gw.example";
const AUDIENCE = "https://travel.example";
const BODY = Buffer.from('{"to": "LIS", "price": 120.5}');
const NOW = 1_800_000_000;
const b64 = (s) => Buffer.from(s).toString("base64url");
const JSON_TYPE = ["content-type", "application/json"];

async function mint(key, claims, header = {}) {
  const head = Object.fromEntries(Object.entries({ alg: "EdDSA", typ: "handsign-approval+jwt", kid: key.id, ...header }).filter(([, v]) => v !== null));
  const input = `${b64(JSON.stringify(head))}.${b64(JSON.stringify(claims))}`;
  return `${input}.${b64(await key.sign(Buffer.from(input)))}`;
}

function claims(agent, changes = {}) {
  const base = {
    iss: ISSUER, sub: "alice", aud: AUDIENCE, act: { sub: agent.id }, action: "flights.book",
    params_sha256: paramsSha256(canonicalize(BODY)), approval: "req1", jti: randomBytes(16).toString("base64url"),
    iat: NOW, nbf: NOW, exp: NOW + 30, cnf: { jkt: agent.id }, ...changes,
  };
  return Object.fromEntries(Object.entries(base).filter(([, v]) => v !== null));
}

async function setup() {
  const gateway = await AgentKey.generate();
  const agent = await AgentKey.generate();
  const clock = { now: NOW + 1 };
  const store = new MemoryReplayStore(() => NOW - 100);
  const keys = await KeySet.fromJwks({ keys: [{ ...gateway.publicJwk(), kid: gateway.id }] });
  const verifier = new Verifier({ issuer: ISSUER, audience: AUDIENCE, publicUrl: "https://travel.example", keys, replayStore: store, clock: () => clock.now });
  const headers = async (token, { key = agent, method = "POST", url = "https://travel.example/book" } = {}) =>
    [["authorization", `Approval ${token}`], ["dpop", await createProof(key, method, url, Math.floor(clock.now), token)], JSON_TYPE];
  const check = (hdrs, body = BODY, action = "flights.book") =>
    verifier.verify({ action, method: "POST", path: "/book", headers: hdrs, body: new Uint8Array(body) });
  const code = async (hdrs, body) => {
    try {
      await check(hdrs, body);
    } catch (e) {
      assert.ok(e instanceof ApprovalRefused, String(e));
      return e.code;
    }
    return "accepted";
  };
  return { gateway, agent, clock, store, verifier, headers, check, code };
}

test("a good request passes once", async () => {
  const s = await setup();
  const token = await mint(s.gateway, claims(s.agent));
  const approved = await s.check(await s.headers(token));
  assert.equal(approved.claims.approval, "req1");
  assert.equal(await s.code(await s.headers(token)), "token_replayed");
  const t2 = await mint(s.gateway, claims(s.agent));
  assert.equal(await s.code(await s.headers(t2), Buffer.from('{"price":120.50,"to":"LIS"}')), "accepted");
});

test("every token check has its code", async () => {
  const s = await setup();
  const g = s.gateway, a = s.agent, other = await AgentKey.generate();
  const cases = {
    malformed_token: "a.b",
    wrong_alg: await mint(g, claims(a), { alg: "ES256" }),
    wrong_typ: await mint(g, claims(a), { typ: "JWT" }),
    unknown_kid: await mint(g, claims(a), { kid: null }),
    bad_signature: await mint(other, claims(a), { kid: g.id }),
    malformed_claims: await mint(g, claims(a, { iat: "now" })),
    wrong_issuer: await mint(g, claims(a, { iss: "https://evil.example" })),
    wrong_audience: await mint(g, claims(a, { aud: "https://other.example" })),
    expired: await mint(g, claims(a, { iat: NOW - 40, nbf: NOW - 40, exp: NOW - 10 })),
    not_yet_valid: await mint(g, claims(a, { iat: NOW + 20, nbf: NOW + 20, exp: NOW + 40 })),
    lifetime_too_long: await mint(g, claims(a, { exp: NOW + 31 })),
    action_mismatch: await mint(g, claims(a, { action: "flights.cancel" })),
    params_mismatch: await mint(g, claims(a, { params_sha256: paramsSha256(canonicalize("{}")) })),
  };
  for (const [code, token] of Object.entries(cases)) assert.equal(await s.code(await s.headers(token)), code, code);
  assert.equal(await s.code(await s.headers(await mint(g, claims(a))), Buffer.from('{"a":1,"a":2}')), "invalid_params");
  assert.equal(s.store.size, 0, "no refused request consumes a token");
});

test("expiry follows the verifier's clock; DPoP checks", async () => {
  const s = await setup();
  const token = await mint(s.gateway, claims(s.agent));
  s.clock.now = NOW + 35;
  assert.equal(await s.code(await s.headers(token)), "expired");
  s.clock.now = NOW + 1;
  const auth = ["authorization", `Approval ${token}`];
  assert.equal(await s.code([auth, JSON_TYPE]), "dpop_required");
  assert.equal(await s.code(await s.headers(token, { key: await AgentKey.generate() })), "dpop_key_mismatch");
  assert.equal(await s.code(await s.headers(token, { method: "GET" })), "invalid_dpop");
  assert.equal(await s.code(await s.headers(token, { url: "https://travel.example/other" })), "invalid_dpop");
  const other = await mint(s.gateway, claims(s.agent));
  assert.equal(await s.code([auth, (await s.headers(other))[1], JSON_TYPE]), "invalid_dpop");
  const unbound = await mint(s.gateway, claims(s.agent, { cnf: null }));
  assert.equal(await s.code(await s.headers(unbound)), "dpop_required");
  const proofHeader = b64(JSON.stringify({ typ: "dpop+jwt", alg: "EdDSA", jwk: s.agent.publicJwk() }));
  const proofClaims = b64(JSON.stringify({ jti: "\ud800", htm: "POST", htu: "https://travel.example/book", iat: NOW + 1, ath: createHash("sha256").update(token).digest("base64url") }));
  const loneSurrogate = `${proofHeader}.${proofClaims}.${b64(await s.agent.sign(Buffer.from(`${proofHeader}.${proofClaims}`)))}`;
  // The proof's jti is recorded as UTF-8: the strict JSON parser refuses a lone surrogate.
  assert.equal(await s.code([auth, ["dpop", loneSurrogate], JSON_TYPE]), "invalid_dpop");
  assert.equal(s.store.size, 0, "no refused proof is recorded");
  assert.equal(await s.code([]), "missing_token");
  assert.equal(await s.code([auth, auth]), "missing_token");
  const big = [...(await s.headers(token)), ["content-length", String(300 * 1024)]];
  assert.equal(await s.code(big), "body_too_large");
  assert.equal(await s.code(await s.headers(token)), "accepted", "none of the refusals used the token up");
});

test("the memory store says when its record began, and forgets expired entries", () => {
  assert.equal(new MemoryReplayStore(() => NOW).recordsSince(), NOW);
  assert.equal(new MemoryReplayStore(() => NOW, NOW - 60).recordsSince(), NOW - 60);
  const clock = { now: NOW };
  const store = new MemoryReplayStore(() => clock.now);
  assert.equal(store.consumeNow("proof", NOW + 61), true);
  assert.equal(store.consumeNow("token", NOW + 35), true);
  assert.equal(store.consumeNow("token", NOW + 35), false);
  // Expired behind a longer-lived entry: not swept yet, but no longer a record.
  clock.now = NOW + 35;
  assert.equal(store.consumeNow("token", NOW + 70), true);
  assert.equal(store.consumeNow("proof", NOW + 61), false);
  clock.now = NOW + 70;
  assert.equal(store.consumeNow("new", NOW + 100), true);
  assert.equal(store.size, 1);
});

test("a token issued before the memory store began is refused, unused", async () => {
  // A memory store knows nothing of what the process before it accepted: a token that could
  // have been accepted by then (nbf - skew <= start) is refused with its own code.
  const s = await setup();
  s.verifier.replayStore = new MemoryReplayStore(() => s.clock.now, NOW);
  for (const nbf of [NOW - 10, NOW, NOW + 5]) {
    const token = await mint(s.gateway, claims(s.agent, { iat: nbf, nbf, exp: nbf + 30 }));
    assert.equal(await s.code(await s.headers(token)), "issued_before_start", String(nbf));
  }
  assert.equal(s.verifier.replayStore.size, 0, "the refusal records neither the token nor the proof");
  const token = await mint(s.gateway, claims(s.agent, { iat: NOW + 6, nbf: NOW + 6, exp: NOW + 36 }));
  assert.equal(await s.code(await s.headers(token)), "accepted");
  assert.equal(REFUSALS.issued_before_start, 401);
});

test("a DPoP proof is accepted once, recorded until it is stale", async () => {
  const s = await setup();
  const token = await mint(s.gateway, claims(s.agent));
  const headers = await s.headers(token);
  assert.equal(await s.code(headers), "accepted");
  // The very same request again: its proof was recorded with the token.
  assert.equal(await s.code(headers), "dpop_replayed");
  assert.equal(new ApprovalRefused("dpop_replayed", "x").status, 401);
  const proof = await verifyProof(headers[1][1], { method: "POST", url: "https://travel.example/book", now: NOW + 1 });
  const id = "dpop:" + createHash("sha256").update(`${proof.jkt}:${proof.jti}`).digest("base64url");
  assert.equal(s.store.seen.get(id), proof.iat + 61);
});

test("a JSON route refuses other content types before using the token", async () => {
  const s = await setup();
  const token = await mint(s.gateway, claims(s.agent));
  const authAndProof = (await s.headers(token)).slice(0, 2);
  for (const type of [[], [["content-type", "text/plain"]], [["content-type", "application/x-www-form-urlencoded"]], [["content-type", "application/jsonx"]], [["content-type", "application/geojson"]], [["content-type", "text/json"]]]) {
    try {
      await s.check([...authAndProof, ...type]);
      assert.fail("accepted");
    } catch (e) {
      assert.ok(e instanceof ApprovalRefused, String(e));
      assert.deepEqual([e.code, e.status, e.headers()["www-authenticate"]], ["unsupported_media_type", 415, undefined], JSON.stringify(type));
    }
  }
  assert.equal(s.store.size, 0, "the token and the proof are still unused");
  for (const type of ["Application/JSON; charset=utf-8", "application/merge-patch+json"]) {
    const fresh = await mint(s.gateway, claims(s.agent));
    assert.equal(await s.code([...(await s.headers(fresh)).slice(0, 2), ["content-type", type]]), "accepted", type);
  }
  // Params given in code are not the body: the body's type is the route's business.
  const other = await mint(s.gateway, claims(s.agent));
  const approved = await s.verifier.verify({ action: "flights.book", method: "POST", path: "/book", headers: (await s.headers(other)).slice(0, 2), body: new Uint8Array(), params: new Uint8Array(BODY) });
  assert.equal(approved.claims.approval, "req1");
});

test("the code table is the Rust one", () => {
  const repo = process.env.HANDSIGN_REPO;
  // Every code the middleware (crates/handsign-verify) and the token checks name.
  const verify = `${repo}/crates/handsign-verify/src`;
  const sources = readdirSync(verify, { recursive: true })
    .filter((f) => f.endsWith(".rs"))
    .map((f) => readFileSync(`${verify}/${f}`, "utf8"));
  sources.push(readFileSync(`${repo}/crates/handsign-protocol/src/token.rs`, "utf8"));
  const snake = (name) => name.replace(/(?<!^)([A-Z])/g, "_$1").toLowerCase();
  const rust = new Set(sources.flatMap((s) => [...s.matchAll(/ErrorCode::(\w+)/g)].map((m) => snake(m[1]))));
  rust.delete("approval_layer_missing");
  rust.delete("unknown");
  assert.deepEqual([...rust].sort(), Object.keys(REFUSALS).sort());
  const e = new ApprovalRefused("token_replayed", 'used "once"');
  assert.equal(e.headers()["www-authenticate"], 'Approval error="token_replayed", error_description="used \\"once\\""');
});

test("node:http middleware and Web handlers run once with the verified bytes", async () => {
  const s = await setup();
  const guard = verifyApproval({ verifier: s.verifier, action: "flights.book" });
  const seen = [];
  const server = createServer((req, res) => guard(req, res, () => { seen.push(req.rawBody.toString()); res.end(req.approved.claims.approval); }));
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}/book`;
  try {
    const token = await mint(s.gateway, claims(s.agent));
    const post = async (type = "application/json") => fetch(url, { method: "POST", body: BODY, headers: { ...Object.fromEntries(await s.headers(token)), "content-type": type } });
    const refused = await post("text/plain");
    assert.deepEqual([refused.status, (await refused.json()).error], [415, "unsupported_media_type"]);
    const first = await post();
    assert.equal(first.status, 200);
    assert.equal(await first.text(), "req1");
    const again = await post();
    assert.equal(again.status, 401);
    assert.match(again.headers.get("www-authenticate"), /^Approval error="token_replayed"/);
    assert.equal((await again.json()).error, "token_replayed");
    assert.deepEqual(seen, [BODY.toString()]);
  } finally {
    server.close();
  }
  const handler = guard.wrap((request, approved) => new Response(Buffer.from(approved.body)));
  const token = await mint(s.gateway, claims(s.agent));
  const request = async () => new Request("https://travel.example/book", { method: "POST", body: BODY, headers: await s.headers(token) });
  // A string body without a Content-Type is sent as text/plain.
  const asText = new Request("https://travel.example/book", { method: "POST", body: BODY.toString(), headers: (await s.headers(token)).slice(0, 2) });
  const refused = await handler(asText);
  assert.deepEqual([refused.status, (await refused.json()).error], [415, "unsupported_media_type"]);
  const ok = await handler(await request());
  assert.equal(await ok.text(), BODY.toString());
  const replayed = await handler(await request());
  assert.equal((await replayed.json()).error, "token_replayed");
});

test("the Redis store is shared and fails closed", async () => {
  const port = await new Promise((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const { port: free } = probe.address();
      probe.close(() => resolve(free));
    });
  });
  const redis = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  try {
    for (;;) {
      const up = await new Promise((resolve) => {
        const socket = createConnection(port, "127.0.0.1", () => { socket.end(); resolve(true); });
        socket.on("error", () => resolve(false));
      });
      if (up) break;
      await new Promise((resolve) => setImmediate(resolve));
    }
    const clients = await Promise.all([1, 2].map(() => createClient({ url: `redis://127.0.0.1:${port}` }).connect()));
    const stores = clients.map((c) => new RedisReplayStore(c, "t:"));
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => stores[i % 2].consume("jti-1", NOW + 1e6)));
    assert.deepEqual(results.filter(Boolean).length, 1);
    // Redis outlives the process, so no token is refused for the service's start; a proof
    // accepted on one instance is refused on another, and kept until it is stale.
    const shared = await setup();
    shared.verifier.replayStore = stores[0];
    const token = await mint(shared.gateway, claims(shared.agent));
    const headers = await shared.headers(token);
    assert.equal(await shared.code(headers), "accepted");
    shared.verifier.replayStore = stores[1];
    assert.equal(await shared.code(headers), "dpop_replayed");
    const proof = await verifyProof(headers[1][1], { method: "POST", url: "https://travel.example/book", now: NOW + 1 });
    const id = "dpop:" + createHash("sha256").update(`${proof.jkt}:${proof.jti}`).digest("base64url");
    assert.equal(await clients[0].sendCommand(["EXPIRETIME", `t:${id}`]), proof.iat + 61);
    const jti = JSON.parse(Buffer.from(token.split(".")[1], "base64url")).jti;
    assert.equal(await clients[0].sendCommand(["EXPIRETIME", `t:${jti}`]), NOW + 35);
    const s = await setup();
    s.verifier.replayStore = new RedisReplayStore({ sendCommand: () => Promise.reject(new Error("connection refused")) });
    assert.equal(await s.code(await s.headers(await mint(s.gateway, claims(s.agent)))), "replay_store_unavailable");
    await Promise.all(clients.map((c) => c.quit()));
  } finally {
    redis.kill();
  }
});

test("small-order keys and signatures are refused", async () => {
  // With the identity as key and R, and S = 0, every message "verifies" (OpenSSL accepts it).
  const identity = Buffer.concat([Buffer.from([1]), Buffer.alloc(31)]);
  const header = b64(JSON.stringify({ typ: "dpop+jwt", alg: "EdDSA", jwk: { kty: "OKP", crv: "Ed25519", x: b64(identity) } }));
  const payload = b64(JSON.stringify({ jti: "j", htm: "POST", htu: "https://travel.example/book", iat: NOW }));
  const proof = `${header}.${payload}.${b64(Buffer.concat([identity, Buffer.alloc(32)]))}`;
  await assert.rejects(verifyProof(proof, { method: "POST", url: "https://travel.example/book", now: NOW }), /signature/);
});

test("key files are owner-only and those of the CLI", async () => {
  const { mkdtempSync, statSync, chmodSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { spawnSync } = await import("node:child_process");
  const dir = mkdtempSync(`${tmpdir()}/handsign-keys-`);
  const key = await AgentKey.loadOrCreate(`${dir}/agent.jwk`);
  assert.equal(statSync(`${dir}/agent.jwk`).mode & 0o777, 0o600);
  assert.equal((await AgentKey.loadOrCreate(`${dir}/agent.jwk`)).id, key.id, "an existing key is never replaced");
  chmodSync(`${dir}/agent.jwk`, 0o640);
  await assert.rejects(AgentKey.load(`${dir}/agent.jwk`), /group or others/);
  assert.ok(process.env.HANDSIGN_BIN, "set HANDSIGN_BIN to the gateway binary (sdk/typescript/test.sh does)");
  const made = spawnSync(process.env.HANDSIGN_BIN, ["agent", "keygen", "--key", `${dir}/cli.jwk`]);
  assert.equal(made.status, 0);
  assert.equal((await AgentKey.load(`${dir}/cli.jwk`)).id, made.stdout.toString().split(/\s/)[0]);
});
