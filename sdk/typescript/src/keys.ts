/**
 * Ed25519 keys as the protocol names them: JWKs (RFC 8037), RFC 7638 thumbprints, the agent's
 * key file, and the gateway's key set.
 *
 * An agent's id and a gateway key's `kid` are both the thumbprint of the public key. The agent's
 * key file is the private JWK the Rust SDK, the CLI and the Python SDK write: one key works with
 * all of them. It is created owner-only and atomically, and a key file that group or others may
 * read is refused.
 */

import { createHash, randomBytes, webcrypto } from "node:crypto";
import { constants, promises as fs } from "node:fs";
import * as path from "node:path";
import { importJWK, type JWK } from "jose";

/** Strict base64url without padding: one byte string has exactly one spelling. */
export function b64decode(text: string): Uint8Array {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) throw new Error("not base64url");
  const data = Buffer.from(text, "base64url");
  if (data.toString("base64url") !== text) throw new Error("not base64url (non-canonical trailing bits)");
  return new Uint8Array(data);
}

export function b64encode(data: Uint8Array | string): string {
  return Buffer.from(data).toString("base64url");
}

const P = (1n << 255n) - 19n;
/** The y coordinates of the Ed25519 points of order dividing 8 (and their non-canonical
 * encodings): ed25519-dalek's `verify_strict` refuses such a key or signature `R`. */
const SMALL_ORDER_Y = new Set([
  0n, 1n, P - 1n, P, P + 1n,
  0x05fc536d880238b13933c6d305acdfd5f098eff289f4c345b027b2c28f95e826n,
  0x7a03ac9277fdc74ec6cc392cfa53202a0f67100d760b3cba4fd84d3d706a17c7n,
]);

export function isSmallOrder(encoded: Uint8Array): boolean {
  let y = 0n;
  for (let i = 31; i >= 0; i--) y = (y << 8n) | BigInt(encoded[i] ?? 0);
  return SMALL_ORDER_Y.has(y & ((1n << 255n) - 1n));
}

/** The RFC 7638 thumbprint of an Ed25519 public key given as its JWK `x`. */
export function thumbprint(x: string): string {
  return createHash("sha256").update(`{"crv":"Ed25519","kty":"OKP","x":"${x}"}`).digest("base64url");
}

/** A verification key: the imported key and its raw bytes (for the small-order check). */
export interface PublicKey {
  key: CryptoKey | Uint8Array;
  raw: Uint8Array;
  kid: string;
}

/** Imports an OKP Ed25519 public JWK; other key types are refused. */
export async function importPublic(jwk: Record<string, unknown>): Promise<PublicKey> {
  if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || typeof jwk.x !== "string") {
    throw new Error(`unsupported key type ${String(jwk.kty)}/${String(jwk.crv)}: only OKP Ed25519 keys are accepted here`);
  }
  const raw = b64decode(jwk.x);
  if (raw.length !== 32) throw new Error("the JWK's x is not 32 bytes");
  const key = await importJWK({ kty: "OKP", crv: "Ed25519", x: jwk.x }, "EdDSA");
  return { key, raw, kid: thumbprint(jwk.x) };
}

/** The gateway's public keys by `kid`. */
export class KeySet {
  constructor(readonly keys: Map<string, PublicKey>) {}

  /** From a JWKS: entries that cannot sign tokens are left out, an entry whose `kid` is not its
   * thumbprint is refused. */
  static async fromJwks(jwks: unknown): Promise<KeySet> {
    const entries = (jwks as { keys?: unknown })?.keys;
    if (!Array.isArray(entries)) throw new Error("a JWKS is an object with a 'keys' array");
    const keys = new Map<string, PublicKey>();
    for (const jwk of entries as Record<string, unknown>[]) {
      const signsEdDsa =
        jwk.kty === "OKP" &&
        jwk.crv === "Ed25519" &&
        (jwk.use === undefined || jwk.use === "sig") &&
        (jwk.alg === undefined || jwk.alg === "EdDSA");
      if (!signsEdDsa || typeof jwk.kid !== "string") continue;
      const key = await importPublic(jwk);
      if (key.kid !== jwk.kid) throw new Error(`JWKS entry kid ${jwk.kid} is not the thumbprint of its key`);
      keys.set(key.kid, key);
    }
    return new KeySet(keys);
  }

