/**
 * The agent's side: ask the gateway for an approval, wait for the person's decision, and send
 * the token with a fresh DPoP proof to the service.
 *
 * Waiting is the gateway's long poll (`?wait=60`, repeated), answered the moment the request is
 * decided; nothing sleeps except between retries after a failure. Reads are retried on a broken
 * connection and on 502/503/504, always on the same request; creating a request is retried only
 * when the connection could not be opened, so the person is never asked twice.
 *
 * A wait that ends without a decision (its `timeoutMs` passed, its `signal` aborted) cancels the
 * request at the gateway, so that the person is not asked about something nobody waits for.
 */

import { canonicalizeValue, paramsSha256 } from "./canonical.js";
import { BadAnswer, Cancelled, Denied, Expired, Refused, TimedOut, TokenAlreadyCollected, Unreachable } from "./errors.js";
import { AgentKey } from "./keys.js";
import { type ApprovalClaims, createProof, readClaimsUnverified } from "./token.js";

const MAX_WAIT_SECS = 60;
const ANSWER_SLACK_MS = 30_000;
/** The reason a request is cancelled with when its wait ends without a decision (as the Rust
 * SDK). */
const STOPPED_WAITING = "the agent stopped waiting for a decision";

export interface RetryPolicy {
  attempts: number;
  firstBackoffMs: number;
  maxBackoffMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 10, firstBackoffMs: 250, maxBackoffMs: 8000 };

function backoff(retry: RetryPolicy, failures: number, retryAfterMs = 0): number {
  return Math.min(Math.max(retry.firstBackoffMs * 2 ** Math.max(failures - 1, 0), retryAfterMs), retry.maxBackoffMs);
}

const now = (): number => Math.floor(Date.now() / 1000);

/** Waits `ms`, or rejects with the signal's reason as soon as it aborts. */
function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const aborted = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", aborted);
      resolve();
    }, ms);
    signal?.addEventListener("abort", aborted, { once: true });
  });
}

/** What a call to the gateway gave: an answer, or no answer (`unsent` when the connection could
 * not even be opened). */
type Outcome = { status: number; text: string; retryAfterMs?: number } | { broken: string; unsent: boolean };

function refusal(outcome: { status: number; text: string }): Refused {
  try {
    const parsed = JSON.parse(outcome.text) as { error?: unknown; message?: unknown };
    if (typeof parsed.error === "string") return new Refused(outcome.status, parsed.error, String(parsed.message ?? ""));
  } catch {
    // not the gateway's own error format: probably a proxy in front of it
  }
  return new Refused(outcome.status, `http_${outcome.status}`, outcome.text.slice(0, 200));
}

function answerJson(outcome: { status: number; text: string }): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(outcome.text);
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // reported below
  }
  throw new BadAnswer(`a ${outcome.status} answer that is not a JSON object`);
}

/** An approved request: the token (good once, for 30 seconds) and its claims. */
export interface Approval {
  token: string;
  claims: ApprovalClaims;
}

/** A request waiting for the person: show `approvalUrl` and `code` to them. */
export interface PendingApproval {
  id: string;
  approvalUrl: string;
  code: string;
  expiresAt: number;
  paramsSha256: string;
  /** The approval, or a rejection with the `ApprovalError` subclass of the outcome. When
   * `timeoutMs` passes first, the request is cancelled and the wait rejects with `TimedOut` (a
   * decision that arrives meanwhile wins); with `keepPending` it stays pending, to be waited on
   * again. When `signal` aborts, the request is cancelled and the wait rejects with the signal's
   * reason. */
  wait(options?: WaitOptions): Promise<Approval>;
  /** Withdraws the request: the person is no longer asked, and it can never be approved nor
   * yield a token. A request no longer pending is `Refused` with `not_pending`. */
  cancel(reason?: string): Promise<void>;
}

export interface WaitOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
  keepPending?: boolean;
}

export interface ApprovalRequest {
  action: string;
  params: unknown;
  audience: string;
  user?: string;
  message?: string;
  ttl?: number;
}

export class Client {
  readonly gateway: string;
  private readonly keyPromise: Promise<AgentKey>;
  readonly retry: RetryPolicy;

