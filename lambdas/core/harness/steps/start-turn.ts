import { append } from '../append.js';
import type { StepContext } from '../step.js';

/**
 * Start a turn: the session goes running. Nothing else happens here, on purpose: the sandbox is
 * provisioned by the first tool call that needs one, so a turn that only thinks never waits for
 * a container (the benchmark's eager wrapper, bench/lib/eager-sandbox.ts, measures the other way).
 */
export async function startTurn(ctx: StepContext) {
  await append(ctx.deps, ctx.session.id, ctx.state.position, [{ type: 'session.status_running' }]);
}
