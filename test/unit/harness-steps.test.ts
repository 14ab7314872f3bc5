import { beforeAll, describe, expect, it } from 'vitest';
import { AgentCreate } from '../../lambdas/core/api/schemas.js';
import { ModelError } from '../../lambdas/core/harness/model.js';
import { McpToolCache, MCP_TOOLS_TTL_MS } from '../../lambdas/core/harness/mcp-tools.js';
import { watchInterrupt } from '../../lambdas/core/harness/interrupts.js';
import { initialState, type OpenTool } from '../../lambdas/core/harness/state.js';
import { LeaseLostError } from '../../lambdas/core/harness/step.js';
import { failedRequest, retryDelayMs } from '../../lambdas/core/harness/steps/call-model.js';
import { compactionBoundary } from '../../lambdas/core/harness/steps/compact.js';
import { responseEvents } from '../../lambdas/core/harness/steps/model-response.js';
import { routeToolCall } from '../../lambdas/core/harness/steps/run-tool.js';
import { readLog } from '../../lambdas/core/harness/steps/tool-read-log.js';
import { buildToolbox } from '../../lambdas/core/harness/tools.js';
import { loadCursor, saveCursor } from '../../lambdas/core/harness/wake.js';
import { McpError, type McpGateway } from '../../lambdas/core/mcp/gateway.js';
import { AgentService, type AgentToolDefinition } from '../../lambdas/core/resources/agents.js';
import type { Session } from '../../lambdas/core/resources/sessions.js';
import { makeEvent, type SessionEvent, type StoredEvent, type ToolUseEvent } from '../../lambdas/core/session/events.js';
import type { GetEventsOptions } from '../../lambdas/core/session/log.js';
import { interruptSignals } from '../../lambdas/core/storage/items.js';
import { MemoryEventLog, MemoryStateTable } from './memory-store.js';
import { text, toolUse, usage } from './scripted-model.js';

/**
 * The harness's decision modules alone, without a wake: the model-retry policy, how a model's
 * answer becomes events, how an open tool call is routed, where compaction cuts, the MCP tool
 * cache, the interrupt watcher and `read_session_log`.
 */

/** An agent's tool definitions as the agent service stores them (defaults filled in). */
const agentTools = async (tools: unknown[]): Promise<AgentToolDefinition[]> =>
  (
    await new AgentService(new MemoryStateTable()).create(
      'tnt_s',
      AgentCreate.parse({ name: 'a', model: 'claude-sonnet-4-6', tools, mcp_servers: [{ type: 'url', name: 'docs', url: 'https://mcp.example.com/mcp' }] }),
    )
  ).tools;

describe('the model-retry policy', () => {
  it('waits what the option says, else doubles from 1 s with jitter between half and all of it, capped at 30 s', () => {
    expect(retryDelayMs(3, { retryDelayMs: (n) => n * 7 })).toBe(21);
    const full = () => 1;
    const half = () => 0;
    expect([1, 2, 3, 4, 5, 6, 9].map((n) => retryDelayMs(n, {}, full))).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    expect([1, 2, 6].map((n) => retryDelayMs(n, {}, half))).toEqual([500, 1000, 15000]);
  });

  const at = (attempt: number, byDeadline = false) => ({ attempt, maxAttempts: 3, byDeadline });
  const idleOf = (bodies: unknown[]) => (bodies as Array<{ type: string }>).find((b) => b.type === 'session.status_idle');

  it('retries a retryable error until the last attempt, then gives up with retries_exhausted', () => {
    const overloaded = new ModelError('model_overloaded_error', true, 'busy');
    const first = failedRequest('req_1', overloaded, at(1));
    expect(first.retryStatus).toBe('retrying');
    expect(first.bodies).toEqual([
      expect.objectContaining({ type: 'span.model_request_end', model_request_start_id: 'req_1', is_error: true }),
      { type: 'session.error', error: { type: 'model_overloaded_error', message: 'busy', retry_status: { type: 'retrying' } } },
    ]);
    expect(failedRequest('req_1', overloaded, at(2)).retryStatus).toBe('retrying');
    const last = failedRequest('req_1', overloaded, at(3));
    expect(last.retryStatus).toBe('exhausted');
    expect(idleOf(last.bodies)).toEqual({ type: 'session.status_idle', stop_reason: { type: 'retries_exhausted' }, stop_details: null });
  });

  it('ends the turn at once on an error retrying cannot fix', () => {
    const bad = failedRequest('req_1', new ModelError('billing_error', false, 'no credit'), at(1));
    expect(bad.retryStatus).toBe('terminal');
    expect(idleOf(bad.bodies)).toMatchObject({ stop_reason: { type: 'end_turn' } });
  });

  it('counts a call cut by the deadline as a failed, retryable attempt, whatever the error was', () => {
    const cut = failedRequest('req_1', new ModelError('billing_error', false, 'aborted'), at(1, true));
    expect(cut.retryStatus).toBe('retrying');
    expect(cut.error).toMatchObject({ errorType: 'model_request_failed_error', retryable: true });
    expect(cut.error.message).toMatch(/deadline/);
    expect(failedRequest('req_1', new Error('x'), at(3, true)).retryStatus).toBe('exhausted');
  });

  it('treats an error that is not a model error as a retryable failed request', () => {
    const odd = failedRequest('req_1', new TypeError('socket hang up'), at(1));
    expect(odd.error).toMatchObject({ errorType: 'model_request_failed_error', retryable: true, message: 'socket hang up' });
  });
});

