/**
 * Handsign for TypeScript: ask a person to approve an exact action with their passkey (agents),
 * and accept only requests that carry that approval (services). Canonicalization is
 * byte-identical to the gateway's RFC 8785 form.
 */

export { CanonicalError, canonicalize, canonicalizeValue, DEFAULT_LIMITS, formatNumber, type Limits, paramsSha256 } from "./canonical.js";
export { type Approval, type ApprovalRequest, Client, DEFAULT_RETRY, type PendingApproval, type RetryPolicy, type WaitOptions } from "./client.js";
export {
  ApprovalError,
  ApprovalRefused,
  BadAnswer,
  Cancelled,
  Denied,
  Expired,
  REFUSALS,
  type RefusalCode,
  Refused,
  TimedOut,
  TokenAlreadyCollected,
  Unreachable,
} from "./errors.js";
export { AgentKey, KeySet, thumbprint } from "./keys.js";
export { MemoryReplayStore, type RedisCommands, RedisReplayStore, type ReplayStore, ReplayStoreUnavailableError } from "./replay.js";
export { type ApprovalClaims, createProof, verifyProof, verifyToken } from "./token.js";
export { type ApprovalGuard, type Approved, type ApprovedRequest, type RequestParts, Verifier, type VerifierOptions, verifyApproval } from "./verify.js";
