"""Handsign for Python: ask a person to approve an exact action with their passkey (agents), and
accept only requests that carry that approval (services).

Agents: `Client` / `AsyncClient`, `requires_approval`, and `client.auth(approval)` for httpx.
Services: `Verifier`, `ApprovalMiddleware` and `require_approval` (FastAPI), replay stores.
Both: `canonicalize`, byte-identical to the gateway's RFC 8785 form.
"""

from .canonical import CanonicalError, Limits, canonicalize, canonicalize_value, params_sha256
from .client import Approval, AsyncClient, Client, PendingApproval, RetryPolicy, requires_approval
from .errors import (
    REFUSALS,
    ApprovalError,
    ApprovalExpired,
    ApprovalRefused,
    BadAnswer,
    Cancelled,
    Denied,
    Refused,
    TimedOut,
    TokenAlreadyCollected,
    Unreachable,
)
from .keys import AgentKey, KeyFileError, KeySet
from .replay import MemoryReplayStore, RedisReplayStore, ReplayStore
from .token import ApprovalClaims
from .verify import Approved, Verifier

__all__ = [
    "REFUSALS",
    "AgentKey",
    "Approval",
    "ApprovalClaims",
    "ApprovalError",
    "ApprovalExpired",
    "ApprovalRefused",
    "Approved",
    "AsyncClient",
    "BadAnswer",
    "CanonicalError",
    "Cancelled",
    "Client",
    "Denied",
    "KeyFileError",
    "KeySet",
    "Limits",
    "MemoryReplayStore",
    "PendingApproval",
    "RedisReplayStore",
    "Refused",
    "ReplayStore",
    "RetryPolicy",
    "TimedOut",
    "TokenAlreadyCollected",
    "Unreachable",
    "Verifier",
    "canonicalize",
    "canonicalize_value",
    "params_sha256",
    "requires_approval",
]