describe("a model's answer as events", () => {
  const toolbox = async () =>
    buildToolbox(
    await agentTools([
      { type: 'agent_toolset_20260401', configs: [{ name: 'bash', permission_policy: { type: 'always_ask' } }] },
      { type: 'custom', name: 'lookup', description: 'look it up', input_schema: { type: 'object' } },
      { type: 'mcp_toolset', mcp_server_name: 'docs' },
    ]),
    {
      mcpServers: [{ name: 'docs', url: 'https://mcp.example.com/mcp' }],
      mcpTools: new Map([['docs', [{ name: 'search', input_schema: { type: 'object' } }]]]),
    },
  );

  it('routes each tool use by the toolbox offered: sandbox (with its permission), custom, MCP', async () => {
    const response = {
      content: [
        { type: 'thinking', thinking: 'hm' },
        { type: 'text', text: 'let me see' },
        { type: 'tool_use', id: 't1', name: 'bash', input: { command: 'ls' } },
        { type: 'tool_use', id: 't2', name: 'read', input: { path: 'a' } },
        { type: 'tool_use', id: 't3', name: 'lookup', input: { q: 1 } },
        { type: 'tool_use', id: 't4', name: 'mcp__docs__search', input: { q: 2 } },
      ],
      stopReason: 'tool_use',
      usage: usage(7, 3),
      timeToFirstTokenMs: 12,
    };
    const bodies = responseEvents('req_1', response, await toolbox());
    expect(bodies.map((b) => b.type)).toEqual([
      'agent.thinking',
      'agent.message',
      'agent.tool_use',
      'agent.tool_use',
      'agent.custom_tool_use',
      'agent.mcp_tool_use',
      'span.model_request_end',
    ]);
    expect(bodies[2]).toMatchObject({ name: 'bash', input: { command: 'ls' }, evaluated_permission: 'ask', evaluation: { type: 'always_ask' } });
    expect(bodies[3]).toMatchObject({ name: 'read', evaluated_permission: 'allow', evaluation: { type: 'always_allow' } });
    expect(bodies[4]).toEqual({ type: 'agent.custom_tool_use', name: 'lookup', input: { q: 1 } });
    // MCP tools ask by default.
    expect(bodies[5]).toMatchObject({ name: 'search', mcp_server_name: 'docs', input: { q: 2 }, evaluated_permission: 'ask', evaluation: { type: 'always_ask' } });
    expect(bodies[6]).toMatchObject({ model_request_start_id: 'req_1', is_error: false, time_to_first_token_ms: 12, model_usage: { input_tokens: 7, output_tokens: 3 } });
  });

  it('ends the turn when the model calls no tool, and not when it does', async () => {
    const tb = await toolbox();
    expect(responseEvents('req_1', text('done'), tb).at(-1)).toEqual({ type: 'session.status_idle', stop_reason: { type: 'end_turn' }, stop_details: null });
    expect(responseEvents('req_1', toolUse('t1', 'bash', {}), tb).at(-1)).toMatchObject({ type: 'span.model_request_end' });
  });
});

