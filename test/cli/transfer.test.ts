import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listAll, startTestRuntime, waitFor, type TestRuntime } from '../helpers/runtime.js';
import { cli } from './helpers.js';

/**
 * `corral export` from one local runtime and `corral import` into another: agents with every
 * version, environments, and session logs as archived read-only copies under new ids. The import
 * route is tenant-scoped, validated and bounded.
 */

const text = (s: string) => [{ type: 'text' as const, text: s }];

describe('corral export / corral import between two deployments', () => {
  let a: TestRuntime;
  let b: TestRuntime;
  let cwd: string;

  beforeAll(async () => {
    [a, b] = await Promise.all([startTestRuntime(), startTestRuntime()]);
    cwd = mkdtempSync(join(tmpdir(), 'corral-transfer-'));
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    rmSync(cwd, { recursive: true, force: true });
  });

  it('round-trips agents (every version), environments and session logs', async () => {
    // The source: an agent in two versions, a custom tool the client answered, an archived environment.
    const agent = await a.client.beta.agents.create({
      name: 'exported',
      model: 'claude-sonnet-4-6',
      system: 'first system prompt',
      metadata: { team: 'x' },
      tools: [{ type: 'custom', name: 'lookup', description: 'Look up', input_schema: { type: 'object', properties: { q: { type: 'string' } } } }],
    });
    const agent2 = await a.client.beta.agents.update(agent.id, { version: agent.version, system: 'second system prompt' });
    const env = await a.client.beta.environments.create({ name: 'exported-env', config: { type: 'cloud', networking: { type: 'limited', allowed_hosts: ['example.com'] } } });
    const old = await a.client.beta.environments.create({ name: 'old-env' });
    await a.client.beta.environments.archive(old.id);
    const session = await a.client.beta.sessions.create({ agent: agent.id, environment_id: env.id, title: 'to move' });
    a.fake.push({ kind: 'tool_use', calls: [{ name: 'lookup', input: { q: 'A-17' } }] }, { kind: 'text', text: 'found it' });
    await a.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('look up A-17') }] });
    await waitFor(async () => (await listAll(a.client, session.id)).some((e) => e.type === 'agent.custom_tool_use'), 'the custom tool call');
    await waitFor(async () => (await a.client.beta.sessions.retrieve(session.id)).status === 'idle', 'idle');
    const use = (await listAll(a.client, session.id)).find((e) => e.type === 'agent.custom_tool_use')!;
    await a.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.custom_tool_result', custom_tool_use_id: use.id, content: text('shipped') }] });
    await waitFor(async () => (await listAll(a.client, session.id)).some((e) => e.type === 'agent.message'), 'the answer');
    await waitFor(async () => (await a.client.beta.sessions.retrieve(session.id)).status === 'idle', 'idle again');
    const sourceLog = await listAll(a.client, session.id);

    const exported = await cli(['export', '--out', 'tenant.jsonl'], { env: { CORRAL_URL: a.runtime.url, CORRAL_API_KEY: a.runtime.apiKey }, cwd });
    expect(exported).toMatchObject({ code: 0, stdout: '' });
    expect(exported.stderr).toMatch(/exported 1 agents \(2 versions\), 2 environments, 1 sessions/);
    const file = join(cwd, 'tenant.jsonl');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).kind)).toEqual(['header', 'agent', 'environment', 'environment', 'session']);
    // an export never overwrites a file
    expect((await cli(['export', '--out', 'tenant.jsonl'], { env: { CORRAL_URL: a.runtime.url, CORRAL_API_KEY: a.runtime.apiKey }, cwd })).code).not.toBe(0);

    const imported = await cli(['import', '--in', 'tenant.jsonl', '--json'], { env: { CORRAL_URL: b.runtime.url, CORRAL_API_KEY: b.runtime.apiKey }, cwd });
    expect(imported.stderr).toBe('');
    expect(imported.code).toBe(0);
    const result = JSON.parse(imported.stdout) as { agents: Record<string, string>; environments: Record<string, string>; sessions: Record<string, string>; skipped: unknown[] };
    expect(result.skipped).toEqual([]);

    // agents: every version, in order
    const newAgent = result.agents[agent.id]!;
    const versions = (await b.client.beta.agents.versions.list(newAgent)).data.sort((x, y) => x.version - y.version);
    expect(versions.map((v) => [v.version, v.system, v.name, v.metadata])).toEqual([
      [1, 'first system prompt', 'exported', { team: 'x' }],
      [2, 'second system prompt', 'exported', { team: 'x' }],
    ]);
    expect(versions[1]!.tools).toEqual(agent2.tools);
    // environments, the archived one archived
    const newEnv = await b.client.beta.environments.retrieve(result.environments[env.id]!);
    expect(newEnv.config).toEqual(env.config);
    expect((await b.client.beta.environments.retrieve(result.environments[old.id]!)).archived_at).not.toBeNull();

    // the session: an archived copy under a new id, the same transcript with new event ids
    const copyId = result.sessions[session.id]!;
    expect(copyId).not.toBe(session.id);
    const copy = (await b.client.beta.sessions.retrieve(copyId)) as { archived_at: string | null; agent: { id: string; version: number }; imported_from?: unknown };
    expect(copy.archived_at).not.toBeNull();
    expect(session.agent.version).toBe(2); // pinned when it was created, after the update
    expect(copy.agent).toMatchObject({ id: newAgent, version: 2, system: 'second system prompt' });
    expect(copy.imported_from).toMatchObject({ session_id: session.id, events: sourceLog.length });
    const copyLog = await listAll(b.client, copyId);
    const strip = (e: Record<string, unknown>) => {
      const { id: _id, custom_tool_use_id: _c, stop_reason: _s, model_request_start_id: _m, ...rest } = e;
      return rest;
    };
    expect(copyLog.map(strip)).toEqual(sourceLog.map(strip));
    const sourceIds = new Set(sourceLog.map((e) => e.id));
    expect(copyLog.filter((e) => sourceIds.has(e.id))).toEqual([]);
    // references between events point at the copy's own events
    const newUse = copyLog.find((e) => e.type === 'agent.custom_tool_use')!;
    expect(copyLog.find((e) => e.type === 'user.custom_tool_result')).toMatchObject({ custom_tool_use_id: newUse.id });
    expect(copyLog.find((e) => e.type === 'session.status_idle')).toMatchObject({ stop_reason: { type: 'requires_action', event_ids: [newUse.id] } });
    // read-only: nothing can be sent to it
    await expect(b.client.beta.sessions.events.send(copyId, { events: [{ type: 'user.message', content: text('hi') }] })).rejects.toMatchObject({ status: 400 });
  }, 60_000);

  it('the import route: tenant-scoped, validated, bounded', async () => {
    const url = `${b.runtime.url}/v1/corral/imports/sessions`;
    const post = (key: string, body: unknown) =>
      fetch(url, { method: 'POST', headers: { 'x-api-key': key, 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
    const agent = await b.client.beta.agents.create({ name: 'mine', model: 'claude-sonnet-4-6' });
    const env = await b.client.beta.environments.create({ name: 'mine' });
    const event = (i: number) => ({ type: 'user.message', id: `sevt_${i}`, processed_at: '2026-01-01T00:00:00Z', content: text('x') });
    const valid = { agent_id: agent.id, environment_id: env.id, source: { session_id: 'sesn_elsewhere', created_at: '2026-01-01T00:00:00Z' }, events: [event(1)] };
    expect((await post(b.runtime.apiKey, valid)).status).toBe(200);

    // another tenant cannot use this tenant's agent or environment, and cannot see the copy
    await b.runtime.services.tenants.addKey('tenant-two', 'sk-corral-tenant-two');
    const foreign = await post('sk-corral-tenant-two', valid);
    expect(foreign.status).toBe(400);
    expect(await foreign.text()).toMatch(/agent_id/);
    const listed = await fetch(`${b.runtime.url}/v1/sessions?include_archived=true`, { headers: { 'x-api-key': 'sk-corral-tenant-two' } });
    expect(((await listed.json()) as { data: unknown[] }).data).toEqual([]);
    expect((await post('sk-wrong', valid)).status).toBe(401);

    // validated like every input: unknown fields, unknown event types, events without ids
    for (const [body, field] of [
      [{ ...valid, extra: 1 }, /extra/],
      [{ ...valid, events: [{ ...event(1), type: 'session.forged' }] }, /events/],
      [{ ...valid, events: [{ type: 'user.message', processed_at: '2026-01-01T00:00:00Z' }] }, /events/],
      [{ ...valid, events: [event(1), event(1)] }, /twice/],
    ] as const) {
      const res = await post(b.runtime.apiKey, body);
      expect(res.status, JSON.stringify(body).slice(0, 100)).toBe(400);
      expect(await res.text()).toMatch(field);
    }
    // fields beyond type, id and time are kept as given; malformed references never fail the import
    const odd = await post(b.runtime.apiKey, {
      ...valid,
      events: [{ type: 'session.status_idle', id: 'sevt_odd', processed_at: '2026-01-01T00:00:00Z', stop_reason: { type: 'requires_action', event_ids: 'not-a-list' } }, { type: 'agent.tool_result', id: 'sevt_r', processed_at: '2026-01-01T00:00:00Z', tool_use_id: { nested: 1 } }],
    });
    expect(odd.status).toBe(200);
    // bounded: at most 10,000 events, and the API's body limit
    const many = await post(b.runtime.apiKey, { ...valid, events: Array.from({ length: 10_001 }, (_, i) => event(i)) });
    expect(many.status).toBe(400);
    const huge = await post(b.runtime.apiKey, { ...valid, events: [{ ...event(1), content: text('x'.repeat(5 * 1024 * 1024)) }] });
    expect(huge.status).toBe(413);
  }, 60_000);
});
