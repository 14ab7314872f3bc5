import { createHash } from 'node:crypto';
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoStateTable } from '../../lambdas/adapters/aws/dynamodb-state-table.js';
import { createApp } from '../../lambdas/api/app.js';
import { generateApiKey } from '../../lambdas/core/resources/tenants.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

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

describe('fuzzing the API', () => {
  let t: TestRuntime;
  let app: ReturnType<typeof createApp>;
  let keyA: string;
  /** Tenant C attacks with its own key; tenant B's objects are targets no request may touch. */
  let keyC: string;
  const own: Record<string, string[]> = { agent: [], env: [], session: [] };
  const theirs: Record<string, string[]> = { agent: [], env: [], session: [] };

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
          if (!row.includes('"rate#')) rows.push(row); // rate-limit counters count every request
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
    const id = (kind: 'agent' | 'env' | 'session') => {
      const r = random();
      if (r < 0.4) return pick(own[kind]);
      if (r < 0.7) return pick(theirs[kind]);
      return garbage();
    };
    const value = (depth = 0): unknown => {
      const r = random();
      if (depth > 3 || r < 0.15) return null;
      if (r < 0.3) return Math.floor(random() * 1e6) * (random() < 0.5 ? -1 : 1);
      if (r < 0.4) return random() < 0.5;
      if (r < 0.55) return garbage();
      if (r < 0.6) return 'x'.repeat(Math.floor(random() * 300_000));
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
      ]);
    const body = () => {
      const r = random();
      if (r < 0.15) return pick(['{', '{"a":', 'null', '[]', '"str"', '1e999', '{"name": "\\ud800"}', 'nul', '\u0000']);
      if (r < 0.35) return JSON.stringify(value());
      return JSON.stringify(validish());
    };
    const route = () => {
      const r = Math.floor(random() * 14);
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
      ];
      return routes[r]();
    };
    const theirIds = [...theirs.agent, ...theirs.env, ...theirs.session];
    const ownIds = [...own.agent, ...own.env, ...own.session];

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
    expect((await s.sessions.get('tenant-b', theirs.session[0])).archived_at).toBeNull();
    expect((await s.events.getEvents(theirs.session[0])).map((e) => e.event.type)).toEqual(['user.message']);
    console.info(`fuzz: ${REQUESTS} requests, ${rejected} rejected, ${accepted} accepted, ${fiveHundreds} 5xx`);
    expect(failures).toEqual([]);
    expect(fiveHundreds).toBe(0);
    expect(rejected).toBeGreaterThan(REQUESTS / 2);
  }, 600_000);
});
