import { isToolUse, type AgentMessageEvent, type SessionEvent, type StopReason, type StoredEvent, type ToolUseEvent } from '../session/events.js';

/**
 * The pure half of the harness: what happens next is a function of the log alone.
 *
 * The log is folded event by event into a small `TurnState` (`foldEvent`), and `decide` reads
 * the next action off that state. Because the state is a fold, it can be saved with the position
 * it reached (the harness's cursor) and continued later from there: a step reads only the events
 * after its cursor, however long the session is, and a fresh harness that has no cursor (or an
 * older one) folds from the start and reaches the same state.
 */

/** A tool call the model made that has no result yet. */
export interface OpenTool {
  id: string;
  type: ToolUseEvent['type'];
  name: string;
  /** Where the tool use is in the log (its input is read from there when it runs). */
  position: number;
  permission: 'allow' | 'ask' | null;
  confirmation: { result: 'allow' | 'deny'; deny_message: string | null } | null;
}

export interface TurnState {
  /** Last position folded in. */
  position: number;
  lastIdle: { position: number; reason: string | null } | null;
  /** A `session.status_running` came after the last idle. */
  running: boolean;
  interruptInTurn: boolean;
  /** Id of a `span.model_request_start` of this turn that has no end yet. */
  openRequest: string | null;
  /** The last model request of this turn, as far as it has gone. */
  lastRequest: { ended: boolean; ok: boolean; calledTools: boolean; userMessageSince: boolean } | null;
  /** Consecutive failed model requests at the end of this turn. */
  failures: number;
  open: OpenTool[];
  /** A user message the model has not been asked about yet (nor cancelled by an interrupt). */
  pendingUserMessage: boolean;
  /** The user answered a confirmation or a custom tool since the last idle. */
  answeredSinceIdle: boolean;
  /** The last batch head whose events are not all in the log yet. */
  batch: { headPosition: number; missing: string[] } | null;
  /** Highest fencing token among `session.status_rescheduled` markers. */
  maxFence: number;
  /**
   * The outcome the agent works toward (`user.define_outcome`) while it is not settled: after
   * each turn a grader evaluates it (harness/outcome.ts), and a verdict of `needs_revision`
   * sends the worker back to it. `evaluating` is the id of an evaluation's start that has no end
   * yet (a step that died while grading: the next grades again); `from` is where the outcome was
   * defined (the grader reads the transcript from there).
   */
  outcome: { id: string; from: number; iteration: number; maxIterations: number; evaluating: string | null } | null;
  /**
   * Every outcome of the session, as `outcome_evaluations` reports it (without the description,
   * which the session record keeps from the define event); `explanation` clipped to
   * `OUTCOME_EXPLANATION_CHARS`.
   */
  outcomes: OutcomeStatus[];
  /**
   * The session threads this (coordinator) session spawned, by id (core/threads/): the roster
   * agent's name, the thread's status as the log last reported it, and the last position of the
   * thread's own log that was reported here (`agent.thread_message_received.thread_position`).
   */
  threads: Record<string, { agent: string; status: 'running' | 'idle' | 'terminated'; seen: number }>;
  /** Token totals of all model requests (the grader's too), for usage and budgets. */
  usage: { input_tokens: number; output_tokens: number; cache_read_input_tokens: number; cache_creation_input_tokens: number };
  /** The model's view: it starts at `viewStart`, after the summary of what came before. */
  view: {
    start: number;
    summary: { text: string; upTo: number } | null;
    /** Characters of conversation in the view, and the number of events in it. */
    chars: number;
    events: number;
  };
}

/** An outcome's evaluation state (`BetaManagedAgentsOutcomeEvaluationResource` without its description). */
export interface OutcomeStatus {
  outcome_id: string;
  iteration: number;
  /** `pending`, `running`, `evaluating`, or a terminal verdict (`satisfied`, `max_iterations_reached`, `failed`, `interrupted`). */
  result: string;
  explanation: string | null;
  completed_at: string | null;
}

/** Longest grader explanation the fold and the session record keep (the end event has all of it). */
export const OUTCOME_EXPLANATION_CHARS = 2_000;

/** The verdicts after which an outcome is evaluated no more. */
export const TERMINAL_OUTCOME_RESULTS = ['satisfied', 'max_iterations_reached', 'failed', 'interrupted'] as const;

