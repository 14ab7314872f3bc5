import type { SessionEvent, StoredEvent, UserDefineOutcomeEvent, SpanOutcomeEvaluationEndEvent } from '../session/events.js';
import type { ModelRequest, ModelResponse } from './model.js';
import { VIEW_BLOCK_CHARS, type TurnState } from './state.js';

/**
 * Outcomes (`user.define_outcome`): the agent works toward a description, and after each of its
 * turns a grader decides whether the work meets the rubric. The grader is a separate model call
 * with its own system prompt, the rubric and the transcript rendered as text: it never sees the
 * worker's messages array (its system prompt, tool definitions, thinking), only what was said and
 * done. Its verdict is the end of an evaluation cycle (`span.outcome_evaluation_end`); on
 * `needs_revision` the explanation goes back to the worker as user input and it revises.
 *
 * Pure: the prompts, the transcript, the verdict's parsing. The step that runs it is
 * steps/evaluate-outcome.ts; the fold of its events is in state.ts.
 */

/** Longest text of one event the grader's transcript keeps. */
export const TRANSCRIPT_EVENT_CHARS = 8_000;
/** Longest transcript the grader gets; older parts are elided first (the latest work is what is graded). */
export const TRANSCRIPT_CHARS = 150_000;
/** Tokens the grader may answer with. */
export const GRADER_MAX_TOKENS = 2_048;

export const GRADER_SYSTEM = [
  'You are a strict grader. An agent was given a task and worked on it; you decide whether its work meets the rubric.',
  'You see the task, the rubric and a transcript of what the user, the agent and its tools said and did.',
  'Judge only by the rubric and by evidence in the transcript; do not do the task yourself.',
  'Answer with one JSON object and nothing else: {"result": "satisfied" | "needs_revision" | "failed", "explanation": "..."}.',
  '"satisfied": every criterion of the rubric is met; explain briefly why.',
  '"needs_revision": some criterion is not met; say which and what the agent must change, concretely, for the agent to act on.',
  '"failed": the rubric cannot apply to this task or its deliverables at all; say why.',
].join('\n');

/** What the worker is told when an outcome is defined: its task, and the rubric it is graded by. */
export function outcomeTask(e: UserDefineOutcomeEvent): string {
  const rubric = e.rubric.type === 'text' ? clip(e.rubric.content, VIEW_BLOCK_CHARS) : `(the rubric is the file ${e.rubric.file_id})`;
  return `${e.description}\n\n[Corral: this is an outcome to achieve. When you finish, a grader checks your work against this rubric and may ask you to revise it.]\nRubric:\n${rubric}`;
}

