import { describe, expect, it } from 'vitest';
import { AgentCreate, EnvironmentCreate, SessionCreate } from '../../lambdas/core/api/schemas.js';
import type { HarnessOptions } from '../../lambdas/core/harness/harness.js';
import { McpError, type McpCallResult, type McpGateway } from '../../lambdas/core/mcp/gateway.js';
import { createServices } from '../../lambdas/core/services.js';
import { DELIVERS_EVERYTHING } from './recipe-support.js';
import { MemoryEventLog, MemoryStateTable } from './memory-store.js';
import { ScriptedModel, text, toolUse } from './scripted-model.js';

/**
 * The harness's other actions in-process: compaction of a long view, MCP tools through the
 * gateway (a stand-in for the credential proxy), handing a session to a new wake (step limit,
 * deadline), and fencing off a holder that never released its lease.
 */
const T = 'tnt_h';

async function rig(opts: HarnessOptions = {}, mcp?: McpGateway) {
  const model = new ScriptedModel();
  const wakes: string[] = [];
  let now = Date.now();
  const svc = createServices({
    table: new MemoryStateTable(),
    events: new MemoryEventLog(),
    queue: { wake: async (id) => void wakes.push(id) },
    sandboxProvider: { recipeSupport: DELIVERS_EVERYTHING, provision: async () => Promise.reject(new Error('no sandbox')), release: async () => undefined },
    model,
    mcp,
    clock: () => now,
    leaseTtlMs: 60_000,
    harness: { retryDelayMs: () => 1, ...opts },
  });
  const session = async (agent: Record<string, unknown> = {}) => {
    const a = await svc.agents.create(T, AgentCreate.parse({ name: 'a', model: 'claude-sonnet-4-6', tools: [], ...agent }));
    const e = await svc.environments.create(T, EnvironmentCreate.parse({ name: 'e' }));
    return svc.sessions.create(T, SessionCreate.parse({ agent: a.id, environment_id: e.id }));
  };
  const say = (id: string, t: string) => svc.sessions.send(T, id, [{ type: 'user.message', content: [{ type: 'text', text: t }] }] as never);
  const events = async (id: string) => (await svc.events.getEvents(id)).map((s) => s.event);
  return { svc, model, wakes, session, say, events, advance: (ms: number) => (now += ms) };
}

