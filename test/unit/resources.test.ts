import { beforeEach, describe, expect, it } from 'vitest';
import { AgentCreate, AgentUpdate, EnvironmentCreate, EnvironmentUpdate, SessionCreate } from '../../lambdas/core/api/schemas.js';
import { ConflictError, InvalidRequestError, NotFoundError } from '../../lambdas/core/errors.js';
import { AgentService } from '../../lambdas/core/resources/agents.js';
import { EnvironmentService } from '../../lambdas/core/resources/environments.js';
import { SessionService } from '../../lambdas/core/resources/sessions.js';
import { API_KEY_CACHE_MS, generateApiKey, TenantService } from '../../lambdas/core/resources/tenants.js';
import { expectEvent, makeEvent } from '../../lambdas/core/session/events.js';
import type { SecretSink } from '../../lambdas/core/vault/secret-store.js';
import type { SecretFields } from '../../lambdas/core/vault/types.js';
import { VaultService } from '../../lambdas/core/vault/vaults.js';
import { systemPrincipal, tenantPrincipal } from '../../lambdas/core/storage/principal.js';
import { keys } from '../../lambdas/core/storage/keys.js';
import { MemoryEventLog, MemoryStateTable } from './memory-store.js';

/**
 * The resource services (agents, environments, sessions, API keys) on the in-memory store: the
 * rules the API answers with, each a 400, 404 or 409 naming what is wrong, and tenants kept apart.
 */
class MemorySink implements SecretSink {
  readonly secrets = new Map<string, SecretFields>();
  async storeSecret(ref: string, value: SecretFields) {
    this.secrets.set(ref, value);
  }
  async deleteSecret(ref: string) {
    this.secrets.delete(ref);
  }
  async copySecret(from: string, to: string) {
    this.secrets.set(to, this.secrets.get(from)!);
  }
}

const A = 'tnt_a';
const B = 'tnt_b';
let table: MemoryStateTable;
let log: MemoryEventLog;
let agents: AgentService;
let environments: EnvironmentService;
let sessions: SessionService;
let sink: MemorySink;
let wakes: string[];

beforeEach(() => {
  table = new MemoryStateTable();
  log = new MemoryEventLog();
  agents = new AgentService(table);
  environments = new EnvironmentService(table);
  sink = new MemorySink();
  wakes = [];
  sessions = new SessionService(table, log, agents, environments, { wake: async (id) => void wakes.push(id) }, { vaults: new VaultService(table, sink), secrets: sink }, { allow: [] });
});

const rejects = async (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e as Error);
const agent = (over: Record<string, unknown> = {}, tenant = A) => agents.create(tenant, AgentCreate.parse({ name: 'a', model: 'claude-sonnet-4-6', ...over }));
const env = (over: Record<string, unknown> = {}, tenant = A) => environments.create(tenant, EnvironmentCreate.parse({ name: 'e', ...over }));

