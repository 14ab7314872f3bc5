import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRateLimits } from '../../lambdas/core/resources/rate-limits.js';
import { generateApiKey } from '../../lambdas/core/resources/tenants.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

describe('per-tenant rate limits', () => {
  let t: TestRuntime;
  beforeAll(async () => {
    // A day-long window: a minute's window could end between the requests that fill it and the
    // one that must be refused.
    t = await startTestRuntime({ runtime: { rateLimits: { create: 3, read: 5, write: 0 }, rateLimitWindowMs: 86_400_000 } });
  });
  afterAll(() => t.close());

  it('answers 429 with retry-after in the Anthropic error shape, per tenant', async () => {
    for (let i = 0; i < 3; i++) await t.client.beta.environments.create({ name: `e${i}` });
    const res = await fetch(`${t.runtime.url}/v1/environments`, {
      method: 'POST',
      headers: { 'x-api-key': t.runtime.apiKey, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'one too many' }),
    });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Number(res.headers.get('retry-after'))).toBeLessThanOrEqual(86_400);
    expect(await res.json()).toMatchObject({ type: 'error', error: { type: 'rate_limit_error', message: expect.stringMatching(/3 create/) } });
    await expect(t.client.beta.agents.create({ name: 'x', model: 'm' })).rejects.toMatchObject({ status: 429 });
    // the rejected creates created nothing
    const names = [];
    for await (const e of t.client.beta.environments.list()) names.push(e.name);
    expect(names.sort()).toEqual(['e0', 'e1', 'e2']);

    // another tenant has its own budget
    const key = generateApiKey();
    await t.runtime.services.tenants.addKey('tenant-b', key);
    const other = new Anthropic({ baseURL: t.runtime.url, apiKey: key, maxRetries: 0 });
    await expect(other.beta.environments.create({ name: 'b' })).resolves.toMatchObject({ name: 'b' });
  });

  it('counts reads separately', async () => {
    const key = generateApiKey();
    await t.runtime.services.tenants.addKey('tenant-c', key);
    const statuses = [];
    for (let i = 0; i < 7; i++) {
      statuses.push((await fetch(`${t.runtime.url}/v1/agents`, { headers: { 'x-api-key': key } })).status);
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429]);
  });

  it('parses limit settings and refuses nonsense', () => {
    expect(parseRateLimits('create=1, read=0')).toEqual({ create: 1, write: 1200, read: 0 });
    expect(() => parseRateLimits('create=lots')).toThrow(/create=N/);
  });
});
