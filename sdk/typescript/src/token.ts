/**
 * The approval token and DPoP proofs, checked in the order and with the codes of
 * `handsign-protocol` (`token::verify`, `dpop::verify`). Signatures are verified with `jose`;
 * nothing from the claims is read before the signature holds.
 */

import { createHash, randomBytes } from "node:crypto";
import { compactVerify } from "jose";
import { parseStrict } from "./canonical.js";
import { ApprovalRefused } from "./errors.js";
import { type AgentKey, b64decode, b64encode, importPublic, isSmallOrder, type KeySet, type PublicKey } from "./keys.js";

export const TOKEN_TYP = "handsign-approval+jwt";
export const DPOP_TYP = "dpop+jwt";
export const MAX_LIFETIME_SECS = 30;
export const MAX_SKEW_SECS = 5;
export const MAX_PROOF_AGE_SECS = 60;

/** The claims of an approval token. */
export interface ApprovalClaims {
  iss: string;
  sub: string;
  aud: string;
  act: { sub: string };
  action: string;
  params_sha256: string;
  approval: string;
  jti: string;
  iat: number;
  nbf: number;
  exp: number;
  cnf?: { jkt: string };
}

class JwsError extends Error {
  constructor(message: string, readonly json = false) {
    super(message);
  }
}

function jsonObject(data: Uint8Array, part: string): Record<string, unknown> {
  let value: unknown;
  try {
    // Strictly: JSON.parse would silently keep the last of duplicate members.
    value = parseStrict(data);
  } catch (error) {
    throw new JwsError(`the ${part} is not valid JSON of the expected shape: ${(error as Error).message}`, true);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new JwsError(`the ${part} is not valid JSON of the expected shape: not an object`, true);
  }
  return value as Record<string, unknown>;
}

/** A compact JWS split into its parts, decoded as strictly as the Rust crates do. */
class Compact {
  readonly header: Record<string, unknown>;
  readonly signature: Uint8Array;
  constructor(readonly text: string) {
    const parts = text.split(".");
    if (parts.length !== 3) throw new JwsError("not a compact JWS: expected three base64url parts separated by dots");
    let header: Uint8Array;
    try {
      header = b64decode(parts[0]!);
    } catch {
      throw new JwsError("the header is not valid base64url");
    }
    try {
      this.signature = b64decode(parts[2]!);
    } catch {
      throw new JwsError("the signature is not valid base64url");
    }
    this.header = jsonObject(header, "header");
  }

  payload(): Record<string, unknown> {
    let data: Uint8Array;
    try {
      data = b64decode(this.text.split(".")[1]!);
    } catch {
      throw new JwsError("the payload is not valid base64url");
    }
    return jsonObject(data, "payload");
  }

  /** `verify_strict`: canonical S (checked by the crypto library), no small-order key or R. */
  async verify(key: PublicKey): Promise<boolean> {
    if (this.signature.length !== 64 || isSmallOrder(key.raw) || isSmallOrder(this.signature.subarray(0, 32))) {
      return false;
    }
    try {
      await compactVerify(this.text, key.key, { algorithms: ["EdDSA"] });
      return true;
    } catch {
      return false;
    }
  }
}

function refuse(code: ConstructorParameters<typeof ApprovalRefused>[0], message: string): never {
  throw new ApprovalRefused(code, message);
}

/** The token's `kid` after the header checks that need no key (made before fetching keys). */
export function tokenKid(token: string): string {
  let jws: Compact;
  try {
    jws = new Compact(token);
  } catch (error) {
    refuse("malformed_token", `malformed token: ${(error as Error).message}`);
  }
  const { alg, typ, kid } = jws.header;
  if (typeof alg !== "string" || !(typ === undefined || typ === null || typeof typ === "string") ||
      !(kid === undefined || kid === null || typeof kid === "string")) {
    refuse("malformed_token", "malformed token: the header is not valid JSON of the expected shape");
  }
  if (alg !== "EdDSA") refuse("wrong_alg", `wrong alg ${JSON.stringify(alg)}: approval tokens are signed with EdDSA only`);
  if (typ !== TOKEN_TYP) refuse("wrong_typ", `wrong typ ${JSON.stringify(typ ?? null)}: expected "${TOKEN_TYP}"`);
  if (typeof kid !== "string") refuse("unknown_kid", "the token has no kid, so no key can be chosen to verify it");
  return kid;
}

const I64 = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v);

