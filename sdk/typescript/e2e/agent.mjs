// An agent for the end-to-end tests: `node agent.mjs GATEWAY KEY_FILE SERVICE_URL PARAMS_JSON
// CALLS_JSON`. It asks for flights.book with PARAMS, prints {"id"} (the test then decides),
// waits, and makes each call of CALLS ([{"body": text, "thief": bool}]) to SERVICE/book with the
// approval, printing {"status", "error"} for each; an outcome other than approval prints
// {"outcome"}.
import { AgentKey, ApprovalError, Client } from "handsign";

const [gateway, keyFile, service, params, calls] = process.argv.slice(2);
const client = new Client({ gateway, key: keyFile });
const say = (value) => console.log(JSON.stringify(value));
const pending = await client.requestApproval({ action: "flights.book", params: JSON.parse(params), audience: service });
say({ id: pending.id, code: pending.code, approval_url: pending.approvalUrl });
let approval;
try {
  approval = await pending.wait({ timeoutMs: 30_000 });
} catch (error) {
  if (!(error instanceof ApprovalError)) throw error;
  say({ outcome: error.outcome, code: error.code });
  process.exit(0);
}
const thief = new Client({ gateway, key: await AgentKey.generate() });
for (const call of JSON.parse(calls)) {
  const response = await (call.thief ? thief : client).fetch(approval, `${service}/book`, {
    method: "POST",
    body: call.body,
    headers: { "content-type": "application/json" },
  });
  const text = await response.text();
  say({ status: response.status, error: response.status === 200 ? null : JSON.parse(text).error, body: text });
}