export function initialState(): TurnState {
  return {
    position: 0,
    lastIdle: null,
    running: false,
    interruptInTurn: false,
    openRequest: null,
    lastRequest: null,
    failures: 0,
    open: [],
    pendingUserMessage: false,
    answeredSinceIdle: false,
    batch: null,
    maxFence: 0,
    outcome: null,
    outcomes: [],
    threads: {},
    usage: { input_tokens: 0, output_tokens: 0, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 },
    view: { start: 1, summary: null, chars: 0, events: 0 },
  };
}

/** Longest text block the view shows (longer ones are clipped; see `clipBlocks`). */
export const VIEW_BLOCK_CHARS = 50_000;

/** Characters an event adds to the model's view (0 for bookkeeping), counting clipped blocks as clipped. */
export function viewChars(e: SessionEvent): number {
  switch (e.type) {
    case 'user.message':
    case 'system.message':
    case 'agent.message':
    case 'agent.tool_result':
    case 'agent.mcp_tool_result':
    case 'user.custom_tool_result': {
      // A server tool's result goes to the model as the provider's block.
      if (e.type === 'agent.tool_result' && e.model_block) return JSON.stringify(e.model_block).length;
      // `content` is optional on results; a stored block may be null if a client sent one.
      if (!Array.isArray(e.content)) return 0;
      return e.content.reduce(
        (n, b) => n + (b?.type === 'text' && typeof b.text === 'string' ? Math.min(b.text.length, VIEW_BLOCK_CHARS) : JSON.stringify(b ?? '').length),
        0,
      );
    }
    case 'agent.tool_use':
    case 'agent.mcp_tool_use':
    case 'agent.custom_tool_use':
      return JSON.stringify(e.input ?? {}).length + e.name.length;
    case 'agent.thread_message_received':
      return e.content.reduce((n, b) => n + (b.type === 'text' ? Math.min(b.text.length, VIEW_BLOCK_CHARS) : JSON.stringify(b).length), 0) + 100;
    case 'user.define_outcome':
      return e.description.length + (e.rubric.type === 'text' ? Math.min(e.rubric.content.length, VIEW_BLOCK_CHARS) : 0);
    case 'span.outcome_evaluation_end':
      return e.result === 'needs_revision' || e.result === 'max_iterations_reached' ? Math.min(e.explanation.length, VIEW_BLOCK_CHARS) : 0;
    default:
      return 0;
  }
}

