import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PAGE_BYTE_BUDGET, responseBytes } from '../../lambdas/core/resources/paging.js';
import { makeEvent, type SessionEvent } from '../../lambdas/core/session/events.js';
import { readHistory, type HistoryParams } from '../../lambdas/core/session/history.js';
import { createAgentAndEnvironment, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

/**
 * Every list fits a buffered Lambda response behind API Gateway (6 MB; past it API Gateway
 * answers 502): pages stop at a byte budget as well as at `limit`, and `next_page` continues
 * exactly where a page stopped.
 */

/** Lambda's buffered response limit, which a whole proxy result (the body escaped as a JSON string) must fit. */
const LAMBDA_BUFFERED_LIMIT = 6 * 1024 * 1024;
const BETA = { 'anthropic-beta': 'managed-agents-2026-04-01' };

/** About `size` bytes of text with quotes, backslashes and newlines, which cost more once escaped. */
function filler(size: number, seed: number): string {
  const unit = `event ${seed}: "quoted" \\ back\nslash and plain text. `;
  return unit.repeat(Math.ceil(size / unit.length)).slice(0, size);
}

/** The page's items as a buffered Lambda carries them. */
const pageBytes = (items: unknown[]) => items.reduce<number>((n, item) => n + responseBytes(item), 0);

describe('pages bounded by bytes', () => {
  let t: TestRuntime;
  let client: Anthropic;
  let sessionId: string;
  /** The session's log as stored: 80 large events between small ones. */
  let logged: SessionEvent[];
  beforeAll(async () => {
    t = await startTestRuntime();
    client = t.client;
    const { agent, environment } = await createAgentAndEnvironment(client);
    sessionId = (await client.beta.sessions.create({ agent: agent.id, environment_id: environment.id })).id;
    // Written straight into the log (no harness turn runs on them), so the log is exactly these.
    const start = Date.parse('2026-01-01T00:00:00Z');
    for (let i = 0; i < 80; i++) {
      const at = new Date(start + i * 1000);
      const type = i % 2 ? 'agent.message' : 'user.message';
      await t.runtime.services.events.emitEvent(sessionId, makeEvent({ type, content: [{ type: 'text', text: filler(100_000, i) }] }, at));
      if (i % 10 === 0) await t.runtime.services.events.emitEvent(sessionId, makeEvent({ type: 'session.status_running' }, at));
    }
    logged = (await t.runtime.services.events.getEvents(sessionId)).map((s) => s.event);
    expect(logged).toHaveLength(88);
  }, 120_000);
  afterAll(() => t?.close());

  const raw = (path: string) => fetch(`${t.runtime.url}${path}`, { headers: { ...BETA, 'x-api-key': t.runtime.apiKey } });

  it('walks 80 events of 100 KB (8 MB) with the SDK in pages under the budget, each event once, in order', async () => {
    const ids: string[] = [];
    let pages = 0;
    for await (const page of (await client.beta.sessions.events.list(sessionId, { limit: 100 })).iterPages()) {
      pages++;
      expect(page.data.length).toBeGreaterThan(0);
      expect(pageBytes(page.data)).toBeLessThanOrEqual(PAGE_BYTE_BUDGET);
      ids.push(...page.data.map((e) => e.id));
    }
    expect(pages).toBeGreaterThanOrEqual(2);
    expect(ids).toEqual(logged.map((e) => e.id));

    // The SDK's own auto-pagination sees the same, events intact.
    const listed = [];
    for await (const e of client.beta.sessions.events.list(sessionId)) listed.push(e);
    expect(listed).toEqual(logged);
  });

  it('answers each page, in both orders, in a body a buffered Lambda can return', async () => {
    for (const order of ['asc', 'desc'] as const) {
      const ids: string[] = [];
      let page: string | null = null;
      let pages = 0;
      do {
        const res = await raw(`/v1/sessions/${sessionId}/events?limit=1000&order=${order}${page ? `&page=${page}` : ''}`);
        expect(res.status).toBe(200);
        const text = await res.text();
        // The proxy result carries the body as a JSON string: escaped once more.
        expect(Buffer.byteLength(JSON.stringify({ statusCode: 200, headers: {}, body: text }))).toBeLessThan(LAMBDA_BUFFERED_LIMIT);
        const body = JSON.parse(text) as { data: SessionEvent[]; next_page: string | null };
        expect(pageBytes(body.data)).toBeLessThanOrEqual(PAGE_BYTE_BUDGET);
        ids.push(...body.data.map((e) => e.id));
        page = body.next_page;
        pages++;
      } while (page);
      expect(pages).toBeGreaterThanOrEqual(2);
      const expected = logged.map((e) => e.id);
      expect(ids).toEqual(order === 'asc' ? expected : [...expected].reverse());
    }
  });

  /** Every page of readHistory with these params, walked through next_page. */
  async function walk(params: HistoryParams) {
    const pages: SessionEvent[][] = [];
    let page: string | null = null;
    do {
      const res = await readHistory(t.runtime.services.events, sessionId, { ...params, page });
      pages.push(res.data);
      page = res.next_page;
      expect(pages.length).toBeLessThan(200);
    } while (page);
    return pages;
  }

  it('continues exactly where a byte-bounded page stopped, with filters and positions, in both orders', async () => {
    const maxBytes = 600_000; // four of these events per page (each ~140 KB once escaped)
    const at = (e: SessionEvent) => Date.parse(e.processed_at);
    const cases: Array<{ params: HistoryParams; expect: (e: SessionEvent, position: number) => boolean }> = [
      { params: {}, expect: () => true },
      { params: { types: ['agent.message', 'session.status_running'] }, expect: (e) => e.type !== 'user.message' },
      {
        params: { createdAt: { gte: '2026-01-01T00:00:10Z', lt: '2026-01-01T00:01:00Z' } },
        expect: (e) => at(e) >= Date.parse('2026-01-01T00:00:10Z') && at(e) < Date.parse('2026-01-01T00:01:00Z'),
      },
      { params: { positions: { from: 7, to: 40 } }, expect: (_e, p) => p >= 7 && p <= 40 },
      { params: { positions: { from: 7, to: 40 }, types: ['user.message'], limit: 2 }, expect: (e, p) => p >= 7 && p <= 40 && e.type === 'user.message' },
    ];
    for (const c of cases) {
      for (const order of ['asc', 'desc'] as const) {
        const pages = await walk({ ...c.params, order, maxBytes });
        for (const p of pages) {
          expect(p.length).toBeLessThanOrEqual(c.params.limit ?? 100);
          if (p.length > 1) expect(pageBytes(p)).toBeLessThanOrEqual(maxBytes);
        }
        const wanted = logged.filter((e, i) => c.expect(e, i + 1)).map((e) => e.id);
        expect(pages.flat().map((e) => e.id), JSON.stringify({ ...c.params, order })).toEqual(order === 'asc' ? wanted : [...wanted].reverse());
        expect(pages.length).toBeGreaterThan(1);
      }
    }
  }, 90_000);

  it('sends an event larger than the budget alone on its page', async () => {
    for (const order of ['asc', 'desc'] as const) {
      const pages = await walk({ order, maxBytes: 50_000 });
      expect(pages.every((p) => p.length === 1 || pageBytes(p) <= 50_000)).toBe(true);
      const large = pages.filter((p) => p.some((e) => e.type !== 'session.status_running'));
      // a large event never shares its page (a small one may come before it)
      for (const p of large) expect(p.filter((e) => e.type !== 'session.status_running')).toHaveLength(1);
      expect(pages.flat()).toHaveLength(logged.length);
    }
  }, 90_000);
});

describe('resource lists bounded by bytes', () => {
  let t: TestRuntime;
  beforeAll(async () => {
    t = await startTestRuntime();
  });
  afterAll(() => t?.close());

  it('pages agents and sessions of ~165 KB each under the budget through the SDK', async () => {
    const client = t.client;
    // 55,000 three-byte characters: ~165 KB per agent (an agent may be 192 KB stored) and per
    // session, which pins the agent; 40 of them are more than one 5 MB page.
    const system = '€'.repeat(55_000);
    const agents: string[] = [];
    for (let i = 0; i < 40; i++) {
      agents.push((await client.beta.agents.create({ name: `big-${i}`, model: 'claude-sonnet-4-6', system })).id);
    }
    const environment = await client.beta.environments.create({ name: 'env', config: { type: 'cloud' } });
    const sessions: string[] = [];
    for (const agent of agents) sessions.push((await client.beta.sessions.create({ agent, environment_id: environment.id })).id);

    const walk = async (pager: AsyncIterable<{ data: Array<{ id: string }> }>) => {
      const ids: string[] = [];
      let pages = 0;
      for await (const page of pager) {
        pages++;
        expect(pageBytes(page.data)).toBeLessThanOrEqual(PAGE_BYTE_BUDGET);
        ids.push(...page.data.map((a) => a.id));
      }
      return { ids, pages };
    };
    const listedAgents = await walk((await client.beta.agents.list({ limit: 100 })).iterPages());
    expect(listedAgents.pages).toBeGreaterThanOrEqual(2);
    expect(listedAgents.ids).toEqual(agents);
    const listedSessions = await walk((await client.beta.sessions.list({ limit: 100 })).iterPages());
    expect(listedSessions.pages).toBeGreaterThanOrEqual(2);
    expect([...listedSessions.ids].sort()).toEqual([...sessions].sort());
    expect(new Set(listedSessions.ids).size).toBe(sessions.length);
    const newestFirst = await walk((await client.beta.sessions.list({ limit: 100, order: 'desc' })).iterPages());
    expect(newestFirst.ids).toEqual([...listedSessions.ids].reverse());
  }, 120_000);

  it('pages every resource list by bytes with the same cursor rules', async () => {
    const s = t.runtime.services;
    const tenant = 'local';
    const names = Array.from({ length: 7 }, (_, i) => `e${i}`);
    for (const name of names) await t.client.beta.environments.create({ name, description: 'x'.repeat(2000) });
    const ids: string[] = [];
    let page: string | null = null;
    let pages = 0;
    do {
      const res: { data: Array<{ id: string; name: string }>; next_page: string | null } = await s.environments.list(tenant, { limit: 100, page, maxBytes: 5_000 });
      expect(res.data.length).toBeLessThanOrEqual(2);
      ids.push(...res.data.filter((e) => names.includes(e.name)).map((e) => e.id));
      page = res.next_page;
      pages++;
    } while (page);
    expect(pages).toBeGreaterThanOrEqual(4);
    expect(new Set(ids).size).toBe(names.length);
  });
});