describe('agents', () => {
  it('are created at version 1, and only their tenant sees them', async () => {
    const a = await agent();
    expect(a).toMatchObject({ id: expect.stringMatching(/^agent_/), type: 'agent', version: 1, name: 'a', model: { id: 'claude-sonnet-4-6' }, archived_at: null });
    expect(a.tools).toEqual([]);
    const withToolset = await agent({ tools: [{ type: 'agent_toolset_20260401', configs: [{ name: 'bash', enabled: false }] }] });
    expect(withToolset.tools).toEqual([
      expect.objectContaining({ type: 'agent_toolset_20260401', default_config: expect.objectContaining({ enabled: true }), configs: [expect.objectContaining({ name: 'bash', enabled: false })] }),
    ]);
    expect(await agents.get(A, a.id)).toEqual(a);
    expect(await rejects(agents.get(B, a.id))).toBeInstanceOf(NotFoundError);
  });

  it('version on update; an update based on an old version is a 409; old versions stay readable', async () => {
    const a = await agent();
    const v2 = await agents.update(A, a.id, AgentUpdate.parse({ version: 1, system: 'v2 prompt' }));
    expect(v2).toMatchObject({ version: 2, system: 'v2 prompt' });
    const stale = await rejects(agents.update(A, a.id, AgentUpdate.parse({ version: 1, name: 'x' })));
    expect(stale).toBeInstanceOf(ConflictError);
    expect(stale?.message).toBe(`agent ${a.id} is at version 2, not 1`);
    expect((await agents.get(A, a.id, 1)).system).toBe(a.system);
    expect(await rejects(agents.get(A, a.id, 9))).toMatchObject({ status: 404, message: `agent ${a.id} has no version 9` });
    expect((await agents.listVersions(A, a.id, {})).data.map((x) => x.version)).toEqual([1, 2]);
  });

  it('normalize custom and MCP tools, and refuse a toolset naming an unknown MCP server', async () => {
    const a = await agent({
      tools: [
        { type: 'custom', name: 'lookup', description: 'd', input_schema: { type: 'object' } },
        { type: 'mcp_toolset', mcp_server_name: 'docs' },
      ],
      mcp_servers: [{ type: 'url', name: 'docs', url: 'https://mcp.example.com/mcp' }],
    });
    expect(a.tools).toEqual([
      { type: 'custom', name: 'lookup', description: 'd', input_schema: { type: 'object' } },
      expect.objectContaining({ type: 'mcp_toolset', mcp_server_name: 'docs', default_config: expect.objectContaining({ enabled: true }) }),
    ]);
    const bad = await rejects(agent({ tools: [{ type: 'mcp_toolset', mcp_server_name: 'nope' }] }));
    expect(bad).toBeInstanceOf(InvalidRequestError);
    expect(bad?.message).toBe('tools: mcp_toolset names unknown MCP server nope');
  });

  it('are archived, not deleted: an archived agent cannot change and leaves the default list', async () => {
    const a = await agent();
    const b = await agent({ name: 'b' });
    const archived = await agents.archive(A, a.id);
    expect(archived.archived_at).not.toBeNull();
    expect(await agents.archive(A, a.id)).toEqual(archived);
    expect(await rejects(agents.update(A, a.id, AgentUpdate.parse({ name: 'z' })))).toMatchObject({ status: 400, message: `agent ${a.id} is archived` });
    expect((await agents.list(A, {})).data.map((x) => x.id)).toEqual([b.id]);
    expect((await agents.list(A, { include_archived: true })).data.map((x) => x.id).sort()).toEqual([a.id, b.id].sort());
    expect((await agents.list(B, {})).data).toEqual([]);
  });
});

describe('environments', () => {
  it('fill in the cloud config, update within their type, archive and delete', async () => {
    const e = await env({ config: { type: 'cloud', networking: { type: 'limited', allowed_hosts: ['example.com'] } } });
    expect(e.config).toEqual({
      type: 'cloud',
      networking: { type: 'limited', allow_mcp_servers: false, allow_package_managers: false, allowed_hosts: ['example.com'] },
      packages: { type: 'packages', apt: [], cargo: [], gem: [], go: [], npm: [], pip: [] },
    });
    const renamed = await environments.update(A, e.id, EnvironmentUpdate.parse({ name: 'e2', metadata: { team: 'x' } }));
    expect(renamed).toMatchObject({ name: 'e2', metadata: { team: 'x' }, config: e.config });
    const cleared = await environments.update(A, e.id, EnvironmentUpdate.parse({ metadata: { team: null } }));
    expect(cleared.metadata).toEqual({});
    // A self_hosted config is refused before it reaches the service (Corral runs every sandbox).
    expect(EnvironmentUpdate.safeParse({ config: { type: 'self_hosted' } }).error?.issues[0]).toMatchObject({
      path: ['config'],
      message: 'a self_hosted environment is not supported by Corral',
    });
    await environments.archive(A, e.id);
    expect(await rejects(environments.update(A, e.id, EnvironmentUpdate.parse({ name: 'z' })))).toMatchObject({ status: 400 });
    expect((await environments.list(A, {})).data).toEqual([]);
    expect((await environments.list(A, { include_archived: true })).data).toHaveLength(1);
    expect(await rejects(environments.delete(B, e.id))).toBeInstanceOf(NotFoundError);
    expect(await environments.delete(A, e.id)).toEqual({ id: e.id, type: 'environment_deleted' });
    expect(await rejects(environments.get(A, e.id))).toBeInstanceOf(NotFoundError);
  });
});

