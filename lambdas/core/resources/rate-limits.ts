import { CorralError } from '../errors.js';
import type { StateTable } from '../store.js';

export type RateClass = 'create' | 'write' | 'read';

/** Requests per minute per tenant for each class of request; 0 turns a class's limit off. */
export type RateLimits = Record<RateClass, number>;

export const DEFAULT_RATE_LIMITS: RateLimits = { create: 300, write: 1200, read: 6000 };

/** Parse `create=300,write=1200,read=6000` (any subset); throws on anything else. */
export function parseRateLimits(spec: string | undefined, base: RateLimits = DEFAULT_RATE_LIMITS): RateLimits {
  const out = { ...base };
  if (!spec) return out;
  for (const part of spec.split(',').map((p) => p.trim()).filter(Boolean)) {
    const m = part.match(/^(create|write|read)=(\d+)$/);
    if (!m) throw new Error(`rate limit ${JSON.stringify(part)}: expected create=N, write=N or read=N`);
    out[m[1] as RateClass] = Number(m[2]);
  }
  return out;
}

export class RateLimitedError extends CorralError {
  constructor(
    readonly retryAfterSeconds: number,
    kind: RateClass,
    limit: number,
  ) {
    super('rate_limit_error', 429, `rate limit of ${limit} ${kind} requests per minute reached; retry after ${retryAfterSeconds} s`);
  }
}

/**
 * Per-tenant limits as fixed one-minute windows counted in the state table, so every API
 * instance (every Lambda) shares them. One atomic increment per request.
 */
export class RateLimiter {
  constructor(
    private readonly table: StateTable,
    private readonly limits: RateLimits = DEFAULT_RATE_LIMITS,
    private readonly windowMs = 60_000,
  ) {}

  async check(tenant: string, kind: RateClass, now = Date.now()): Promise<void> {
    const limit = this.limits[kind];
    if (!limit) return;
    const window = Math.floor(now / this.windowMs) * this.windowMs;
    const count = await this.table.increment(`rate#${tenant}#${kind}`, String(window), 'count', 1, {
      // DynamoDB's TTL removes old windows on AWS.
      expiresAt: Math.ceil((window + 2 * this.windowMs) / 1000),
    });
    if (count > limit) throw new RateLimitedError(Math.max(1, Math.ceil((window + this.windowMs - now) / 1000)), kind, limit);
  }
}

/** Which limit a request counts against. */
export function classify(method: string, path: string): RateClass {
  if (method === 'GET' || method === 'HEAD') return 'read';
  if (method === 'POST' && /^\/v1\/(agents|environments|sessions|vaults)\/?$/.test(path)) return 'create';
  return 'write';
}