/** Fold one stored event into the state (returns a new state; the input is not changed). */
export function foldEvent(prev: TurnState, stored: StoredEvent): TurnState {
  const s: TurnState = structuredClone(prev);
  const e = stored.event;
  s.position = stored.position;
  s.view.chars += viewChars(e);
  s.view.events += 1;
  if (s.batch) {
    s.batch.missing = s.batch.missing.filter((id) => id !== e.id);
    if (s.batch.missing.length === 0) s.batch = null;
  }
  if (stored.rest?.length) s.batch = { headPosition: stored.position, missing: stored.rest.map((r) => r.id) };

  switch (e.type) {
    case 'session.status_idle':
      s.lastIdle = { position: stored.position, reason: e.stop_reason?.type ?? null };
      s.running = false;
      s.interruptInTurn = false;
      s.openRequest = null;
      s.answeredSinceIdle = false;
      // Waiting for the user, or out of budget: the messages so far were seen and answered with
      // that. (After end_turn a message that came in during the last answer still waits.)
      if (s.lastIdle.reason === 'requires_action' || s.lastIdle.reason === 'budget_reached') s.pendingUserMessage = false;
      break;
    case 'session.status_running': {
      const o = s.outcome && s.outcomes.find((x) => x.outcome_id === s.outcome!.id);
      if (o?.result === 'pending') o.result = 'running';
      s.running = true;
      s.interruptInTurn = false;
      s.lastRequest = null;
      s.failures = 0;
      s.openRequest = null;
      break;
    }
    case 'session.status_rescheduled':
      s.maxFence = Math.max(s.maxFence, e.fence || 0);
      break;
    case 'user.message':
      s.pendingUserMessage = true;
      if (s.lastRequest) s.lastRequest.userMessageSince = true;
      break;
    case 'user.define_outcome':
      // The agent begins work on receipt: the description is its task, as a user message is.
      s.pendingUserMessage = true;
      if (s.lastRequest) s.lastRequest.userMessageSince = true;
      s.outcome = { id: e.outcome_id, from: stored.position, iteration: 0, maxIterations: e.max_iterations ?? 3, evaluating: null };
      // Defined mid-turn, the agent takes it up in this turn: it is running at once.
      s.outcomes.push({ outcome_id: e.outcome_id, iteration: 0, result: s.running ? 'running' : 'pending', explanation: null, completed_at: null });
      break;
    case 'span.outcome_evaluation_start': {
      const o = s.outcomes.find((x) => x.outcome_id === e.outcome_id);
      if (o) Object.assign(o, { result: 'evaluating', iteration: e.iteration });
      if (s.outcome?.id === e.outcome_id) s.outcome.evaluating = e.id;
      break;
    }
    case 'span.outcome_evaluation_end': {
      const revise = e.result === 'needs_revision';
      const o = s.outcomes.find((x) => x.outcome_id === e.outcome_id);
      if (o) {
        o.result = revise ? 'running' : e.result;
        o.iteration = revise ? e.iteration + 1 : e.iteration;
        o.explanation = e.explanation.slice(0, OUTCOME_EXPLANATION_CHARS);
        o.completed_at = revise ? null : e.processed_at;
      }
      const u = e.usage;
      s.usage.input_tokens += u?.input_tokens ?? 0;
      s.usage.output_tokens += u?.output_tokens ?? 0;
      s.usage.cache_read_input_tokens += u?.cache_read_input_tokens ?? 0;
      s.usage.cache_creation_input_tokens += u?.cache_creation_input_tokens ?? 0;
      if (s.outcome?.id !== e.outcome_id) break;
      if (revise) s.outcome = { ...s.outcome, iteration: e.iteration + 1, evaluating: null };
      else s.outcome = null;
      // The verdict goes to the worker (the view shows it as user input): it revises, or, at the
      // limit, answers once more knowing it fell short; either way the turn goes on.
      if ((revise || e.result === 'max_iterations_reached') && s.lastRequest) s.lastRequest.userMessageSince = true;
      break;
    }
    case 'session.thread_created':
      s.threads[e.session_thread_id] = { agent: e.agent_name, status: 'running', seen: 0 };
      break;
    case 'session.thread_status_running':
    case 'session.thread_status_idle':
    case 'session.thread_status_terminated': {
      const t = s.threads[e.session_thread_id];
      if (t) t.status = e.type === 'session.thread_status_running' ? 'running' : e.type === 'session.thread_status_idle' ? 'idle' : 'terminated';
      break;
    }
    case 'agent.thread_message_received': {
      // A thread's answer is input for the coordinator, as a user message is.
      const t = s.threads[e.from_session_thread_id];
      if (t) t.seen = Math.max(t.seen, e.thread_position ?? 0);
      s.pendingUserMessage = true;
      if (s.lastRequest) s.lastRequest.userMessageSince = true;
      break;
    }
    case 'user.interrupt':
      s.pendingUserMessage = false;
      if (s.running) s.interruptInTurn = true;
      break;
    case 'span.model_request_start':
      s.pendingUserMessage = false;
      if (s.running) {
        s.openRequest = e.id;
        s.lastRequest = { ended: false, ok: false, calledTools: false, userMessageSince: false };
      }
      break;
    case 'span.model_request_end': {
      if (s.openRequest === e.model_request_start_id) s.openRequest = null;
      if (s.running && s.lastRequest) {
        s.lastRequest.ended = true;
        s.lastRequest.ok = e.is_error !== true;
      }
      if (s.running) s.failures = e.is_error === true ? s.failures + 1 : 0;
      const u = e.model_usage;
      s.usage.input_tokens += u?.input_tokens ?? 0;
      s.usage.output_tokens += u?.output_tokens ?? 0;
      s.usage.cache_read_input_tokens += u?.cache_read_input_tokens ?? 0;
      s.usage.cache_creation_input_tokens += u?.cache_creation_input_tokens ?? 0;
      break;
    }
    case 'agent.tool_use':
    case 'agent.mcp_tool_use':
    case 'agent.custom_tool_use':
      // A server tool (web_search, web_fetch) ran at the provider inside the answer: nothing is
      // open, and the turn goes on only if the answer called another tool.
      if (e.type === 'agent.tool_use' && e.model_block) break;
      if (s.lastRequest) s.lastRequest.calledTools = true;
      s.open.push({
        id: e.id,
        type: e.type,
        name: e.name,
        position: stored.position,
        // Corral's permission policies evaluate to allow or ask, never deny.
        permission: e.type === 'agent.custom_tool_use' ? null : e.evaluated_permission === 'ask' ? 'ask' : 'allow',
        confirmation: null,
      });
      break;
    case 'agent.tool_result':
      s.open = s.open.filter((t) => t.id !== e.tool_use_id);
      break;
    case 'agent.mcp_tool_result':
      s.open = s.open.filter((t) => t.id !== e.mcp_tool_use_id);
      break;
    case 'user.custom_tool_result':
      if (s.open.some((t) => t.id === e.custom_tool_use_id)) s.answeredSinceIdle = true;
      s.open = s.open.filter((t) => t.id !== e.custom_tool_use_id);
      break;
    case 'user.tool_confirmation': {
      const tool = s.open.find((t) => t.id === e.tool_use_id && t.permission === 'ask' && !t.confirmation);
      if (tool) {
        tool.confirmation = { result: e.result === 'deny' ? 'deny' : 'allow', deny_message: e.deny_message ?? null };
        s.answeredSinceIdle = true;
      }
      break;
    }
    case 'agent.thread_context_compacted': {
      s.view = {
        start: e.up_to_position + 1,
        summary: { text: e.summary ?? '', upTo: e.up_to_position },
        chars: (e.summary ?? '').length + (e.retained_chars || 0),
        events: (e.retained_events || 0) + 1,
      };
      break;
    }
    default:
      break;
  }
  return s;
}