  /** `key` is an `AgentKey`, or the path of its private JWK file (created owner-only on first
   * use; the same format as the Rust SDK, the CLI and the Python SDK). */
  constructor(options: { gateway: string; key: AgentKey | string; retry?: RetryPolicy }) {
    const url = new URL(options.gateway);
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new Error(`invalid gateway URL ${options.gateway}: the scheme must be http or https`);
    }
    if (url.search || url.hash) throw new Error(`invalid gateway URL ${options.gateway}: a gateway URL has no query or fragment`);
    this.gateway = options.gateway.replace(/\/+$/, "");
    this.keyPromise = typeof options.key === "string" ? AgentKey.loadOrCreate(options.key) : Promise.resolve(options.key);
    this.retry = options.retry ?? DEFAULT_RETRY;
  }

  key(): Promise<AgentKey> {
    return this.keyPromise;
  }

  /** One call; an aborted `signal` rejects with its reason rather than giving an outcome. */
  private async call(method: string, path: string, query: string, body: string | undefined, holdSecs: number, signal?: AbortSignal): Promise<Outcome> {
    const key = await this.keyPromise;
    const url = this.gateway + path;
    const headers: Record<string, string> = { dpop: await createProof(key, method, url, now()) };
    if (body !== undefined) headers["content-type"] = "application/json";
    try {
      const response = await fetch(url + query, {
        method,
        headers,
        body,
        signal: AbortSignal.any([AbortSignal.timeout(holdSecs * 1000 + ANSWER_SLACK_MS), ...(signal ? [signal] : [])]),
      });
      const retryAfter = response.headers.get("retry-after");
      return {
        status: response.status,
        text: await response.text(),
        ...(retryAfter && /^\d+$/.test(retryAfter) ? { retryAfterMs: Number(retryAfter) * 1000 } : {}),
      };
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      const cause = (error as { cause?: { code?: string } }).cause;
      return { broken: String((error as Error).message) + (cause?.code ? ` (${cause.code})` : ""), unsent: cause?.code === "ECONNREFUSED" };
    }
  }

  /** Asks for `action` with exactly `params` for the service `audience`; resolves at once with
   * the approval link and match code. */
  async requestApproval(request: ApprovalRequest): Promise<PendingApproval> {
    // Generous limits: the gateway enforces its own; this recomputes the hash it must report.
    const canonical = canonicalizeValue(request.params, { maxBytes: 64 * 1024 * 1024, maxDepth: 128 });
    const localHash = paramsSha256(canonical);
    const members = [
      `"action":${JSON.stringify(request.action)}`,
      `"params":${new TextDecoder().decode(canonical)}`,
      `"audience":${JSON.stringify(request.audience)}`,
    ];
    for (const name of ["user", "message", "ttl"] as const) {
      if (request[name] !== undefined) members.push(`"${name}":${JSON.stringify(request[name])}`);
    }
    const body = `{${members.join(",")}}`;
    const outcome = await this.sendOnce("/v1/approvals", body);
    if (outcome.status !== 201) throw refusal(outcome);
    const answer = answerJson(outcome);
    const { id, approval_url, params_sha256, code, expires_at } = answer;
    if (typeof id !== "string" || typeof approval_url !== "string" || typeof params_sha256 !== "string" ||
        typeof code !== "string" || typeof expires_at !== "number") {
      throw new BadAnswer("the answer to a new request is incomplete");
    }
    if (params_sha256 !== localHash) {
      throw new BadAnswer(
        `the gateway recorded params_sha256 ${params_sha256} but the params sent hash to ${localHash}; the request may have been altered on the way, so it is not waited on`,
      );
    }
    return {
      id,
      approvalUrl: approval_url,
      code,
      expiresAt: expires_at,
      paramsSha256: params_sha256,
      wait: (options) => this.waitFor(id, params_sha256, options ?? {}),
      cancel: (reason) => this.cancel(id, reason),
    };
  }

  /** A POST that changes state, sent again only when the connection could not even be opened
   * (so that it never happens twice). */
  private async sendOnce(path: string, body: string | undefined): Promise<{ status: number; text: string }> {
    let failures = 0;
    for (;;) {
      const outcome = await this.call("POST", path, "", body, 0);
      if (!("broken" in outcome)) return outcome;
      failures++;
      if (!outcome.unsent || failures >= this.retry.attempts) throw new Unreachable(outcome.broken);
      await pause(backoff(this.retry, failures));
    }
  }

  private async cancel(id: string, reason?: string): Promise<void> {
    const outcome = await this.sendOnce(`/v1/approvals/${id}/cancel`, reason === undefined ? undefined : JSON.stringify({ reason }));
    if (outcome.status !== 200) throw refusal(outcome);
    const answer = answerJson(outcome);
    if (answer.id !== id || answer.status !== "cancelled") {
      throw new BadAnswer(`asked to cancel request ${id}, the answer says ${String(answer.id)} ${String(answer.status)}`);
    }
  }

  private async waitFor(id: string, hash: string, options: WaitOptions): Promise<Approval> {
    const { signal } = options;
    try {
      signal?.throwIfAborted();
      return await this.follow(id, hash, options.timeoutMs, signal);
    } catch (error) {
      if (signal?.aborted) {
        // Decided meanwhile, or unreachable: the abort is what is reported.
        await this.cancel(id, STOPPED_WAITING).catch(() => undefined);
        throw signal.reason;
      }
      if (!(error instanceof TimedOut) || options.keepPending) throw error;
    }
    try {
      await this.cancel(id, STOPPED_WAITING);
    } catch (error) {
      // A decision that arrived first is the wait's outcome.
      if (error instanceof Refused && error.code === "not_pending") return this.follow(id, hash, 0);
      throw error;
    }
    throw new TimedOut(true);
  }

  private async follow(id: string, hash: string, timeoutMs?: number, signal?: AbortSignal): Promise<Approval> {
    const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
    let failures = 0;
    let lastFailure: string | undefined;
    let first = true;
    for (;;) {
      const wait = deadline === undefined ? MAX_WAIT_SECS : Math.floor(Math.min(Math.max(deadline - Date.now(), 0) / 1000, MAX_WAIT_SECS));
      if (wait === 0 && !first) {
        if (lastFailure !== undefined) throw new Unreachable(lastFailure);
        throw new TimedOut();
      }
      first = false;
      const outcome = await this.call("GET", `/v1/approvals/${id}`, `?wait=${wait}`, undefined, wait, signal);
      let failure: string;
      if (!("broken" in outcome) && outcome.status === 200) {
        const answer = answerJson(outcome);
        const token = this.decided(answer, id);
        if (token === null) {
          failures = 0;
          lastFailure = undefined;
          continue;
        }
        if (token !== undefined) return this.approval(token, id, hash);
        failure = "approved, but the token was neither delivered nor marked delivered";
      } else if ("broken" in outcome) {
        failure = outcome.broken;
      } else if ([502, 503, 504].includes(outcome.status)) {
        failure = refusal(outcome).message;
      } else {
        throw refusal(outcome);
      }
      failures++;
      const message = `${failure} (reading request ${id} at ${this.gateway}, attempt ${failures})`;
      if (failures >= this.retry.attempts) throw new Unreachable(message);
      lastFailure = message;
      let ms = backoff(this.retry, failures, "broken" in outcome ? 0 : outcome.retryAfterMs);
      if (deadline !== undefined) ms = Math.min(ms, Math.max(deadline - Date.now(), 0));
      await pause(ms, signal);
    }
  }

  /** The token when approved, null while pending, undefined for an approved answer without a
   * token that is read again; throws for every other outcome. */
  private decided(answer: Record<string, unknown>, id: string): string | null | undefined {
    if (answer.id !== id) throw new BadAnswer(`asked about request ${id}, the answer is about ${String(answer.id)}`);
    switch (answer.status) {
      case "pending":
        return null;
      case "approved":
        if (typeof answer.token === "string") return answer.token;
        if (answer.token !== undefined) throw new BadAnswer("the token is not a string");
        if (answer.token_delivered === true) throw new TokenAlreadyCollected();
        return undefined;
      case "denied":
        throw new Denied();
      case "expired":
        throw new Expired();
      case "cancelled":
        throw new Cancelled(typeof answer.reason === "string" ? answer.reason : undefined);
      default:
        throw new BadAnswer(`unknown request status ${JSON.stringify(answer.status)}`);
    }
  }

  private async approval(token: string, id: string, hash: string): Promise<Approval> {
    let claims: ApprovalClaims;
    try {
      claims = readClaimsUnverified(token);
    } catch (error) {
      throw new BadAnswer(`the token cannot be read: ${(error as Error).message}`);
    }
    if (claims.approval !== id) throw new BadAnswer(`the token is for request ${claims.approval}`);
    if (claims.params_sha256 !== hash) throw new BadAnswer("the token approves other params than those asked for");
    const key = await this.keyPromise;
    if (claims.cnf && claims.cnf.jkt !== key.id) throw new BadAnswer("the token is bound to another agent's key");
    return { token, claims };
  }

  /** `fetch` with the approval's token and a fresh DPoP proof (with `ath`) for this request. */
  async fetch(approval: Approval | string, input: string | URL, init: RequestInit = {}): Promise<Response> {
    const token = typeof approval === "string" ? approval : approval.token;
    const url = new URL(String(input));
    const method = (init.method ?? "GET").toUpperCase();
    const headers = new Headers(init.headers);
    headers.set("authorization", `Approval ${token}`);
    headers.set("dpop", await createProof(await this.keyPromise, method, url.origin + url.pathname, now(), token));
    return fetch(url, { ...init, method, headers });
  }
}
