import type { Decision } from '../state.js';
import type { StepContext } from '../step.js';

/**
 * Finish a batch whose writer died part-way: the head carries the whole batch, so the events
 * still missing are written, in order, after the last position read.
 */
export async function completeBatch(ctx: StepContext, d: Extract<Decision, { kind: 'complete_batch' }>) {
  const sessionId = ctx.session.id;
  const tail = ctx.state.position;
  const [head] = await ctx.deps.events.getEvents(sessionId, { from: d.headPosition, to: d.headPosition + 1 });
  const missing = (head?.rest ?? []).filter((e) => d.missing.includes(e.id));
  for (const [i, event] of missing.entries()) {
    await ctx.deps.events.emitEvent(sessionId, event, { position: tail + 1 + i });
  }
}
