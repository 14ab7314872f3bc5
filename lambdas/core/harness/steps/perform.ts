import type { Decision } from '../state.js';
import type { StepContext } from '../step.js';
import { callModel } from './call-model.js';
import { compact } from './compact.js';
import { completeBatch } from './complete-batch.js';
import { evaluateOutcome } from './evaluate-outcome.js';
import { closeRequest, goIdle, interrupt } from './finish.js';
import { runTool } from './run-tool.js';
import { reportThreads } from './report-threads.js';
import { startTurn } from './start-turn.js';

/**
 * Perform one decision of `decide()`, each in its own module. `ctx.lost` aborts when the lease is
 * lost; `ctx.cut` when the step's deadline comes, at which a long call throws `StepDeadlineError`
 * (after writing what keeps the log whole).
 */
export async function perform(ctx: StepContext, d: Decision): Promise<void> {
  switch (d.kind) {
    case 'none':
      return;
    case 'complete_batch':
      return completeBatch(ctx, d);
    case 'start_turn':
      return startTurn(ctx);
    case 'interrupt':
      return interrupt(ctx, d);
    case 'close_request':
      return closeRequest(ctx, d);
    case 'requires_action':
      return goIdle(ctx, { type: 'requires_action', event_ids: d.eventIds });
    case 'end_turn':
      return goIdle(ctx, { type: 'end_turn' });
    case 'retries_exhausted':
      return goIdle(ctx, { type: 'retries_exhausted' });
    case 'budget_reached':
      return goIdle(ctx, { type: 'budget_reached' });
    case 'run_tool':
      return runTool(ctx, d.tool);
    case 'compact':
      return compact(ctx);
    case 'call_model':
      return callModel(ctx, d.attempt);
    case 'evaluate_outcome':
      return evaluateOutcome(ctx, d);
    case 'report_threads':
      return reportThreads(ctx, d);
  }
}