export function foldEvents(state: TurnState, events: StoredEvent[]): TurnState {
  return events.reduce(foldEvent, state);
}

export const DEFAULT_MAX_MODEL_ATTEMPTS = 4;

export interface DecideOptions {
  maxModelAttempts?: number;
  /** Largest view (in characters of conversation) before it is compacted. */
  viewBudgetChars?: number;
  /** Most events in the view before it is compacted. */
  viewBudgetEvents?: number;
  /** The session's budget is spent (or cannot be measured): no further model request. */
  overBudget?: boolean;
  /** What the session's threads did since it last looked (core/threads/collect.ts), to be reported in its log. */
  threadReports?: ThreadReport[];
}

/** A thread's turn that ended (its idle at `position` of its own log), to be reported to the coordinator. */
export interface ThreadReport {
  threadId: string;
  agentName: string;
  /** The position of the thread's `session.status_idle` this reports. */
  position: number;
  stopReason: StopReason;
  /** The thread's last answer of that turn (its `agent.message` content), or a note that it gave none. */
  content: AgentMessageEvent['content'];
}

/** What to do next, by reference into the log (positions and ids). */
export type Decision =
  | { kind: 'complete_batch'; headPosition: number; missing: string[] }
  | { kind: 'none' }
  | { kind: 'start_turn' }
  | { kind: 'interrupt'; danglingRequestId: string | null; open: OpenTool[]; evaluation?: OpenEvaluation | null }
  | { kind: 'close_request'; requestId: string }
  | { kind: 'run_tool'; tool: OpenTool }
  | { kind: 'requires_action'; eventIds: string[] }
  | { kind: 'end_turn' }
  | { kind: 'retries_exhausted' }
  | { kind: 'budget_reached' }
  | { kind: 'compact' }
  | { kind: 'call_model'; attempt: number }
  | { kind: 'evaluate_outcome'; outcome: NonNullable<TurnState['outcome']> }
  | { kind: 'report_threads'; reports: ThreadReport[] };

/** An evaluation cycle that has started and not ended (the interrupt ends it `interrupted`). */
export interface OpenEvaluation {
  outcomeId: string;
  startId: string;
  iteration: number;
}

function openEvaluation(s: TurnState): OpenEvaluation | null {
  return s.outcome?.evaluating ? { outcomeId: s.outcome.id, startId: s.outcome.evaluating, iteration: s.outcome.iteration } : null;
}

