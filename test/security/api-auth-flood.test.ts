import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../lambdas/api/app.js';
import { generateApiKey } from '../../lambdas/core/resources/tenants.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

/**
 * Attack: 300 bad keys, which used to get 300 × 401 and a store lookup each. Now failed
 * authentication is limited per client address (and in all): past the limit, a key that has not
 * verified before is answered 429 with `retry-after`, unlooked-up; the tenant's real key, which
 * has, keeps working through the flood.
 */
// Counted over a day rather than a minute here, so that no window ends in the middle of a test.
const DAY = 24 * 3600_000;

describe('a flood of bad API keys', () => {
  let t: TestRuntime;
  beforeAll(async () => {
    t = await startTestRuntime({ runtime: { authFailureLimits: { perAddress: 30, global: 1000, windowMs: DAY } } });
  });
  afterAll(() => t.close());

  const get = (key: string) => fetch(`${t.runtime.url}/v1/agents`, { headers: { 'x-api-key': key } });

  it('counts per client address, and in all', async () => {
    const app = createApp(t.runtime.services, {
      clientAddress: (c) => c.req.header('x-test-peer'),
      authFailureLimits: { perAddress: 5, global: 12, windowMs: DAY },
    });
    const from = (peer: string, key: string) => app.request('/v1/agents', { headers: { 'x-api-key': key, 'x-test-peer': peer } });
    // The tenant's key verified before the flood (a key never seen before waits like any other).
    expect((await from('203.0.113.4', t.runtime.apiKey)).status).toBe(200);
    const run = async (peer: string, n: number) => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) out.push((await from(peer, 'sk-corral-wrong')).status);
      return out;
    };
    const a = await run('203.0.113.1', 7);
    expect(a.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
    expect(a.slice(5)).toEqual([429, 429]);
    expect(await run('203.0.113.2', 5)).toEqual([401, 401, 401, 401, 401]); // another address has its own count
    // global: 10 failures counted so far (5 + 5; this test runs first); 2 more, then everyone's unknown keys wait
    expect(await run('203.0.113.3', 3)).toEqual([401, 401, 429]);
    expect((await from('203.0.113.4', 'sk-corral-other')).status).toBe(429);
    expect((await from('203.0.113.4', t.runtime.apiKey)).status).toBe(200);
    expect((await from('203.0.113.1', t.runtime.apiKey)).status).toBe(200); // even from the flooding address
  });
  it('answers 429 with retry-after after 30 failures a minute, and the real key still works', async () => {
    expect((await get(t.runtime.apiKey)).status).toBe(200); // the tenant was here before the flood
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    for (let i = 0; i < 300; i++) {
      const res = await get(generateApiKey());
      statuses.push(res.status);
      if (res.status === 429) {
        retryAfter = res.headers.get('retry-after');
        expect(await res.json()).toMatchObject({ type: 'error', error: { type: 'rate_limit_error' } });
      } else await res.body?.cancel();
      if (i % 50 === 0) expect((await get(t.runtime.apiKey)).status).toBe(200);
    }
    expect(statuses.slice(0, 30).every((s) => s === 401)).toBe(true);
    expect(statuses.slice(30).every((s) => s === 429)).toBe(true);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    expect(Number(retryAfter)).toBeLessThanOrEqual(DAY / 1000);
    expect((await get(t.runtime.apiKey)).status).toBe(200);
  });

});
