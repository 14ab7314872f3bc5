import { beforeEach, describe, expect, it } from 'vitest';
import { AgentCreate, EnvironmentCreate, SessionCreate } from '../../lambdas/core/api/schemas.js';
import { ModelError, type ModelRequest } from '../../lambdas/core/harness/model.js';
import { TablePreviewChannel } from '../../lambdas/core/session/previews.js';
import { ScriptedModel, text, toolUse, usage } from './scripted-model.js';
import { createServices, type CorralServices } from '../../lambdas/core/services.js';
import type { SandboxProvider } from '../../lambdas/core/sandbox/types.js';
import { DELIVERS_EVERYTHING } from './recipe-support.js';
import { MemoryEventLog, MemoryStateTable } from './memory-store.js';
import { expectEvent } from '../../lambdas/core/session/events.js';
import { tenantPrincipal } from '../../lambdas/core/storage/principal.js';

/**
 * The harness and the session service in-process, on the in-memory store, with a scripted model:
 * what a wake writes to the log for text turns, custom tools, model errors and retries,
 * interrupts, leases and budgets. No sandbox: these agents have no sandbox tools (the sandbox
 * path runs in the integration project against real sandbox agents).
 */
const noSandbox: SandboxProvider = {
  recipeSupport: DELIVERS_EVERYTHING,
  provision: async () => {
    throw new Error('no sandbox in unit tests');
  },
  release: async () => undefined,
};

const TENANT = 'tnt_unit';
let model: ScriptedModel;
let wakes: string[];
let svc: CorralServices;
let now: number;

beforeEach(() => {
  model = new ScriptedModel();
  wakes = [];
  now = Date.now();
  svc = createServices({
    table: new MemoryStateTable(),
    events: new MemoryEventLog(),
    queue: { wake: async (id) => void wakes.push(id) },
    sandboxProvider: noSandbox,
    model,
    clock: () => now,
    harness: { retryDelayMs: () => 1, maxModelAttempts: 3, interruptPollMs: 5 },
  });
});

async function session(agent: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  const a = await svc.agents.create(TENANT, AgentCreate.parse({ name: 'unit', model: 'claude-sonnet-4-6', tools: [], ...agent }));
  const e = await svc.environments.create(TENANT, EnvironmentCreate.parse({ name: 'unit-env' }));
  return svc.sessions.create(TENANT, SessionCreate.parse({ agent: a.id, environment_id: e.id, ...extra }));
}
const say = (id: string, t: string) => svc.sessions.send(TENANT, id, [{ type: 'user.message', content: [{ type: 'text', text: t }] }] as never);
const types = async (id: string) => (await svc.events.getEvents(id)).map((s) => s.event.type);
const last = async (id: string) => (await svc.events.getEvents(id)).at(-1)!.event;

