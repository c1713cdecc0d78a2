// A service that books flights behind verifyApproval, for the end-to-end tests: it answers
// with the approval id, prints "listening <url>" once it listens, and takes a test-only
// `POST /clock?offset=N` that moves its verifier's clock (so expiry is tested without waiting).
import { createServer } from "node:http";
import { MemoryReplayStore, verifyApproval } from "handsign";

const { ISSUER, AUDIENCE } = process.env;
let offset = 0;
const server = createServer();
server.listen(0, "127.0.0.1", () => {
  const url = `http://127.0.0.1:${server.address().port}`;
  const guard = verifyApproval({
    issuer: ISSUER,
    audience: AUDIENCE || url,
    publicUrl: url,
    jwksUrl: `${ISSUER}/.well-known/jwks.json`,
    action: "flights.book",
    clock: () => Date.now() / 1000 + offset,
    // A service that started a while ago: a fresh memory store refuses every token that could
    // have been accepted before it started (nbf up to the skew after its start).
    replayStore: new MemoryReplayStore(() => Date.now() / 1000 - 10),
  });
  server.on("request", (req, res) => {
    if (req.url.startsWith("/clock")) {
      offset = Number(new URL(req.url, url).searchParams.get("offset"));
      return res.end("ok");
    }
    guard(req, res, () => res.end(req.approved.claims.approval));
  });
  console.log(`listening ${url}`);
});
