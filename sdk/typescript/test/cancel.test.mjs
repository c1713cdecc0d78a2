// A wait that ends without a decision cancels the request at a real gateway (HANDSIGN_BIN): its
// timeout passed or its AbortSignal aborted; unless the caller keeps it pending, and a decision
// that arrives while cancelling wins.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { AgentKey, Cancelled, Client, Refused, TimedOut } from "handsign";
import { Gateway } from "../e2e/gateway.mjs";

const STOPPED_WAITING = "the agent stopped waiting for a decision";
const PARAMS = { flight: "LIS-JFK", date: "2026-12-24", seats: [1, 2] };
let gateway, key;

before(async () => {
  gateway = await Gateway.start();
  key = await AgentKey.generate();
  gateway.addAgent(key.publicJwk());
});
after(() => gateway?.stop());

/** A client whose calls go through `fetch`, with `spy` told of each before it is sent. */
function spiedClient(spy) {
  const real = globalThis.fetch;
  const client = new Client({ gateway: gateway.url, key });
  return {
    client,
    async run(work) {
      globalThis.fetch = async (input, init) => {
        await spy(String(input), init ?? {});
        return real(input, init);
      };
      try {
        return await work();
      } finally {
        globalThis.fetch = real;
      }
    },
  };
}

const ask = (client) => client.requestApproval({ action: "flights.book", params: PARAMS, audience: "https://travel.example" });

/** The outcome a further wait reports: the request is final, so it is read at once. */
async function outcome(pending) {
  return pending.wait({ timeoutMs: 0, keepPending: true }).then(
    () => assert.fail("the request was approved"),
    (error) => error,
  );
}

test("a wait that times out cancels the request", async () => {
  const client = new Client({ gateway: gateway.url, key });
  const pending = await ask(client);
  await assert.rejects(pending.wait({ timeoutMs: 0 }), (e) => e instanceof TimedOut && e.cancelled);
  const after = await outcome(pending);
  assert.ok(after instanceof Cancelled && after.reason === STOPPED_WAITING, String(after));
  const refused = await gateway.send(`/approve/${pending.id}/options`, { decision: "approve" });
  assert.deepEqual([refused.status, (await refused.json()).error], [409, "not_pending"]);
});

test("keepPending leaves the request to be waited on again", async () => {
  const client = new Client({ gateway: gateway.url, key });
  const pending = await ask(client);
  await assert.rejects(pending.wait({ timeoutMs: 0, keepPending: true }), (e) => e instanceof TimedOut && !e.cancelled);
  assert.equal(await gateway.decide(pending.id, "approve"), 200);
  assert.equal((await pending.wait({ timeoutMs: 30_000 })).claims.approval, pending.id);
});

test("a decision that arrives while cancelling wins", async () => {
  const decided = [];
  const { client, run } = spiedClient(async (url) => {
    const id = url.match(/\/v1\/approvals\/([^/]+)\/cancel$/)?.[1];
    if (id) {
      assert.equal(await gateway.decide(id, "approve"), 200);
      decided.push(id);
    }
  });
  const pending = await ask(client);
  const approval = await run(() => pending.wait({ timeoutMs: 0 }));
  assert.deepEqual(decided, [pending.id]);
  assert.equal(approval.claims.approval, pending.id);
});

test("aborting the wait's signal cancels the request and rejects with the signal's reason", async () => {
  const controller = new AbortController();
  const { client, run } = spiedClient(async (url, init) => {
    // The long poll is on its way: the caller gives up now.
    if ((init.method ?? "GET") === "GET" && url.includes("?wait=")) controller.abort(new Error("the user gave up"));
  });
  const pending = await ask(client);
  await run(() => assert.rejects(pending.wait({ signal: controller.signal }), { message: "the user gave up" }));
  const after = await outcome(pending);
  assert.ok(after instanceof Cancelled && after.reason === STOPPED_WAITING, String(after));

  // A signal aborted before the wait starts cancels too.
  const early = await ask(client);
  await assert.rejects(early.wait({ signal: AbortSignal.abort() }), { name: "AbortError" });
  assert.ok((await outcome(early)) instanceof Cancelled);
});

test("the agent withdraws a request itself", async () => {
  const client = new Client({ gateway: gateway.url, key });
  const pending = await ask(client);
  await pending.cancel("plans changed");
  const after = await outcome(pending);
  assert.ok(after instanceof Cancelled && after.reason === "plans changed", String(after));
  await assert.rejects(pending.cancel(), (e) => e instanceof Refused && e.code === "not_pending");
});
