/**
 * Every check a request passes before a service acts on it, in the order of the Rust middleware
 * (`handsign-verify`), so that no stateful or expensive work is done for a request already
 * refused: the `Authorization: Approval` header; the token's header; when the params are the
 * body, a JSON `Content-Type` (`unsupported_media_type`: the handler could not read anything
 * else); an announced body length over the limit; the key for `kid` (the JWKS fetched only for
 * an unknown `kid`, at most once per refresh interval); the body; the params, canonicalized
 * strictly, and their hash; the token; the DPoP proof of a key-bound token; a token that could
 * have been accepted before the replay store's record began (`issued_before_start`: a memory
 * store after a restart may have forgotten its use); and last, the only writes, the proof's
 * `jti` consumed until the proof is stale (`dpop_replayed`), then the token's `jti` until
 * `exp + skew` (`token_replayed`). A refused request never uses up a token.
 *
 * Only a proof that verified, with a token that verified, is recorded, so a caller who is not
 * the token's agent cannot make the service store anything; the record's key is a hash of the
 * agent's key and the `jti`, so its size does not depend on what the agent sent.
 *
 * `verifyApproval` makes a guard usable as Express middleware and with any Web-standard
 * `Request` handler (Hono, Next.js route handlers).
 */

import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { canonicalize, canonicalizeValue, CanonicalError, DEFAULT_LIMITS, type Limits, paramsSha256 } from "./canonical.js";
import { ApprovalRefused, type RefusalCode } from "./errors.js";
import { KeySet } from "./keys.js";
import { MemoryReplayStore, type ReplayStore, ReplayStoreUnavailableError } from "./replay.js";
import { type ApprovalClaims, DpopError, MAX_PROOF_AGE_SECS, MAX_SKEW_SECS, normalizeUrl, tokenKid, verifyProof, verifyToken } from "./token.js";

export const DEFAULT_BODY_LIMIT = 256 * 1024;
const MAX_JWKS_BYTES = 256 * 1024;
const ACTION = /^[A-Za-z0-9._:-]{1,128}$/;

/** A request that passed every check: its verified claims and the exact body hashed. */
export interface Approved {
  claims: ApprovalClaims;
  body: Uint8Array;
}

export interface VerifierOptions {
  /** The gateway's issuer URL (its public URL), compared exactly with `iss`. */
  issuer: string;
  /** This service's audience, compared exactly with `aud`. */
  audience: string;
  /** The URL clients address this service with; a DPoP proof names it plus the path. */
  publicUrl: string;
  /** The gateway's JWKS (https unless loopback), or a fixed key set. */
  jwksUrl?: string;
  keys?: KeySet;
  replayStore?: ReplayStore;
  clockSkew?: number;
  bodyLimit?: number;
  paramsLimits?: Limits;
  allowUnboundTokens?: boolean;
  jwksRefreshInterval?: number;
  jwksMaxAge?: number;
  allowInsecureJwksUrl?: boolean;
  /** Unix seconds; injectable so that tests can set the time. */
  clock?: () => number;
}

/** What one request brings to the checks. */
export interface RequestParts {
  action: string;
  method: string;
  /** The path as the client sent it (no query). */
  path: string;
  /** Header pairs, repeated names kept, so that "exactly one" can be checked. */
  headers: [string, string][];
  /** The body, or a reader given the limit that rejects past it. */
  body: Uint8Array | ((limit: number) => Promise<Uint8Array>);
  /** The params when they are not the body: JSON text as bytes, or a value built in code. */
  params?: Uint8Array | { value: unknown };
}

export function checkAction(action: string): string {
  if (!ACTION.test(action)) {
    throw new Error(`action ${JSON.stringify(action)} is not usable; actions are 1 to 128 of A-Z a-z 0-9 . _ : -`);
  }
  return action;
}

/** The gateway's keys from its JWKS, cached; cached keys stay usable while it is unreachable. */
class JwksCache {
  private keys = new KeySet(new Map());
  private fetchedAt: number | undefined;
  private lastAttempt: number | undefined;
  private lastFailed = false;
  private fetching: Promise<void> | undefined;

