/**
 * Consuming a token's `jti` exactly once, and a DPoP proof's too: an atomic test-and-set, kept
 * until the token's `exp` plus the skew. The proofs that came with accepted tokens are recorded
 * in the same store (under `dpop:` and a hash of the agent's key and the proof's `jti`) for as
 * long as they are fresh, so no proof is accepted twice.
 *
 * `MemoryReplayStore` serves one process, and only from the moment it was made: what an earlier
 * process accepted is gone with it. It reports when its record began (`recordsSince`), and the
 * verifier refuses every token that could have been accepted before then
 * (`issued_before_start`). Several instances of a service must share one `RedisReplayStore`,
 * which outlives the process.
 */

export interface ReplayStore {
  /** Records `jti` as used until `expiresAt` (unix seconds) unless it is recorded already.
   * Resolves true for the first use, false for a replay; rejects with
   * `ReplayStoreUnavailableError` when it cannot tell. */
  consume(jti: string, expiresAt: number): Promise<boolean>;
  /** The unix second from which the store holds every id consumed through it, for a store that
   * knows nothing of earlier uses (one in process memory); the verifier refuses tokens that
   * could have been accepted before then. Absent, or undefined, for a store that outlives the
   * process. */
  recordsSince?(): number | undefined;
}

/** The store could not answer: the request is refused with 503 (fail closed). */
export class ReplayStoreUnavailableError extends Error {}

/** A record in this process's memory, dropping entries once expired. Its record begins when it
 * is made (or at `recordBeganAt`, for a service that knows no other process accepted its tokens
 * since then), so after each start the verifier refuses the tokens issued before it and in its
 * first `skew + 1` seconds. */
export class MemoryReplayStore implements ReplayStore {
  readonly startedAt: number;
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly clock: () => number = () => Date.now() / 1000,
    recordBeganAt?: number,
  ) {
    this.startedAt = recordBeganAt ?? Math.floor(clock());
  }

  recordsSince(): number {
    return this.startedAt;
  }

  get size(): number {
    return this.seen.size;
  }

  consumeNow(jti: string, expiresAt: number): boolean {
    const now = Math.floor(this.clock());
    // A Map iterates in insertion order; entries mostly expire in that order, so the sweep stops
    // at the first live one and costs nothing in the usual case. An entry that outlives a later
    // one (a proof is kept up to 121 s, a token 35 s) only delays the sweep of those behind it,
    // which are treated as gone once expired.
    for (const [old, expiry] of this.seen) {
      if (expiry > now) break;
      this.seen.delete(old);
    }
    const recorded = this.seen.get(jti);
    if (recorded !== undefined && recorded > now) return false;
    this.seen.delete(jti);
    this.seen.set(jti, expiresAt);
    return true;
  }

  async consume(jti: string, expiresAt: number): Promise<boolean> {
    return this.consumeNow(jti, expiresAt);
  }
}

/** What the Redis store needs of a client: node-redis's `sendCommand` (for ioredis, pass
 * `{ sendCommand: (args) => redis.call(...args) }`). */
export interface RedisCommands {
  sendCommand(args: string[]): Promise<unknown>;
}

export const DEFAULT_KEY_PREFIX = "handsign:jti:";

/** `SET <prefix><jti> 1 NX EXAT <expiresAt>` on a shared Redis: exactly one of any number of
 * instances presenting the same `jti` gets `OK`. */
export class RedisReplayStore implements ReplayStore {
  constructor(
    private readonly redis: RedisCommands,
    private readonly prefix: string = DEFAULT_KEY_PREFIX,
  ) {}

  async consume(jti: string, expiresAt: number): Promise<boolean> {
    let reply: unknown;
    try {
      reply = await this.redis.sendCommand(["SET", this.prefix + jti, "1", "NX", "EXAT", String(expiresAt)]);
    } catch (error) {
      throw new ReplayStoreUnavailableError(`the replay store cannot be reached: ${(error as Error).message}`);
    }
    return reply !== null && reply !== undefined;
  }
}