export function decide(s: TurnState, opts: DecideOptions = {}): Decision {
  const maxAttempts = opts.maxModelAttempts ?? DEFAULT_MAX_MODEL_ATTEMPTS;
  if (s.batch) return { kind: 'complete_batch', headPosition: s.batch.headPosition, missing: s.batch.missing };
  // A thread's answer goes in between actions, never between a tool call and its result.
  if (opts.threadReports?.length && !s.openRequest && s.open.length === 0) return { kind: 'report_threads', reports: opts.threadReports };
  if (!s.running) {
    if (s.pendingUserMessage) return { kind: 'start_turn' };
    if (s.lastIdle?.reason === 'requires_action' && s.answeredSinceIdle) return { kind: 'start_turn' };
    return { kind: 'none' };
  }
  if (s.interruptInTurn) return { kind: 'interrupt', danglingRequestId: s.openRequest, open: s.open, evaluation: openEvaluation(s) };
  if (s.openRequest) return { kind: 'close_request', requestId: s.openRequest };
  const waiting: string[] = [];
  for (const tool of s.open) {
    if (tool.type === 'agent.custom_tool_use' || (tool.permission === 'ask' && !tool.confirmation)) {
      waiting.push(tool.id);
      continue;
    }
    return { kind: 'run_tool', tool };
  }
  if (waiting.length) return { kind: 'requires_action', eventIds: waiting };
  const last = s.lastRequest;
  if (last && last.ended && last.ok && !last.calledTools && !last.userMessageSince) {
    if (!s.outcome) return { kind: 'end_turn' };
    // The worker's turn is over and an outcome waits for its verdict: the grader is a model call
    // too, so not with the budget spent (the outcome stays open for the next turn).
    if (opts.overBudget) return { kind: 'budget_reached' };
    return { kind: 'evaluate_outcome', outcome: s.outcome };
  }
  if (s.failures >= maxAttempts) return { kind: 'retries_exhausted' };
  if (opts.overBudget) return { kind: 'budget_reached' };
  // Compact when the view outgrew its budget and holds more than a summary and one exchange.
  if (
    s.view.events > 3 &&
    ((opts.viewBudgetChars !== undefined && s.view.chars > opts.viewBudgetChars) ||
      (opts.viewBudgetEvents !== undefined && s.view.events > opts.viewBudgetEvents))
  ) {
    return { kind: 'compact' };
  }
  return { kind: 'call_model', attempt: s.failures + 1 };
}

/** The same decision with its references resolved against the whole log (tests, tools). */
export type NextAction =
  | { kind: 'complete_batch'; events: SessionEvent[] }
  | { kind: 'none' }
  | { kind: 'start_turn' }
  | { kind: 'interrupt'; danglingRequestId: string | null; openToolUses: ToolUseEvent[]; evaluation?: OpenEvaluation | null }
  | { kind: 'close_request'; requestId: string }
  | { kind: 'run_tool'; toolUse: ToolUseEvent; confirmation: OpenTool['confirmation'] }
  | { kind: 'requires_action'; eventIds: string[] }
  | { kind: 'end_turn' }
  | { kind: 'retries_exhausted' }
  | { kind: 'budget_reached' }
  | { kind: 'compact' }
  | { kind: 'call_model'; attempt: number }
  | { kind: 'evaluate_outcome'; outcome: NonNullable<TurnState['outcome']> }
  | { kind: 'report_threads'; reports: ThreadReport[] };

/** The next action for a session whose whole log is `events` (in position order). */
export function nextAction(events: StoredEvent[], opts: DecideOptions = {}): NextAction {
  const d = decide(foldEvents(initialState(), events), opts);
  const at = (position: number) => events.find((s) => s.position === position);
  /** The fold put a tool use at this position (`OpenTool.position`). */
  const toolUseAt = (position: number): ToolUseEvent => {
    const e = at(position)?.event;
    if (!e || !isToolUse(e)) throw new Error(`event ${position} is not a tool use`);
    return e;
  };
  switch (d.kind) {
    case 'complete_batch': {
      const rest = at(d.headPosition)?.rest ?? [];
      return { kind: 'complete_batch', events: rest.filter((e) => d.missing.includes(e.id)) };
    }
    case 'interrupt':
      return {
        kind: 'interrupt',
        danglingRequestId: d.danglingRequestId,
        openToolUses: d.open.map((t) => toolUseAt(t.position)),
        evaluation: d.evaluation,
      };
    case 'run_tool':
      return { kind: 'run_tool', toolUse: toolUseAt(d.tool.position), confirmation: d.tool.confirmation };
    default:
      return d;
  }
}
