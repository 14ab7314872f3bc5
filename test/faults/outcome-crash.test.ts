import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionEvent } from '../../lambdas/core/session/events.js';
import type { RecordedRequest, ScriptedTurn } from '../fixtures/fake-messages-api.js';
import { tenantPrincipal } from '../../lambdas/core/storage/principal.js';
import { Crash, CrashPlan, checkInvariants, startRig, type Rig } from './harness-rig.js';

/**
 * An outcome's grade-and-revise cycle with the harness killed at every I/O boundary from the
 * worker's first answer to its revision: the fresh harness that takes over ends with the same
 * transcript, grades each cycle whose verdict was not yet in the log exactly once, and never
 * grades again a cycle whose verdict was (the feedback the worker revises from is that event).
 */
const isGrader = (req: RecordedRequest) => JSON.stringify(req.body.system ?? '').includes('You are a strict grader');
const lastUserText = (req: RecordedRequest) => JSON.stringify(req.body.messages?.at(-1) ?? '');

/** Deterministic in the conversation, so a repeated request gets the same answer. */
function model(req: RecordedRequest): ScriptedTurn {
  if (isGrader(req)) {
    const agentLines = JSON.stringify(req.body.messages).split('[agent] ');
    const latest = agentLines.at(-1) ?? '';
    return latest.startsWith('The answer is 42')
      ? { kind: 'text', text: '{"result": "satisfied", "explanation": "It names the number."}' }
      : { kind: 'text', text: '{"result": "needs_revision", "explanation": "It must name the number."}' };
  }
  return { kind: 'text', text: lastUserText(req).includes('does not meet the rubric yet') ? 'The answer is 42.' : 'The answer is unknown.' };
}

/** What was said and graded, without ids, times and the bookkeeping a crash may add. */
function outcomeTranscript(events: SessionEvent[]) {
  return events.flatMap((e): unknown[][] => {
    if (e.type === 'agent.message') return [['agent', e.content]];
    if (e.type === 'span.outcome_evaluation_start') return [['start', e.iteration]];
    if (e.type === 'span.outcome_evaluation_end') return [['end', e.iteration, e.result, e.explanation]];
    if (e.type === 'session.status_idle') return [['idle', e.stop_reason.type]];
    return [];
  });
}

describe('crash between grading and revising', () => {
  let rig: Rig;
  let agentId: string;
  let envId: string;
  const tenant = 'faults-outcomes';
  beforeAll(async () => {
    rig = await startRig();
    rig.fake.setFallback(model);
    agentId = (await rig.services.agents.create(tenant, { name: 'worker', model: 'claude-sonnet-4-6', tools: [] })).id;
    envId = (await rig.services.environments.create(tenant, { name: 'env' })).id;
  });
  afterAll(() => rig.close());

  async function runOnce(crashAt: number | null) {
    const session = await rig.services.sessions.create(tenant, {
      agent: agentId,
      environment_id: envId,
      initial_events: [{ type: 'user.define_outcome', description: 'Name the number.', rubric: { type: 'text', content: 'The answer names 42.' } }],
    });
    const plan = new CrashPlan(crashAt);
    try {
      await rig.dyingServices(plan).harness.wake(session.id);
    } catch (err) {
      if (!(err instanceof Crash)) throw err;
    }
    const endsAtCrash = (await rig.services.events.getEvents(session.id)).filter((s) => s.event.type === 'span.outcome_evaluation_end').length;
    const before = rig.fake.requests.length;
    await rig.settle(session.id);
    const fresh = rig.fake.requests.slice(before);
    const stored = await rig.services.events.getEvents(session.id);
    const events = stored.map((s) => s.event);
    const record = await rig.services.sessions.get(tenantPrincipal(tenant), session.id);
    return { plan, events, positions: stored.map((s) => s.position), endsAtCrash, freshGrades: fresh.filter(isGrader).length, record };
  }

  it('ends every run as a run without crashes does, grading no cycle twice once its verdict is in', async () => {
    const baseline = await runOnce(null);
    const expected = outcomeTranscript(baseline.events);
    expect(expected).toEqual([
      ['agent', [{ type: 'text', text: 'The answer is unknown.' }]],
      ['start', 0],
      ['end', 0, 'needs_revision', 'It must name the number.'],
      ['agent', [{ type: 'text', text: 'The answer is 42.' }]],
      ['start', 1],
      ['end', 1, 'satisfied', 'It names the number.'],
      ['idle', 'end_turn'],
    ]);
    // From the worker's first answer to its revision (the second `model:answered` is the grader's).
    const answered = baseline.plan.ops.flatMap((op, i) => (op === 'model:answered' ? [i + 1] : []));
    expect(answered).toHaveLength(4);
    const points: number[] = [];
    for (let k = answered[0]; k <= answered[2]; k++) points.push(k);
    expect(points.length).toBeGreaterThan(5);
    const endsAtCrash = new Set<number>();

    for (const k of points) {
      const run = await runOnce(k);
      expect(run.plan.dead, `crash point ${k}`).toBe(true);
      expect({ k, problems: checkInvariants(run.positions, run.events) }).toEqual({ k, problems: [] });
      expect({ k, transcript: outcomeTranscript(run.events) }).toEqual({ k, transcript: expected });
      // Each cycle has one start and one end.
      const starts = run.events.filter((e) => e.type === 'span.outcome_evaluation_start').map((e) => e.id);
      const ends = run.events.flatMap((e) => (e.type === 'span.outcome_evaluation_end' ? [e.outcome_evaluation_start_id] : []));
      expect({ k, ends }).toEqual({ k, ends: starts });
      // The fresh harness graded exactly the cycles whose verdict the dead one had not written.
      expect({ k, freshGrades: run.freshGrades }).toEqual({ k, freshGrades: 2 - run.endsAtCrash });
      expect({ k, outcomes: run.record.outcome_evaluations.map((o) => [o.iteration, o.result]) }).toEqual({ k, outcomes: [[1, 'satisfied']] });
      endsAtCrash.add(run.endsAtCrash);
    }
    // The window holds crashes before the first verdict was written and after it.
    expect([...endsAtCrash].sort()).toEqual([0, 1]);
    console.info(`outcome crash suite: ${points.length} crash points`);
  }, 120_000);
});