describe('routing an open tool call', () => {
  let tools: AgentToolDefinition[];
  beforeAll(async () => {
    tools = await agentTools([
      { type: 'agent_toolset_20260401', configs: [{ name: 'web_fetch', enabled: false }] },
      { type: 'custom', name: 'lookup', description: 'look it up', input_schema: { type: 'object' } },
    ]);
  });
  const open = (name: string, extra: Partial<OpenTool> = {}): OpenTool => ({
    id: 'sevt_1',
    type: 'agent.tool_use',
    name,
    position: 3,
    permission: 'allow',
    confirmation: null,
    ...extra,
  });

  it('sends toolset tools to the sandbox, read_session_log to the log, MCP tool uses to their server', () => {
    expect(routeToolCall(open('bash'), tools)).toEqual({ kind: 'sandbox', tool: 'bash' });
    expect(routeToolCall(open('read_session_log'), tools)).toEqual({ kind: 'log' });
    expect(routeToolCall(open('search', { type: 'agent.mcp_tool_use' }), tools)).toEqual({ kind: 'mcp' });
  });

  it('answers a denied call, whatever its kind, with the user\'s reason', () => {
    const deny = (m: string | null) => ({ result: 'deny' as const, deny_message: m });
    expect(routeToolCall(open('bash', { confirmation: deny('not now') }), tools)).toEqual({ kind: 'denied', message: 'The user denied this tool call: not now' });
    expect(routeToolCall(open('search', { type: 'agent.mcp_tool_use', confirmation: deny(null) }), tools)).toEqual({ kind: 'denied', message: 'The user denied this tool call.' });
    expect(routeToolCall(open('bash', { confirmation: { result: 'allow', deny_message: null } }), tools)).toEqual({ kind: 'sandbox', tool: 'bash' });
  });

  it('runs nothing for a custom tool, a disabled tool or a name the agent does not have', () => {
    expect(routeToolCall(open('lookup'), tools)).toEqual({ kind: 'unknown' });
    expect(routeToolCall(open('web_fetch'), tools)).toEqual({ kind: 'unknown' });
    expect(routeToolCall(open('rm_rf'), tools)).toEqual({ kind: 'unknown' });
  });
});

describe('where compaction cuts', () => {
  let position = 0;
  const stored = (event: Record<string, unknown>): StoredEvent => ({ position: ++position, event: makeEvent(event as never) });
  const user = (t: string) => stored({ type: 'user.message', content: [{ type: 'text', text: t }] });
  const start = () => stored({ type: 'span.model_request_start' });
  const answer = (t: string) => stored({ type: 'agent.message', content: [{ type: 'text', text: t }] });

  it('keeps the most recent exchanges that fit half the budget, starting at a model request', () => {
    position = 0;
    const events = [user('a'), start(), answer('b'), user('c'), start(), answer('d'), user('e'), start(), answer('f')];
    // Half of 8 events is 4: going back from the end, the earliest model request within the last 4 events is the cut.
    const cut = compactionBoundary(events, { chars: 1_000_000, events: 8 });
    expect(events[cut].event.type).toBe('span.model_request_start');
    expect(events.length - cut).toBeLessThanOrEqual(4);
    expect(cut).toBe(7);
    // A larger budget keeps more: the earliest start within half of it.
    expect(compactionBoundary(events, { chars: 1_000_000, events: 14 })).toBe(4);
  });

  it('keeps only from the last model request when nothing fits, and summarises everything when there is none', () => {
    position = 0;
    const events = [user('x'.repeat(500)), start(), answer('y'.repeat(500)), user('z'), start(), answer('w'.repeat(500))];
    expect(compactionBoundary(events, { chars: 100, events: 1000 })).toBe(4);
    position = 0;
    const noRequests = [user('a'), answer('b'), user('c')];
    expect(compactionBoundary(noRequests, { chars: 100, events: 1000 })).toBe(3);
  });
});

