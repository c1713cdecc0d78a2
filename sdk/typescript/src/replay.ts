/**
 * Consuming a token's `jti` exactly once: an atomic test-and-set, kept until the token's `exp`
 * plus the skew. `MemoryReplayStore` serves one process and refuses every token that could have
 * been accepted before it started (it cannot know what an earlier process accepted); several
 * instances of a service must share one `RedisReplayStore`.
 */

export interface ReplayStore {
  /** Records `jti` as used until `expiresAt` (unix seconds) unless it is recorded already;
   * `notBefore` is the first second any verifier could have accepted the token (`nbf` minus
   * the skew). Resolves true for the first use, false for a replay; rejects with
   * `ReplayStoreUnavailableError` when it cannot tell. */
  consume(jti: string, expiresAt: number, notBefore: number): Promise<boolean>;
}

/** The store could not answer: the request is refused with 503 (fail closed). */
export class ReplayStoreUnavailableError extends Error {}

/** A record in this process's memory, dropping entries once expired. */
export class MemoryReplayStore implements ReplayStore {
  readonly startedAt: number;
  private readonly seen = new Map<string, number>();

  constructor(private readonly clock: () => number = () => Date.now() / 1000) {
    this.startedAt = Math.floor(clock());
  }

  get size(): number {
    return this.seen.size;
  }

  consumeNow(jti: string, expiresAt: number, notBefore: number): boolean {
    if (notBefore <= this.startedAt) return false;
    const now = Math.floor(this.clock());
    // A Map iterates in insertion order; entries mostly expire in that order, so the sweep stops
    // at the first live one and costs nothing in the usual case.
    for (const [old, expiry] of this.seen) {
      if (expiry > now) break;
      this.seen.delete(old);
    }
    if (this.seen.has(jti)) return false;
    this.seen.set(jti, expiresAt);
    return true;
  }

  async consume(jti: string, expiresAt: number, notBefore: number): Promise<boolean> {
    return this.consumeNow(jti, expiresAt, notBefore);
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
