import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestRuntime } from '../helpers/runtime.js';
import { call, storedRows, startQuietRuntime } from './api-helpers.js';

/**
 * Attack: records over DynamoDB's 400 KB item limit, through `resources`, `budget` or a large
 * agent (each used to be a 500). Now each is refused before anything is written, with a message
 * that names the field and the limit.
 */
describe('oversized records', () => {
  let t: TestRuntime;
  let agentId: string;
  let envId: string;
  beforeAll(async () => {
    ({ t, agentId, envId } = await startQuietRuntime());
  });
  afterAll(() => t.close());

  // Within `system`'s bound of 100,000 UTF-16 units, but 200,000 UTF-8 bytes (4 per character).
  const wide = '💥'.repeat(50_000);
  const kbOf = (n: number) => 'x'.repeat(n * 1024);

  it('refuses an agent larger than an agent may be, naming the field and the limit, and stores nothing', async () => {
    const before = await storedRows(t);
    const res = await call(t, 'POST', '/v1/agents', { name: 'big', model: 'claude-sonnet-4-6', system: wide });
    expect(res.status).toBe(413);
    expect(res.body.error).toMatchObject({ type: 'request_too_large', message: expect.stringMatching(/agent .* more than the 192 KB .* system/) });
    const tools = Array.from({ length: 100 }, (_, i) => ({ type: 'custom', name: `t${i}`, description: 'd', input_schema: { type: 'object', description: kbOf(4) } }));
    const viaTools = await call(t, 'POST', '/v1/agents', { name: 'big', model: 'claude-sonnet-4-6', tools });
    expect(viaTools.status).toBe(413);
    expect(viaTools.body.error?.message).toMatch(/tools/);
    const update = await call(t, 'POST', `/v1/agents/${agentId}`, { tools });
    expect(update.status).toBe(413);
    expect(await storedRows(t)).toEqual(before);
  });

  it('refuses a session whose resources make it too large, and stores nothing', async () => {
    const before = await storedRows(t);
    const resources = Array.from({ length: 20 }, () => ({ type: 'file', file_id: 'file_1', note: kbOf(20) }));
    const res = await call(t, 'POST', '/v1/sessions', { agent: agentId, environment_id: envId, resources });
    expect(res.status).toBe(413);
    expect(res.body.error?.message).toMatch(/session .* more than the 320 KB .* resources/);
    expect(await storedRows(t)).toEqual(before);
  });

  it('refuses an oversized budget as a 400 naming its field', async () => {
    const before = await storedRows(t);
    const res = await call(t, 'POST', '/v1/sessions', {
      agent: agentId,
      environment_id: envId,
      budget: { type: 'limit', max_list_cost: { amount: '1', currency: 'USD', padding: kbOf(500) } },
    });
    expect(res.status).toBe(400);
    expect(res.body.error?.message).toMatch(/budget\.max_list_cost: unknown field\(s\) padding/);
    expect(await storedRows(t)).toEqual(before);
  });

  it('refuses session updates and environments that would outgrow a record', async () => {
    const session = await t.client.beta.sessions.create({ agent: agentId, environment_id: envId });
    const before = await storedRows(t);
    const big = { type: 'cloud', packages: Object.fromEntries(['apt', 'npm', 'pip', 'gem', 'go', 'cargo'].map((k) => [k, Array.from({ length: 256 }, () => 'p'.repeat(256))])) };
    const env = await call(t, 'POST', '/v1/environments', { name: 'big', config: big });
    expect(env.status).toBe(413);
    expect(env.body.error?.message).toMatch(/environment .* config\.packages/);
    const upd = await call(t, 'POST', `/v1/environments/${envId}`, { config: big });
    expect(upd.status).toBe(413);
    expect(await storedRows(t)).toEqual(before);
    expect((await call(t, 'POST', `/v1/sessions/${session.id}`, { title: 'still fine' })).status).toBe(200);
  });
});