describe('the MCP tool cache', () => {
  const session = (vaults: string[]) =>
    ({
      id: 'sesn_1',
      vault_ids: vaults,
      agent: {
        tools: [{ type: 'mcp_toolset', mcp_server_name: 'docs' }],
        mcp_servers: [
          { type: 'url', name: 'docs', url: 'https://mcp.example.com/mcp' },
          { type: 'url', name: 'unused', url: 'https://other.example.com/mcp' },
        ],
      },
    }) as unknown as Session;
  const gateway = (answer: () => Promise<Array<{ name: string; input_schema: Record<string, unknown> }>>) => {
    const listed: string[] = [];
    const gw: McpGateway = {
      listTools: async (req) => {
        listed.push(`${req.server.name}:${req.vaultIds.join(',')}`);
        return answer();
      },
      callTool: async () => ({ content: [], isError: false }),
    };
    return { gw, listed };
  };
  const quiet = { warn() {} };

  it('lists the servers the toolsets use once a minute per set of vaults', async () => {
    let now = 1_000_000;
    const { gw, listed } = gateway(async () => [{ name: 'search', input_schema: {} }]);
    const cache = new McpToolCache(gw, quiet, () => now);
    const first = await cache.list(session(['v2', 'v1']));
    expect(first.errors).toEqual([]);
    expect(first.tools.get('docs')).toEqual([{ name: 'search', input_schema: {} }]);
    await cache.list(session(['v1', 'v2']));
    expect(listed).toEqual(['docs:v2,v1']);
    await cache.list(session(['v3']));
    expect(listed).toEqual(['docs:v2,v1', 'docs:v3']);
    now += MCP_TOOLS_TTL_MS;
    await cache.list(session(['v1', 'v2']));
    expect(listed).toEqual(['docs:v2,v1', 'docs:v3', 'docs:v1,v2']);
  });

  it('reports a server that cannot be listed as a session.error of its kind and leaves it out, without caching the failure', async () => {
    let fail = true;
    const { gw, listed } = gateway(async () => {
      if (fail) throw new McpError('authentication', 'docs', 'MCP server docs refused the credentials');
      return [];
    });
    const cache = new McpToolCache(gw, quiet);
    const out = await cache.list(session([]));
    expect(out.tools.has('docs')).toBe(false);
    expect(out.errors).toEqual([
      { type: 'session.error', error: { type: 'mcp_authentication_failed_error', mcp_server_name: 'docs', message: 'MCP server docs refused the credentials', retry_status: { type: 'terminal' } } },
    ]);
    fail = false;
    expect((await cache.list(session([]))).tools.get('docs')).toEqual([]);
    expect(listed).toHaveLength(2);
  });

  it('reports every server as unreachable where no gateway is configured', async () => {
    const out = await new McpToolCache(undefined, quiet).list(session([]));
    expect(out.errors).toEqual([expect.objectContaining({ error: expect.objectContaining({ type: 'mcp_connection_failed_error', mcp_server_name: 'docs' }) })]);
  });
});

describe('the interrupt watcher', () => {
  const S = 'sesn_w';
  const emit = (log: MemoryEventLog, event: Record<string, unknown>) => log.emitEvent(S, makeEvent(event as never));
  const aborted = (c: AbortController) => new Promise<unknown>((resolve) => c.signal.addEventListener('abort', () => resolve(c.signal.reason), { once: true }));

  /** An event log that reports each read, so a test can wait for the watcher to have looked. */
  class WatchedLog extends MemoryEventLog {
    private waiters: Array<{ at: number; resolve: () => void }> = [];
    override async getEvents(sessionId: string, opts?: GetEventsOptions) {
      const out = await super.getEvents(sessionId, opts);
      const seen = out.at(-1)?.position ?? 0;
      this.waiters = this.waiters.filter((w) => (seen >= w.at ? (w.resolve(), false) : true));
      return out;
    }
    /** Resolves once a read has returned position `at`. */
    read(at: number) {
      return new Promise<void>((resolve) => this.waiters.push({ at, resolve }));
    }
  }

  it('aborts on a user.interrupt after its start, and not on one before it', async () => {
    const log = new WatchedLog();
    const table = new MemoryStateTable();
    await emit(log, { type: 'user.message', content: [] });
    await emit(log, { type: 'user.interrupt' });
    await emit(log, { type: 'span.model_request_start' });
    const controller = new AbortController();
    const looked = log.read(3);
    const stop = watchInterrupt({ events: log, table }, S, 2, new AbortController().signal, controller, 1);
    await looked;
    expect(controller.signal.aborted).toBe(false);
    const reason = aborted(controller);
    await emit(log, { type: 'user.interrupt' });
    await interruptSignals.raise(table, S);
    expect(String(await reason)).toMatch(/interrupted/);
    stop();
  });

  it('reads the log only when the interrupt signal changes (or once at the start)', async () => {
    const table = new MemoryStateTable();
    let logReads = 0;
    let signalReads = 0;
    class CountingLog extends MemoryEventLog {
      override async getEvents(sessionId: string, opts?: GetEventsOptions) {
        logReads++;
        return super.getEvents(sessionId, opts);
      }
    }
    const counted = new (class extends MemoryStateTable {
      override async get(pk: string, sk: string) {
        signalReads++;
        return table.get(pk, sk);
      }
    })();
    const log = new CountingLog();
    await emit(log, { type: 'user.message', content: [] });
    // An interrupt already in the log when the watch begins, after its start position: caught by the first read.
    await emit(log, { type: 'user.interrupt' });
    const early = new AbortController();
    const stopEarly = watchInterrupt({ events: log, table: counted }, S, 1, new AbortController().signal, early, 1);
    expect(String(await aborted(early))).toMatch(/interrupted/);
    stopEarly();

    logReads = 0;
    signalReads = 0;
    const controller = new AbortController();
    const stop = watchInterrupt({ events: log, table: counted }, S, 2, new AbortController().signal, controller, 1);
    while (signalReads < 20) await new Promise((r) => setTimeout(r, 2));
    expect(logReads).toBe(1); // the read at the start: the signal has not moved since
    expect(controller.signal.aborted).toBe(false);
    const reason = aborted(controller);
    await emit(log, { type: 'user.interrupt' });
    await interruptSignals.raise(table, S);
    expect(String(await reason)).toMatch(/interrupted/);
    expect(logReads).toBe(2);
    stop();
  });

  it('aborts with LeaseLostError when the lease is lost, and hears a notifier without waiting for a poll', async () => {
    const log = new MemoryEventLog();
    const lost = new AbortController();
    const controller = new AbortController();
    const stop = watchInterrupt({ events: log, table: new MemoryStateTable() }, S, 0, lost.signal, controller, 3_600_000);
    const reason = aborted(controller);
    lost.abort();
    expect(await reason).toBeInstanceOf(LeaseLostError);
    stop();

    let announce = () => {};
    const notifier = {
      subscribe(_id: string, onAppend: () => void) {
        announce = onAppend;
        return () => {
          announce = () => {};
        };
      },
    };
    const heard = new AbortController();
    const stopHearing = watchInterrupt({ events: log, table: new MemoryStateTable(), notifier }, S, 0, new AbortController().signal, heard, 3_600_000);
    const interrupted = aborted(heard);
    await emit(log, { type: 'user.interrupt' });
    announce();
    expect(String(await interrupted)).toMatch(/interrupted/);
    stopHearing();
  });
});