describe('sessions', () => {
  async function setup() {
    const a = await agent();
    const e = await env();
    return { a, e, create: (over: Record<string, unknown> = {}) => sessions.create(A, SessionCreate.parse({ agent: a.id, environment_id: e.id, ...over })) };
  }

  it('pin the agent version, and name a missing or archived agent or environment', async () => {
    const { a, e, create } = await setup();
    const s = await create({ title: 't', metadata: { k: 'v' } });
    expect(s).toMatchObject({ status: 'idle', title: 't', metadata: { k: 'v' }, environment_id: e.id, agent: { id: a.id, version: 1 } });
    await agents.update(A, a.id, AgentUpdate.parse({ system: 'later' }));
    expect((await sessions.get(tenantPrincipal(A), s.id)).agent.version).toBe(1);
    expect(await rejects(sessions.create(A, SessionCreate.parse({ agent: 'agent_nope', environment_id: e.id })))).toMatchObject({ status: 400, message: 'agent: agent agent_nope not found' });
    expect(await rejects(sessions.create(A, SessionCreate.parse({ agent: a.id, environment_id: 'env_nope' })))).toMatchObject({ status: 400, message: 'environment_id: environment env_nope not found' });
    await environments.archive(A, e.id);
    expect(await rejects(create())).toMatchObject({ status: 400, message: `environment_id: environment ${e.id} is archived` });
    await agents.archive(A, a.id);
    expect(await rejects(create())).toMatchObject({ status: 400, message: `agent: agent ${a.id} is archived` });
    expect(await rejects(sessions.get(tenantPrincipal(B), s.id))).toBeInstanceOf(NotFoundError);
    expect(await sessions.tenantOf(systemPrincipal('harness'), s.id)).toBe(A);
  });

  it('take an agent with overrides for this session only', async () => {
    const { a, e } = await setup();
    const s = await sessions.create(A, SessionCreate.parse({ agent: { type: 'agent_with_overrides', id: a.id, system: 'just here' }, environment_id: e.id }));
    expect(s.agent).toMatchObject({ id: a.id, version: 1, system: 'just here' });
    expect((await agents.get(A, a.id)).system).toBe(a.system);
  });

  it('append user events in order and wake the harness; an archived session refuses them', async () => {
    const { create } = await setup();
    const s = await create({ initial_events: [{ type: 'user.message', content: [{ type: 'text', text: 'first' }] }] });
    expect(wakes).toEqual([s.id]);
    await sessions.send(A, s.id, [{ type: 'user.message', content: [{ type: 'text', text: 'second' }] }] as never);
    expect((await log.getEvents(s.id)).map((e) => e.event.type === 'user.message' && e.event.content[0])).toEqual([
      { type: 'text', text: 'first' },
      { type: 'text', text: 'second' },
    ]);
    expect(wakes).toEqual([s.id, s.id]);
    await sessions.archive(A, s.id);
    expect(await rejects(sessions.send(A, s.id, [{ type: 'user.interrupt' }] as never))).toMatchObject({ status: 400, message: `session ${s.id} is archived` });
  });

  it('append user events after an event the harness wrote between the read of the tail and the write: in order, nothing overwritten', async () => {
    const { create } = await setup();
    const s = await create({ initial_events: [{ type: 'user.message', content: [{ type: 'text', text: 'first' }] }] });
    const read = log.lastPosition.bind(log);
    let raced = false;
    log.lastPosition = async (id: string) => {
      const p = await read(id);
      if (!raced) {
        raced = true;
        await log.emitEvent(id, { id: 'sevt_harness', type: 'session.status_running', processed_at: new Date().toISOString() } as never);
      }
      return p;
    };
    const text = (t: string) => ({ type: 'user.message', content: [{ type: 'text', text: t }] });
    await sessions.send(A, s.id, [text('second'), text('third')] as never);
    expect(raced).toBe(true);
    const all = await log.getEvents(s.id);
    expect(all.map((e) => e.position)).toEqual([1, 2, 3, 4]);
    expect(all.map((e) => (e.event.type === 'user.message' ? (e.event.content[0] as { text: string }).text : e.event.type))).toEqual(['first', 'session.status_running', 'second', 'third']);
    expect(wakes).toEqual([s.id, s.id]);
    // A session the caller may not write is refused before anything is appended.
    expect(await rejects(sessions.send(B, s.id, [text('intruder')] as never))).toBeInstanceOf(NotFoundError);
    expect(await log.lastPosition(s.id)).toBe(4);
  });

  it('update title, metadata and budget, never vault_ids; list by status and agent', async () => {
    const { a, create } = await setup();
    const s = await create();
    const other = await agent({ name: 'other' });
    const s2 = await sessions.create(A, SessionCreate.parse({ agent: other.id, environment_id: s.environment_id }));
    const u = await sessions.update(A, s.id, { title: 'renamed', metadata: { x: '1' } } as never);
    expect(u).toMatchObject({ title: 'renamed', metadata: { x: '1' } });
    expect(() => sessions.update(A, s.id, { vault_ids: [] } as never)).toThrow('vault_ids: changing a session\'s vaults is not supported by Corral');
    await sessions.mutate(tenantPrincipal(A), s2.id, (x) => ({ ...x, status: 'running' }));
    expect((await sessions.list(A, { statuses: ['running'] })).data.map((x) => x.id)).toEqual([s2.id]);
    expect((await sessions.list(A, { agent_id: a.id })).data.map((x) => x.id)).toEqual([s.id]);
    await sessions.archive(A, s.id);
    expect((await sessions.list(A, {})).data.map((x) => x.id)).toEqual([s2.id]);
    expect((await sessions.list(A, { include_archived: true })).data).toHaveLength(2);
    expect((await sessions.activeSessionIds(systemPrincipal('recovery'))).sort()).toEqual([s.id, s2.id].sort());
  });

  it('lists sessions through their listing items and heads of the former layout alike, in order, paged both ways', async () => {
    const { create } = await setup();
    const made = [await create(), await create(), await create(), await create()];
    // Two of them as a deployment before the listing item wrote them: the head in the index, no listing item.
    for (const s of made.slice(1, 3)) {
      const head = (await table.get(keys.head('session', s.id).pk, 'head'))!;
      await table.put({ ...head, gsi1pk: keys.tenantIndex('session', A), gsi1sk: s.id });
      await table.delete(keys.sessionListing(s.id).pk, keys.sessionListing(s.id).sk);
    }
    const ids = made.map((s) => s.id).sort();
    const first = await sessions.list(A, { limit: 3 });
    expect(first.data.map((s) => s.id)).toEqual(ids.slice(0, 3));
    const second = await sessions.list(A, { limit: 3, page: first.next_page! });
    expect(second.data.map((s) => s.id)).toEqual(ids.slice(3));
    expect(second.next_page).toBeNull();
    expect((await sessions.list(A, { limit: 3, page: second.prev_page! })).data.map((s) => s.id)).toEqual(ids.slice(0, 3));
    expect((await sessions.list(A, { order: 'desc' } as never)).data.map((s) => s.id)).toEqual([...ids].reverse());
    // A status change of either layout is seen by the list at once (heads are read, not the index's copy).
    await sessions.mutate(tenantPrincipal(A), ids[1], (x) => ({ ...x, status: 'running' }));
    await sessions.mutate(tenantPrincipal(A), ids[3], (x) => ({ ...x, status: 'running' }));
    expect((await sessions.list(A, { statuses: ['running'] })).data.map((s) => s.id)).toEqual([ids[1], ids[3]]);
    // Another tenant lists none of them; a deleted session's entry is skipped.
    expect((await sessions.list(B, {})).data).toEqual([]);
    await sessions.delete(A, ids[0]);
    expect((await sessions.list(A, {})).data.map((s) => s.id)).toEqual(ids.slice(1));
  });

  it('a fork rewrites every kind of reference: tool, MCP tool, custom tool, confirmation and model request', async () => {
    const { create } = await setup();
    const s = await create();
    const start = makeEvent({ type: 'span.model_request_start' });
    const bash = makeEvent({ type: 'agent.tool_use', name: 'bash', input: {}, evaluated_permission: 'ask' });
    const mcp = makeEvent({ type: 'agent.mcp_tool_use', name: 'search', mcp_server_name: 'docs', input: {} });
    const custom = makeEvent({ type: 'agent.custom_tool_use', name: 'lookup', input: {} });
    const usage = { input_tokens: 1, output_tokens: 1, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 };
    const events = [
      makeEvent({ type: 'session.status_running' }),
      start,
      bash,
      mcp,
      custom,
      makeEvent({ type: 'span.model_request_end', model_request_start_id: start.id, is_error: false, model_usage: usage }),
      makeEvent({ type: 'user.tool_confirmation', tool_use_id: bash.id, result: 'allow' }),
      makeEvent({ type: 'agent.tool_result', tool_use_id: bash.id, content: [], is_error: false }),
      makeEvent({ type: 'agent.mcp_tool_result', mcp_tool_use_id: mcp.id, content: [], is_error: false }),
      makeEvent({ type: 'user.custom_tool_result', custom_tool_use_id: custom.id, content: [] }),
    ];
    for (const e of events) await log.emitEvent(s.id, e);
    const fork = await sessions.fork(A, s.id);
    const [, f_start, f_bash, f_mcp, f_custom, f_end, f_confirm, f_result, f_mcpResult, f_customResult] = (await log.getEvents(fork.id)).map((e) => e.event);
    expect(expectEvent(f_end, 'span.model_request_end').model_request_start_id).toBe(f_start.id);
    expect(expectEvent(f_confirm, 'user.tool_confirmation').tool_use_id).toBe(f_bash.id);
    expect(expectEvent(f_result, 'agent.tool_result').tool_use_id).toBe(f_bash.id);
    expect(expectEvent(f_mcpResult, 'agent.mcp_tool_result').mcp_tool_use_id).toBe(f_mcp.id);
    expect(expectEvent(f_customResult, 'user.custom_tool_result').custom_tool_use_id).toBe(f_custom.id);
    // nothing in the fork points back into the source's log
    const ids = new Set(events.map((e) => e.id));
    expect(JSON.stringify((await log.getEvents(fork.id)).map((e) => e.event)).match(/sevt_\w+/g)!.filter((id) => ids.has(id))).toEqual([]);
  });

  it('fork a log up to a position, with fresh ids and references rewritten to them', async () => {
    const { create } = await setup();
    const s = await create();
    const use = makeEvent({ type: 'agent.custom_tool_use', name: 'lookup', input: {} });
    const events = [
      makeEvent({ type: 'user.message', content: [] }),
      makeEvent({ type: 'session.status_running' }),
      use,
      makeEvent({ type: 'session.status_idle', stop_reason: { type: 'requires_action', event_ids: [use.id] }, stop_details: null }),
      makeEvent({ type: 'user.custom_tool_result', custom_tool_use_id: use.id, content: [] }),
    ];
    for (const e of events) await log.emitEvent(s.id, e);
    const fork = await sessions.fork(A, s.id, { upTo: 4, title: 'fork' });
    expect(fork).toMatchObject({ title: 'fork', status: 'idle', forked_from: { session_id: s.id, position: 4 } });
    const copied = (await log.getEvents(fork.id)).map((e) => e.event);
    expect(copied.map((e) => e.type)).toEqual(events.slice(0, 4).map((e) => e.type));
    expect(copied.map((e) => e.id).filter((id) => events.some((o) => o.id === id))).toEqual([]);
    expect(expectEvent(copied[3], 'session.status_idle').stop_reason).toEqual({ type: 'requires_action', event_ids: [copied[2].id] });
    expect(wakes).toContain(fork.id);
    // a fork at 2 ends running (it goes on with the turn); positions outside the log are refused
    expect((await sessions.fork(A, s.id, { upTo: 2 })).status).toBe('running');
    expect((await sessions.fork(A, s.id, { upTo: 0 })).status).toBe('idle');
    expect(await rejects(sessions.fork(A, s.id, { upTo: 6 }))).toMatchObject({ status: 400, message: 'up_to_position: must be an event position from 0 to 5' });
  });

  it('seed a fork before its first wake, so its first sandbox starts from the copied workspace', async () => {
    const { create } = await setup();
    const s = await create();
    await log.emitEvent(s.id, makeEvent({ type: 'user.message', content: [] }));
    await log.emitEvent(s.id, makeEvent({ type: 'session.status_running' }));
    const seen: Array<{ forkId: string; wokenBefore: boolean; head: boolean }> = [];
    const fork = await sessions.fork(A, s.id, {
      seed: async (forkId) => {
        seen.push({ forkId, wokenBefore: wakes.includes(forkId), head: !!(await sessions.get(tenantPrincipal(A), forkId).catch(() => null)) });
      },
    });
    // the seed ran once, on an existing fork that no wake had reached yet; the wake came after it
    expect(seen).toEqual([{ forkId: fork.id, wokenBefore: false, head: true }]);
    expect(wakes).toContain(fork.id);
  });

  it('keep repository tokens only in the proxy, per session, and remove them with the session', async () => {
    const { create } = await setup();
    const s = await create({ resources: [{ type: 'github_repository', url: 'https://github.com/octo/repo.git', authorization_token: 'ghp_secret_token' }] });
    const [r] = s.resources as Array<Record<string, unknown>>;
    expect(r).toEqual({ id: expect.stringMatching(/^sesrsc_/), type: 'github_repository', url: 'https://github.com/octo/repo.git', mount_path: '/workspace/repo', checkout: null, created_at: expect.any(String), updated_at: expect.any(String) });
    expect(JSON.stringify([...table.items.values()])).not.toContain('ghp_secret_token');
    expect([...sink.secrets.values()]).toEqual([{ token: 'ghp_secret_token' }]);
    expect(await sessions.getResource(A, s.id, r.id as string)).toEqual(r);
    expect((await sessions.listResources(A, s.id)).data).toEqual([r]);
    await sessions.updateResource(A, s.id, r.id as string, { authorization_token: 'ghp_rotated' });
    expect([...sink.secrets.values()]).toEqual([{ token: 'ghp_rotated' }]);
    const fork = await sessions.fork(A, s.id);
    expect(sink.secrets.size).toBe(2);
    await sessions.delete(A, s.id);
    expect([...sink.secrets.values()]).toEqual([{ token: 'ghp_rotated' }]);
    expect(await log.lastPosition(s.id)).toBe(0);
    expect(await rejects(sessions.get(tenantPrincipal(A), s.id))).toBeInstanceOf(NotFoundError);
    await sessions.delete(A, fork.id);
    expect(sink.secrets.size).toBe(0);
  });

  it('refuse repository URLs the deployment does not accept, and two repositories on one mount path', async () => {
    const { a, e, create } = await setup();
    const raw = (resources: unknown[]) => sessions.create(A, { agent: a.id, environment_id: e.id, resources } as never);
    // (the API's schema refuses this first; the service holds the rule for every caller)
    expect(await rejects(raw([{ type: 'github_repository', url: 'file:///etc' }]))).toMatchObject({ status: 400, message: expect.stringMatching(/^resources\[0\]: url must be an https:\/\/ URL/) });
    const twice = await rejects(
      create({
        resources: [
          { type: 'github_repository', url: 'https://github.com/a/repo' },
          { type: 'github_repository', url: 'https://github.com/b/repo.git' },
        ],
      }),
    );
    expect(twice).toMatchObject({ status: 400, message: 'resources[1]: mount_path /workspace/repo is already used by another repository' });
    expect(await rejects(sessions.getResource(A, (await create()).id, 'sesrsc_nope'))).toBeInstanceOf(NotFoundError);
  });

  it('refuse repository tokens without a credential proxy, naming why', async () => {
    const bare = new SessionService(table, log, agents, environments, { wake: async () => undefined });
    const a = await agent();
    const e = await env();
    const err = await rejects(
      bare.create(A, SessionCreate.parse({ agent: a.id, environment_id: e.id, resources: [{ type: 'github_repository', url: 'https://github.com/a/b', authorization_token: 'ghp_x' }] })),
    );
    expect(err?.message).toBe('no credential proxy is configured on this deployment: repository tokens cannot be stored');
    expect(err?.message).not.toContain('ghp_x');
    expect(await rejects(bare.create(A, SessionCreate.parse({ agent: a.id, environment_id: e.id, vault_ids: ['vlt_x'] })))).toMatchObject({ message: 'vault_ids: this deployment has no vaults' });
  });
});

