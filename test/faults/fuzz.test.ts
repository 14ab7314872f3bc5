import { createHash } from 'node:crypto';
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoStateTable } from '../../lambdas/adapters/aws/dynamodb-state-table.js';
import { createApp } from '../../lambdas/api/app.js';
import { generateApiKey } from '../../lambdas/core/resources/tenants.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { tenantPrincipal } from '../../lambdas/core/storage/principal.js';

/** A small seeded PRNG (mulberry32), so a failing request can be reproduced from its index. */
function rng(seed: number) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const REQUESTS = 10_000;

/**
 * `unit` repeated `count` times, cut at `end` code units, made only when serialized. The generator
 * below builds every candidate of a pick before choosing one (so the random numbers drawn, and
 * with them the requests, do not depend on which is chosen), and most candidates are thrown away:
 * made eagerly, their long strings were tens of megabytes of garbage per request, most of the
 * test's time. `JSON.stringify` writes one through `toJSON` exactly as it writes the string.
 */
class Repeated {
  constructor(
    readonly unit: string,
    readonly count: number,
    readonly end = Infinity,
  ) {}
  slice(start: 0, end: number): Repeated {
    return new Repeated(this.unit, this.count, Math.min(this.end, end));
  }
  toJSON(): string {
    return this.unit.repeat(Math.min(this.count, Math.ceil(this.end / this.unit.length))).slice(0, this.end);
  }
}

