import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemPrincipal } from '../../lambdas/core/storage/principal.js';
import { generateApiKey } from '../../lambdas/core/resources/tenants.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

const BETA = { 'anthropic-beta': 'managed-agents-2026-04-01', 'content-type': 'application/json' };

describe('API resources through the official SDK', () => {
  let t: TestRuntime;
  let client: Anthropic;
  beforeAll(async () => {
    t = await startTestRuntime();
    client = t.client;
  });
  afterAll(() => t.close());

  const raw = (path: string, init: RequestInit = {}, key = t.runtime.apiKey) =>
    fetch(`${t.runtime.url}${path}`, { ...init, headers: { ...BETA, 'x-api-key': key, ...(init.headers ?? {}) } });

  it('creates, versions, lists and archives agents', async () => {
    const agent = await client.beta.agents.create({
      name: 'writer',
      model: { id: 'claude-sonnet-4-6', effort: 'high' },
      system: 'Be brief.',
      tools: [{ type: 'agent_toolset_20260401', configs: [{ name: 'bash', permission_policy: { type: 'always_ask' } }] }],
      metadata: { team: 'docs' },
    });
    expect(agent).toMatchObject({ type: 'agent', version: 1, name: 'writer', system: 'Be brief.', archived_at: null });
    expect(agent.model).toEqual({ id: 'claude-sonnet-4-6', effort: { type: 'high' } });
    expect(agent.tools[0]).toMatchObject({
      type: 'agent_toolset_20260401',
      default_config: { enabled: true, permission_policy: { type: 'always_allow' } },
      configs: [{ name: 'bash', enabled: true, permission_policy: { type: 'always_ask' } }],
    });

    const v2 = await client.beta.agents.update(agent.id, { version: 1, system: 'Be thorough.', metadata: { team: null, x: 'y' } });
    expect(v2.version).toBe(2);
    expect(v2.metadata).toEqual({ x: 'y' });
    // an update based on a stale version is a conflict
    await expect(client.beta.agents.update(agent.id, { version: 1, name: 'stale' })).rejects.toMatchObject({ status: 409 });
    // each version stays readable
    expect((await client.beta.agents.retrieve(agent.id, { version: 1 })).system).toBe('Be brief.');
    expect((await client.beta.agents.retrieve(agent.id)).system).toBe('Be thorough.');
    const versions = [];
    for await (const v of client.beta.agents.versions.list(agent.id)) versions.push(v.version);
    expect(versions).toEqual([1, 2]);

    const archived = await client.beta.agents.archive(agent.id);
    expect(archived.archived_at).not.toBeNull();
    const listed = [];
    for await (const a of client.beta.agents.list()) listed.push(a.id);
    expect(listed).not.toContain(agent.id);
    const all = [];
    for await (const a of client.beta.agents.list({ include_archived: true })) all.push(a.id);
    expect(all).toContain(agent.id);
  });

  it('paginates lists with next_page cursors', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await client.beta.environments.create({ name: `env-${i}` })).id);
    const first = await client.beta.environments.list({ limit: 2 });
    expect(first.data).toHaveLength(2);
    expect(first.next_page).toBeTruthy();
    const seen = [];
    for await (const e of client.beta.environments.list({ limit: 2 })) seen.push(e.id);
    expect(seen.filter((id) => ids.includes(id))).toEqual(ids);
    expect(new Set(seen).size).toBe(seen.length);
  });

  it('manages environments', async () => {
    const env = await client.beta.environments.create({
      name: 'py',
      config: { type: 'cloud', networking: { type: 'limited', allowed_hosts: ['pypi.org'] }, packages: { pip: ['requests'] } },
    });
    expect(env.config).toMatchObject({
      type: 'cloud',
      networking: { type: 'limited', allowed_hosts: ['pypi.org'], allow_mcp_servers: false },
      packages: { pip: ['requests'], apt: [] },
    });
    const updated = await client.beta.environments.update(env.id, { name: 'python' });
    expect(updated.name).toBe('python');
    expect((await client.beta.environments.archive(env.id)).archived_at).not.toBeNull();
    expect(await client.beta.environments.delete(env.id)).toEqual({ id: env.id, type: 'environment_deleted' });
    await expect(client.beta.environments.retrieve(env.id)).rejects.toMatchObject({ status: 404 });
  });

  it('creates sessions that pin the agent version', async () => {
    const agent = await client.beta.agents.create({ name: 'pinned', model: 'claude-sonnet-4-6' });
    const env = await client.beta.environments.create({ name: 'e' });
    const session = await client.beta.sessions.create({ agent: agent.id, environment_id: env.id, title: 't', metadata: { k: 'v' } });
    expect(session).toMatchObject({ type: 'session', status: 'idle', title: 't', metadata: { k: 'v' }, environment_id: env.id });
    expect(session.agent).toMatchObject({ id: agent.id, version: 1, name: 'pinned' });
    await client.beta.agents.update(agent.id, { name: 'renamed' });
    expect((await client.beta.sessions.retrieve(session.id)).agent.name).toBe('pinned');
    const v1 = await client.beta.sessions.create({ agent: { type: 'agent', id: agent.id, version: 1 }, environment_id: env.id });
    expect(v1.agent.version).toBe(1);
    const latest = await client.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    expect(latest.agent).toMatchObject({ version: 2, name: 'renamed' });

    const updated = await client.beta.sessions.update(session.id, { title: 'new', metadata: { k: null } });
    expect(updated).toMatchObject({ title: 'new', metadata: {} });
    const listed = [];
    for await (const s of client.beta.sessions.list()) listed.push(s.id);
    expect(listed).toEqual(expect.arrayContaining([session.id, v1.id, latest.id]));
    expect((await client.beta.sessions.archive(session.id)).archived_at).not.toBeNull();
    expect(await client.beta.sessions.delete(v1.id)).toEqual({ id: v1.id, type: 'session_deleted' });
    await expect(client.beta.sessions.retrieve(v1.id)).rejects.toMatchObject({ status: 404 });
  });

  it("replaces a session's tools and MCP servers mid-session, only while it is not running", async () => {
    const agent = await client.beta.agents.create({ name: 'tools', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
    const env = await client.beta.environments.create({ name: 'e' });
    const session = await client.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    const custom = { type: 'custom' as const, name: 'lookup', description: 'Look a word up', input_schema: { type: 'object' as const, properties: {} } };
    const updated = await client.beta.sessions.update(session.id, {
      agent: { tools: [custom, { type: 'mcp_toolset', mcp_server_name: 'docs' }], mcp_servers: [{ type: 'url', name: 'docs', url: 'https://mcp.example.com/mcp' }] },
    });
    expect(updated.agent.tools.map((t) => t.type)).toEqual(['custom', 'mcp_toolset']);
    expect(updated.agent.mcp_servers).toEqual([{ type: 'url', name: 'docs', url: 'https://mcp.example.com/mcp' }]);
    expect(updated.agent).toMatchObject({ id: agent.id, version: 1, name: 'tools' });
    const stored = await client.beta.sessions.retrieve(session.id);
    expect(stored.agent.tools.map((t) => t.type)).toEqual(['custom', 'mcp_toolset']);
    // The agent itself is untouched.
    expect((await client.beta.agents.retrieve(agent.id)).tools.map((t) => t.type)).toEqual(['agent_toolset_20260401']);

    // Omitting a field keeps it; an mcp_toolset must name a server the session lists.
    const cleared = await client.beta.sessions.update(session.id, { agent: { mcp_servers: [] } }).catch((e) => e);
    expect(cleared).toMatchObject({ status: 400 });
    expect(String(cleared.message)).toMatch(/mcp_toolset/);
    expect((await client.beta.sessions.update(session.id, { agent: { tools: [] } })).agent.tools).toEqual([]);

    await t.runtime.services.sessions.mutate(systemPrincipal('harness'), session.id, (s) => ({ ...s, status: 'running' }));
    const running = await client.beta.sessions.update(session.id, { agent: { tools: [custom] } }).catch((e) => e);
    expect(running).toMatchObject({ status: 400 });
    expect(String(running.message)).toMatch(/agent: .*running/);
    expect((await client.beta.sessions.retrieve(session.id)).agent.tools).toEqual([]);
  });

  it('keeps tenants apart', async () => {
    const otherKey = generateApiKey();
    await t.runtime.services.tenants.addKey('other-tenant', otherKey);
    const other = new Anthropic({ baseURL: t.runtime.url, apiKey: otherKey, maxRetries: 0 });
    const agent = await client.beta.agents.create({ name: 'mine', model: 'claude-sonnet-4-6' });
    const env = await client.beta.environments.create({ name: 'mine' });
    const session = await client.beta.sessions.create({ agent: agent.id, environment_id: env.id });

    await expect(other.beta.agents.retrieve(agent.id)).rejects.toMatchObject({ status: 404 });
    await expect(other.beta.environments.retrieve(env.id)).rejects.toMatchObject({ status: 404 });
    await expect(other.beta.sessions.retrieve(session.id)).rejects.toMatchObject({ status: 404 });
    await expect(other.beta.sessions.events.list(session.id)).rejects.toMatchObject({ status: 404 });
    await expect(
      other.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'x' }] }] }),
    ).rejects.toMatchObject({ status: 404 });
    await expect(other.beta.sessions.delete(session.id)).rejects.toMatchObject({ status: 404 });
    await expect(other.beta.agents.update(agent.id, { name: 'stolen' })).rejects.toMatchObject({ status: 404 });
    // nor can it start a session on another tenant's agent or environment
    const otherEnv = await other.beta.environments.create({ name: 'theirs' });
    await expect(other.beta.sessions.create({ agent: agent.id, environment_id: otherEnv.id })).rejects.toMatchObject({ status: 400 });
    const lists = [];
    for await (const a of other.beta.agents.list()) lists.push(a.id);
    for await (const s of other.beta.sessions.list()) lists.push(s.id);
    expect(lists).not.toContain(agent.id);
    expect(lists).not.toContain(session.id);
    expect((await client.beta.agents.retrieve(agent.id)).name).toBe('mine');
  });

  it('authenticates with x-api-key or a bearer token, and refuses anything else', async () => {
    expect((await raw('/v1/agents')).status).toBe(200);
    const bearer = await fetch(`${t.runtime.url}/v1/agents`, { headers: { authorization: `Bearer ${t.runtime.apiKey}` } });
    expect(bearer.status).toBe(200);
    const none = await fetch(`${t.runtime.url}/v1/agents`);
    expect(none.status).toBe(401);
    expect(await none.json()).toMatchObject({ type: 'error', error: { type: 'authentication_error' } });
    const wrong = await raw('/v1/agents', {}, 'sk-corral-wrong');
    expect(wrong.status).toBe(401);
    await expect(new Anthropic({ baseURL: t.runtime.url, apiKey: 'bad', maxRetries: 0 }).beta.agents.list()).rejects.toMatchObject({
      status: 401,
    });
  });

  it('answers bad input with a clear 4xx in the Anthropic error shape', async () => {
    const cases: Array<[string, RequestInit, number, string, RegExp]> = [
      ['/v1/agents', { method: 'POST', body: '{"name": "x", ' }, 400, 'invalid_request_error', /not valid JSON/],
      ['/v1/agents', { method: 'POST', body: JSON.stringify({ name: 42, model: 'm' }) }, 400, 'invalid_request_error', /name/],
      ['/v1/agents', { method: 'POST', body: JSON.stringify({ name: 'a', model: 'm', colour: 'red' }) }, 400, 'invalid_request_error', /colour/],
      ['/v1/agents', { method: 'POST', body: JSON.stringify({ name: 'a', model: 'm', metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) }) }, 400, 'invalid_request_error', /16/],
      ['/v1/agents', { method: 'POST', body: JSON.stringify([1, 2]) }, 400, 'invalid_request_error', /object/],
      ['/v1/agents/agent_nope', {}, 404, 'not_found_error', /agent_nope/],
      ['/v1/sessions/sesn_nope', {}, 404, 'not_found_error', /sesn_nope/],
      ['/v1/sessions/sesn_nope/events', {}, 404, 'not_found_error', /sesn_nope/],
      ['/v1/agents?limit=0', {}, 400, 'invalid_request_error', /limit/],
      ['/v1/agents?limit=abc', {}, 400, 'invalid_request_error', /limit/],
      ['/v1/agents?page=garbage!', {}, 400, 'invalid_request_error', /page/],
      ['/v1/nothing-here', {}, 404, 'not_found_error', /no route/],
      ['/v1/sessions', { method: 'POST', body: JSON.stringify({ agent: 'agent_nope', environment_id: 'env_nope' }) }, 400, 'invalid_request_error', /agent/],
      ['/v1/agents', { method: 'POST', body: JSON.stringify({ name: 'a', model: 'm', x: 'y'.repeat(4_300_000) }) }, 413, 'request_too_large', /exceeds/],
    ];
    for (const [path, init, status, type, message] of cases) {
      const res = await raw(path, init);
      expect({ path, status: res.status }).toEqual({ path, status });
      const body = (await res.json()) as { type: string; error: { type: string; message: string } };
      expect(body.type).toBe('error');
      expect(body.error.type).toBe(type);
      expect(body.error.message).toMatch(message);
    }
  });

  it('rejects events that are not user events, or malformed ones', async () => {
    const agent = await client.beta.agents.create({ name: 'ev', model: 'claude-sonnet-4-6' });
    const env = await client.beta.environments.create({ name: 'ev' });
    const session = await client.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    for (const events of [
      [{ type: 'agent.message', content: [] }],
      [{ type: 'user.message', content: [] }],
      [{ type: 'user.message', content: [{ type: 'text', text: 5 }] }],
      // sources as the SDK declares them, or the model would be sent them on every later turn
      [{ type: 'user.message', content: [{ type: 'image', source: { type: 'base64' } }] }],
      [{ type: 'user.message', content: [{ type: 'image', source: { type: 'text', data: 'x', media_type: 'text/plain' } }] }],
      [{ type: 'user.message', content: [{ type: 'document', source: { type: 'url', url: 'https://example.com/a.pdf', extra: 1 } }] }],
      [],
    ]) {
      const res = await raw(`/v1/sessions/${session.id}/events`, { method: 'POST', body: JSON.stringify({ events }) });
      expect(res.status).toBe(400);
    }
    expect((await client.beta.sessions.events.list(session.id)).data).toEqual([]);
    const sources = [
      { type: 'image', source: { type: 'base64', data: 'iVBORw0KGgo=', media_type: 'image/png' } },
      { type: 'image', source: { type: 'url', url: 'https://example.com/a.png' } },
      { type: 'document', source: { type: 'text', data: 'plain', media_type: 'text/plain' }, title: 'notes' },
      { type: 'document', source: { type: 'file', file_id: 'file_011' } },
    ] as const;
    const sent = await client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [...sources] }] });
    expect(sent.data?.[0]).toMatchObject({ type: 'user.message', content: sources });
  });

  it('filters the history by known event types only', async () => {
    const agent = await client.beta.agents.create({ name: 'ev', model: 'claude-sonnet-4-6' });
    const env = await client.beta.environments.create({ name: 'ev' });
    const session = await client.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    const ok = await raw(`/v1/sessions/${session.id}/events?types[]=user.message&types[]=corral.sandbox_handoff_received`);
    expect(ok.status).toBe(200);
    const res = await raw(`/v1/sessions/${session.id}/events?types[]=user.message&types[]=agent.messages`);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toBe('types: unknown event type "agent.messages"');
  });
});