describe('API keys', () => {
  it('authenticate their tenant from a stored hash, and stop when revoked', async () => {
    const tenants = new TenantService(table, 0);
    const key = generateApiKey();
    expect(key).toMatch(/^sk-corral-[A-Za-z0-9_-]{32}$/);
    await tenants.addKey(A, key);
    expect(JSON.stringify([...table.items.values()])).not.toContain(key);
    expect(await tenants.authenticate(key)).toBe(A);
    expect(await rejects(tenants.authenticate('sk-corral-wrong'))).toMatchObject({ status: 401, message: 'invalid API key' });
    expect(await rejects(tenants.authenticate(undefined))).toMatchObject({ status: 401, message: expect.stringMatching(/^missing API key/) });
    await tenants.revokeKey(key);
    expect(await rejects(tenants.authenticate(key))).toMatchObject({ status: 401 });
  });

  it('are remembered by an API instance for at most API_KEY_CACHE_MS: a key revoked elsewhere is refused once that has passed', async () => {
    let now = 1_000_000;
    const clock = () => now;
    const reader = new TenantService(table, API_KEY_CACHE_MS, clock); // one API instance
    const revoker = new TenantService(table, API_KEY_CACHE_MS, clock); // another
    const key = generateApiKey();
    await reader.addKey(A, key);
    expect(await reader.authenticate(key)).toBe(A);
    // Within the bound the instance answers from memory: the stored key is not read again.
    let reads = 0;
    const get = table.get.bind(table);
    table.get = (pk, sk) => (reads++, get(pk, sk));
    const lookups = () => reads;
    const before = lookups();
    now += API_KEY_CACHE_MS - 1;
    expect(await reader.authenticate(key)).toBe(A);
    expect(lookups()).toBe(before);
    // Revoked on the other instance: refused there at once, here as soon as the bound has passed
    // since this instance last looked the key up.
    await revoker.revokeKey(key);
    expect(await rejects(revoker.authenticate(key))).toMatchObject({ status: 401 });
    now += 1;
    expect(await rejects(reader.authenticate(key))).toMatchObject({ status: 401, message: 'invalid API key' });
    expect(await rejects(reader.authenticate(key))).toMatchObject({ status: 401 });
  });
});
