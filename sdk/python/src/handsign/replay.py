"""Consuming a token's `jti` exactly once, and a DPoP proof's too.

A token is good for 30 seconds, plenty of time to present it twice: to this process, to another
instance, or from a copy taken off the wire. Only a record of the `jti`s already accepted can
tell; `consume` is that record and must be one atomic test-and-set. A `jti` is kept until the
token's `exp` plus the skew, after which the token is refused as expired anyway. The proofs that
came with accepted tokens are recorded in the same store (under `dpop:` and a hash of the
agent's key and the proof's `jti`) for as long as they are fresh, so no proof is accepted twice.

`MemoryReplayStore` serves one process, and only from the moment it was made: what an earlier
process accepted is gone with it. It reports when its record began (`records_since`), and the
verifier refuses every token that could have been accepted before then (`issued_before_start`).
Several instances of a service must share one `RedisReplayStore`, which outlives the process.
"""

from __future__ import annotations

import heapq
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

__all__ = ["MemoryReplayStore", "RedisReplayStore", "ReplayStore", "ReplayStoreUnavailableError"]


class ReplayStoreUnavailableError(Exception):
    """The store could not answer; the request is refused with 503 (fail closed)."""


class ReplayStore(Protocol):
    async def consume(self, jti: str, expires_at: int) -> bool:
        """Records `jti` as used until `expires_at` (unix seconds) unless it is recorded
        already. True for the first use, False for a replay."""
        ...

    def records_since(self) -> Optional[int]:
        """The unix second from which the store holds every id consumed through it, for a
        store that knows nothing of earlier uses (one in process memory); the verifier refuses
        tokens that could have been accepted before then. None for a store that outlives the
        process."""
        ...


class MemoryReplayStore:
    """A record in this process's memory, dropping entries once expired (oldest first). Its
    record begins when it is made (or at `record_began_at`, for a service that knows no other
    process accepted its tokens since then), so after each start the verifier refuses the tokens
    issued before it and in its first `skew + 1` seconds."""

    def __init__(
        self, clock: Callable[[], float] = time.time, record_began_at: Optional[int] = None
    ) -> None:
        self._clock = clock
        self.started_at = int(clock()) if record_began_at is None else record_began_at
        self._seen: Dict[str, int] = {}
        self._expiries: List[Tuple[int, str]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def records_since(self) -> Optional[int]:
        return self.started_at

    def consume_now(self, jti: str, expires_at: int) -> bool:
        """`consume` without awaiting, for synchronous callers."""
        now = int(self._clock())
        with self._lock:
            while self._expiries and self._expiries[0][0] <= now:
                expiry, old = heapq.heappop(self._expiries)
                if self._seen.get(old) == expiry:
                    del self._seen[old]
            if jti in self._seen:
                return False
            self._seen[jti] = expires_at
            heapq.heappush(self._expiries, (expires_at, jti))
            return True

    async def consume(self, jti: str, expires_at: int) -> bool:
        return self.consume_now(jti, expires_at)


DEFAULT_KEY_PREFIX = "handsign:jti:"


class RedisReplayStore:
    """`SET <prefix><jti> 1 NX EXAT <expires_at>` on a shared Redis: of any number of instances
    presenting the same `jti` at once, exactly one gets `OK`. Redis forgets the key once the
    token could no longer be accepted anyway."""

    def __init__(self, redis: Any, prefix: str = DEFAULT_KEY_PREFIX) -> None:
        self._redis = redis
        self._prefix = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str = DEFAULT_KEY_PREFIX) -> "RedisReplayStore":
        """Connects with two-second timeouts, so that an unreachable Redis refuses a request
        (503) rather than hangs it."""
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(
            url, socket_timeout=2, socket_connect_timeout=2, retry_on_timeout=False
        )
        return cls(client, prefix)

    def records_since(self) -> Optional[int]:
        return None

    async def consume(self, jti: str, expires_at: int) -> bool:
        try:
            reply = await self._redis.set(self._prefix + jti, 1, nx=True, exat=expires_at)
        except Exception as error:  # any client failure: we cannot tell, so refuse
            raise ReplayStoreUnavailableError(
                f"the replay store cannot be reached: {error}"
            ) from error
        return bool(reply)
