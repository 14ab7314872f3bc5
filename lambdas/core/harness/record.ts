import type { Session, SessionService } from '../resources/sessions.js';
import type { SessionStatus } from '../session/events.js';
import { listCostCents, type ModelPrice } from './pricing.js';
import { outcomeEvaluations } from './outcome.js';
import type { TurnState } from './state.js';
import { HARNESS } from './step.js';

/**
 * The session record follows the log: its status and usage derive from the fold, and its budget
 * is read against the fold's usage.
 */

/** The session's budget is spent, or it has one and the model has no list price. */
export function overBudget(session: Session, state: TurnState, prices?: Record<string, ModelPrice>): boolean {
  const budget = session.budget as { max_list_cost?: { amount?: string } } | null;
  const max = Number(budget?.max_list_cost?.amount);
  if (!budget || !Number.isFinite(max)) return false;
  const cost = listCostCents(session.agent.model.id, state.usage, prices);
  return cost === null || cost >= max;
}

/** Keep the session record's status, usage and outcomes in line with the log (updates `session` in place). */
export async function reconcile(sessions: SessionService, session: Session, state: TurnState, prices?: Record<string, ModelPrice>) {
  const status: SessionStatus = state.running ? 'running' : 'idle';
  const cost = listCostCents(session.agent.model.id, state.usage, prices);
  const usage: Session['usage'] = {
    input_tokens: state.usage.input_tokens,
    output_tokens: state.usage.output_tokens,
    cache_read_input_tokens: state.usage.cache_read_input_tokens,
    cache_creation: { ephemeral_5m_input_tokens: state.usage.cache_creation_input_tokens },
    ...(cost !== null ? { list_cost: { amount: String(Math.ceil(cost)), currency: 'USD' } } : {}),
  };
  const same = (s: Session) =>
    s.status === status && JSON.stringify(s.usage) === JSON.stringify(usage) && JSON.stringify(s.outcome_evaluations) === JSON.stringify(outcomeEvaluations(s.outcome_evaluations, state));
  if (same(session)) return;
  const next = await sessions.mutate(HARNESS, session.id, (s) =>
    same(s) ? null : { ...s, status, usage, outcome_evaluations: outcomeEvaluations(s.outcome_evaluations, state), updated_at: new Date().toISOString() },
  );
  session.status = next.status;
  session.usage = next.usage;
  session.outcome_evaluations = next.outcome_evaluations;
}
