import { CorralError } from '../errors.js';
import type { StateTable } from '../store.js';
import { keys } from '../storage/keys.js';
import { counterRecords } from '../storage/items.js';

export type RateClass = 'create' | 'write' | 'read';

/** Requests per minute per tenant for each class of request; 0 turns a class's limit off. */
export type RateLimits = Record<RateClass, number>;

export const DEFAULT_RATE_LIMITS: RateLimits = { create: 300, write: 1200, read: 6000 };

/**
 * Parse `create=300,write=1200,read=6000` (any subset); throws on anything else. The limits
 * setting of the deployment (`rateLimits` in CDK context, `CORRAL_RATE_LIMITS` in a function).
 */
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

/** The form `parseRateLimits` reads: `create=300,write=1200,read=6000`. */
export function formatRateLimits(limits: RateLimits): string {
  return (['create', 'write', 'read'] as const).map((k) => `${k}=${limits[k]}`).join(',');
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
 * Most shards a class's counter of one tenant is spread over (`CORRAL_RATE_LIMIT_SHARDS`). Sized
 * for the account's default regional API Gateway quota of 10,000 requests per second: one tenant
 * sending all of it spreads its counter writes over 10 partitions, each within the 1,000 writes
 * per second a DynamoDB partition takes. (Rejected requests mostly cost no write: see
 * `RateLimiter`.)
 */
export const DEFAULT_RATE_LIMIT_SHARDS = 10;

/**
 * A shard counts at least this many of a window's requests: a limit below `2 ×` this is one exact
 * counter, and a larger one gets a shard per this many requests, up to the most shards allowed.
 * Below about 100 per shard the allowance (below) would be a large share of the limit.
 */
export const MIN_REQUESTS_PER_SHARD = 100;

/** How a limit is counted: on how many shards, and how many requests each admits per window. */
export interface ShardPlan {
  shards: number;
  perShard: number;
}

/**
 * The shards of a limit of `limit` requests per window, and what each admits.
 *
 * Requests are counted on a shard chosen at random and admitted while that shard's count is
 * within `perShard` (`RateLimiter` counts them in batches, and moves on to another shard when its
 * pick is full), so a check is at most one write, never a read of the other shards. The price is
 * accuracy: the shards fill unevenly. A tenant sending exactly `limit` requests puts on each
 * shard a binomial count with mean `limit / shards` and standard deviation about
 * `sqrt(limit / shards)`; each shard admits its share plus two standard deviations, so
 * - a tenant below the limit is very rarely refused early (a shard more than 2σ above its share:
 *   about 2% per shard when sending exactly the limit, vanishingly few at 80% of it), and
 * - a tenant far above it is admitted at most `shards × perShard`, the limit plus
 *   `2 × sqrt(limit × shards)` (with 10 shards: 1,200 -> 1,420, 6,000 -> 6,490).
 * One shard (a limit under `2 × MIN_REQUESTS_PER_SHARD`, or `maxShards` 1) counts exactly.
 */
export function shardPlan(limit: number, maxShards: number): ShardPlan {
  const shards = Math.max(1, Math.min(Math.floor(maxShards), Math.floor(limit / MIN_REQUESTS_PER_SHARD)));
  if (shards === 1) return { shards, perShard: limit };
  const share = limit / shards;
  return { shards, perShard: Math.ceil(share + 2 * Math.sqrt(share)) };
}

/**
 * A shard's allowance is reserved in batches of at most this share of it (`batchCap`): the most
 * an API instance holds unused, and so the most a limit can refuse early per instance.
 */
export const BATCH_SHARE = 1 / 20;

/** The largest batch an instance reserves of a shard admitting `perShard` (1: count every request). */
export function batchCap(perShard: number): number {
  return Math.max(1, Math.floor(perShard * BATCH_SHARE));
}

export interface RateLimiterOptions {
  /** Most shards per tenant and class (see `shardPlan`). @default DEFAULT_RATE_LIMIT_SHARDS */
  shards?: number;
  /** @default 60000 */
  windowMs?: number;
  /** Picks the shard: a number in [0, 1). @default Math.random */
  random?: () => number;
}

/** What an instance holds of one tenant's class in the current window. */
interface Allowance {
  /** Requests reserved on the shared counter and not admitted yet. */
  tokens: number;
  /** The size of the next reservation. */
  batch: number;
  /** A reservation under way: requests that find no token wait for it. */
  pending: Promise<void> | null;
}

/**
 * Per-tenant limits as fixed one-minute windows counted in the state table, so every API
 * instance (every Lambda) shares them. The count is an atomic increment of one shard of the
 * tenant's counter (`shardPlan`), so no counter item takes more than its share of a tenant's
 * requests.
 *
 * An instance counts in batches: it reserves requests on a shard with one increment of the
 * batch's size, admits that many from memory, then reserves again. The first reservation of a
 * window is of one request; each one used up makes the next twice as large, up to `batchCap` of
 * the shard's allowance (a twentieth; one for a limit under 20 per shard, which is so counted per
 * request, exactly). A reservation the shard can only partly grant gets what is left, so the
 * counter never admits more than it would one request at a time (`shards × perShard`); what an
 * instance reserved and did not use by the end of the window is the most the limit refuses
 * early, at most `batchCap - 1` per instance (for 1,200 writes a minute: 6 of each shard's 142).
 * A tenant in steady use so costs one counter write per batch, not per request.
 *
 * A shard found full is remembered by this instance until its window ends, and a later request
 * that picks it is refused without a write: counts only grow within a window, so the write would
 * have refused it too. A tenant far over its limit therefore costs each shard about one write per
 * API instance per window, not one per request.
 */
export class RateLimiter {
  private readonly maxShards: number;
  private readonly windowMs: number;
  private readonly random: () => number;
  /** Shards known full, by `<pk> <sk>`, all of window `fullWindow`. */
  private full = new Set<string>();
  private fullWindow = -1;
  /** By `<tenant> <class>`, all of window `fullWindow`. */
  private allowances = new Map<string, Allowance>();

  constructor(
    private readonly table: StateTable,
    private readonly limits: RateLimits = DEFAULT_RATE_LIMITS,
    opts: RateLimiterOptions = {},
  ) {
    this.maxShards = opts.shards ?? DEFAULT_RATE_LIMIT_SHARDS;
    if (!Number.isInteger(this.maxShards) || this.maxShards < 1) throw new RangeError(`rate limit shards: expected a positive integer, got ${this.maxShards}`);
    this.windowMs = opts.windowMs ?? 60_000;
    this.random = opts.random ?? Math.random;
  }

  async check(tenant: string, kind: RateClass, now = Date.now()): Promise<void> {
    const limit = this.limits[kind];
    if (!limit) return;
    const window = Math.floor(now / this.windowMs) * this.windowMs;
    if (window !== this.fullWindow) this.newWindow(window);
    const id = `${tenant} ${kind}`;
    let a = this.allowances.get(id);
    if (!a) {
      a = { tokens: 0, batch: 1, pending: null };
      if (this.allowances.size < 100_000) this.allowances.set(id, a);
    }
    for (;;) {
      if (a.tokens > 0) {
        a.tokens--;
        return;
      }
      if (!a.pending) break;
      await a.pending;
      // The window turned meanwhile: count the request in the new one.
      if (window !== this.fullWindow) return this.check(tenant, kind, Math.max(now, this.fullWindow));
    }
    let granted = 0;
    const reserve = this.reserve(tenant, kind, limit, window, a.batch).then((n) => {
      granted = n;
    });
    a.pending = reserve;
    try {
      await reserve;
    } finally {
      a.pending = null;
    }
    if (!granted) throw new RateLimitedError(Math.max(1, Math.ceil((window + this.windowMs - now) / 1000)), kind, limit);
    if (granted === a.batch) a.batch = Math.min(a.batch * 2, batchCap(shardPlan(limit, this.maxShards).perShard));
    a.tokens += granted - 1;
  }

  /**
   * Reserves up to `batch` requests on a shard chosen at random, or, if it is full, on the next
   * one not known full; how many were granted (0: every shard is full). Each shard costs an
   * instance at most one write that finds it full per window.
   */
  private async reserve(tenant: string, kind: RateClass, limit: number, window: number, batch: number): Promise<number> {
    const { shards, perShard } = shardPlan(limit, this.maxShards);
    const first = Math.min(shards - 1, Math.floor(this.random() * shards));
    for (let k = 0; k < shards; k++) {
      const key = keys.rateCounter(tenant, kind, window, (first + k) % shards);
      const memo = `${key.pk} ${key.sk}`;
      if (this.full.has(memo)) continue;
      // DynamoDB's TTL removes old windows on AWS.
      const count = await counterRecords.increment(this.table, key, Math.ceil((window + 2 * this.windowMs) / 1000), batch);
      const granted = Math.max(0, Math.min(batch, perShard - (count - batch)));
      if (granted < batch && this.full.size < 100_000) this.full.add(memo);
      if (granted) return granted;
    }
    return 0;
  }

  /** A new window: nothing is known full, nothing is reserved, batches start again from one. */
  private newWindow(window: number) {
    this.full = new Set();
    this.allowances = new Map();
    this.fullWindow = window;
  }
}

/** Which limit a request counts against. */
export function classify(method: string, path: string): RateClass {
  if (method === 'GET' || method === 'HEAD') return 'read';
  if (method === 'POST' && /^\/v1\/(agents|environments|sessions|vaults|files)\/?$/.test(path)) return 'create';
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

  private counters(address: string, window: number): Array<[key: { pk: string; sk: string }, limit: number]> {
    return [
      [keys.authFailures(address, window), this.limits.perAddress],
      [keys.authFailures('all', window), this.limits.global],
    ];
  }

  /** Seconds until `address` may try an unknown key again; 0 if it may now. */
  async blockedFor(address: string, now = Date.now()): Promise<number> {
    const window = this.window(now);
    for (const [key, limit] of this.counters(address, window)) {
      if (!limit) continue;
      if ((await counterRecords.count(this.table, key)) >= limit) return Math.max(1, Math.ceil((window + this.windowMs - now) / 1000));
    }
    return 0;
  }

  async recordFailure(address: string, now = Date.now()): Promise<void> {
    const window = this.window(now);
    for (const [key, limit] of this.counters(address, window)) {
      if (!limit) continue;
      await counterRecords.increment(this.table, key, Math.ceil((window + 2 * this.windowMs) / 1000));
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
