import type { EventBody, StopReason } from '../../session/events.js';
import { append } from '../append.js';
import { idle, requestEnd, resultFor } from '../bodies.js';
import type { Decision } from '../state.js';
import type { StepContext } from '../step.js';

/**
 * The decisions that end a turn or close what a dead step left open: each is one append right
 * after the last position read.
 */

/**
 * The user interrupted: close the request, every tool call still open and an outcome's
 * evaluation in progress (which ends the outcome `interrupted`), and go idle.
 */
export async function interrupt(ctx: StepContext, d: Extract<Decision, { kind: 'interrupt' }>) {
  const bodies: EventBody[] = [];
  if (d.danglingRequestId) bodies.push(requestEnd(d.danglingRequestId, null, true));
  if (d.evaluation) {
    bodies.push({
      type: 'span.outcome_evaluation_end',
      outcome_evaluation_start_id: d.evaluation.startId,
      outcome_id: d.evaluation.outcomeId,
      iteration: d.evaluation.iteration,
      result: 'interrupted',
      explanation: 'The user interrupted the session while the outcome was being evaluated.',
      usage: { input_tokens: 0, output_tokens: 0, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 },
    });
  }
  for (const tool of d.open) {
    bodies.push(resultFor(tool, 'Interrupted by the user before this tool call completed.', true));
  }
  bodies.push(idle({ type: 'end_turn' }));
  await append(ctx.deps, ctx.session.id, ctx.state.position, bodies);
}

/** A model request whose step died before it ended: close it as a failed attempt. */
export async function closeRequest(ctx: StepContext, d: Extract<Decision, { kind: 'close_request' }>) {
  await append(ctx.deps, ctx.session.id, ctx.state.position, [requestEnd(d.requestId, null, true)]);
}

/** Go idle, waiting for the user (custom tool results, confirmations) or for good. */
export async function goIdle(ctx: StepContext, stopReason: StopReason) {
  await append(ctx.deps, ctx.session.id, ctx.state.position, [idle(stopReason)]);
}