  constructor(readonly url: string, readonly refreshInterval: number, readonly maxAge: number) {}

  private freshWith(kid: string): boolean {
    return this.fetchedAt !== undefined && performance.now() / 1000 - this.fetchedAt < this.maxAge && this.keys.get(kid) !== undefined;
  }

  async forKid(kid: string): Promise<KeySet> {
    if (this.freshWith(kid)) return this.keys;
    while (this.fetching) await this.fetching;
    if (this.freshWith(kid)) return this.keys;
    const now = performance.now() / 1000;
    if (this.lastAttempt === undefined || now - this.lastAttempt >= this.refreshInterval) {
      this.fetching = this.refresh();
      await this.fetching;
      this.fetching = undefined;
    }
    if (this.keys.get(kid) !== undefined || !this.lastFailed) return this.keys;
    throw new ApprovalRefused(
      "keys_unavailable",
      "the token names a key this service does not know, and the gateway's keys cannot be fetched right now; try again later",
    );
  }

  private async refresh(): Promise<void> {
    this.lastAttempt = performance.now() / 1000;
    try {
      const response = await fetch(this.url, { redirect: "error", signal: AbortSignal.timeout(5000) });
      if (response.status !== 200 || !response.body) throw new Error(`JWKS answer ${response.status}`);
      const body = await readLimited(response.body as unknown as AsyncIterable<Uint8Array>, MAX_JWKS_BYTES);
      this.keys = await KeySet.fromJwks(JSON.parse(new TextDecoder().decode(body)));
      this.fetchedAt = performance.now() / 1000;
      this.lastFailed = false;
    } catch {
      // The gateway's outage must not stop the tokens it already issued.
      this.lastFailed = true;
    }
  }
}

function values(headers: [string, string][], name: string): string[] {
  return headers.filter(([key]) => key.toLowerCase() === name).map(([, value]) => value);
}

function tooLarge(limit: number): ApprovalRefused {
  return new ApprovalRefused("body_too_large", `the request body is larger than this route's limit of ${limit} bytes`);
}

export class Verifier {
  readonly issuer: string;
  readonly audience: string;
  readonly publicUrl: string;
  readonly skew: number;
  readonly bodyLimit: number;
  readonly paramsLimits: Limits;
  readonly allowUnboundTokens: boolean;
  readonly clock: () => number;
  replayStore: ReplayStore;
  private readonly fixed: KeySet | undefined;
  private readonly jwks: JwksCache | undefined;