  get(kid: string): PublicKey | undefined {
    return this.keys.get(kid);
  }
}

/** An agent's Ed25519 key; its id is the thumbprint of the public key. */
export class AgentKey {
  private constructor(
    readonly privateKey: CryptoKey,
    readonly x: string,
    private readonly d: string,
  ) {}

  get id(): string {
    return thumbprint(this.x);
  }

  /** The public JWK (`kty`, `crv`, `x`): what `handsign agent add --key` takes. */
  publicJwk(): { kty: "OKP"; crv: "Ed25519"; x: string } {
    return { kty: "OKP", crv: "Ed25519", x: this.x };
  }

  static async generate(): Promise<AgentKey> {
    const pair = (await webcrypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"])) as CryptoKeyPair;
    const jwk = await webcrypto.subtle.exportKey("jwk", pair.privateKey);
    return AgentKey.fromJwk(jwk as Record<string, unknown>);
  }

  /** Reads a private OKP Ed25519 JWK and checks that `x` belongs to `d`. */
  static async fromJwk(jwk: Record<string, unknown>): Promise<AgentKey> {
    if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || typeof jwk.d !== "string" || typeof jwk.x !== "string") {
      throw new Error("not a private OKP Ed25519 JWK");
    }
    const privateKey = (await importJWK({ kty: "OKP", crv: "Ed25519", d: jwk.d, x: jwk.x } as JWK, "EdDSA", {
      extractable: false,
    })) as CryptoKey;
    const key = new AgentKey(privateKey, jwk.x, jwk.d);
    // Sign and verify once: a JWK whose x is not d's public key fails here.
    const probe = randomBytes(16);
    const publicKey = await importPublic({ kty: "OKP", crv: "Ed25519", x: jwk.x });
    if (!(await webcrypto.subtle.verify("Ed25519", publicKey.key as CryptoKey, await key.sign(probe), probe))) {
      throw new Error("the JWK's x is not the public key of its d");
    }
    return key;
  }

  async sign(data: Uint8Array): Promise<Uint8Array> {
    return new Uint8Array(await webcrypto.subtle.sign("Ed25519", this.privateKey, data));
  }

  /** Reads the private JWK at `file`, refusing a file that group or others may access. */
  static async load(file: string): Promise<AgentKey> {
    const handle = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const info = await handle.stat();
      if (!info.isFile()) throw new Error(`key file ${file} is not a regular file`);
      if (info.mode & 0o077) {
        throw new Error(
          `key file ${file} is accessible to group or others (mode ${(info.mode & 0o777).toString(8)}); the key may have leaked: make a new key, or if you are sure nobody read it, run \`chmod 600 ${file}\``,
        );
      }
      const text = await handle.readFile("utf8");
      try {
        return await AgentKey.fromJwk(JSON.parse(text) as Record<string, unknown>);
      } catch (error) {
        throw new Error(`key file ${file} does not hold a private Ed25519 JWK: ${(error as Error).message}`);
      }
    } finally {
      await handle.close();
    }
  }

  /** Writes this key to `file`, which must not exist: owner-only under a temporary name, then
   * linked into place (which fails rather than replace). */
  async saveNew(file: string): Promise<void> {
    const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
    const text = JSON.stringify({ ...this.publicJwk(), d: this.d, kid: this.id }, null, 2) + "\n";
    const handle = await fs.open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      try {
        await handle.writeFile(text);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await fs.link(temporary, file).catch((error: NodeJS.ErrnoException) => {
        if (error.code === "EEXIST") {
          throw new Error(`key file ${file} already exists; refusing to overwrite it (the agent's id would change)`);
        }
        throw error;
      });
    } finally {
      await fs.rm(temporary, { force: true });
    }
  }

  /** Reads the key at `file`, or makes one there; two processes racing end up with one key. */
  static async loadOrCreate(file: string): Promise<AgentKey> {
    try {
      return await AgentKey.load(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
    const key = await AgentKey.generate();
    try {
      await key.saveNew(file);
      return key;
    } catch (error) {
      if (/already exists/.test((error as Error).message)) return AgentKey.load(file);
      throw error;
    }
  }
}
