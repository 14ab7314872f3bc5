import type * as Sdk from '@anthropic-ai/sdk/resources/beta/sessions/events';
import type * as SdkSessions from '@anthropic-ai/sdk/resources/beta/sessions/sessions';
import { beforeEach, describe, expect, expectTypeOf, it } from 'vitest';
import { AgentCreate, EnvironmentCreate, EventsSend, SessionCreate } from '../../lambdas/core/api/schemas.js';
import { InvalidRequestError } from '../../lambdas/core/errors.js';
import type { HarnessOptions } from '../../lambdas/core/harness/harness.js';
import type { ModelRequest, ModelResponse } from '../../lambdas/core/harness/model.js';
import { GRADER_SYSTEM } from '../../lambdas/core/harness/outcome.js';
import type { SandboxProvider } from '../../lambdas/core/sandbox/types.js';
import { createServices, type CorralServices } from '../../lambdas/core/services.js';
import type { EventOf, SessionEvent } from '../../lambdas/core/session/events.js';
import { tenantPrincipal } from '../../lambdas/core/storage/principal.js';
import { MemoryEventLog, MemoryStateTable } from './memory-store.js';
import { DELIVERS_EVERYTHING } from './recipe-support.js';
import { ScriptedModel, text, toolUse, usage } from './scripted-model.js';

/**
 * Outcomes with the scripted model, in-process on the in-memory store: a worker turn, the grader
 * (a separate model call that sees the rubric and the transcript, not the worker's context), a
 * revision from the grader's feedback, the limit, an interrupt while grading, and what the API
 * refuses.
 */
const noSandbox: SandboxProvider = {
  recipeSupport: DELIVERS_EVERYTHING,
  provision: async () => {
    throw new Error('no sandbox in unit tests');
  },
  release: async () => undefined,
};

const TENANT = 'tnt_outcomes';
let model: ScriptedModel;
let svc: CorralServices;

function build(harness: HarnessOptions = {}) {
  model = new ScriptedModel();
  svc = createServices({
    table: new MemoryStateTable(),
    events: new MemoryEventLog(),
    queue: { wake: async () => undefined },
    sandboxProvider: noSandbox,
    model,
    harness: { retryDelayMs: () => 1, maxModelAttempts: 2, interruptPollMs: 5, ...harness },
  });
}
beforeEach(() => build());

async function session(extra: Record<string, unknown> = {}) {
  const a = await svc.agents.create(TENANT, AgentCreate.parse({ name: 'worker', model: 'claude-sonnet-4-6', system: 'WORKER SYSTEM PROMPT', tools: [] }));
  const e = await svc.environments.create(TENANT, EnvironmentCreate.parse({ name: 'env' }));
  return svc.sessions.create(TENANT, SessionCreate.parse({ agent: a.id, environment_id: e.id, ...extra }));
}
const RUBRIC = 'The answer names the number 42 and says where it comes from.';
const outcome = (extra: Record<string, unknown> = {}) => ({ type: 'user.define_outcome', description: 'Find the answer.', rubric: { type: 'text', content: RUBRIC }, ...extra });
const define = (id: string, extra: Record<string, unknown> = {}) => svc.sessions.send(TENANT, id, EventsSend.parse({ events: [outcome(extra)] }).events);
const verdict = (result: string, explanation: string, u = usage(100, 20)): ModelResponse => text(JSON.stringify({ result, explanation }), u);
const log = async (id: string) => (await svc.events.getEvents(id)).map((s) => s.event);
const ofType = <T extends SessionEvent['type']>(events: SessionEvent[], t: T) => events.filter((e): e is EventOf<T> => e.type === t);
const isGrader = (r: ModelRequest) => r.system === GRADER_SYSTEM;