describe('a wake', () => {
  it('runs a text turn: the log reads as the API documents it, and the session ends idle', async () => {
    const s = await session({ system: 'be brief' });
    await say(s.id, 'hello');
    expect(wakes).toEqual([s.id]);
    model.push(text('hi there'));
    expect(await svc.harness.wake(s.id)).toEqual({ status: 'done' });
    expect(await types(s.id)).toEqual(['user.message', 'session.status_running', 'span.model_request_start', 'agent.message', 'span.model_request_end', 'session.status_idle']);
    expect(await last(s.id)).toMatchObject({ stop_reason: { type: 'end_turn' } });
    expect(model.requests[0]).toMatchObject({ model: 'claude-sonnet-4-6', system: 'be brief', messages: [{ role: 'user', content: [{ type: 'text', text: 'hello' }] }] });
    const msg = expectEvent((await svc.events.getEvents(s.id)).find((e) => e.event.type === 'agent.message')!.event, 'agent.message');
    expect(msg.content).toEqual([{ type: 'text', text: 'hi there' }]);
    expect((await svc.sessions.get(tenantPrincipal(TENANT), s.id)).status).toBe('idle');
    // a second wake finds nothing to do and writes nothing
    const before = (await types(s.id)).length;
    expect(await svc.harness.wake(s.id)).toEqual({ status: 'done' });
    expect((await types(s.id)).length).toBe(before);
    expect(model.requests).toHaveLength(1);
  });

  it('carries the conversation into the next turn', async () => {
    const s = await session();
    await say(s.id, 'one');
    model.push(text('first'));
    await svc.harness.wake(s.id);
    await say(s.id, 'two');
    model.push(text('second'));
    await svc.harness.wake(s.id);
    expect(model.requests[1].messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'one' }] },
      { role: 'assistant', content: [{ type: 'text', text: 'first' }] },
      // the newest block marks the end of the cacheable prefix (prompt caching)
      { role: 'user', content: [{ type: 'text', text: 'two', cache_control: { type: 'ephemeral' } }] },
    ]);
  });

  it('stops for a custom tool and resumes with its result', async () => {
    const s = await session({ tools: [{ type: 'custom', name: 'lookup', description: 'look a thing up', input_schema: { type: 'object', properties: { q: { type: 'string' } } } }] });
    await say(s.id, 'look up x');
    model.push(toolUse('toolu_1', 'lookup', { q: 'x' }));
    await svc.harness.wake(s.id);
    expect(model.requests[0].tools.map((t) => t.name)).toEqual(['lookup']);
    const log = await svc.events.getEvents(s.id);
    const use = log.find((e) => e.event.type === 'agent.custom_tool_use')!.event;
    expect(use).toMatchObject({ name: 'lookup', input: { q: 'x' } });
    expect(log.at(-1)!.event).toMatchObject({ type: 'session.status_idle', stop_reason: { type: 'requires_action', event_ids: [use.id] } });

    await svc.sessions.send(TENANT, s.id, [{ type: 'user.custom_tool_result', custom_tool_use_id: use.id, content: [{ type: 'text', text: 'x is 42' }] }] as never);
    model.push(text('x is 42, then'));
    await svc.harness.wake(s.id);
    // the model sees its call and the result under one id (the event's)
    const [call, result] = model.requests[1].messages.slice(-2);
    expect(call).toEqual({ role: 'assistant', content: [{ type: 'text', text: 'calling' }, { type: 'tool_use', id: use.id, name: 'lookup', input: { q: 'x' } }] });
    expect(result).toEqual({ role: 'user', content: [expect.objectContaining({ type: 'tool_result', tool_use_id: use.id, content: [{ type: 'text', text: 'x is 42' }] })] });
    expect(await last(s.id)).toMatchObject({ type: 'session.status_idle', stop_reason: { type: 'end_turn' } });
  });

  it('routes a sandbox tool to the sandbox manager; a sandbox that cannot start is a tool error the model sees', async () => {
    const s = await session({ tools: [{ type: 'agent_toolset_20260401' }] });
    await say(s.id, 'run ls');
    model.push(toolUse('toolu_b', 'bash', { command: 'ls' }), text('the sandbox is down'));
    await svc.harness.wake(s.id);
    expect(model.requests[0].tools.map((t) => t.name)).toContain('bash');
    const log = (await svc.events.getEvents(s.id)).map((e) => e.event);
    const use = log.find((e) => e.type === 'agent.tool_use')!;
    expect(use).toMatchObject({ name: 'bash', input: { command: 'ls' } });
    const result = log.find((e) => e.type === 'agent.tool_result')!;
    expect(result).toMatchObject({ tool_use_id: use.id, is_error: true });
    expect(JSON.stringify(result.content)).toContain('could not start sandbox \\"default\\": no sandbox in unit tests');
    expect(model.requests[1].messages.at(-1)!.content).toEqual([expect.objectContaining({ type: 'tool_result', tool_use_id: use.id, is_error: true })]);
    expect(log.at(-1)).toMatchObject({ type: 'session.status_idle', stop_reason: { type: 'end_turn' } });
  });

  it('retries a retryable model error, announcing it, and gives up after the last attempt', async () => {
    const s = await session();
    await say(s.id, 'hi');
    model.push(new ModelError('model_overloaded_error', true, 'the model is overloaded (529)', 529), text('made it'));
    await svc.harness.wake(s.id);
    const errors = (await svc.events.getEvents(s.id)).filter((e) => e.event.type === 'session.error');
    expect(errors).toHaveLength(1);
    expect(await last(s.id)).toMatchObject({ type: 'session.status_idle', stop_reason: { type: 'end_turn' } });

    await say(s.id, 'again');
    const overloaded = () => new ModelError('model_overloaded_error', true, 'the model is overloaded (529)', 529);
    model.push(overloaded(), overloaded(), overloaded());
    await svc.harness.wake(s.id);
    expect(model.requests).toHaveLength(5);
    expect(await last(s.id)).toMatchObject({ type: 'session.status_idle', stop_reason: { type: 'retries_exhausted' } });
  });

  it('ends the turn at once on an error that retrying cannot fix', async () => {
    const s = await session();
    await say(s.id, 'hi');
    model.push(new ModelError('model_request_failed_error', false, 'the model rejected the request (400): bad', 400));
    await svc.harness.wake(s.id);
    expect(model.requests).toHaveLength(1);
    const log = (await svc.events.getEvents(s.id)).map((e) => e.event);
    expect(log.find((e) => e.type === 'session.error')).toMatchObject({ error: expect.objectContaining({ type: 'model_request_failed_error' }) });
    expect(log.at(-1)!.type).toBe('session.status_idle');
  });

  it('previews a model request where chunks cost writes only when a stream watches the session', async () => {
    const table = new MemoryStateTable();
    const previews = new TablePreviewChannel(table);
    const streamed: boolean[] = [];
    const watchingModel = new (class extends ScriptedModel {
      override complete(request: ModelRequest, opts: { signal?: AbortSignal; onDelta?: unknown } = {}) {
        streamed.push(typeof opts.onDelta === 'function');
        return super.complete(request, opts);
      }
    })();
    svc = createServices({
      table,
      events: new MemoryEventLog(),
      queue: { wake: async (id) => void wakes.push(id) },
      sandboxProvider: noSandbox,
      model: watchingModel,
      previews,
      harness: { retryDelayMs: () => 1, interruptPollMs: 5 },
    });
    const s = await session();
    watchingModel.push(text('one'), text('two'));
    await say(s.id, 'nobody watches');
    await svc.harness.wake(s.id);
    await previews.watch(s.id);
    await say(s.id, 'a stream watches');
    await svc.harness.wake(s.id);
    expect(streamed).toEqual([false, true]);
  });

  it('is interrupted: the model call is aborted and the session goes idle', async () => {
    const s = await session();
    await say(s.id, 'think forever');
    let started!: () => void;
    const inCall = new Promise<void>((r) => (started = r));
    model.push(
      (_req, signal) =>
        new Promise((_resolve, reject) => {
          started();
          signal?.addEventListener('abort', () => reject(new Error('aborted')));
        }),
    );
    const wake = svc.harness.wake(s.id);
    await inCall;
    await svc.sessions.send(TENANT, s.id, [{ type: 'user.interrupt' }] as never);
    expect(await wake).toEqual({ status: 'done' });
    const t = await types(s.id);
    expect(t).toContain('user.interrupt');
    expect(t.at(-1)).toBe('session.status_idle');
    expect(t).not.toContain('agent.message');
  });

  it('answers busy while another harness holds the lease, and gone for a session that does not exist', async () => {
    const s = await session();
    await say(s.id, 'hi');
    const held = await svc.leases.acquire(s.id, 'someone-else');
    expect(held).not.toBeNull();
    const r = await svc.harness.wake(s.id);
    expect(r.status).toBe('busy');
    expect(model.requests).toHaveLength(0);
    await svc.leases.release(held!);
    model.push(text('now'));
    expect(await svc.harness.wake(s.id)).toEqual({ status: 'done' });
    expect(await svc.harness.wake('sesn_missing')).toEqual({ status: 'gone' });
  });

  it('stops a session with a spent budget before calling the model again', async () => {
    const s = await session({}, { budget: { type: 'limit', max_list_cost: { amount: '1', currency: 'USD' } } });
    await say(s.id, 'expensive');
    model.push(text('costly', usage(1_000_000, 0)));
    await svc.harness.wake(s.id);
    await say(s.id, 'more');
    await svc.harness.wake(s.id);
    expect(model.requests).toHaveLength(1);
    expect(await last(s.id)).toMatchObject({ type: 'session.status_idle', stop_reason: { type: 'budget_reached' } });
  });
});
