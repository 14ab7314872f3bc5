import { beforeEach, describe, expect, it } from 'vitest';
import { AgentCreate, EnvironmentCreate, SessionCreate } from '../../lambdas/core/api/schemas.js';
import { foldEvents, initialState, type TurnState } from '../../lambdas/core/harness/state.js';
import type { SandboxProvider } from '../../lambdas/core/sandbox/types.js';
import { createServices, type CorralServices } from '../../lambdas/core/services.js';
import type { GetEventsOptions } from '../../lambdas/core/session/log.js';
import { CURSOR_VERSION, readCursor, writeCursor } from '../../lambdas/core/storage/cursor.js';
import { keys } from '../../lambdas/core/storage/keys.js';
import { MemoryEventLog, MemoryStateTable } from './memory-store.js';
import { ScriptedModel, text } from './scripted-model.js';
import { DELIVERS_EVERYTHING } from './recipe-support.js';

/**
 * The harness cursor is stored as `{ position, v, state }`. A cursor of another version, or one in
 * the unversioned form earlier releases wrote, is not read: the harness folds the log again from
 * the start, overwrites it with one of the current version, and the session goes on as if the
 * cursor had never been there.
 */

/** The event log, recording where each read started (a wake that reads its cursor starts after it). */
class RecordingLog extends MemoryEventLog {
  readonly froms: number[] = [];
  override getEvents(sessionId: string, opts: GetEventsOptions = {}) {
    this.froms.push(opts.from ?? 1);
    return super.getEvents(sessionId, opts);
  }
}

const noSandbox: SandboxProvider = {
  recipeSupport: DELIVERS_EVERYTHING,
  provision: async () => {
    throw new Error('no sandbox in unit tests');
  },
  release: async () => undefined,
};

const TENANT = 'tnt_cursor';
let model: ScriptedModel;
let table: MemoryStateTable;
let log: RecordingLog;
let svc: CorralServices;

beforeEach(() => {
  model = new ScriptedModel();
  table = new MemoryStateTable();
  log = new RecordingLog();
  svc = createServices({
    table,
    events: log,
    queue: { wake: async () => undefined },
    sandboxProvider: noSandbox,
    model,
    harness: { retryDelayMs: () => 1, maxModelAttempts: 3, interruptPollMs: 5 },
  });
});

/** A harness over the same tables that has woken nothing yet: it starts from the cursor. */
const cold = () =>
  createServices({
    table,
    events: log,
    queue: { wake: async () => undefined },
    sandboxProvider: noSandbox,
    model,
    harness: { retryDelayMs: () => 1, maxModelAttempts: 3, interruptPollMs: 5 },
  }).harness;

async function firstTurn(): Promise<string> {
  const a = await svc.agents.create(TENANT, AgentCreate.parse({ name: 'cursor', model: 'claude-sonnet-4-6', tools: [] }));
  const e = await svc.environments.create(TENANT, EnvironmentCreate.parse({ name: 'cursor-env' }));
  const s = await svc.sessions.create(TENANT, SessionCreate.parse({ agent: a.id, environment_id: e.id }));
  await say(s.id, 'first');
  model.push(text('one'));
  expect(await svc.harness.wake(s.id)).toEqual({ status: 'done' });
  return s.id;
}
const say = (id: string, t: string) => svc.sessions.send(TENANT, id, [{ type: 'user.message', content: [{ type: 'text', text: t }] }] as never);
const cursorItem = (id: string) => table.get(keys.cursor(id).pk, keys.cursor(id).sk);