describe('compaction', () => {
  it('summarises the older part of a long view, and the next request starts from the summary', async () => {
    const r = await rig({ contextBudgetEvents: 14 });
    const s = await r.session({ model: { id: 'claude-sonnet-4-6', effort: 'low', inference_geo: 'us' } });
    for (let i = 1; i <= 3; i++) {
      await r.say(s.id, `message ${i}`);
      r.model.push(text(`answer ${i}`));
      await r.svc.harness.wake(s.id);
    }
    await r.say(s.id, 'message 4');
    r.model.push(text('SUMMARY: we talked about messages 1 to 3'), text('answer 4'));
    await r.svc.harness.wake(s.id);
    const log = await r.events(s.id);
    const compacted = log.find((e) => e.type === 'agent.thread_context_compacted');
    expect(compacted).toMatchObject({ summary: 'SUMMARY: we talked about messages 1 to 3', from_position: 1 });
    // the summary request offers no tools and ends with the instruction to summarise
    const summaryRequest = r.model.requests.at(-2)!;
    expect(summaryRequest.tools).toEqual([]);
    // the agent's effort and inference geography hold for the summary too (it needs no thinking)
    expect(summaryRequest.options).toEqual({ output_config: { effort: 'low' }, inference_geo: 'us' });
    expect(r.model.requests.at(-1)!.options).toEqual({ output_config: { effort: 'low' }, inference_geo: 'us', thinking: { type: 'adaptive' } });
    expect(JSON.stringify(summaryRequest.messages.at(-1))).toMatch(/summar/i);
    // the next model request sees the summary, not the events it replaced, and can read them back
    const next = r.model.requests.at(-1)!;
    expect(JSON.stringify(next.messages)).toContain('SUMMARY: we talked about messages 1 to 3');
    expect(JSON.stringify(next.messages)).not.toContain('message 1');
    expect(next.tools.map((t) => t.name)).toContain('read_session_log');
    expect(log.at(-1)).toMatchObject({ type: 'session.status_idle' });
  });

  it('compacts with a plain note when no summary can be written', async () => {
    const r = await rig({ contextBudgetEvents: 14 });
    const s = await r.session();
    for (let i = 1; i <= 3; i++) {
      await r.say(s.id, `message ${i}`);
      r.model.push(text(`answer ${i}`));
      await r.svc.harness.wake(s.id);
    }
    await r.say(s.id, 'message 4');
    r.model.push({ content: [], stopReason: 'end_turn', usage: { input_tokens: 1, output_tokens: 0, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 }, timeToFirstTokenMs: null }, text('answer 4'));
    await r.svc.harness.wake(s.id);
    const compacted = (await r.events(s.id)).find((e) => e.type === 'agent.thread_context_compacted');
    expect(compacted?.summary).toMatch(/^\(No summary could be written\. Events 1 to \d+ are out of view;/);
  });

  it('lets the model read events out of its view with read_session_log', async () => {
    const r = await rig({ contextBudgetEvents: 14 });
    const s = await r.session();
    for (let i = 1; i <= 3; i++) {
      await r.say(s.id, `message ${i}`);
      r.model.push(text(`answer ${i}`));
      await r.svc.harness.wake(s.id);
    }
    await r.say(s.id, 'what was my first message?');
    r.model.push(text('summary'), toolUse('toolu_r', 'read_session_log', { from_position: 1, to_position: 1 }), text('it was "message 1"'));
    await r.svc.harness.wake(s.id);
    const result = (await r.events(s.id)).find((e) => e.type === 'agent.tool_result')!;
    expect(result.is_error).toBe(false);
    expect(JSON.stringify(result.content)).toContain('#1 user.message');
    expect(JSON.stringify(result.content)).toContain('message 1');
  });
});

describe('MCP tools', () => {
  class Gateway implements McpGateway {
    calls: unknown[] = [];
    answer: McpCallResult | Error = { content: [{ type: 'text', text: 'doc text' }], isError: false };
    async listTools() {
      return [{ name: 'search', description: 'search the docs', input_schema: { type: 'object' } }];
    }
    async callTool(req: unknown) {
      this.calls.push(req);
      if (this.answer instanceof Error) throw this.answer;
      return this.answer;
    }
  }
  const agent = {
    mcp_servers: [{ type: 'url', name: 'docs', url: 'https://mcp.example.com/mcp' }],
    tools: [{ type: 'mcp_toolset', mcp_server_name: 'docs', default_config: { permission_policy: { type: 'always_allow' } } }],
  };

  it('offers the server\'s tools under their MCP names and calls them through the gateway', async () => {
    const gw = new Gateway();
    const r = await rig({}, gw);
    const s = await r.session(agent);
    await r.say(s.id, 'search the docs');
    r.model.push(toolUse('toolu_m', 'mcp__docs__search', { q: 'x' }), text('found it'));
    await r.svc.harness.wake(s.id);
    expect(r.model.requests[0].tools).toEqual([{ name: 'mcp__docs__search', description: 'search the docs', input_schema: { type: 'object' } }]);
    const log = await r.events(s.id);
    const use = log.find((e) => e.type === 'agent.mcp_tool_use')!;
    expect(use).toMatchObject({ name: 'search', mcp_server_name: 'docs', input: { q: 'x' }, evaluated_permission: 'allow' });
    expect(gw.calls).toEqual([{ sessionId: s.id, vaultIds: [], server: { type: 'url', name: 'docs', url: 'https://mcp.example.com/mcp' }, tool: 'search', input: { q: 'x' }, idempotencyKey: use.id }]);
    expect(log.find((e) => e.type === 'agent.mcp_tool_result')).toMatchObject({ mcp_tool_use_id: use.id, content: [{ type: 'text', text: 'doc text' }], is_error: false });
    expect(log.at(-1)).toMatchObject({ type: 'session.status_idle', stop_reason: { type: 'end_turn' } });
  });

  it('reports a server that refuses the credentials as an error result and a session.error', async () => {
    const gw = new Gateway();
    gw.answer = new McpError('authentication', 'docs', 'MCP server docs: the server refused the credentials');
    const r = await rig({}, gw);
    const s = await r.session(agent);
    await r.say(s.id, 'search');
    r.model.push(toolUse('toolu_m', 'mcp__docs__search', {}), text('no luck'));
    await r.svc.harness.wake(s.id);
    const log = await r.events(s.id);
    expect(log.find((e) => e.type === 'agent.mcp_tool_result')).toMatchObject({ is_error: true, content: [{ type: 'text', text: 'MCP server docs: the server refused the credentials' }] });
    expect(log.find((e) => e.type === 'session.error')).toMatchObject({ error: { type: 'mcp_authentication_failed_error', mcp_server_name: 'docs' } });
  });
});

describe('handing on', () => {
  it('a wake that reaches its step limit saves its place and queues a wake for the rest', async () => {
    const r = await rig({ maxStepsPerWake: 1 });
    const s = await r.session();
    await r.say(s.id, 'hi');
    r.wakes.length = 0;
    // A turn of more than one step (a turn's start and its first model call are one): a tool
    // call, then the answer.
    r.model.push(toolUse('toolu_l', 'read_session_log', { from_position: 1, to_position: 1 }), text('hello'));
    expect(await r.svc.harness.wake(s.id)).toEqual({ status: 'yielded' });
    expect(r.wakes).toEqual([s.id]);
    for (let i = 0; i < 10 && (await r.svc.harness.wake(s.id)).status === 'yielded'; i++);
    expect((await r.events(s.id)).at(-1)).toMatchObject({ type: 'session.status_idle' });
  });

  it('a wake past its deadline does nothing but hand on', async () => {
    const r = await rig();
    const s = await r.session();
    await r.say(s.id, 'hi');
    expect(await r.svc.harness.wake(s.id, { deadline: Date.now() - 1 })).toEqual({ status: 'yielded' });
    expect(r.model.requests).toHaveLength(0);
  });

  it('a harness that takes over an expired lease fences off the old holder first', async () => {
    const r = await rig();
    const s = await r.session();
    await r.say(s.id, 'hi');
    const dead = await r.svc.leases.acquire(s.id, 'crashed-harness');
    expect(dead).not.toBeNull();
    r.advance(120_000);
    r.model.push(text('back'));
    expect(await r.svc.harness.wake(s.id)).toEqual({ status: 'done' });
    const log = await r.events(s.id);
    expect(log.find((e) => e.type === 'session.status_rescheduled')).toMatchObject({ fence: 2 });
    expect(await r.svc.leases.renew(dead!)).toBe(false);
    expect(log.at(-1)).toMatchObject({ type: 'session.status_idle' });
  });
});
