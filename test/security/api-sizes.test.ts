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

  it('refuses padding in a session\'s resources before it can grow the record, and stores nothing', async () => {
    // Resources are strict (every field has a bound), so padding is an unknown field: a 400 that
    // names it, before any size is counted.
    const before = await storedRows(t);
    const resources = Array.from({ length: 20 }, () => ({ type: 'file', file_id: 'file_1', note: kbOf(20) }));
    const res = await call(t, 'POST', '/v1/sessions', { agent: agentId, environment_id: envId, resources });
    expect(res.status).toBe(400);
    expect(res.body.error?.message).toMatch(/resources\.0: unknown field\(s\) note/);
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

  it('bounds an environment below a record: the largest config the edge takes is stored, one package more is refused', async () => {
    // Every package list is bounded (256 names of 256 characters; cargo, gem and go refused), so
    // the largest environment fits a record with room to spare: the size check never has to act.
    const session = await t.client.beta.sessions.create({ agent: agentId, environment_id: envId });
    const list = () => Array.from({ length: 256 }, (_, i) => `${String(i).padStart(3, '0')}${'p'.repeat(253)}`);
    const largest = { type: 'cloud', packages: { apt: list(), npm: list(), pip: list() } };
    const env = await call(t, 'POST', '/v1/environments', { name: 'largest', config: largest });
    expect(env.status).toBe(200);
    const before = await storedRows(t);
    const over = await call(t, 'POST', `/v1/environments/${envId}`, { config: { ...largest, packages: { ...largest.packages, pip: [...list(), 'one-more'] } } });
    expect(over.status).toBe(400);
    expect(over.body.error?.message).toMatch(/config\.packages\.pip/);
    expect(await storedRows(t)).toEqual(before);
    expect((await call(t, 'POST', `/v1/sessions/${session.id}`, { title: 'still fine' })).status).toBe(200);
  });
});