describe('fuzzing the API', () => {
  let t: TestRuntime;
  let app: ReturnType<typeof createApp>;
  let keyA: string;
  /** Tenant C attacks with its own key; tenant B's objects are targets no request may touch. */
  let keyC: string;
  const own: Record<string, string[]> = { agent: [], env: [], session: [], vault: [] };
  const theirs: Record<string, string[]> = { agent: [], env: [], session: [], vault: [] };

  beforeAll(async () => {
    t = await startTestRuntime();
    await t.runtime.queue.stop(); // no harness in the background: every change is the API's
    app = createApp(t.runtime.services);
    keyA = t.runtime.apiKey;
    keyC = generateApiKey();
    await t.runtime.services.tenants.addKey('tenant-c', keyC);
    const s = t.runtime.services;
    for (const [tenant, bag] of [['local', own], ['tenant-b', theirs]] as const) {
      const agent = await s.agents.create(tenant, { name: 'a', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
      const env = await s.environments.create(tenant, { name: 'e' });
      const session = await s.sessions.create(tenant, { agent: agent.id, environment_id: env.id });
      await s.sessions.send(tenant, session.id, [{ type: 'user.message', content: [{ type: 'text', text: 'seed' }] }]);
      const vault = await s.vaults.create(tenant, { display_name: 'v' });
      bag.vault.push(vault.id);
      bag.agent.push(agent.id);
      bag.env.push(env.id);
      bag.session.push(session.id);
    }
  });
  afterAll(() => t.close());

  async function snapshot(): Promise<string> {
    const client = (t.runtime.services.table as DynamoStateTable)['client' as keyof DynamoStateTable] as never as {
      send(c: ScanCommand): Promise<{ Items?: unknown[]; LastEvaluatedKey?: unknown }>;
    };
    const hash = createHash('sha256');
    for (const table of ['corral-state', 'corral-events']) {
      const rows: string[] = [];
      let start: unknown;
      do {
        const out = await client.send(new ScanCommand({ TableName: table, ExclusiveStartKey: start as never }));
        for (const item of out.Items ?? []) {
          const row = JSON.stringify(item);
          if (!row.includes('"rate#') && !row.includes('"authfail#')) rows.push(row); // request counters count every request
        }
        start = out.LastEvaluatedKey;
      } while (start);
      hash.update(rows.sort().join('\n'));
    }
    return hash.digest('hex');
  }

  it(`sends ${REQUESTS} generated requests: no 5xx, every rejection in the error shape, nothing changed by it, no tenant crossing`, async () => {
    const random = rng(20261123);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
    const garbage = () =>
      pick([
        '',
        'x',
        '../../etc/passwd',
        '%2e%2e%2f%2e%2e',
        '%00',
        'a'.repeat(2000),
        '💥',
        'agent_' + 'Z'.repeat(26),
        'sesn_01ABCDEFGHJKMNPQRSTVWXYZ01',
        '?x=1',
        ';DROP TABLE',
        '%',
        '\\u0000',
      ]);
    /** An id of 1 to 10,000 characters, around the lengths that matter (128, DynamoDB's 1,024 and 2,048). */
    const longId = () => {
      const n = pick([1, 127, 128, 129, 1024, 1025, 2048, 2049, 10_000, 1 + Math.floor(random() * 10_000)]);
      return pick(['a', 'sesn_', '%41', '-']).repeat(n).slice(0, n) || 'a';
    };
    const id = (kind: 'agent' | 'env' | 'session' | 'vault') => {
      const r = random();
      if (r < 0.35) return pick(own[kind]);
      if (r < 0.6) return pick(theirs[kind]);
      if (r < 0.8) return longId();
      return garbage();
    };
    /** Numbers DynamoDB or the API cannot take, as query text and as JSON. */
    const extremeText = () => pick(['1e300', '-1e300', '-0', 'NaN', 'Infinity', '9007199254740993', '18446744073709551616', '1.5', '-1', '0', '1e16', '0x1f']);
    const extremeNumber = () => pick([1e300, -1e300, -0, 2 ** 53 + 2, 2 ** 64, Number.MAX_VALUE, Number.MIN_VALUE, -1, 0.5, 1e16]);
    /** JSON text nested up to 5,000 deep. */
    const deep = () => {
      const d = pick([63, 64, 65, 100, 1000, 5000, 1 + Math.floor(random() * 5000)]);
      return random() < 0.5 ? '['.repeat(d) + '1' + ']'.repeat(d) : '{"a":'.repeat(d) + '1' + '}'.repeat(d);
    };
    /** A string that makes a record too large on its own or together with others. */
    const big = () => new Repeated(pick(['💥', 'x', 'é']), pick([60_000, 110_000, 200_000]));
    const value = (depth = 0): unknown => {
      const r = random();
      if (depth > 3 || r < 0.15) return null;
      if (r < 0.22) return Math.floor(random() * 1e6) * (random() < 0.5 ? -1 : 1);
      if (r < 0.3) return extremeNumber();
      if (r < 0.4) return random() < 0.5;
      if (r < 0.55) return garbage();
      if (r < 0.6) return new Repeated('x', Math.floor(random() * 300_000));
      if (r < 0.75) return Array.from({ length: Math.floor(random() * 4) }, () => value(depth + 1));
      return Object.fromEntries(Array.from({ length: Math.floor(random() * 4) }, () => [pick(['name', 'model', 'type', 'events', 'content', 'text', 'agent', 'environment_id', 'metadata', 'tools', 'config', 'version', '__proto__', 'constructor', garbage()]), value(depth + 1)]));
    };
    const validish = (): unknown =>
      pick([
        { name: value(), model: value() },
        { name: 'n', model: 'm', tools: [{ type: pick(['agent_toolset_20260401', 'mcp_toolset', 'custom', 'bogus']), name: value() }] },
        { agent: id('agent'), environment_id: id('env'), metadata: value() },
        { events: [{ type: pick(['user.message', 'user.interrupt', 'agent.message', 'session.status_idle', 'user.tool_confirmation', 'x']), content: value() }] },
        { events: value() },
        { config: { type: pick(['cloud', 'self_hosted', 'nope']), networking: value() } },
        { version: value(), name: value() },
        { up_to_position: value() },
        { up_to_position: extremeNumber() },
        { version: extremeNumber(), name: 'n' },
        { agent: { type: 'agent', id: id('agent'), version: extremeNumber() }, environment_id: id('env') },
        { agent: id('agent'), environment_id: id('env'), vault_ids: [id('vault')], title: value() },
        { agent: id('agent'), environment_id: id('env'), budget: { type: 'limit', max_list_cost: { amount: pick(['1e300', '-0', 'NaN', '9'.repeat(40), '100']), currency: 'USD' } } },
        { agent: id('agent'), environment_id: id('env'), budget: { type: 'limit', max_list_cost: { amount: '1', currency: 'USD', x: big() } } },
        { agent: id('agent'), environment_id: id('env'), resources: Array.from({ length: 20 }, () => ({ type: 'file', file_id: 'file_1', note: big().slice(0, 30_000) })) },
        { agent: id('agent'), environment_id: id('env'), initial_events: [{ type: 'user.message', content: [{ type: 'text', text: 'hi' }] }, { type: 'user.message', content: value() }] },
        { name: 'big', model: 'claude-sonnet-4-6', system: big().slice(0, 100_000) },
        { name: 'big', model: 'm', tools: Array.from({ length: 60 }, (_, i) => ({ type: 'custom', name: `t${i}`, description: 'd', input_schema: { type: 'object', d: big().slice(0, 8_000) } })) },
        { name: 'e', config: { type: 'cloud', packages: { apt: Array.from({ length: 256 }, () => 'p'.repeat(256)), npm: Array.from({ length: 256 }, () => 'p'.repeat(256)) } } },
        { display_name: value(), metadata: value() },
        { events: [{ type: 'user.tool_confirmation', tool_use_id: id('session'), result: 'allow' }] },
        { events: [{ type: 'user.custom_tool_result', custom_tool_use_id: longId() }] },
        { to_session_id: id('session') },
      ]);
    /** A body with a deep structure where a value would be. */
    const deepBody = () =>
      pick([
        () => `{"name":"n","model":"m","metadata":${deep()}}`,
        () => `{"agent":"${pick(own.agent)}","environment_id":"${pick(own.env)}","initial_events":[{"type":"user.message","content":[{"type":"image","source":{"type":"base64","data":${deep()}}}]}]}`,
        () => `{"events":[{"type":"user.message","content":${deep()}}]}`,
        () => `{"config":${deep()}}`,
        () => deep(),
      ])();
    const body = () => {
      const r = random();
      if (r < 0.12) return pick(['{', '{"a":', 'null', '[]', '"str"', '1e999', '{"name": "\\ud800"}', 'nul', '\u0000']);
      if (r < 0.22) return deepBody();
      if (r < 0.35) return JSON.stringify(value());
      return JSON.stringify(validish());
    };
    const route = () => {
      const routes = [
        () => '/v1/agents',
        () => `/v1/agents/${id('agent')}`,
        () => `/v1/agents/${id('agent')}/archive`,
        () => `/v1/agents/${id('agent')}/versions`,
        () => '/v1/environments',
        () => `/v1/environments/${id('env')}`,
        () => `/v1/environments/${id('env')}/archive`,
        () => '/v1/sessions',
        () => `/v1/sessions/${id('session')}`,
        () => `/v1/sessions/${id('session')}/archive`,
        () => `/v1/sessions/${id('session')}/events`,
        () => `/v1/sessions/${id('session')}/fork`,
        () => `/v1/${garbage()}`,
        () => `/v1/sessions/${id('session')}/events?limit=${garbage()}&page=${garbage()}&order=${garbage()}`,
        () => `/v1/sessions/${id('session')}/events?${pick(['to_position', 'from_position', 'limit'])}=${extremeText()}`,
        () => `/v1/agents/${id('agent')}?version=${extremeText()}`,
        () => `/v1/${pick(['agents', 'sessions', 'environments', 'vaults'])}?limit=${extremeText()}&page=${pick([garbage(), longId()])}`,
        () => `/v1/sessions?agent_id=${id('agent')}`,
        () => '/v1/vaults',
        () => `/v1/vaults/${id('vault')}`,
        () => `/v1/vaults/${id('vault')}/archive`,
        () => `/v1/vaults/${id('vault')}/credentials`,
        () => `/v1/vaults/${id('vault')}/credentials/${longId()}`,
        () => `/v1/sessions/${id('session')}/resources/${longId()}`,
        () => `/v1/sessions/${id('session')}/resources`,
        () => `/v1/sessions/${id('session')}/sandboxes`,
        () => `/v1/sessions/${id('session')}/sandboxes/${pick(['default', longId()])}/handoff`,
      ];
      return pick(routes)();
    };
    const theirIds = [...theirs.agent, ...theirs.env, ...theirs.session, ...theirs.vault];
    const ownIds = [...own.agent, ...own.env, ...own.session, ...own.vault];
    // Both attacking keys verify once first, as a tenant's key would have before any attack:
    // the flood of bad keys below then meets the failed-authentication limit, not the tenants.
    for (const key of [keyA, keyC]) expect((await app.request('/v1/agents', { headers: { 'x-api-key': key } })).status).toBe(200);
    const isCreate = (method: string, path: string) =>
      method === 'POST' && /^\/v1\/(agents|environments|sessions|vaults)$|^\/v1\/sessions\/[^/]+\/fork$|^\/v1\/vaults\/[^/]+\/credentials$/.test(path);
    /** Every object an accepted request created (and the seeds): anything else stored was left by a rejected one. */
    const created = new Set([...ownIds, ...theirIds]);

    let fiveHundreds = 0;
    let rejected = 0;
    let accepted = 0;
    const failures: string[] = [];
    let before = await snapshot();
    let batchAllRejected = true;
    for (let i = 0; i < REQUESTS; i++) {
      const method = pick(['GET', 'POST', 'POST', 'POST', 'DELETE', 'PUT', 'PATCH']);
      const path = route();
      const key = pick([keyA, keyA, keyA, keyC, 'sk-corral-nope', '']);
      const headers: Record<string, string> = { 'content-type': pick(['application/json', 'text/plain', 'application/json']) };
      if (key) headers[random() < 0.5 ? 'x-api-key' : 'authorization'] = headers['x-api-key'] === undefined && random() < 0.5 ? key : `Bearer ${key}`;
      if (headers.authorization && !headers.authorization.startsWith('Bearer')) headers.authorization = `Bearer ${headers.authorization}`;
      const create = isCreate(method, path);
      let res: Response;
      try {
        res = await app.request(path, { method, headers, body: method === 'GET' ? undefined : body() });
      } catch (err) {
        failures.push(`#${i} ${method} ${path}: threw ${(err as Error).message}`);
        continue;
      }
      if (res.headers.get('content-type')?.includes('text/event-stream')) {
        await res.body?.cancel();
        accepted++;
        batchAllRejected = false;
        continue;
      }
      const text = await res.text();
      if (res.status >= 500) {
        fiveHundreds++;
        failures.push(`#${i} ${method} ${path}: ${res.status} ${text.slice(0, 200)}`);
      }
      if (create && res.status < 400) created.add(String(JSON.parse(text).id));
      if (res.status >= 400) {
        rejected++;
        let parsed: { type?: string; error?: { type?: string; message?: string } } = {};
        try {
          parsed = JSON.parse(text);
        } catch {
          failures.push(`#${i} ${method} ${path}: non-JSON error body`);
        }
        if (parsed.type !== 'error' || typeof parsed.error?.type !== 'string' || typeof parsed.error?.message !== 'string') {
          failures.push(`#${i} ${method} ${path}: error not in the Anthropic shape: ${text.slice(0, 200)}`);
        }
      } else {
        accepted++;
        batchAllRejected = false;
        // no tenant ever reads another's objects
        const foreign = key === keyC ? [...ownIds, ...theirIds] : theirIds;
        for (const other of foreign) if (text.includes(other)) failures.push(`#${i} ${method} ${path}: response leaks ${other}`);
      }
      if (i % 25 === 24) {
        const after = await snapshot();
        if (batchAllRejected && after !== before) failures.push(`requests #${i - 24}..#${i} were all rejected but changed data`);
        before = after;
        batchAllRejected = true;
      }
      if (failures.length > 20) break;
    }
    // tenant B's objects are exactly as they were made
    const s = t.runtime.services;
    expect((await s.agents.get('tenant-b', theirs.agent[0])).archived_at).toBeNull();
    expect((await s.environments.get('tenant-b', theirs.env[0])).archived_at).toBeNull();
    expect((await s.agents.get('tenant-b', theirs.agent[0])).version).toBe(1);
    expect((await s.sessions.get(tenantPrincipal('tenant-b'), theirs.session[0])).archived_at).toBeNull();
    expect((await s.events.getEvents(theirs.session[0])).map((e) => e.event.type)).toEqual(['user.message']);
    // 0 partial creates: every agent, environment, session, vault and credential stored (any of
    // their items: heads, versions, cursors) was made by an accepted request; and no event
    // outlives its session (every session id in the event table has a session record)
    const partial = new Set<string>();
    for (const item of await s.table.scanPrefix('')) {
      const m = /^(agent|env|session|vault)#(.+)$/.exec(item.pk);
      if (m && !created.has(m[2])) partial.add(`${m[1]} ${m[2].slice(0, 40)}`);
      if (m?.[1] === 'vault' && item.sk.startsWith('cred#') && !created.has(item.sk.slice(5))) partial.add(`credential ${item.sk.slice(5, 45)}`);
    }
    const partialCreates = partial.size;
    const orphans: string[] = [];
    const client = (t.runtime.services.table as DynamoStateTable)['client' as keyof DynamoStateTable] as never as {
      send(c: ScanCommand): Promise<{ Items?: Array<Record<string, { S?: string }>>; LastEvaluatedKey?: unknown }>;
    };
    let start: unknown;
    const sessionIds = new Set<string>();
    do {
      const out = await client.send(new ScanCommand({ TableName: 'corral-events', ExclusiveStartKey: start as never }));
      for (const item of out.Items ?? []) sessionIds.add(String(item.sessionId?.S).split('~')[0]);
      start = out.LastEvaluatedKey;
    } while (start);
    for (const sid of sessionIds) if (!(await s.table.get(`session#${sid}`, 'head'))) orphans.push(sid);
    console.info(`fuzz: ${REQUESTS} requests, ${rejected} rejected, ${accepted} accepted, ${fiveHundreds} 5xx, ${partialCreates} partial creates`);
    expect(failures).toEqual([]);
    expect(fiveHundreds).toBe(0);
    expect([...partial]).toEqual([]);
    expect(orphans).toEqual([]);
    expect(rejected).toBeGreaterThan(REQUESTS / 2);
  }, 900_000);
});
