import { describe, expect, it } from 'vitest';
import {
  DEFAULT_RATE_LIMIT_SHARDS,
  MIN_REQUESTS_PER_SHARD,
  RateLimitedError,
  RateLimiter,
  batchCap,
  shardPlan,
} from '../../lambdas/core/resources/rate-limits.js';
import { keys, RATE_LIMIT_PARTITIONS } from '../../lambdas/core/storage/keys.js';
import type { StateTable } from '../../lambdas/core/store.js';
import { MemoryStateTable } from './memory-store.js';
import { rng as seeded } from '../../bench/lib/stats.js';

/** The memory table, counting the increments (writes), the partitions they went to and what they added. */
function countingTable() {
  const table = new MemoryStateTable();
  const writes: string[] = [];
  const counts = new Map<string, number>();
  const increment = table.increment.bind(table);
  table.increment = (pk, sk, attribute, by, extra) => {
    writes.push(pk);
    counts.set(pk, (counts.get(pk) ?? 0) + by);
    return increment(pk, sk, attribute, by, extra);
  };
  return { table: table as StateTable, writes, counts };
}

const WINDOW = 1_700_000_040_000;

/** Send `n` requests of one tenant in one window; how many were admitted. */
async function send(limiter: RateLimiter, n: number, kind: 'read' | 'write' = 'write'): Promise<number> {
  let admitted = 0;
  for (let i = 0; i < n; i++) {
    try {
      await limiter.check('tnt', kind, WINDOW + 1000);
      admitted++;
    } catch (err) {
      if (!(err instanceof RateLimitedError)) throw err;
    }
  }
  return admitted;
}

