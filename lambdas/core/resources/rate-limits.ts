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

/** Failed authentications allowed per minute: from one client address, and from all of them together. */
export interface AuthFailureLimits {
  perAddress: number;
  global: number;
  /** The window the counts are kept for. @default 60000 */
  windowMs?: number;
}

export const DEFAULT_AUTH_FAILURE_LIMITS: AuthFailureLimits = { perAddress: 30, global: 600 };

/**
 * Limits failed authentication, not authentication: only requests whose key did not verify are
 * counted (per client address, and across all addresses), and once a count is used up for the
 * minute, a key this API instance has not seen verify before is answered 429 without being
 * looked up. A key that has verified here goes on being checked as usual, so a flood of bad keys,
 * even from the tenant's own address, does not lock the tenant out. Counts live in the state
 * table, so every API instance (every Lambda) shares them.
 */
export class AuthFailureLimiter {
  private readonly windowMs: number;

  constructor(
    private readonly table: StateTable,
    private readonly limits: AuthFailureLimits = DEFAULT_AUTH_FAILURE_LIMITS,
  ) {
    this.windowMs = limits.windowMs ?? 60_000;
  }

  private window(now: number) {
    return Math.floor(now / this.windowMs) * this.windowMs;
  }

  private counters(address: string): Array<[pk: string, limit: number]> {
    return [
      [`authfail#addr#${address}`, this.limits.perAddress],
      ['authfail#all', this.limits.global],
    ];
  }

  /** Seconds until `address` may try an unknown key again; 0 if it may now. */
  async blockedFor(address: string, now = Date.now()): Promise<number> {
    const window = this.window(now);
    for (const [pk, limit] of this.counters(address)) {
      if (!limit) continue;
      const item = await this.table.get(pk, String(window));
      if (Number(item?.count ?? 0) >= limit) return Math.max(1, Math.ceil((window + this.windowMs - now) / 1000));
    }
    return 0;
  }

  async recordFailure(address: string, now = Date.now()): Promise<void> {
    const window = this.window(now);
    for (const [pk, limit] of this.counters(address)) {
      if (!limit) continue;
      await this.table.increment(pk, String(window), 'count', 1, { expiresAt: Math.ceil((window + 2 * this.windowMs) / 1000) });
    }
  }
}

/**
 * The form a client address is counted under: at most 64 characters of what an IP address is
 * made of (anything else becomes `_`), an IPv4-mapped IPv6 address as its IPv4 address, and
 * `unknown` when the platform gave none.
 */
export function clientKey(address: string | undefined | null): string {
  if (!address) return 'unknown';
  const v4 = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  return (v4 ? v4[1] : address).slice(0, 64).replace(/[^0-9A-Za-z.:]/g, '_');
}
