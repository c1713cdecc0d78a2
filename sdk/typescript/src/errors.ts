/**
 * Every refusal of the service-side checks, with the code and status the Rust middleware
 * (`handsign-verify`) answers with, in one table (`REFUSALS`), and the agent's outcomes.
 *
 * A refusal is answered with its status, `WWW-Authenticate: Approval error="<code>",
 * error_description="..."` for a 401, `Retry-After` for a 503, and the JSON body
 * `{"error": "<code>", "message": "..."}`.
 */

/** The table to compare with crates/handsign-verify/src/refusal.rs, the token checks of
 * crates/handsign-protocol/src/token.rs and docs/protocol.md: code -> HTTP status. */
export const REFUSALS = {
  missing_token: 401,
  malformed_token: 401,
  wrong_alg: 401,
  wrong_typ: 401,
  unknown_kid: 401,
  bad_signature: 401,
  malformed_claims: 401,
  wrong_issuer: 401,
  wrong_audience: 401,
  expired: 401,
  not_yet_valid: 401,
  lifetime_too_long: 401,
  action_mismatch: 401,
  params_mismatch: 401,
  invalid_params: 401,
  dpop_required: 401,
  invalid_dpop: 401,
  dpop_key_mismatch: 401,
  dpop_replayed: 401,
  issued_before_start: 401,
  token_replayed: 401,
  unsupported_media_type: 415,
  body_too_large: 413,
  invalid_body: 400,
  keys_unavailable: 503,
  replay_store_unavailable: 503,
} as const;

export type RefusalCode = keyof typeof REFUSALS;

const MAX_DESCRIPTION_CHARS = 400;

/** An HTTP quoted-string as the Rust middleware writes it: quotes and backslashes escaped,
 * characters a header cannot carry replaced by `?`, cut to 400 characters. */
function quoted(value: string): string {
  let out = '"';
  let i = 0;
  for (const c of value) {
    if (i++ === MAX_DESCRIPTION_CHARS) {
      out += "...";
      break;
    }
    if (c === '"' || c === "\\") out += "\\" + c;
    else if (c >= " " && c <= "~") out += c;
    else out += "?";
  }
  return out + '"';
}

/** A request the handler must not run for; `code` says which check failed. */
export class ApprovalRefused extends Error {
  readonly status: number;
  constructor(readonly code: RefusalCode, message: string) {
    super(message);
    this.name = "ApprovalRefused";
    this.status = REFUSALS[code];
  }

  /** The headers of the refusal's answer. */
  headers(): Record<string, string> {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (this.status === 401) {
      headers["www-authenticate"] =
        `Approval error=${quoted(this.code)}, error_description=${quoted(this.message)}`;
    } else if (this.status === 503) {
      headers["retry-after"] = "1";
    }
    return headers;
  }

  body(): { error: string; message: string } {
    return { error: this.code, message: this.message };
  }

  /** The refusal as a Web-standard `Response`. */
  toResponse(): Response {
    return new Response(JSON.stringify(this.body()), { status: this.status, headers: this.headers() });
  }
}

// --- the agent's side: why no approval token came back ---------------------------------------

/** Why `wait()` (or asking) gave no approval; `outcome` names which. */
export class ApprovalError extends Error {
  constructor(
    readonly outcome:
      | "denied"
      | "expired"
      | "cancelled"
      | "timed_out"
      | "refused"
      | "unreachable"
      | "token_already_collected"
      | "bad_answer",
    message: string,
  ) {
    super(message);
    this.name = "ApprovalError";
  }
}

/** The person denied the request with their passkey: an answer to respect. */
export class Denied extends ApprovalError {
  constructor() {
    super("denied", "the request was denied");
  }
}

/** Nobody decided before the ttl ran out, or the approval was not collected in time. */
export class Expired extends ApprovalError {
  constructor() {
    super("expired", "the request expired before it was decided and collected");
  }
}

/** The request was cancelled: by the gateway (for example because the agent was revoked) or by
 * the agent; `reason` says why. */
export class Cancelled extends ApprovalError {
  constructor(readonly reason: string | undefined) {
    super("cancelled", "the request was cancelled" + (reason ? `: ${reason}` : ""));
  }
}

/** The caller's deadline passed with the request still pending: it was cancelled, or (waited on
 * with `keepPending`) it stays pending: wait again, do not ask again. */
export class TimedOut extends ApprovalError {
  constructor(readonly cancelled = false) {
    super("timed_out", `no decision before the deadline; the request ${cancelled ? "was cancelled" : "is still pending"}`);
  }
}

/** The gateway answered with an error; `code` is its stable code. */
export class Refused extends ApprovalError {
  constructor(readonly status: number, readonly code: string, readonly detail: string) {
    super("refused", `the gateway refused (${status} ${code}): ${detail}`);
  }
}

/** The gateway could not be reached, or the connection kept breaking, after the retries. */
export class Unreachable extends ApprovalError {
  constructor(message: string) {
    super("unreachable", `the gateway is unreachable: ${message}`);
  }
}

/** Approved, but the token went to an earlier read and is never returned twice: ask again. */
export class TokenAlreadyCollected extends ApprovalError {
  constructor() {
    super(
      "token_already_collected",
      "the request was approved, but its token was already collected by an earlier read and is never returned twice; ask for a new approval",
    );
  }
}

/** The gateway answered something the protocol does not allow; nothing in it is trusted. */
export class BadAnswer extends ApprovalError {
  constructor(message: string) {
    super("bad_answer", `the gateway's answer breaks the protocol: ${message}`);
  }
}