  constructor(options: VerifierOptions) {
    if (!options.issuer) throw new Error("the issuer must be the gateway's public URL, got an empty string");
    if (!options.audience) throw new Error("the audience must be this service's audience string");
    const publicUrl = normalizeUrl(options.publicUrl);
    if (publicUrl === undefined || /[?#]/.test(options.publicUrl)) {
      throw new Error(`publicUrl ${JSON.stringify(options.publicUrl)} is not usable; give the absolute http(s) URL clients address this service with`);
    }
    const skew = options.clockSkew ?? MAX_SKEW_SECS;
    if (skew < 0 || skew > MAX_SKEW_SECS) throw new Error(`clock skew ${skew} is over the ${MAX_SKEW_SECS} s allowed`);
    if ((options.jwksUrl === undefined) === (options.keys === undefined)) throw new Error("give exactly one of jwksUrl and keys");
    this.issuer = options.issuer;
    this.audience = options.audience;
    this.publicUrl = publicUrl.replace(/\/$/, "");
    this.skew = skew;
    this.bodyLimit = options.bodyLimit ?? DEFAULT_BODY_LIMIT;
    if (this.bodyLimit < 1) throw new Error("the body limit must be at least 1 byte");
    this.paramsLimits = options.paramsLimits ?? DEFAULT_LIMITS;
    this.allowUnboundTokens = options.allowUnboundTokens ?? false;
    this.clock = options.clock ?? (() => Date.now() / 1000);
    this.replayStore = options.replayStore ?? new MemoryReplayStore(this.clock);
    this.fixed = options.keys;
    if (options.jwksUrl !== undefined) {
      const url = new URL(options.jwksUrl);
      const loopback = ["127.0.0.1", "[::1]", "localhost"].includes(url.hostname);
      if (url.protocol !== "https:" && !(url.protocol === "http:" && (loopback || options.allowInsecureJwksUrl))) {
        throw new Error(`jwksUrl ${options.jwksUrl} is not usable: it must be https unless the host is loopback (allowInsecureJwksUrl)`);
      }
      this.jwks = new JwksCache(options.jwksUrl, options.jwksRefreshInterval ?? 30, options.jwksMaxAge ?? 300);
    } else if (options.keys && options.keys.keys.size === 0) {
      throw new Error("the fixed key set is empty: every token would be refused");
    }
  }

  /** Runs every check; resolves to the approval or rejects with the first `ApprovalRefused`. */
  async verify(request: RequestParts): Promise<Approved> {
    const token = approvalToken(request.headers);
    const kid = tokenKid(token);
    if (request.params === undefined) checkJsonContentType(request.headers);
    for (const value of values(request.headers, "content-length")) {
      if (/^\s*\d+\s*$/.test(value) && Number(value) > this.bodyLimit) throw tooLarge(this.bodyLimit);
    }
    const keys = this.jwks ? await this.jwks.forKid(kid) : this.fixed!;
    const body = request.body instanceof Uint8Array ? request.body : await request.body(this.bodyLimit);
    if (body.length > this.bodyLimit) throw tooLarge(this.bodyLimit);
    let canonical: Uint8Array;
    try {
      const params = request.params;
      canonical =
        params === undefined
          ? canonicalize(body, this.paramsLimits)
          : params instanceof Uint8Array
            ? canonicalize(params, this.paramsLimits)
            : canonicalizeValue(params.value, this.paramsLimits);
    } catch (error) {
      if (!(error instanceof CanonicalError)) throw error;
      throw new ApprovalRefused("invalid_params", `the params cannot be hashed exactly as approved: ${error.message}`);
    }
    const now = Math.floor(this.clock());
    const claims = await verifyToken(token, keys, {
      issuer: this.issuer,
      audience: this.audience,
      action: request.action,
      paramsSha256: paramsSha256(canonical),
      now,
      skew: this.skew,
    });
    const proof = await this.checkKeyBinding(request, token, claims, now);
    this.checkReplayRecordCovers(claims);
    if (proof !== undefined) {
      await this.consume(
        proofRecordId(proof),
        proof.iat + MAX_PROOF_AGE_SECS + 1,
        "dpop_replayed",
        "this DPoP proof was used already: make a new proof for every request",
      );
    }
    await this.consume(
      claims.jti,
      claims.exp + this.skew,
      "token_replayed",
      "this token was used already: an approval is good for one request; ask for a new approval",
    );
    return { claims, body };
  }

  /** Refuses a token the replay store cannot vouch for: one that could have been accepted (its
   * `nbf` less the skew had come) by the time the store's record began, by a previous process
   * whose record is gone. Tokens from the first `skew + 1` seconds after a start are refused
   * too, since the gateway's clock may be ahead of this one by up to the skew. */
  private checkReplayRecordCovers(claims: ApprovalClaims): void {
    const since = this.replayStore.recordsSince?.();
    if (since !== undefined && claims.nbf - this.skew <= since) {
      throw new ApprovalRefused(
        "issued_before_start",
        "this token was issued before the service started, and the service's record of used tokens (in memory) began then: whether it was used already cannot be known; ask for a new approval",
      );
    }
  }

  /** Records `id` as used until `expiresAt`; refuses with `code` and `message` when it was
   * recorded already, and with 503 when the store cannot say. */
  private async consume(id: string, expiresAt: number, code: RefusalCode, message: string): Promise<void> {
    let firstUse: boolean;
    try {
      firstUse = await this.replayStore.consume(id, expiresAt);
    } catch (error) {
      if (!(error instanceof ReplayStoreUnavailableError)) throw error;
      throw new ApprovalRefused("replay_store_unavailable", "the service cannot record the token's use right now; try again with a new approval");
    }
    if (!firstUse) throw new ApprovalRefused(code, message);
  }

  /** The DPoP proof for a key-bound token, verified; an unbound token (no proof) only if the
   * service allows it. */
  private async checkKeyBinding(request: RequestParts, token: string, claims: ApprovalClaims, now: number): Promise<VerifiedProof | undefined> {
    if (!claims.cnf) {
      if (this.allowUnboundTokens) return undefined;
      throw new ApprovalRefused("dpop_required", "the token is not bound to an agent key (no cnf.jkt), and this service accepts key-bound tokens only");
    }
    const proofs = values(request.headers, "dpop");
    if (proofs.length === 0) {
      throw new ApprovalRefused(
        "dpop_required",
        "the token is bound to an agent key (cnf.jkt): send a DPoP header with a proof made with that key for this method and URL, with ath set to the token's hash",
      );
    }
    if (proofs.length > 1) throw new ApprovalRefused("invalid_dpop", "send exactly one DPoP header");
    let proof: VerifiedProof;
    try {
      proof = await verifyProof(proofs[0]!, { method: request.method, url: this.publicUrl + request.path, now, accessToken: token });
    } catch (error) {
      if (!(error instanceof DpopError)) throw error;
      throw new ApprovalRefused("invalid_dpop", error.message);
    }
    if (proof.jkt !== claims.cnf.jkt) {
      throw new ApprovalRefused("dpop_key_mismatch", `the DPoP proof is made with key ${proof.jkt}, but the token is bound to key ${claims.cnf.jkt}`);
    }
    return proof;
  }
}

type VerifiedProof = Awaited<ReturnType<typeof verifyProof>>;

/** The replay store's id for a proof, as the Rust middleware makes it: `dpop:` and base64url
 * SHA-256 of the agent's key thumbprint, `:` and the proof's `jti`, so that agents cannot
 * collide and the record's size is fixed whatever the `jti`'s length. Token `jti`s, chosen by
 * the gateway, never start with `dpop:`. */
function proofRecordId(proof: VerifiedProof): string {
  return "dpop:" + createHash("sha256").update(`${proof.jkt}:${proof.jti}`, "utf8").digest("base64url");
}

/** Refuses a body that the route reads as JSON but that is not sent as JSON (`application/json`
 * or `application/*+json`): the handler's JSON parsing would refuse it after the token was
 * used. */
function checkJsonContentType(headers: [string, string][]): void {
  const contentType = values(headers, "content-type")[0] ?? "";
  const essence = contentType.split(";")[0]!.trim().toLowerCase();
  const subtype = essence.startsWith("application/") ? essence.slice("application/".length) : undefined;
  if (subtype !== undefined && (subtype === "json" || subtype.endsWith("+json"))) return;
  throw new ApprovalRefused(
    "unsupported_media_type",
    contentType
      ? `this route's params are the JSON body, but the Content-Type is ${JSON.stringify([...contentType].slice(0, 100).join(""))}: send application/json`
      : "this route's params are the JSON body: send it with Content-Type: application/json",
  );
}

function approvalToken(headers: [string, string][]): string {
  const found = values(headers, "authorization");
  if (found.length !== 1) throw new ApprovalRefused("missing_token", "send exactly one Authorization header: Authorization: Approval <token>");
  const value = found[0]!;
  // eslint-disable-next-line no-control-regex
  if (!/^[\x00-\x7f]*$/.test(value)) throw new ApprovalRefused("missing_token", "the Authorization header is not ASCII");
  const space = value.indexOf(" ");
  const scheme = space < 0 ? value : value.slice(0, space);
  if (scheme.toLowerCase() !== "approval") {
    throw new ApprovalRefused("missing_token", "the Authorization header does not use the Approval scheme: send Authorization: Approval <token>");
  }
  const token = space < 0 ? "" : value.slice(space + 1).replace(/^ +| +$/g, "");
  if (!token) throw new ApprovalRefused("missing_token", "the Authorization: Approval header holds no token");
  return token;
}

// --- frameworks ------------------------------------------------------------------------------

async function readLimited(chunks: AsyncIterable<Uint8Array>, limit: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of chunks) {
    size += chunk.length;
    if (size > limit) throw tooLarge(limit);
    parts.push(chunk);
  }
  return new Uint8Array(Buffer.concat(parts));
}

