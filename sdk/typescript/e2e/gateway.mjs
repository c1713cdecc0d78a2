// A real gateway for the SDK's tests: `handsign serve` (HANDSIGN_BIN) on a free loopback port
// with its own data directory, and alice registered with a software passkey (P-256, `fmt: none`,
// as webauthn-rs accepts), who can decide requests as the approval page does.
import { spawn, execFileSync } from "node:child_process";
import { createHash, generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const b64 = (bytes) => Buffer.from(bytes).toString("base64url");

function cborHead(major, n) {
  if (n < 24) return Buffer.from([(major << 5) | n]);
  if (n < 256) return Buffer.from([(major << 5) | 24, n]);
  return Buffer.from([(major << 5) | 25, n >> 8, n & 0xff]);
}

/** The CBOR subset WebAuthn needs: ints, byte and text strings, maps (as [key, value] pairs). */
function cbor(value) {
  if (typeof value === "number") return value >= 0 ? cborHead(0, value) : cborHead(1, -1 - value);
  if (Buffer.isBuffer(value)) return Buffer.concat([cborHead(2, value.length), value]);
  if (typeof value === "string") {
    const bytes = Buffer.from(value, "utf8");
    return Buffer.concat([cborHead(3, bytes.length), bytes]);
  }
  return Buffer.concat([cborHead(5, value.length), ...value.flatMap(([k, v]) => [cbor(k), cbor(v)])]);
}

class SoftPasskey {
  constructor(origin, rpId) {
    this.origin = origin;
    this.rpIdHash = createHash("sha256").update(rpId).digest();
    ({ privateKey: this.key, publicKey: this.public } = generateKeyPairSync("ec", { namedCurve: "P-256" }));
    this.credentialId = randomBytes(16);
    this.counter = 0;
  }

  clientData(type, challenge) {
    return Buffer.from(JSON.stringify({ type, challenge, origin: this.origin, crossOrigin: false }));
  }

  register(options) {
    const jwk = this.public.export({ format: "jwk" });
    const cose = cbor([[1, 2], [3, -7], [-1, 1], [-2, Buffer.from(jwk.x, "base64url")], [-3, Buffer.from(jwk.y, "base64url")]]);
    const length = Buffer.from([this.credentialId.length >> 8, this.credentialId.length & 0xff]);
    const authData = Buffer.concat([this.rpIdHash, Buffer.from([0x45]), Buffer.alloc(4), Buffer.alloc(16), length, this.credentialId, cose]);
    const attestation = cbor([["fmt", "none"], ["attStmt", []], ["authData", authData]]);
    return {
      id: b64(this.credentialId),
      rawId: b64(this.credentialId),
      type: "public-key",
      response: { attestationObject: b64(attestation), clientDataJSON: b64(this.clientData("webauthn.create", options.publicKey.challenge)) },
      extensions: {},
    };
  }

  assert(options) {
    this.counter++;
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(this.counter);
    const authData = Buffer.concat([this.rpIdHash, Buffer.from([0x05]), counter]);
    const clientData = this.clientData("webauthn.get", options.publicKey.challenge);
    const signature = sign("sha256", Buffer.concat([authData, createHash("sha256").update(clientData).digest()]), this.key);
    return {
      id: b64(this.credentialId),
      rawId: b64(this.credentialId),
      type: "public-key",
      response: { authenticatorData: b64(authData), clientDataJSON: b64(clientData), signature: b64(signature), userHandle: null },
      extensions: {},
    };
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

export class Gateway {
  static async start() {
    const binary = process.env.HANDSIGN_BIN;
    if (!binary) throw new Error("set HANDSIGN_BIN to the gateway binary (sdk/typescript/test.sh does)");
    const dir = mkdtempSync(join(tmpdir(), "handsign-ts-"));
    const port = await freePort();
    const url = `http://localhost:${port}`;
    const child = spawn(binary, ["serve", "--listen", `127.0.0.1:${port}`, "--public-url", url, "--data-dir", join(dir, "data")], {
      stdio: ["ignore", "pipe", "ignore"],
      env: { ...process.env, HANDSIGN_LOG: "warn" },
    });
    let code;
    for await (const line of createInterface({ input: child.stdout })) {
      code ??= line.split("/setup?code=")[1]?.trim();
      if (line.includes("listening on")) break;
    }
    if (!code) throw new Error("the gateway did not print its setup link");
    const gateway = new Gateway(binary, dir, url, child);
    const options = await gateway.post("/webauthn/register/options", { code, user: "alice" });
    const finished = await gateway.send("/webauthn/register/finish", { ceremony: options.ceremony, credential: gateway.passkey.register(options), name: "test" });
    if (finished.status !== 201) throw new Error(`registration refused: ${await finished.text()}`);
    gateway.cookie = finished.headers.get("set-cookie")?.split(";")[0];
    return gateway;
  }

  constructor(binary, dir, url, child) {
    Object.assign(this, { binary, dir, url, child, passkey: new SoftPasskey(url, "localhost") });
  }

  send(path, body) {
    const headers = { origin: this.url, "content-type": "application/json", ...(this.cookie ? { cookie: this.cookie } : {}) };
    return fetch(this.url + path, { method: "POST", headers, body: JSON.stringify(body) });
  }

  async post(path, body) {
    const response = await this.send(path, body);
    if (response.status !== 200) throw new Error(`${path}: ${response.status} ${await response.text()}`);
    return response.json();
  }

  /** Adds an agent for alice by its public JWK, active at once. */
  addAgent(publicJwk) {
    execFileSync(this.binary, ["agent", "add", "--name", "test agent", "--user", "alice", "--key", JSON.stringify(publicJwk), "--data-dir", join(this.dir, "data")]);
  }

  /** Alice decides with her passkey, as the approval page does; the answer's status. */
  async decide(id, decision) {
    const options = await this.post(`/approve/${id}/options`, { decision });
    return (await this.send(`/approve/${id}`, { decision, ceremony: options.ceremony, credential: this.passkey.assert(options) })).status;
  }

  stop() {
    this.child.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