describe('an outcome', () => {
  it('is revised after a failing verdict and then passes, with the events the SDK declares', async () => {
    const s = await session();
    await define(s.id);
    model.push(text('The answer is unknown.'), verdict('needs_revision', 'The answer does not name 42.'), text('The answer is 42, from the book.'), verdict('satisfied', 'Names 42 and its source.'));
    expect(await svc.harness.wake(s.id)).toEqual({ status: 'done' });

    const events = await log(s.id);
    expect(events.map((e) => e.type)).toEqual([
      'user.define_outcome',
      'session.status_running',
      'span.model_request_start',
      'agent.message',
      'span.model_request_end',
      'span.outcome_evaluation_start',
      'span.outcome_evaluation_end',
      'span.model_request_start',
      'agent.message',
      'span.model_request_end',
      'span.outcome_evaluation_start',
      'span.outcome_evaluation_end',
      'session.status_idle',
    ]);
    const [defined] = ofType(events, 'user.define_outcome');
    expect(defined.outcome_id).toMatch(/^outc_/);
    expect(defined).toMatchObject({ description: 'Find the answer.', rubric: { type: 'text', content: RUBRIC }, max_iterations: 3 });
    const starts = ofType(events, 'span.outcome_evaluation_start');
    const ends = ofType(events, 'span.outcome_evaluation_end');
    expect(starts.map((e) => [e.outcome_id, e.iteration])).toEqual([[defined.outcome_id, 0], [defined.outcome_id, 1]]);
    expect(ends.map((e) => [e.outcome_evaluation_start_id, e.iteration, e.result, e.explanation])).toEqual([
      [starts[0].id, 0, 'needs_revision', 'The answer does not name 42.'],
      [starts[1].id, 1, 'satisfied', 'Names 42 and its source.'],
    ]);
    expect(ends[0].usage).toMatchObject({ input_tokens: 100, output_tokens: 20 });
    expect(events.at(-1)).toMatchObject({ type: 'session.status_idle', stop_reason: { type: 'end_turn' } });
    // The stored events are the SDK's (compile time).
    expectTypeOf(defined).toExtend<Sdk.BetaManagedAgentsUserDefineOutcomeEvent>();
    expectTypeOf(starts[0]).toExtend<Sdk.BetaManagedAgentsSpanOutcomeEvaluationStartEvent>();
    expectTypeOf(ends[0]).toExtend<Sdk.BetaManagedAgentsSpanOutcomeEvaluationEndEvent>();

    // The grader is its own call: its system prompt, no tools, the rubric and a transcript; never
    // the worker's system prompt or messages.
    const [w1, g1, w2, g2] = model.requests;
    expect([w1, g1, w2, g2].map(isGrader)).toEqual([false, true, false, true]);
    expect(g1.tools).toEqual([]);
    expect(g1.messages).toHaveLength(1);
    const graderText = JSON.stringify(g1.messages);
    expect(graderText).toContain(RUBRIC);
    expect(graderText).toContain('[agent] The answer is unknown.');
    expect(graderText).not.toContain('WORKER SYSTEM PROMPT');
    expect(JSON.stringify(g2.messages)).toContain('[agent] The answer is 42, from the book.');
    // The worker got its task with the rubric, and then the grader's feedback as user input.
    expect(w1.system).toBe('WORKER SYSTEM PROMPT');
    expect(JSON.stringify(w1.messages[0])).toContain('Find the answer.');
    const feedback = w2.messages.at(-1)!;
    expect(feedback.role).toBe('user');
    expect(JSON.stringify(feedback)).toContain('The answer does not name 42.');

    // The session reports the outcome, and counts the grader's tokens in its usage.
    const after = await svc.sessions.get(tenantPrincipal(TENANT), s.id);
    expect(after.outcome_evaluations).toEqual([
      { type: 'outcome_evaluation', outcome_id: defined.outcome_id, description: 'Find the answer.', iteration: 1, result: 'satisfied', explanation: 'Names 42 and its source.', completed_at: ends[1].processed_at },
    ]);
    expectTypeOf(after.outcome_evaluations[0]).toExtend<SdkSessions.BetaManagedAgentsOutcomeEvaluationResource>();
    expect(after.usage).toMatchObject({ input_tokens: 10 + 100 + 10 + 100, output_tokens: 5 + 20 + 5 + 20 });
  });

  it('stops evaluating at max_iterations: the last verdict is max_iterations_reached, the worker answers once more, and the session idles', async () => {
    const s = await session();
    await define(s.id, { max_iterations: 2 });
    model.push(text('draft 1'), verdict('needs_revision', 'no 42'), text('draft 2'), verdict('needs_revision', 'still no 42'), text('I could not find it.'));
    await svc.harness.wake(s.id);
    const events = await log(s.id);
    expect(ofType(events, 'span.outcome_evaluation_end').map((e) => [e.iteration, e.result])).toEqual([[0, 'needs_revision'], [1, 'max_iterations_reached']]);
    expect(model.requests.map(isGrader)).toEqual([false, true, false, true, false]);
    expect(JSON.stringify(model.requests[4].messages.at(-1))).toContain('the last one allowed');
    expect(events.slice(-4).map((e) => e.type)).toEqual(['span.model_request_start', 'agent.message', 'span.model_request_end', 'session.status_idle']);
    expect(events.at(-1)).toMatchObject({ stop_reason: { type: 'end_turn' } });
    const [o] = (await svc.sessions.get(tenantPrincipal(TENANT), s.id)).outcome_evaluations;
    expect(o).toMatchObject({ iteration: 1, result: 'max_iterations_reached', explanation: 'still no 42' });
    expect(o.completed_at).not.toBeNull();
  });

  it('is defined in initial_events, and a grader that never answers with a verdict fails it with a session.error', async () => {
    const s = await session({ initial_events: [outcome({ max_iterations: 5 })] });
    expect(s.outcome_evaluations).toMatchObject([{ result: 'pending', iteration: 0, completed_at: null }]);
    model.push(text('done'), text('I think it is fine'), text('still no JSON'));
    await svc.harness.wake(s.id);
    const events = await log(s.id);
    expect(ofType(events, 'span.outcome_evaluation_end').map((e) => e.result)).toEqual(['failed']);
    expect(ofType(events, 'session.error')[0].error).toMatchObject({ type: 'model_request_failed_error', retry_status: { type: 'exhausted' } });
    expect(events.at(-1)).toMatchObject({ type: 'session.status_idle', stop_reason: { type: 'end_turn' } });
    expect((await svc.sessions.get(tenantPrincipal(TENANT), s.id)).outcome_evaluations[0].result).toBe('failed');
  });

  it('ends interrupted when the user interrupts while it is being graded', async () => {
    const s = await session();
    await define(s.id);
    let graderStarted!: () => void;
    const grading = new Promise<void>((r) => (graderStarted = r));
    model.push(text('draft'), (_req, signal) => {
      graderStarted();
      return new Promise((_, reject) => signal?.addEventListener('abort', () => reject(new Error('aborted'))));
    });
    const wake = svc.harness.wake(s.id);
    await grading;
    await svc.sessions.send(TENANT, s.id, [{ type: 'user.interrupt' }] as never);
    await wake;
    await svc.harness.wake(s.id);
    const events = await log(s.id);
    const [start] = ofType(events, 'span.outcome_evaluation_start');
    expect(ofType(events, 'span.outcome_evaluation_end').map((e) => [e.outcome_evaluation_start_id, e.result])).toEqual([[start.id, 'interrupted']]);
    expect(events.at(-1)).toMatchObject({ type: 'session.status_idle', stop_reason: { type: 'end_turn' } });
    expect((await svc.sessions.get(tenantPrincipal(TENANT), s.id)).outcome_evaluations[0].result).toBe('interrupted');
  });

  it('has heartbeats while the grader runs, between the start and the verdict', async () => {
    build({ outcomeHeartbeatMs: 5 });
    const s = await session();
    await define(s.id);
    // The grader answers once the log holds a heartbeat: no timing, only order.
    const beaten = async () => (await log(s.id)).some((e) => e.type === 'span.outcome_evaluation_ongoing');
    model.push(text('The answer is 42.'), async () => {
      while (!(await beaten())) await new Promise((r) => setTimeout(r, 2));
      return verdict('satisfied', 'ok');
    });
    await svc.harness.wake(s.id);
    const events = await log(s.id);
    const outcomeEvents = events.filter((e) => e.type.startsWith('span.outcome_evaluation'));
    expect(outcomeEvents[0].type).toBe('span.outcome_evaluation_start');
    expect(outcomeEvents.at(-1)!.type).toBe('span.outcome_evaluation_end');
    const beats = ofType(events, 'span.outcome_evaluation_ongoing');
    expect(beats.length).toBe(outcomeEvents.length - 2);
    expect(beats.length).toBeGreaterThan(0);
    const [defined] = ofType(events, 'user.define_outcome');
    expect(beats[0]).toMatchObject({ outcome_id: defined.outcome_id, iteration: 0 });
    expectTypeOf(beats[0]).toExtend<Sdk.BetaManagedAgentsSpanOutcomeEvaluationOngoingEvent>();
    expect(events.at(-1)).toMatchObject({ type: 'session.status_idle', stop_reason: { type: 'end_turn' } });
  });

  it('is forked in the state the copied log leaves it, its evaluation spans pointing at the copy', async () => {
    const s = await session();
    await define(s.id);
    model.push(text('draft'), verdict('needs_revision', 'not yet'), text('final'), verdict('satisfied', 'ok'));
    await svc.harness.wake(s.id);
    const source = await svc.events.getEvents(s.id);
    const firstEnd = source.find((e) => e.event.type === 'span.outcome_evaluation_end')!;
    const fork = await svc.sessions.fork(TENANT, s.id, { upTo: firstEnd.position });
    const [o] = fork.outcome_evaluations;
    expect(o).toMatchObject({ description: 'Find the answer.', iteration: 1, result: 'running', explanation: 'not yet', completed_at: null });
    const copied = await log(fork.id);
    const [start] = ofType(copied, 'span.outcome_evaluation_start');
    expect(ofType(copied, 'span.outcome_evaluation_end')[0].outcome_evaluation_start_id).toBe(start.id);
    // The fork goes on from the verdict: the worker revises, the grader passes it.
    model.push(text('forked final'), verdict('satisfied', 'fine'));
    await svc.harness.wake(fork.id);
    expect((await svc.sessions.get(tenantPrincipal(TENANT), fork.id)).outcome_evaluations[0]).toMatchObject({ iteration: 1, result: 'satisfied', explanation: 'fine' });
  });

  it("counts the grader's tokens against the budget: with it spent, the outcome is not graded and the session stops", async () => {
    const s = await session({ budget: { type: 'limit', max_list_cost: { amount: '1', currency: 'USD' } } });
    await define(s.id);
    // The worker stays within the budget; the grader's verdict spends it.
    model.push(text('draft', usage(10, 5)), verdict('needs_revision', 'not yet', usage(1_000_000, 0)));
    await svc.harness.wake(s.id);
    const events = await log(s.id);
    expect(model.requests.map(isGrader)).toEqual([false, true]);
    expect(ofType(events, 'span.outcome_evaluation_end').map((e) => e.result)).toEqual(['needs_revision']);
    expect(events.at(-1)).toMatchObject({ type: 'session.status_idle', stop_reason: { type: 'budget_reached' } });
    expect((await svc.sessions.get(tenantPrincipal(TENANT), s.id)).usage).toMatchObject({ input_tokens: 1_000_010 });
  });

  it("reports each state the SDK lists on the session as it happens: running while the agent works, evaluating while the grader scores, then the grader's failed", async () => {
    const s = await session();
    await define(s.id);
    const seen: string[] = [];
    const record = async () => (await svc.sessions.get(tenantPrincipal(TENANT), s.id)).outcome_evaluations[0];
    model.push(
      async () => {
        seen.push((await record()).result);
        return text('A poem instead of the answer.');
      },
      async () => {
        const o = await record();
        seen.push(`${o.result} ${o.iteration}`);
        return verdict('failed', 'The rubric asks for a number; a poem cannot be graded against it.');
      },
    );
    await svc.harness.wake(s.id);
    expect(seen).toEqual(['running', 'evaluating 0']);
    const events = await log(s.id);
    // The grader's own "failed" ends the outcome: no revision, no error, and the turn ends.
    expect(ofType(events, 'span.outcome_evaluation_end').map((e) => e.result)).toEqual(['failed']);
    expect(ofType(events, 'session.error')).toEqual([]);
    expect(model.requests.map(isGrader)).toEqual([false, true]);
    expect(events.at(-1)).toMatchObject({ type: 'session.status_idle', stop_reason: { type: 'end_turn' } });
    expect(await record()).toMatchObject({ result: 'failed', iteration: 0, explanation: expect.stringContaining('cannot be graded'), completed_at: expect.any(String) });
  });

  it('stays open (running) through a requires_action stop, and is graded when the turn goes on and ends', async () => {
    const a = await svc.agents.create(TENANT, AgentCreate.parse({ name: 'asker', model: 'claude-sonnet-4-6', tools: [{ type: 'custom', name: 'lookup', description: 'look a thing up', input_schema: { type: 'object', properties: {} } }] }));
    const e = await svc.environments.create(TENANT, EnvironmentCreate.parse({ name: 'env' }));
    const s = await svc.sessions.create(TENANT, SessionCreate.parse({ agent: a.id, environment_id: e.id }));
    await define(s.id);
    model.push(toolUse('toolu_1', 'lookup', {}));
    await svc.harness.wake(s.id);
    const use = ofType(await log(s.id), 'agent.custom_tool_use')[0];
    expect((await log(s.id)).at(-1)).toMatchObject({ type: 'session.status_idle', stop_reason: { type: 'requires_action', event_ids: [use.id] } });
    expect(model.requests.map(isGrader)).toEqual([false]);
    expect((await svc.sessions.get(tenantPrincipal(TENANT), s.id)).outcome_evaluations[0]).toMatchObject({ result: 'running', iteration: 0, completed_at: null });

    await svc.sessions.send(TENANT, s.id, [{ type: 'user.custom_tool_result', custom_tool_use_id: use.id, content: [{ type: 'text', text: '42' }] }] as never);
    model.push(text('The answer is 42, from the lookup.'), verdict('satisfied', 'Names 42 and its source.'));
    await svc.harness.wake(s.id);
    expect(model.requests.map(isGrader)).toEqual([false, false, true]);
    expect((await log(s.id)).at(-1)).toMatchObject({ type: 'session.status_idle', stop_reason: { type: 'end_turn' } });
    expect((await svc.sessions.get(tenantPrincipal(TENANT), s.id)).outcome_evaluations[0]).toMatchObject({ result: 'satisfied', iteration: 0 });
  });

  it('is refused while another outcome of the session is still open', async () => {
    const s = await session();
    await define(s.id);
    await expect(define(s.id)).rejects.toThrow(InvalidRequestError);
    await expect(define(s.id)).rejects.toThrow(/events\.0: outcome outc_\w+ of session .* is still pending/);
    expect(ofType(await log(s.id), 'user.define_outcome')).toHaveLength(1);
  });
});

