import { sleep } from '../../sleep.js';
import { StepDeadlineError } from '../../sandbox/types.js';
import { expectEvent, type EventBody } from '../../session/events.js';
import { append, appendAfter } from '../append.js';
import { watchInterrupt } from '../interrupts.js';
import { ModelError, type ModelUsage } from '../model.js';
import { graderRequest, parseVerdict, renderTranscript, type GraderVerdict } from '../outcome.js';
import { DEFAULT_MAX_MODEL_ATTEMPTS, type Decision } from '../state.js';
import { LeaseLostError, type StepContext } from '../step.js';
import { retryDelayMs } from './call-model.js';

/**
 * One evaluation cycle of an outcome, after a worker turn that called no tool:
 *
 * 1. `span.outcome_evaluation_start` is appended (unless a step that died while grading left one
 *    open: the cycle is then graded again under that start, so a cycle never has two starts);
 * 2. the grader is called (a separate model call, harness/outcome.ts), retried as model calls
 *    are, and watched for an interrupt (the interrupt step then ends the cycle `interrupted`);
 *    meanwhile a `span.outcome_evaluation_ongoing` heartbeat is appended every
 *    `outcomeHeartbeatMs`;
 * 3. `span.outcome_evaluation_end` is appended, with the verdict, the explanation and the
 *    grader's usage. That one append is the cycle's record: once it is in, a new harness never
 *    grades the cycle again, and the feedback the worker revises from is the event itself (the
 *    view shows it), so nothing is lost between grading and revising.
 *
 * A `needs_revision` verdict at the last iteration allowed is `max_iterations_reached`. A grader
 * that cannot answer (every attempt failed, or never a verdict) ends the cycle `failed`, with a
 * `session.error` saying why; the turn then ends.
 */
export async function evaluateOutcome(ctx: StepContext, d: Extract<Decision, { kind: 'evaluate_outcome' }>) {
  const { session, state, lost, cut } = ctx;
  const sessionId = session.id;
  const { id: outcomeId, iteration, maxIterations } = d.outcome;
  let startId = d.outcome.evaluating;
  let position = state.position;
  if (!startId) {
    const [start] = await append(ctx.deps, sessionId, position, [{ type: 'span.outcome_evaluation_start', outcome_id: outcomeId, iteration }]);
    startId = start.id;
    position += 1;
  }
  const [defined] = await ctx.deps.events.getEvents(sessionId, { from: d.outcome.from, to: d.outcome.from + 1 });
  const outcome = expectEvent(defined.event, 'user.define_outcome');
  const transcript = renderTranscript(await ctx.deps.events.getEvents(sessionId, { from: d.outcome.from + 1, to: position + 1 }));
  const request = graderRequest(session.agent.model.id, outcome, transcript);

  const usage: ModelUsage = { input_tokens: 0, output_tokens: 0, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 };
  const maxAttempts = ctx.opts.maxModelAttempts ?? DEFAULT_MAX_MODEL_ATTEMPTS;
  let verdict: GraderVerdict | null = null;
  let failure: ModelError | null = null;
  const controller = new AbortController();
  const stopWatching = watchInterrupt(ctx.deps, sessionId, position, lost, controller, ctx.opts.interruptPollMs);
  // Heartbeats, one append at a time, each after the last; the verdict follows the last of them.
  let tail = position;
  let beating = true;
  let writing: Promise<void> = Promise.resolve();
  let beatFailed: unknown = null;
  const beat = setInterval(() => {
    writing = writing
      .then(async () => {
        if (!beating || beatFailed) return;
        tail = await appendAfter(ctx.deps, sessionId, tail, [{ type: 'span.outcome_evaluation_ongoing', outcome_id: outcomeId, iteration }]);
      })
      .catch((err) => {
        // Another writer (or a lost lease): the grader is stopped, and the error surfaces below.
        beatFailed = err;
        controller.abort(err);
      });
  }, ctx.opts.outcomeHeartbeatMs ?? 15_000);
  try {
    for (let attempt = 1; attempt <= maxAttempts && !verdict; attempt++) {
      if (attempt > 1) await sleep(retryDelayMs(attempt - 1, ctx.opts), AbortSignal.any([controller.signal, cut]));
      if (controller.signal.aborted || cut.aborted) break;
      try {
        const r = await ctx.deps.model.complete(request, { signal: AbortSignal.any([controller.signal, cut]) });
        for (const k of Object.keys(usage) as Array<keyof ModelUsage>) usage[k] += r.usage[k] ?? 0;
        verdict = parseVerdict(r);
        if (!verdict) failure = new ModelError('model_request_failed_error', true, 'the grader answered without a verdict');
      } catch (err) {
        if (controller.signal.aborted || cut.aborted) break;
        failure = err instanceof ModelError ? err : new ModelError('model_request_failed_error', true, String((err as Error)?.message ?? err));
        ctx.log.warn('grader call failed', { sessionId, outcomeId, attempt, errorType: failure.errorType });
        if (!failure.retryable) break;
      }
    }
  } finally {
    stopWatching();
    clearInterval(beat);
    beating = false;
    await writing;
  }
  if (lost.aborted) throw new LeaseLostError(sessionId);
  if (beatFailed) throw beatFailed;
  // Interrupted: the interrupt step ends the cycle. Cut by the deadline: the start stays open and
  // a new wake grades the cycle again.
  if (controller.signal.aborted) return;
  if (cut.aborted && !verdict) throw new StepDeadlineError('the grader call');

  const result = verdict
    ? verdict.result === 'needs_revision' && iteration + 1 >= maxIterations
      ? 'max_iterations_reached'
      : verdict.result
    : 'failed';
  const explanation = verdict?.explanation ?? `the grader could not evaluate the outcome: ${failure?.message ?? 'no answer'}`;
  const bodies: EventBody[] = [
    {
      type: 'span.outcome_evaluation_end',
      outcome_evaluation_start_id: startId,
      outcome_id: outcomeId,
      iteration,
      result,
      explanation,
      usage: { ...usage },
    },
  ];
  if (!verdict && failure) {
    bodies.push({ type: 'session.error', error: { type: failure.errorType, message: `outcome grader: ${failure.message}`, retry_status: { type: failure.retryable ? 'exhausted' : 'terminal' } } });
  }
  await appendAfter(ctx.deps, sessionId, tail, bodies);
}
