import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../lambdas/api/app.js';
import { QUERY_PARAMETERS } from '../../lambdas/api/query-params.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

/** A query parameter Corral does not read is refused by name, never silently dropped. */
describe('query parameters', () => {
  let t: TestRuntime;
  let client: Anthropic;
  const get = (path: string) => fetch(`${t.runtime.url}${path}`, { headers: { 'x-api-key': t.runtime.apiKey } });

  beforeAll(async () => {
    t = await startTestRuntime();
    client = new Anthropic({ baseURL: t.runtime.url, apiKey: t.runtime.apiKey, maxRetries: 0 });
  });
  afterAll(() => t.close());

  it('answers 400 naming a parameter the route does not read, on lists and single objects alike', async () => {
    const agent = await client.beta.agents.create({ name: 'q', model: 'claude-sonnet-4-6' });
    for (const [path, name] of [
      ['/v1/agents?order=desc', 'order'],
      [`/v1/agents/${agent.id}?expand=all`, 'expand'],
      ['/v1/environments?created_at[gte]=2026-01-01T00:00:00Z', 'created_at[gte]'],
      ['/v1/sessions?deployment_id=dep_1', 'deployment_id'],
      ['/v1/sessions?memory_store_id=mem_1&limit=5', 'memory_store_id'],
      ['/v1/vaults?order=asc', 'order'],
    ] as const) {
      const res = await get(path);
      expect(res.status, path).toBe(400);
      const body = (await res.json()) as { error: { type: string; message: string } };
      expect(body.error.type).toBe('invalid_request_error');
      expect(body.error.message).toContain(`${name}: query parameter not supported by Corral`);
    }
    // Through the SDK as a user would send them.
    const env = await client.beta.environments.create({ name: 'q' });
    const session = await client.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    await expect(client.beta.sessions.events.list(session.id, { event_deltas: true } as never)).rejects.toMatchObject({ status: 400 });
    // `beta=true` rides along on any route.
    expect((await get(`/v1/agents/${agent.id}?beta=true`)).status).toBe(200);
  });

  it('filters agents and sessions by created_at and agent_version, as the SDK declares', async () => {
    const before = new Date(Date.now() - 1000).toISOString();
    const agent = await client.beta.agents.create({ name: 'dated', model: 'claude-sonnet-4-6' });
    const env = await client.beta.environments.create({ name: 'dated' });
    const s1 = await client.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    await client.beta.agents.update(agent.id, { version: 1, name: 'dated v2' });
    const s2 = await client.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    const future = new Date(Date.now() + 3_600_000).toISOString();

    const ids = async <T extends { id: string }>(page: AsyncIterable<T>) => {
      const out: string[] = [];
      for await (const x of page) out.push(x.id);
      return out;
    };
    expect(await ids(client.beta.agents.list({ 'created_at[gte]': before }))).toContain(agent.id);
    expect(await ids(client.beta.agents.list({ 'created_at[gte]': future }))).toEqual([]);
    expect(await ids(client.beta.agents.list({ 'created_at[lte]': before }))).not.toContain(agent.id);

    expect(await ids(client.beta.sessions.list({ agent_id: agent.id }))).toEqual(expect.arrayContaining([s1.id, s2.id]));
    expect(await ids(client.beta.sessions.list({ agent_id: agent.id, agent_version: 1 }))).toEqual([s1.id]);
    expect(await ids(client.beta.sessions.list({ agent_id: agent.id, agent_version: 2 }))).toEqual([s2.id]);
    expect(await ids(client.beta.sessions.list({ agent_id: agent.id, 'created_at[gt]': s1.created_at }))).toEqual([s2.id]);
    expect(await ids(client.beta.sessions.list({ agent_id: agent.id, 'created_at[lt]': s2.created_at }))).toEqual([s1.id]);
    expect(await ids(client.beta.sessions.list({ 'created_at[gte]': future }))).toEqual([]);

    await expect(client.beta.sessions.list({ agent_version: 1 })).rejects.toMatchObject({ status: 400 });
    const bad = await get('/v1/agents?created_at[gte]=yesterday');
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain('created_at[gte]: not a timestamp');
  });

  it('documents exactly the routes the app serves, so every routed path has its parameters', () => {
    const app = createApp(t.runtime.services);
    const routed = new Set(app.routes.filter((r) => r.method !== 'ALL').map((r) => `${r.method} ${r.path}`));
    for (const route of routed) if (route.includes('/v1/')) expect([...QUERY_PARAMETERS.keys()], route).toContain(route);
  });
});
