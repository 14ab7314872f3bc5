import { describe, expect, it } from 'vitest';
import { nextAction } from '../../lambdas/core/harness/state.js';
import type { SessionEvent, StoredEvent } from '../../lambdas/core/session/events.js';

let counter = 0;
/**
 * A log from event bodies: ids e1, e2, ... unless given; positions 1, 2, ... The bodies are terse
 * (only the fields the fold reads), hence the cast.
 */
function log(...bodies: Array<{ type: string; [field: string]: unknown }>): StoredEvent[] {
  return bodies.map((b, i) => ({
    position: i + 1,
    event: { id: b.id ?? `e${++counter}`, processed_at: '2026-01-01T00:00:00.000Z', ...b } as SessionEvent,
  }));
}
const usage = { input_tokens: 0, output_tokens: 0, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 };
const msg = { type: 'user.message', content: [{ type: 'text', text: 'hi' }] };
const running = { type: 'session.status_running' };
const idle = (type = 'end_turn') => ({ type: 'session.status_idle', stop_reason: { type } });
const start = (id: string) => ({ type: 'span.model_request_start', id });
const end = (startId: string, isError = false) => ({ type: 'span.model_request_end', model_request_start_id: startId, is_error: isError });

describe('nextAction', () => {
  it('does nothing for an empty log or an idle session', () => {
    expect(nextAction([]).kind).toBe('none');
    expect(nextAction(log(msg, running, start('s'), { type: 'agent.message' }, end('s'), idle())).kind).toBe('none');
  });

  it('starts a turn for a new user message', () => {
    expect(nextAction(log(msg))).toEqual({ kind: 'start_turn' });
    // a message sent while the last turn was running, after its last model request, starts another
    expect(nextAction(log(msg, running, start('s'), msg, { type: 'agent.message' }, end('s'), idle())).kind).toBe('start_turn');
  });

  it('calls the model once the turn runs, and ends the turn after an answer without tools', () => {
    expect(nextAction(log(msg, running))).toEqual({ kind: 'call_model', attempt: 1 });
    expect(nextAction(log(msg, running, start('s'), { type: 'agent.message' }, end('s'))).kind).toBe('end_turn');
  });

  it('asks the model again when a message arrived during its answer', () => {
    expect(nextAction(log(msg, running, start('s'), msg, { type: 'agent.message' }, end('s'))).kind).toBe('call_model');
  });

  it('runs open tool calls before asking the model again', () => {
    const events = log(msg, running, start('s'), { type: 'agent.tool_use', id: 't1', name: 'bash', evaluated_permission: 'allow' }, end('s'));
    const action = nextAction(events);
    expect(action.kind).toBe('run_tool');
    expect(action.kind === 'run_tool' && action.toolUse.id).toBe('t1');
    const done = [...events, ...log({ type: 'agent.tool_result', tool_use_id: 't1' })].map((e, i) => ({ ...e, position: i + 1 }));
    expect(nextAction(done)).toEqual({ kind: 'call_model', attempt: 1 });
  });

  it('closes a model request whose harness died', () => {
    expect(nextAction(log(msg, running, start('s')))).toEqual({ kind: 'close_request', requestId: 's' });
  });

  it('completes a batch whose writer died after its head', () => {
    const events = log(msg, running, start('s'));
    const rest: SessionEvent[] = [
      { id: 'b2', type: 'agent.tool_use', processed_at: 'x', name: 'bash', input: {} },
      { id: 'b3', type: 'span.model_request_end', processed_at: 'x', model_request_start_id: 's', is_error: false, model_usage: usage },
    ];
    events.push({ position: 4, event: { id: 'b1', type: 'agent.message', processed_at: 'x', content: [] }, rest });
    expect(nextAction(events)).toEqual({ kind: 'complete_batch', events: rest });
    events.push({ position: 5, event: rest[0] });
    expect(nextAction(events)).toEqual({ kind: 'complete_batch', events: [rest[1]] });
  });

  it('interrupts: closes the open request and tool calls', () => {
    const events = log(msg, running, start('s'), { type: 'agent.tool_use', id: 't1', name: 'bash' }, end('s'), { type: 'user.interrupt' });
    const action = nextAction(events);
    expect(action.kind).toBe('interrupt');
    if (action.kind === 'interrupt') {
      expect(action.danglingRequestId).toBeNull();
      expect(action.openToolUses.map((t) => t.id)).toEqual(['t1']);
    }
    expect(nextAction(log(msg, running, start('s2'), { type: 'user.interrupt' }))).toMatchObject({ kind: 'interrupt', danglingRequestId: 's2' });
  });

  it('does not restart a turn for messages an interrupt cancelled, but does for later ones', () => {
    expect(nextAction(log(msg, running, start('s'), { type: 'user.interrupt' }, end('s', true), idle())).kind).toBe('none');
    expect(nextAction(log(msg, running, start('s'), { type: 'user.interrupt' }, msg, end('s', true), idle())).kind).toBe('start_turn');
  });

  it('waits for the user on tools that ask, and resumes when answered', () => {
    const ask = { type: 'agent.tool_use', id: 't1', name: 'bash', evaluated_permission: 'ask' };
    const events = log(msg, running, start('s'), ask, end('s'));
    expect(nextAction(events)).toEqual({ kind: 'requires_action', eventIds: ['t1'] });
    const waiting = log(msg, running, start('s'), ask, end('s'), idle('requires_action'));
    expect(nextAction(waiting).kind).toBe('none');
    const answered = log(msg, running, start('s'), ask, end('s'), idle('requires_action'), {
      type: 'user.tool_confirmation',
      tool_use_id: 't1',
      result: 'allow',
    });
    expect(nextAction(answered).kind).toBe('start_turn');
    const resumed = log(msg, running, start('s'), ask, end('s'), idle('requires_action'), {
      type: 'user.tool_confirmation',
      tool_use_id: 't1',
      result: 'allow',
    }, running);
    expect(nextAction(resumed)).toMatchObject({ kind: 'run_tool', confirmation: { result: 'allow' } });
  });

  it('counts consecutive failed model requests and gives up after the limit', () => {
    const failing = log(msg, running, start('a'), end('a', true), start('b'), end('b', true));
    expect(nextAction(failing, { maxModelAttempts: 3 })).toEqual({ kind: 'call_model', attempt: 3 });
    const exhausted = log(msg, running, start('a'), end('a', true), start('b'), end('b', true), start('c'), end('c', true));
    expect(nextAction(exhausted, { maxModelAttempts: 3 })).toEqual({ kind: 'retries_exhausted' });
  });
});

describe('nextAction after a budget stop', () => {
  it('does not start again for the message the budget stopped, but does for a new one', () => {
    const events = log(msg, running, idle('budget_reached'));
    expect(nextAction(events).kind).toBe('none');
    expect(nextAction(log(msg, running, idle('budget_reached'), msg)).kind).toBe('start_turn');
  });
});
