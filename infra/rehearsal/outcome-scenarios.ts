/**
 * The `outcomes` smoke scenario: a session given a `user.define_outcome` is graded, revised once
 * from the grader's feedback and then passes, with the events the SDK declares and the session's
 * `outcome_evaluations`. It runs wherever the smoke scenarios run: in the deploy rehearsal (the
 * grader's model call takes the deployed path, through the credential proxy service's model port),
 * against a real deployment (`npm run smoke`) and against the local runtime.
 *
 * The grader is the deployment's model. The scripted model's echo grader asks for one revision of
 * every outcome and accepts the next answer (test/fixtures/fake-messages-api.ts); the rubric says
 * the same to a real Claude grader, so either way the first answer needs revision and the second
 * is satisfied.
 */
import type Anthropic from '@anthropic-ai/sdk';
import type { Event, Scenario } from './scenarios.js';

// Not scenarios.ts's `fail`: SCENARIOS lists this scenario, so this module imports only its types.
function fail(message: string): never {
  throw new Error(message);
}
const ofType = (events: Event[], type: string) => events.filter((e) => e.type === type);

export const OUTCOMES_SCENARIO: Scenario = {
  name: 'outcomes',
  proves: 'an outcome is graded by a separate model call, revised once from its feedback and then satisfied; the spans and the session\'s outcome_evaluations say so',
  timeoutMs: 180_000,
  async run(ctx) {
    const session = await ctx.newSession();
    const marker = ctx.marker('outcome');
    const outcome: Anthropic.Beta.Sessions.BetaManagedAgentsUserDefineOutcomeEventParams = {
      type: 'user.define_outcome',
      description: `Reply with one short sentence that contains the code word the grader gives you (${marker} is this run's name; no tools needed).`,
      rubric: {
        type: 'text',
        content:
          'Grade in two rounds. If the transcript shows no earlier grader evaluation, the answer needs revision: ' +
          `tell the agent to include the code word ${marker}. Otherwise the answer is satisfied.`,
      },
      max_iterations: 3,
    };
    const stream = await ctx.follow(session);
    await ctx.client.beta.sessions.events.send(session, { events: [outcome] });
    await stream.idle('end_turn');
    stream.close();
    const events = stream.events;

    const defined = ofType(events, 'user.define_outcome')[0] ?? fail('the stream has no user.define_outcome');
    const outcomeId = defined.outcome_id;
    if (typeof outcomeId !== 'string' || !outcomeId.startsWith('outc_')) fail(`user.define_outcome has outcome_id ${JSON.stringify(outcomeId)}`);
    // The cycles, in order: each start, then its end pointing at it, with the revision between.
    const cycles = events
      .filter((e) => e.type === 'span.outcome_evaluation_start' || e.type === 'span.outcome_evaluation_end' || e.type === 'agent.message')
      .map((e) => (e.type === 'agent.message' ? 'message' : `${e.type.slice('span.outcome_evaluation_'.length)} ${String(e.iteration)}${e.result ? ` ${String(e.result)}` : ''}`));
    const expected = ['message', 'start 0', 'end 0 needs_revision', 'message', 'start 1', 'end 1 satisfied'];
    if (cycles.join() !== expected.join()) fail(`the outcome ran as [${cycles.join(', ')}], not [${expected.join(', ')}]`);
    const starts = ofType(events, 'span.outcome_evaluation_start');
    const ends = ofType(events, 'span.outcome_evaluation_end');
    for (const [i, end] of ends.entries()) {
      if (end.outcome_evaluation_start_id !== starts[i].id) fail(`evaluation ${i} ends pointing at ${String(end.outcome_evaluation_start_id)}, not its start ${starts[i].id}`);
      if ([...starts, end].some((e) => e.outcome_id !== outcomeId)) fail(`evaluation ${i} names another outcome than ${outcomeId}`);
      if (typeof end.explanation !== 'string' || !end.explanation) fail(`evaluation ${i} has no explanation`);
    }
    const last = ends[1];

    // The session reports the outcome as its last verdict left it.
    const s = await ctx.client.beta.sessions.retrieve(session);
    const evaluations = s.outcome_evaluations ?? fail('the session has no outcome_evaluations');
    if (evaluations.length !== 1) fail(`the session lists ${evaluations.length} outcome evaluations, not 1`);
    const [e] = evaluations;
    const want = { type: 'outcome_evaluation', outcome_id: outcomeId, description: outcome.description, iteration: 1, result: 'satisfied', explanation: last.explanation };
    for (const [k, v] of Object.entries(want)) {
      if ((e as unknown as Record<string, unknown>)[k] !== v) fail(`outcome_evaluations[0].${k} is ${JSON.stringify((e as unknown as Record<string, unknown>)[k])}, not ${JSON.stringify(v)}`);
    }
    if (typeof e.completed_at !== 'string' || Number.isNaN(Date.parse(e.completed_at))) fail(`outcome_evaluations[0].completed_at is ${JSON.stringify(e.completed_at)}`);
    return `${outcomeId}: needs_revision, revised, then satisfied (${events.length} events); outcome_evaluations says satisfied at iteration 1`;
  },
};