describe('read_session_log', () => {
  const S = 'sesn_r';
  const textOf = (body: unknown) => (body as { content: Array<{ text: string }> }).content[0].text;
  const use = (input: Record<string, unknown>) => ({ ...makeEvent({ type: 'agent.tool_use', name: 'read_session_log', input } as never) }) as ToolUseEvent;

  it('returns events by position, 50 at a time, saying where to ask again', async () => {
    const log = new MemoryEventLog();
    for (let i = 1; i <= 60; i++) await log.emitEvent(S, makeEvent({ type: 'user.message', content: [{ type: 'text', text: `m${i}` }] } as never));
    const page = await readLog(log, S, use({ from_position: 5, to_position: 60 }));
    expect(page).toMatchObject({ type: 'agent.tool_result', is_error: false });
    const out = textOf(page);
    expect(out.split('\n').filter((l) => l.startsWith('#'))).toHaveLength(50);
    expect(out).toContain('#5 user.message');
    expect(out).toContain('#54 user.message');
    expect(out).not.toContain('#55 ');
    expect(out).toMatch(/\(6 more: ask again from position 55\)$/);
    const one = await readLog(log, S, use({ from_position: 7 }));
    expect(textOf(one)).toMatch(/^#7 user\.message: .*m7/);
  });

  it('refuses positions that are not positions, and says when a range is empty', async () => {
    const log = new MemoryEventLog();
    for (const input of [{}, { from_position: 0 }, { from_position: 3, to_position: 2 }, { from_position: 'x' }]) {
      expect(await readLog(log, S, use(input))).toMatchObject({ type: 'agent.tool_result', is_error: true });
    }
    expect(await readLog(log, S, use({ from_position: 1 }))).toMatchObject({ is_error: false, content: [{ type: 'text', text: 'No events in that range.' }] });
  });
});

describe('the cursor', () => {
  it('loads as the fold of nothing when there is none, and only ever moves forward', async () => {
    const table = new MemoryStateTable();
    expect(await loadCursor(table, 'sesn_c')).toEqual(initialState());
    const at = (position: number) => ({ ...initialState(), position });
    expect(await saveCursor(table, 'sesn_c', at(5), 0)).toBe(5);
    expect(await saveCursor(table, 'sesn_c', at(9), 5)).toBe(9);
    // A stale harness that read up to 7 cannot move it back: it is told the position it had saved.
    expect(await saveCursor(table, 'sesn_c', at(7), 5)).toBe(5);
    expect((await loadCursor(table, 'sesn_c')).position).toBe(9);
  });
});