function parseClaims(c: Record<string, unknown>): ApprovalClaims {
  const bad = (what: string): never => refuse("malformed_claims", `malformed claims: ${what}`);
  for (const name of ["iss", "sub", "aud", "action", "params_sha256", "approval", "jti"]) {
    if (typeof c[name] !== "string") bad(`'${name}' is missing or not a string`);
  }
  for (const name of ["iat", "nbf", "exp"]) if (!I64(c[name])) bad(`'${name}' is missing or not an integer`);
  const act = c.act as Record<string, unknown> | undefined;
  if (typeof act !== "object" || act === null || typeof act.sub !== "string") bad("'act' is missing or not an object with 'sub'");
  const cnf = c.cnf as Record<string, unknown> | undefined | null;
  if (cnf !== undefined && cnf !== null && (typeof cnf !== "object" || typeof cnf.jkt !== "string")) bad("'cnf' is not an object with 'jkt'");
  let hashOk = false;
  try {
    hashOk = b64decode(c.params_sha256 as string).length === 32;
  } catch {
    hashOk = false;
  }
  if (!hashOk) bad(`params_sha256 must be base64url (no padding) of a 32-byte SHA-256 digest, got ${JSON.stringify(c.params_sha256)}`);
  const claims = c as unknown as ApprovalClaims;
  if (cnf === null) delete (claims as { cnf?: unknown }).cnf;
  return claims;
}

/** What a token must approve. */
export interface Expected {
  issuer: string;
  audience: string;
  action: string;
  paramsSha256: string;
  now: number;
  skew?: number;
}

/** Verifies a token; throws the `ApprovalRefused` of the first check that fails. */
export async function verifyToken(token: string, keys: KeySet, expected: Expected): Promise<ApprovalClaims> {
  const kid = tokenKid(token);
  const jws = new Compact(token);
  const key = keys.get(kid) ?? refuse("unknown_kid", `unknown kid ${JSON.stringify(kid)}: no key with this id in the gateway's key set`);
  if (!(await jws.verify(key))) {
    refuse("bad_signature", `bad signature: the token was not signed by the key ${JSON.stringify(kid)} or was altered`);
  }
  let payload: Record<string, unknown>;
  try {
    payload = jws.payload();
  } catch (error) {
    if (error instanceof JwsError && error.json) refuse("malformed_claims", `malformed claims: ${error.message}`);
    refuse("malformed_token", `malformed token: ${(error as Error).message}`);
  }
  const c = parseClaims(payload);
  const { now } = expected;
  const skew = Math.min(Math.max(expected.skew ?? MAX_SKEW_SECS, 0), MAX_SKEW_SECS);
  if (c.iss !== expected.issuer) refuse("wrong_issuer", `wrong issuer ${JSON.stringify(c.iss)}: expected ${JSON.stringify(expected.issuer)}`);
  if (c.aud !== expected.audience) refuse("wrong_audience", `wrong audience ${JSON.stringify(c.aud)}: this service is ${JSON.stringify(expected.audience)}`);
  if (now >= c.exp + skew) refuse("expired", `expired at ${c.exp} (now ${now}, skew ${skew} s)`);
  if (c.nbf - skew > now) refuse("not_yet_valid", `not yet valid: nbf ${c.nbf} (now ${now}, skew ${skew} s)`);
  const lifetime = c.exp - Math.min(c.iat, c.nbf);
  if (lifetime > MAX_LIFETIME_SECS) refuse("lifetime_too_long", `lifetime ${lifetime} s is over the ${MAX_LIFETIME_SECS} s allowed`);
  if (c.action !== expected.action) {
    refuse("action_mismatch", `action differs: the token approves ${JSON.stringify(c.action)}, this route performs ${JSON.stringify(expected.action)}`);
  }
  if (c.params_sha256 !== expected.paramsSha256) {
    refuse("params_mismatch", `params hash differs: the token approves params_sha256 ${c.params_sha256}, the request carries ${expected.paramsSha256}`);
  }
  return c;
}

/** The claims of a token the agent received, for its own checks; nothing is verified. */
export function readClaimsUnverified(token: string): ApprovalClaims {
  return parseClaims(new Compact(token).payload());
}

// --- DPoP ------------------------------------------------------------------------------------

/** `ath`: base64url SHA-256 of the token. */
export function accessTokenHash(token: string): string {
  return createHash("sha256").update(token, "ascii").digest("base64url");
}

/** The URL without query and fragment, normalized as the `url` crate serializes it; undefined
 * when it is not an absolute http(s) URL. */
