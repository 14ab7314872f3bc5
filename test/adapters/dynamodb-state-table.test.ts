import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoStateTable } from '../../lambdas/adapters/aws/dynamodb-state-table.js';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite, type EmbeddedDynamo } from '../../lambdas/adapters/local/dynalite.js';
import { ConditionFailedError } from '../../lambdas/core/store.js';
import { LeaseManager } from '../../lambdas/core/session/lease.js';

describe('DynamoStateTable (dynalite)', () => {
  let db: EmbeddedDynamo;
  let table: DynamoStateTable;
  beforeAll(async () => {
    db = await startDynalite();
    await ensureTables(db.client, { events: 'events', state: 'state' });
    table = new DynamoStateTable(db.client, 'state');
  });
  afterAll(() => db.close());

  it('puts conditionally', async () => {
    await table.put({ pk: 'a', sk: 'x', v: 1 }, { ifNotExists: true });
    await expect(table.put({ pk: 'a', sk: 'x', v: 2 }, { ifNotExists: true })).rejects.toBeInstanceOf(ConditionFailedError);
    await expect(table.put({ pk: 'a', sk: 'x', v: 2 }, { ifEquals: { v: 5 } })).rejects.toBeInstanceOf(ConditionFailedError);
    await table.put({ pk: 'a', sk: 'x', v: 2 }, { ifEquals: { v: 1 } });
    expect((await table.get('a', 'x'))?.v).toBe(2);
  });

  it('gets several items in one batch, in the order asked, missing ones undefined, repeats answered', async () => {
    await table.put({ pk: 'm', sk: 'head', v: 1 });
    await table.put({ pk: 'm', sk: 'head#usage', v: 2 });
    await table.put({ pk: 'n', sk: 'head', v: 3 });
    const got = await table.getMany([
      { pk: 'm', sk: 'head#usage' },
      { pk: 'none', sk: 'head' },
      { pk: 'n', sk: 'head' },
      { pk: 'm', sk: 'head' },
      { pk: 'm', sk: 'head#usage' },
    ]);
    expect(got.map((i) => i?.v)).toEqual([2, undefined, 3, 1, 2]);
    expect(await table.getMany([])).toEqual([]);
    await expect(table.getMany(Array.from({ length: 101 }, (_, i) => ({ pk: 'p', sk: String(i) })))).rejects.toThrow(/at most 100/);
  });

  it('pages through a partition and the index in both directions', async () => {
    for (let i = 0; i < 7; i++) {
      await table.put({ pk: 'p', sk: `k${i}`, gsi1pk: 'tenant#things', gsi1sk: `k${i}` });
    }
    await table.put({ pk: 'p', sk: 'other' });
    const first = await table.query('p', { prefix: 'k', limit: 3 });
    expect(first.items.map((i) => i.sk)).toEqual(['k0', 'k1', 'k2']);
    expect(first.last).toBe('k2');
    const second = await table.query('p', { prefix: 'k', limit: 10, after: first.last! });
    expect(second.items.map((i) => i.sk)).toEqual(['k3', 'k4', 'k5', 'k6']);
    expect(second.last).toBeNull();
    const back = await table.queryIndex('tenant#things', { limit: 2, reverse: true });
    expect(back.items.map((i) => i.sk)).toEqual(['k6', 'k5']);
    const rest = await table.queryIndex('tenant#things', { limit: 10, reverse: true, after: back.last! });
    expect(rest.items.map((i) => i.sk)).toEqual(['k4', 'k3', 'k2', 'k1', 'k0']);
  });
});

describe('LeaseManager', () => {
  let db: EmbeddedDynamo;
  let leases: LeaseManager;
  beforeAll(async () => {
    db = await startDynalite();
    await ensureTables(db.client, { events: 'events', state: 'state' });
    leases = new LeaseManager(new DynamoStateTable(db.client, 'state'), 1000);
  });
  afterAll(() => db.close());

  it('gives the session to one harness at a time, with a growing fence', async () => {
    const now = 1_000_000;
    const a = await leases.acquire('s1', 'A', now);
    expect(a?.fence).toBe(1);
    expect(await leases.acquire('s1', 'B', now + 10)).toBeNull();
    await leases.release(a!);
    const b = await leases.acquire('s1', 'B', now + 20);
    expect(b?.fence).toBe(2);
  });

  it('lets an expired lease be taken over, after which the old holder cannot renew', async () => {
    const now = 2_000_000;
    const a = await leases.acquire('s2', 'A', now);
    const b = await leases.acquire('s2', 'B', now + 5_000);
    expect(b?.fence).toBe(a!.fence + 1);
    expect(await leases.renew(a!, now + 5_001)).toBe(false);
    expect(await leases.renew(b!, now + 5_001)).toBe(true);
  });

  it('lets only one of two simultaneous acquirers win', async () => {
    const results = await Promise.all(['A', 'B', 'C', 'D'].map((o) => leases.acquire('s3', o, 3_000_000)));
    expect(results.filter(Boolean)).toHaveLength(1);
  });
});