describe('the harness cursor', () => {
  it('is saved with the current version, and a wake reads the log only from the view it saved on', async () => {
    const id = await firstTurn();
    const last = await log.lastPosition(id);
    const saved = await cursorItem(id);
    expect(saved).toMatchObject({ position: last, v: CURSOR_VERSION, state: { position: last } });
    await say(id, 'second');
    model.push(text('two'));
    log.froms.length = 0;
    expect(await cold().wake(id)).toEqual({ status: 'done' });
    // One read from the saved view's start (the model's view is built from it); every later
    // read starts after what the wake has folded.
    const viewStart = (saved!.state as { view: { start: number } }).view.start;
    expect(log.froms[0]).toBe(Math.min(viewStart, last + 1));
    expect(log.froms.slice(1).every((from) => from > last)).toBe(true);
  });

  it('is not needed by the harness that ran the last wake: it reads only after the fold it kept', async () => {
    const id = await firstTurn();
    const last = await log.lastPosition(id);
    await say(id, 'second');
    model.push(text('two'));
    log.froms.length = 0;
    expect(await svc.harness.wake(id)).toEqual({ status: 'done' });
    expect(log.froms[0]).toBe(last + 1);
    expect(log.froms.every((from) => from > last)).toBe(true);
    // and the turn saw the whole conversation
    expect(model.requests.at(-1)!.messages).toMatchObject([
      { role: 'user', content: [{ type: 'text', text: 'first' }] },
      { role: 'assistant', content: [{ type: 'text', text: 'one' }] },
      { role: 'user', content: [{ type: 'text', text: 'second' }] },
    ]);
  });

  // A state that would derail the harness if it were read: it claims the whole log is folded
  // and that a model request is open, and it lacks fields the fold needs.
  const misleading = (position: number) => ({ position, running: true, openRequest: 'sevt_gone', open: null });

  it.each([
    ['in the unversioned form of earlier releases', (position: number) => ({ position, state: misleading(position) })],
    ['with another version', (position: number) => ({ position, v: CURSOR_VERSION + 1, state: misleading(position) })],
  ])('saved %s is ignored: the log is folded again and the session continues', async (_, stale) => {
    const id = await firstTurn();
    const last = await log.lastPosition(id);
    await table.put({ ...keys.cursor(id), ...stale(last) });
    // The API's check of answers reads the cursor too: it must not trust this one either.
    await expect(svc.sessions.send(TENANT, id, [{ type: 'user.tool_confirmation', tool_use_id: 'sevt_none', result: 'allow' }] as never)).rejects.toThrow(
      'is not a tool call of session',
    );

    await say(id, 'second');
    model.push(text('two'));
    log.froms.length = 0;
    expect(await cold().wake(id)).toEqual({ status: 'done' });
    // folded from the start, not from the stale cursor's position
    expect(log.froms[0]).toBe(1);
    // the second turn saw the whole conversation and ended as a turn does
    expect(model.requests[1].messages).toMatchObject([
      { role: 'user', content: [{ type: 'text', text: 'first' }] },
      { role: 'assistant', content: [{ type: 'text', text: 'one' }] },
      { role: 'user', content: [{ type: 'text', text: 'second' }] },
    ]);
    const events = await log.getEvents(id);
    expect(events.at(-1)!.event).toMatchObject({ type: 'session.status_idle', stop_reason: { type: 'end_turn' } });
    expect((await svc.sessions.get({ kind: 'tenant', id: TENANT }, id)).status).toBe('idle');
    // and the cursor was replaced by the current version's, equal to a fold of the whole log
    const saved = await cursorItem(id);
    expect(saved).toMatchObject({ position: events.length, v: CURSOR_VERSION });
    expect(saved!.state).toEqual(foldEvents(initialState(), events));
  });

  it('reads and writes: absent or stale reads as none; a forward-only write never moves it back', async () => {
    expect(await readCursor(table, 's1')).toBeUndefined();
    const state: TurnState = { ...initialState(), position: 5 };
    expect(await writeCursor(table, 's1', 5, state, false)).toBe(true);
    expect(await readCursor<TurnState>(table, 's1')).toEqual(state);
    expect(await writeCursor(table, 's1', 3, { ...state, position: 3 }, true)).toBe(false);
    expect(await readCursor<TurnState>(table, 's1')).toEqual(state);
    await table.put({ ...keys.cursor('s1'), position: 5, v: CURSOR_VERSION - 1, state });
    expect(await readCursor(table, 's1')).toBeUndefined();
    await table.put({ ...keys.cursor('s1'), position: 5, state });
    expect(await readCursor(table, 's1')).toBeUndefined();
  });

  it('has a version that moves with the shape of TurnState', () => {
    // The fields of the state the cursor saves, with the version they belong to. When this fails
    // because TurnState changed, bump CURSOR_VERSION in lambdas/core/storage/cursor.ts (so that
    // deployed cursors are folded again instead of misread) and record the new shape here.
    const shape = (v: unknown): unknown =>
      v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, shape(x)])) : typeof v;
    expect({ v: CURSOR_VERSION, shape: shape(initialState()) }).toEqual({
      v: 3,
      shape: {
        position: 'number',
        lastIdle: 'object',
        running: 'boolean',
        interruptInTurn: 'boolean',
        openRequest: 'object',
        lastRequest: 'object',
        failures: 'number',
        open: 'object',
        pendingUserMessage: 'boolean',
        answeredSinceIdle: 'boolean',
        batch: 'object',
        maxFence: 'number',
        outcome: 'object',
        outcomes: 'object',
        threads: {},
        usage: { input_tokens: 'number', output_tokens: 'number', cache_read_input_tokens: 'number', cache_creation_input_tokens: 'number' },
        view: { start: 'number', summary: 'object', chars: 'number', events: 'number' },
      },
    });
  });
});