export function normalizeUrl(url: string): string | undefined {
  try {
    const parsed = new URL(url);
    if ((parsed.protocol !== "http:" && parsed.protocol !== "https:") || parsed.username || parsed.password) return undefined;
    parsed.search = "";
    parsed.hash = "";
    return parsed.toString();
  } catch {
    return undefined;
  }
}

async function signJws(key: AgentKey, header: object, payload: object): Promise<string> {
  const input = `${b64encode(JSON.stringify(header))}.${b64encode(JSON.stringify(payload))}`;
  return `${input}.${b64encode(await key.sign(new TextEncoder().encode(input)))}`;
}

/** A fresh DPoP proof for one request. */
export async function createProof(key: AgentKey, method: string, url: string, iat: number, accessToken?: string): Promise<string> {
  const claims: Record<string, unknown> = {
    jti: randomBytes(16).toString("base64url"),
    htm: method,
    htu: normalizeUrl(url) ?? url,
    iat,
  };
  if (accessToken !== undefined) claims.ath = accessTokenHash(accessToken);
  return signJws(key, { typ: DPOP_TYP, alg: "EdDSA", jwk: key.publicJwk() }, claims);
}

/** Imported proof keys by `x`: an agent signs every proof with one key, and importing a key
 * costs more than verifying with it. Bounded: emptied when full. */
const proofKeys = new Map<string, PublicKey>();
const MAX_PROOF_KEYS = 1024;

async function proofKey(jwk: Record<string, unknown>): Promise<PublicKey> {
  if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || typeof jwk.x !== "string") return importPublic(jwk);
  const cached = proofKeys.get(jwk.x);
  if (cached) return cached;
  const key = await importPublic(jwk);
  if (proofKeys.size >= MAX_PROOF_KEYS) proofKeys.clear();
  proofKeys.set(jwk.x, key);
  return key;
}

/** Thrown for a proof that does not verify for this method, URL, time and token. */
export class DpopError extends Error {}

/** Checks a proof; returns its key's thumbprint, `jti` and `iat`. */
export async function verifyProof(
  proof: string,
  expected: { method: string; url: string; now: number; accessToken?: string },
): Promise<{ jkt: string; jti: string; iat: number }> {
  let jws: Compact;
  try {
    jws = new Compact(proof);
  } catch (error) {
    throw new DpopError(`malformed DPoP proof: ${(error as Error).message}`);
  }
  const { typ, alg, jwk } = jws.header;
  if (typ !== DPOP_TYP) throw new DpopError(`DPoP proof typ must be "${DPOP_TYP}", got ${JSON.stringify(typ ?? null)}`);
  if (alg !== "EdDSA") throw new DpopError(`DPoP proof alg must be EdDSA, got ${JSON.stringify(alg)}`);
  if (typeof jwk !== "object" || jwk === null) throw new DpopError("DPoP proof key unusable: the header has no jwk");
  let key: PublicKey;
  try {
    key = await proofKey(jwk as Record<string, unknown>);
  } catch (error) {
    throw new DpopError(`DPoP proof key unusable: ${(error as Error).message}`);
  }
  if (!(await jws.verify(key))) throw new DpopError("DPoP proof signature does not verify under its jwk");
  let c: Record<string, unknown>;
  try {
    c = jws.payload();
  } catch (error) {
    throw new DpopError(`malformed DPoP proof: ${(error as Error).message}`);
  }
  if (typeof c.jti !== "string" || typeof c.htm !== "string" || typeof c.htu !== "string" || !I64(c.iat) ||
      !(c.ath === undefined || c.ath === null || typeof c.ath === "string")) {
    throw new DpopError("malformed DPoP proof: the payload is not valid JSON of the expected shape");
  }
  if (c.htm !== expected.method) throw new DpopError(`DPoP proof is for method ${JSON.stringify(c.htm)}, the request is ${JSON.stringify(expected.method)}`);
  const wanted = normalizeUrl(expected.url);
  if (wanted === undefined || normalizeUrl(c.htu) !== wanted) {
    throw new DpopError(`DPoP proof is for URL ${JSON.stringify(c.htu)}, the request is ${JSON.stringify(expected.url)}`);
  }
  if (Math.abs(c.iat - expected.now) > MAX_PROOF_AGE_SECS) {
    throw new DpopError(`DPoP proof iat ${c.iat} is more than ${MAX_PROOF_AGE_SECS} s from now (${expected.now})`);
  }
  if (expected.accessToken !== undefined && c.ath !== accessTokenHash(expected.accessToken)) {
    throw new DpopError("DPoP proof ath does not match the token sent with it");
  }
  return { jkt: key.kid, jti: c.jti, iat: c.iat };
}
