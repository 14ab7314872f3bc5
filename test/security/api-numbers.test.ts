import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestRuntime } from '../helpers/runtime.js';
import { call, storedRows, startQuietRuntime } from './api-helpers.js';

/**
 * Attack: numbers DynamoDB cannot hold or the API never meant (`to_position=1e300` used to be a
 * 500). Every numeric query and body field is an integer within bounds, or a 400 naming it.
 */
describe('numeric extremes', () => {
  let t: TestRuntime;
  let agentId: string;
  let envId: string;
  let sessionId: string;
  beforeAll(async () => {
    ({ t, agentId, envId } = await startQuietRuntime());
    sessionId = (await t.client.beta.sessions.create({ agent: agentId, environment_id: envId })).id;
  });
  afterAll(() => t.close());

  const extremes = ['1e300', '-1e300', '9007199254740993', '1e16', '-0.5', '1.5', 'NaN', 'Infinity', '-1', '0x10', ' 1'];

  it('answers 400 for a history page cursor that decodes to an extreme position', async () => {
    // Cursors are opaque to clients, but nothing stops one from crafting them.
    for (const a of ['1e300', '-5', '9007199254740993', 'NaN']) {
      const page = Buffer.from(JSON.stringify({ a }), 'utf8').toString('base64url');
      const res = await call(t, 'GET', `/v1/sessions/${sessionId}/events?page=${page}`);
      expect(res.status, a).toBe(400);
      expect(res.body.error?.message).toMatch(/^page:/);
    }
  });

  it('answers 400 naming the query parameter for every extreme value', async () => {
    const wrong: string[] = [];
    const queries: Array<[string, string]> = [
      [`/v1/sessions/${sessionId}/events?to_position=`, 'to_position'],
      [`/v1/sessions/${sessionId}/events?from_position=`, 'from_position'],
      [`/v1/sessions/${sessionId}/events?limit=`, 'limit'],
      [`/v1/agents?limit=`, 'limit'],
      [`/v1/agents/${agentId}?version=`, 'version'],
      [`/v1/sessions?limit=`, 'limit'],
    ];
    for (const [path, name] of queries) {
      for (const v of extremes) {
        const res = await call(t, 'GET', path + encodeURIComponent(v));
        if (res.status !== 400 || !res.body.error?.message.startsWith(`${name}:`)) wrong.push(`${path}${v}: ${res.status} ${JSON.stringify(res.body).slice(0, 120)}`);
      }
    }
    // (a header value loses its surrounding spaces on the way, so ' 1' is a valid 1 there)
    for (const v of extremes.filter((x) => x.trim() === x)) {
      const res = await call(t, 'GET', `/v1/sessions/${sessionId}/events/stream`, undefined, { 'last-event-id': v });
      if (res.status !== 400) wrong.push(`Last-Event-ID ${v}: ${res.status}`);
    }
    expect(wrong).toEqual([]);
    // in range still works
    expect((await call(t, 'GET', `/v1/sessions/${sessionId}/events?to_position=9007199254740990`)).status).toBe(200);
  });

  it('answers 400 naming the body field for extreme numbers and amounts', async () => {
    const before = await storedRows(t);
    const wrong: string[] = [];
    const cases: Array<[string, string, unknown, string]> = [
      ['POST', `/v1/sessions/${sessionId}/fork`, { up_to_position: 1e300 }, 'up_to_position'],
      ['POST', `/v1/sessions/${sessionId}/fork`, { up_to_position: -0.5 }, 'up_to_position'],
      ['POST', `/v1/agents/${agentId}`, { version: 1e300, name: 'x' }, 'version'],
      ['POST', `/v1/agents/${agentId}`, { version: 2 ** 60, name: 'x' }, 'version'],
      ['POST', '/v1/sessions', { agent: { type: 'agent', id: agentId, version: 1e300 }, environment_id: envId }, 'agent'],
      ['POST', '/v1/sessions', { agent: agentId, environment_id: envId, budget: { type: 'limit', max_list_cost: { amount: '1e300', currency: 'USD' } } }, 'budget.max_list_cost.amount'],
      ['POST', '/v1/sessions', { agent: agentId, environment_id: envId, budget: { type: 'limit', max_list_cost: { amount: '9'.repeat(400), currency: 'USD' } } }, 'budget.max_list_cost.amount'],
      ['POST', `/v1/sessions/${sessionId}`, { budget: { type: 'limit', max_list_cost: { amount: 'NaN', currency: 'USD' } } }, 'budget.max_list_cost.amount'],
    ];
    for (const [method, path, body, field] of cases) {
      const res = await call(t, method, path, body);
      if (res.status !== 400 || !res.body.error?.message.includes(field)) wrong.push(`${path} ${JSON.stringify(body).slice(0, 80)}: ${res.status} ${JSON.stringify(res.body).slice(0, 160)}`);
    }
    expect(wrong).toEqual([]);
    expect(await storedRows(t)).toEqual(before);
  });
});