describe('sharded rate-limit counters', () => {
  it('count a small limit exactly, on one counter', () => {
    expect(shardPlan(1, 10)).toEqual({ shards: 1, perShard: 1 });
    expect(shardPlan(2 * MIN_REQUESTS_PER_SHARD - 1, 10)).toEqual({ shards: 1, perShard: 2 * MIN_REQUESTS_PER_SHARD - 1 });
    expect(shardPlan(1_000_000, 1)).toEqual({ shards: 1, perShard: 1_000_000 });
  });

  it('give each shard its share plus two standard deviations, up to the most shards allowed', () => {
    // 1,200 over 10 shards: 120 each, + 2 × sqrt(120) = 21.9
    expect(shardPlan(1200, 10)).toEqual({ shards: 10, perShard: 142 });
    // 300: 3 shards of 100, + 20
    expect(shardPlan(300, 10)).toEqual({ shards: 3, perShard: 120 });
    expect(shardPlan(6000, 10)).toEqual({ shards: 10, perShard: 649 });
    expect(shardPlan(6000, 4)).toEqual({ shards: 4, perShard: 1500 + Math.ceil(2 * Math.sqrt(1500)) });
    for (const limit of [200, 999, 1200, 6000, 60_000, 1_000_000]) {
      for (const max of [2, 10, 64]) {
        const { shards, perShard } = shardPlan(limit, max);
        expect(shards).toBeLessThanOrEqual(max);
        expect(limit / shards).toBeGreaterThanOrEqual(MIN_REQUESTS_PER_SHARD);
        // never below the limit; over it by at most 2 × sqrt(limit × shards), plus rounding
        expect(shards * perShard).toBeGreaterThanOrEqual(limit);
        expect(shards * perShard).toBeLessThanOrEqual(limit + 2 * Math.sqrt(limit * shards) + shards);
      }
    }
    expect(DEFAULT_RATE_LIMIT_SHARDS).toBe(10);
  });

  it('keep shard 0 under the unsharded key, and every shard in a partition of its own under rate#', () => {
    expect(keys.rateCounter('tnt', 'write', 60_000)).toEqual({ pk: 'rate#tnt#write', sk: '60000' });
    expect(keys.rateCounter('tnt', 'write', 60_000, 0)).toEqual({ pk: 'rate#tnt#write', sk: '60000' });
    expect(keys.rateCounter('tnt', 'write', 60_000, 7)).toEqual({ pk: 'rate#tnt#write#7', sk: '60000' });
    const like = new RegExp(`^${RATE_LIMIT_PARTITIONS.replace('*', '.*')}$`);
    const pks = Array.from({ length: 10 }, (_, k) => keys.rateCounter('tnt', 'write', 60_000, k).pk);
    expect(new Set(pks).size).toBe(10);
    for (const pk of pks) expect(pk).toMatch(like);
  });

  it('spread one tenant\'s requests over the shards, counted in batches: far fewer writes than requests', async () => {
    const { table, writes, counts } = countingTable();
    const limiter = new RateLimiter(table, { create: 0, write: 1200, read: 0 }, { random: seeded(1) });
    expect(await send(limiter, 960)).toBe(960); // 80% of the limit: nothing refused
    const { perShard } = shardPlan(1200, 10);
    expect(batchCap(perShard)).toBe(7);
    // batches of 1, 2, 4, then 7: about one write per 7 requests
    expect(writes.length).toBeLessThan(960 / 5);
    expect(counts.size).toBe(10);
    // no counter took more than its share plus the allowance
    expect(Math.max(...counts.values())).toBeLessThanOrEqual(perShard);
  });

  it('share the limit honestly between API instances: nothing refused at 80% of it, never more than shards × perShard far over it', async () => {
    const { table, writes } = countingTable();
    const instances = [1, 2, 3, 4].map((seed) => new RateLimiter(table, { create: 0, write: 1200, read: 0 }, { random: seeded(seed) }));
    const roundRobin = async (n: number, at: number) => {
      let admitted = 0;
      for (let i = 0; i < n; i++) {
        try {
          await instances[i % instances.length].check('tnt', 'write', at);
          admitted++;
        } catch (err) {
          if (!(err instanceof RateLimitedError)) throw err;
        }
      }
      return admitted;
    };
    expect(await roundRobin(960, WINDOW + 1000)).toBe(960);
    expect(writes.length).toBeLessThan(960 / 4);
    // the next window, far over the limit
    const { shards, perShard } = shardPlan(1200, 10);
    const admitted = await roundRobin(8000, WINDOW + 61_000);
    expect(admitted).toBeGreaterThanOrEqual(1200);
    expect(admitted).toBeLessThanOrEqual(shards * perShard);
  });

  it('make concurrent requests of one instance wait for the reservation under way rather than each write', async () => {
    const { table, writes } = countingTable();
    const limiter = new RateLimiter(table, { create: 0, write: 1200, read: 0 }, { random: seeded(3) });
    const results = await Promise.allSettled(Array.from({ length: 50 }, () => limiter.check('tnt', 'write', WINDOW + 1000)));
    expect(results.every((r) => r.status === 'fulfilled')).toBe(true);
    // reservations of 1, 2, 4, then 7 each: 1 + 2 + 4 + 7 × 7 = 56 >= 50 in 10 writes
    expect(writes.length).toBe(10);
  });

  it('count a limit under 20 per shard one request at a time, exactly', async () => {
    const { table, writes } = countingTable();
    const limiter = new RateLimiter(table, { create: 0, write: 19, read: 0 }, { random: seeded(2) });
    expect(await send(limiter, 30)).toBe(19);
    expect(writes.length).toBe(20); // 19 admitted, one found the counter full; the rest cost nothing
  });

  it('admit a tenant far over its limit at least the limit and at most shards × perShard', async () => {
    for (const seed of [1, 2, 3]) {
      const limiter = new RateLimiter(new MemoryStateTable(), { create: 0, write: 1200, read: 0 }, { random: seeded(seed) });
      const admitted = await send(limiter, 5000);
      const { shards, perShard } = shardPlan(1200, 10);
      expect(admitted).toBeGreaterThanOrEqual(1200);
      expect(admitted).toBeLessThanOrEqual(shards * perShard);
    }
  });

  it('refuse a request that picks a shard known full without writing', async () => {
    const { table, writes } = countingTable();
    const limiter = new RateLimiter(table, { create: 0, write: 1200, read: 0 }, { random: seeded(4) });
    await send(limiter, 5000);
    // every shard is known full now: more requests cost nothing
    const before = writes.length;
    expect(await send(limiter, 1000)).toBe(0);
    expect(writes.length).toBe(before);
    // another instance has no memory of it: its first request finds each shard full with one
    // write (it looks for one with room before refusing), and is refused; its next costs nothing
    const other = new RateLimiter(table, { create: 0, write: 1200, read: 0 }, { random: () => 0 });
    await expect(other.check('tnt', 'write', WINDOW + 2000)).rejects.toBeInstanceOf(RateLimitedError);
    expect(writes.length).toBe(before + shardPlan(1200, 10).shards);
    await expect(other.check('tnt', 'write', WINDOW + 2000)).rejects.toBeInstanceOf(RateLimitedError);
    expect(writes.length).toBe(before + shardPlan(1200, 10).shards);
    // the next window starts afresh, on every shard
    await expect(limiter.check('tnt', 'write', WINDOW + 61_000)).resolves.toBeUndefined();
  });

  it('count exactly with one shard, whatever the limit', async () => {
    const limiter = new RateLimiter(new MemoryStateTable(), { create: 0, write: 1200, read: 0 }, { shards: 1, random: seeded(5) });
    expect(await send(limiter, 1500)).toBe(1200);
    expect(() => new RateLimiter(new MemoryStateTable(), undefined, { shards: 0 })).toThrow(/positive integer/);
  });
});