/** What the worker is told of a verdict it must act on; null for a verdict that ends the outcome. */
export function outcomeFeedback(e: SpanOutcomeEvaluationEndEvent): string | null {
  const explanation = clip(e.explanation, VIEW_BLOCK_CHARS);
  if (e.result === 'needs_revision') {
    return `[Corral: the grader evaluated your work (evaluation ${e.iteration + 1}) and it does not meet the rubric yet. Revise it.]\n${explanation}`;
  }
  if (e.result === 'max_iterations_reached') {
    return `[Corral: the grader evaluated your work (evaluation ${e.iteration + 1}, the last one allowed) and it still does not meet the rubric. Do not start over: tell the user briefly where the work stands.]\n${explanation}`;
  }
  return null;
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}\n[... ${text.length - max} more characters]`;
}

function blocksText(content: unknown): string {
  if (!Array.isArray(content)) return '';
  return content
    .map((b: { type?: unknown; text?: unknown }) => (b?.type === 'text' && typeof b.text === 'string' ? b.text : `(${String(b?.type ?? 'block')})`))
    .join('\n');
}

/** One event as a line of the transcript, or null for bookkeeping. */
function transcriptLine(e: SessionEvent): string | null {
  switch (e.type) {
    case 'user.message':
      return `[user] ${blocksText(e.content)}`;
    case 'system.message':
      return `[system] ${blocksText(e.content)}`;
    case 'agent.message':
      return `[agent] ${blocksText(e.content)}`;
    case 'agent.tool_use':
    case 'agent.custom_tool_use':
      return `[agent calls tool ${e.name}] ${JSON.stringify(e.input ?? {})}`;
    case 'agent.mcp_tool_use':
      return `[agent calls tool ${e.mcp_server_name}/${e.name}] ${JSON.stringify(e.input ?? {})}`;
    case 'agent.tool_result':
    case 'agent.mcp_tool_result':
    case 'user.custom_tool_result':
      return `[tool result${e.is_error ? ', error' : ''}] ${blocksText(e.content)}`;
    case 'span.outcome_evaluation_end':
      return `[grader, evaluation ${e.iteration + 1}: ${e.result}] ${e.explanation}`;
    case 'user.interrupt':
      return '[user interrupted the agent]';
    default:
      return null;
  }
}

/**
 * The transcript the grader reads: the events after the outcome's definition as text lines, each
 * clipped, and the whole kept under `TRANSCRIPT_CHARS` by eliding the oldest lines.
 */
export function renderTranscript(events: StoredEvent[], maxChars = TRANSCRIPT_CHARS): string {
  const lines = events.map((s) => transcriptLine(s.event)).filter((l): l is string => l !== null).map((l) => clip(l, TRANSCRIPT_EVENT_CHARS));
  let total = 0;
  let first = lines.length;
  while (first > 0 && total + lines[first - 1].length + 1 <= maxChars) total += lines[--first].length + 1;
  const kept = lines.slice(first);
  if (first > 0) kept.unshift(`[... ${first} earlier transcript entries elided]`);
  return kept.join('\n');
}

/** The grader's request: its own system prompt; the task, the rubric and the transcript as one user message; no tools. */
export function graderRequest(model: string, outcome: UserDefineOutcomeEvent, transcript: string): ModelRequest {
  const rubric = outcome.rubric.type === 'text' ? outcome.rubric.content : `(file ${outcome.rubric.file_id})`;
  const text = [
    '<task>', outcome.description, '</task>',
    '<rubric>', rubric, '</rubric>',
    '<transcript>', transcript || '(the agent did nothing)', '</transcript>',
    'Grade the work in the transcript against the rubric. Answer with the JSON object only.',
  ].join('\n');
  return { model, system: GRADER_SYSTEM, messages: [{ role: 'user', content: [{ type: 'text', text }] }], tools: [], maxTokens: GRADER_MAX_TOKENS };
}

export type GraderVerdict = { result: 'satisfied' | 'needs_revision' | 'failed'; explanation: string };

/** The grader's verdict from its answer, or null when the answer is not one. */
export function parseVerdict(response: ModelResponse): GraderVerdict | null {
  const text = response.content
    .filter((b) => b.type === 'text')
    .map((b) => String((b as { text?: unknown }).text ?? ''))
    .join('');
  const start = text.indexOf('{');
  const end = text.lastIndexOf('}');
  if (start < 0 || end <= start) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text.slice(start, end + 1));
  } catch {
    return null;
  }
  const { result, explanation } = (parsed ?? {}) as { result?: unknown; explanation?: unknown };
  if (result !== 'satisfied' && result !== 'needs_revision' && result !== 'failed') return null;
  return { result, explanation: typeof explanation === 'string' && explanation.trim() ? explanation.trim() : `(the grader gave no explanation for ${result})` };
}

/** An outcome's evaluation state as the session lists it (`BetaManagedAgentsOutcomeEvaluationResource`). */
export interface OutcomeEvaluation {
  type: 'outcome_evaluation';
  outcome_id: string;
  description: string;
  iteration: number;
  result: string;
  explanation: string | null;
  completed_at: string | null;
}

/**
 * The record's `outcome_evaluations` moved on to the fold's state of each outcome. The API adds an
 * outcome's entry (with its description) before its event is in the log; an entry the fold does
 * not know yet stays as it is.
 */
export function outcomeEvaluations(current: OutcomeEvaluation[], state: TurnState): OutcomeEvaluation[] {
  if (!state.outcomes.length) return current;
  const byId = new Map(state.outcomes.map((o) => [o.outcome_id, o]));
  return current.map((entry) => {
    const o = byId.get(entry.outcome_id);
    return o ? { ...entry, iteration: o.iteration, result: o.result, explanation: o.explanation, completed_at: o.completed_at } : entry;
  });
}

/**
 * The record's `outcome_evaluations` moved on by events about to be appended, so that a client
 * that sees them in the stream finds the session saying so (as `append` does for the status): a
 * turn's start puts a `pending` outcome `running`, an evaluation's start puts its outcome
 * `evaluating` (the SDK's states while the agent works and while the grader scores). The same
 * array when nothing changes. A failed append is corrected by the next `reconcile`, which moves
 * the entries to the fold's state of the log.
 */
export function outcomesAhead(current: OutcomeEvaluation[], events: SessionEvent[]): OutcomeEvaluation[] {
  let next = current;
  for (const e of events) {
    if (e.type === 'session.status_running' && next.some((o) => o.result === 'pending')) {
      next = next.map((o) => (o.result === 'pending' ? { ...o, result: 'running' } : o));
    } else if (e.type === 'span.outcome_evaluation_start' && next.some((o) => o.outcome_id === e.outcome_id)) {
      next = next.map((o) => (o.outcome_id === e.outcome_id ? { ...o, result: 'evaluating', iteration: e.iteration } : o));
    }
  }
  return next;
}