describe('user.define_outcome at the edge', () => {
  const issue = (event: Record<string, unknown>) => {
    const r = EventsSend.safeParse({ events: [event] });
    return r.success ? null : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
  };
  it('accepts the SDK shape, and refuses fields and rubrics Corral does not implement, naming them', () => {
    expect(issue(outcome())).toBeNull();
    expect(issue(outcome({ max_iterations: null }))).toBeNull();
    expect(issue(outcome({ grader: 'mine' }))).toMatch(/grader/);
    expect(issue(outcome({ rubric: { type: 'file', file_id: 'file_1' } }))).toMatch(/events\.0\.rubric.*file rubric .* not supported by Corral/);
    expect(issue(outcome({ rubric: { type: 'text', content: RUBRIC, weight: 2 } }))).toMatch(/rubric.*weight/);
  });
  it('bounds the rubric, the description and max_iterations', () => {
    expect(issue(outcome({ max_iterations: 20 }))).toBeNull();
    expect(issue(outcome({ max_iterations: 21 }))).toMatch(/events\.0\.max_iterations/);
    expect(issue(outcome({ max_iterations: 0 }))).toMatch(/events\.0\.max_iterations/);
    expect(issue(outcome({ rubric: { type: 'text', content: 'x'.repeat(262_144) } }))).toBeNull();
    expect(issue(outcome({ rubric: { type: 'text', content: 'x'.repeat(262_145) } }))).toMatch(/events\.0\.rubric\.content/);
    expect(issue(outcome({ rubric: { type: 'text', content: '' } }))).toMatch(/events\.0\.rubric\.content/);
    expect(issue(outcome({ description: 'x'.repeat(10_001) }))).toMatch(/events\.0\.description/);
  });
});
