import type Anthropic from '@anthropic-ai/sdk';
import { fmtDate, outcomeResult, type Style } from './format.js';

type OutcomeEvaluation = Anthropic.Beta.Sessions.BetaManagedAgentsOutcomeEvaluationResource;

/**
 * `corral sessions show`'s rows for a session's outcomes (`outcome_evaluations`): per outcome, its
 * id, where it stands (the last verdict, or pending / running / evaluating while it runs), which
 * evaluation that was and when it ended; its description; the grader's last explanation. None
 * for a session without outcomes.
 */
export function outcomeRows(style: Style, evaluations: OutcomeEvaluation[]): Array<[string, string]> {
  const rows: Array<[string, string]> = [];
  for (const o of evaluations) {
    // `iteration` is the 0-indexed cycle the outcome is on: while the agent works (or revises)
    // that many evaluations are behind it; from the cycle's start on, that one counts too.
    const where =
      o.result === 'pending' || o.result === 'running'
        ? `after ${o.iteration} evaluation(s)`
        : o.result === 'evaluating'
          ? `evaluation ${o.iteration + 1} under way`
          : `after ${o.iteration + 1} evaluation(s)${o.completed_at ? `, ${fmtDate(o.completed_at)}` : ''}`;
    rows.push(['outcome', `${o.outcome_id} ${outcomeResult(style, o.result)} ${style.dim(where)}`]);
    rows.push(['', o.description.replace(/\s+/g, ' ').trim()]);
    if (o.explanation) rows.push(['', style.dim(`grader: ${o.explanation.replace(/\s+/g, ' ').trim()}`)]);
  }
  return rows;
}