/** An Express (or plain `node:http`) request once the guard let it through. */
export interface ApprovedRequest extends IncomingMessage {
  approved?: Approved;
  rawBody?: Buffer;
  body?: unknown;
}

/** The guard of one route: Express middleware, and checks for Web-standard `Request`s. */
export interface ApprovalGuard {
  /** Express middleware: put it before any body parser. The handler finds the `Approved` in
   * `req.approved`, the verified bytes in `req.rawBody` and their JSON in `req.body`. */
  (req: ApprovedRequest, res: ServerResponse, next: (error?: unknown) => void): void;
  /** Checks a Web `Request` (consuming its body); rejects with `ApprovalRefused`. */
  verifyRequest(request: Request): Promise<Approved>;
  /** Wraps a Web handler (Hono, Next.js route handlers): it runs only for approved requests and
   * gets the `Approved`; refusals are answered as the Rust middleware answers them. */
  wrap(handler: (request: Request, approved: Approved) => Response | Promise<Response>): (request: Request) => Promise<Response>;
  readonly verifier: Verifier;
}

/** The guard for routes performing `action`, with a new `Verifier` or a shared one. */
export function verifyApproval(options: (VerifierOptions | { verifier: Verifier }) & { action: string }): ApprovalGuard {
  const action = checkAction(options.action);
  const verifier = "verifier" in options ? options.verifier : new Verifier(options);

  const middleware = (req: ApprovedRequest, res: ServerResponse, next: (error?: unknown) => void): void => {
    const headers: [string, string][] = [];
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) headers.push([req.rawHeaders[i]!, req.rawHeaders[i + 1]!]);
    const original = (req as { originalUrl?: string }).originalUrl ?? req.url ?? "/";
    verifier
      .verify({
        action,
        method: req.method ?? "GET",
        path: original.split("?")[0]!,
        headers,
        body: (limit) => readLimited(req, limit),
      })
      .then((approved) => {
        req.approved = approved;
        req.rawBody = Buffer.from(approved.body);
        req.body = JSON.parse(req.rawBody.toString("utf8"));
        next();
      })
      .catch((error: unknown) => {
        if (!(error instanceof ApprovalRefused)) return next(error);
        const body = JSON.stringify(error.body());
        res.writeHead(error.status, error.headers());
        res.end(body);
      });
  };

  const verifyRequest = (request: Request): Promise<Approved> => {
    const headers: [string, string][] = [];
    request.headers.forEach((value, key) => {
      // Headers joins repeated fields with ", "; split Authorization and DPoP back, neither value
      // can hold a comma, so a repeated header is still seen as two.
      for (const part of key === "authorization" || key === "dpop" ? value.split(", ") : [value]) headers.push([key, part]);
    });
    return verifier.verify({
      action,
      method: request.method,
      path: new URL(request.url).pathname,
      headers,
      body: (limit) =>
        request.body ? readLimited(request.body as unknown as AsyncIterable<Uint8Array>, limit) : Promise.resolve(new Uint8Array()),
    });
  };

  const wrap =
    (handler: (request: Request, approved: Approved) => Response | Promise<Response>) =>
    async (request: Request): Promise<Response> => {
      let approved: Approved;
      try {
        approved = await verifyRequest(request);
      } catch (error) {
        if (error instanceof ApprovalRefused) return error.toResponse();
        throw error;
      }
      return handler(request, approved);
    };

  return Object.assign(middleware, { verifyRequest, wrap, verifier });
}
