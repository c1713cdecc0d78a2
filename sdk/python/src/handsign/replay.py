"""Consuming a token's `jti` exactly once.

A token is good for 30 seconds, plenty of time to present it twice: to this process, to another
instance, or from a copy taken off the wire. Only a record of the `jti`s already accepted can
tell; `consume` is that record and must be one atomic test-and-set. A `jti` is kept until the
token's `exp` plus the skew, after which the token is refused as expired anyway.

`MemoryReplayStore` serves one process. It cannot know which tokens an earlier process accepted,
so it refuses every token that could have been accepted before it started. Several instances of
a service must share one `RedisReplayStore`.
"""

from __future__ import annotations

import heapq
import threading
import time
from typing import Any, Callable, Dict, List, Protocol, Tuple

__all__ = ["MemoryReplayStore", "RedisReplayStore", "ReplayStore", "ReplayStoreUnavailableError"]


class ReplayStoreUnavailableError(Exception):
    """The store could not answer; the request is refused with 503 (fail closed)."""


class ReplayStore(Protocol):
    async def consume(self, jti: str, expires_at: int, not_before: int) -> bool:
        """Records `jti` as used until `expires_at` (unix seconds) unless it is recorded
        already; `not_before` is the first second any verifier could have accepted the token
        (its `nbf` minus the skew). True for the first use, False for a replay."""
        ...


class MemoryReplayStore:
    """A record in this process's memory, dropping entries once expired (oldest first)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.started_at = int(clock())
        self._seen: Dict[str, int] = {}
        self._expiries: List[Tuple[int, str]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def consume_now(self, jti: str, expires_at: int, not_before: int) -> bool:
        """`consume` without awaiting, for synchronous callers."""
        now = int(self._clock())
        if not_before <= self.started_at:
            # The token could have been accepted by a process that ran before this record began.
            return False
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

    async def consume(self, jti: str, expires_at: int, not_before: int) -> bool:
        return self.consume_now(jti, expires_at, not_before)


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

    async def consume(self, jti: str, expires_at: int, not_before: int) -> bool:
        try:
            reply = await self._redis.set(self._prefix + jti, 1, nx=True, exat=expires_at)
        except Exception as error:  # any client failure: we cannot tell, so refuse
            raise ReplayStoreUnavailableError(
                f"the replay store cannot be reached: {error}"
            ) from error
        return bool(reply)
