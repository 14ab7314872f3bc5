import type { SessionEvent, StoredEvent } from '../session/events.js';
import { missingBatchEvents } from '../session/log.js';

/**
 * The pure half of the harness: from the log alone, decide what happens next. Because every
 * decision is a function of the log, a harness that died anywhere can be replaced by a fresh one
 * that reads the same log and reaches the same decision.
 */
export type NextAction =
  /** A batch whose writer died half way: append the events it carries that are missing. */
  | { kind: 'complete_batch'; events: SessionEvent[] }
  /** Nothing to do: idle, and no user message waits. */
  | { kind: 'none' }
  /** A user message waits: the turn starts (`session.status_running`). */
  | { kind: 'start_turn' }
  /** The user interrupted: close what is open and go idle. */
  | { kind: 'interrupt'; danglingRequestId: string | null; openToolUses: SessionEvent[] }
  /** A model request started but never ended (its harness died): record it as failed. */
  | { kind: 'close_request'; requestId: string }
  /** A tool call can run now. */
  | { kind: 'run_tool'; toolUse: SessionEvent; confirmation: SessionEvent | null }
  /** Every open tool call waits for the user (confirmation or custom tool result). */
  | { kind: 'requires_action'; eventIds: string[] }
  /** The model answered without tool calls and nothing new arrived: the turn ends. */
  | { kind: 'end_turn' }
  /** Call the model with the log as it is. */
  | { kind: 'call_model'; attempt: number }
  /** The model failed `maxAttempts` times in a row: the turn ends with `retries_exhausted`. */
  | { kind: 'retries_exhausted' };

export const DEFAULT_MAX_MODEL_ATTEMPTS = 4;

const TOOL_USE_TYPES = new Set(['agent.tool_use', 'agent.custom_tool_use']);

export interface TurnFacts {
  /** Index (into the events array) of the last `session.status_idle`, -1 if none. */
  lastIdle: number;
  /** Index of the last `session.status_running` after `lastIdle`, -1 if the session is not running. */
  running: number;
  /** Tool uses (of any turn) that have no result yet, in log order. */
  openToolUses: SessionEvent[];
}

function resultKey(e: SessionEvent): string | null {
  if (e.type === 'agent.tool_result') return String(e.tool_use_id);
  if (e.type === 'user.custom_tool_result') return String(e.custom_tool_use_id);
  return null;
}

export function turnFacts(events: StoredEvent[]): TurnFacts {
  let lastIdle = -1;
  let running = -1;
  const open = new Map<string, SessionEvent>();
  events.forEach(({ event }, i) => {
    if (event.type === 'session.status_idle') {
      lastIdle = i;
      running = -1;
    } else if (event.type === 'session.status_running') {
      running = i;
    } else if (TOOL_USE_TYPES.has(event.type)) {
      open.set(event.id, event);
    } else {
      const key = resultKey(event);
      if (key) open.delete(key);
    }
  });
  return { lastIdle, running, openToolUses: [...open.values()] };
}

/** The next action for a session whose whole log is `events` (in position order). */
export function nextAction(events: StoredEvent[], opts: { maxModelAttempts?: number } = {}): NextAction {
  const maxAttempts = opts.maxModelAttempts ?? DEFAULT_MAX_MODEL_ATTEMPTS;
  const missing = missingBatchEvents(events);
  if (missing.length) return { kind: 'complete_batch', events: missing };

  const facts = turnFacts(events);
  const after = (i: number) => events.slice(i + 1).map((s) => s.event);

  if (facts.running < 0) {
    // Idle. A turn starts for a user message the model has not been asked about yet: one after
    // the last model request, the last interrupt and the last wait for the user.
    let consumedUpTo = -1;
    events.forEach(({ event }, i) => {
      if (
        event.type === 'span.model_request_start' ||
        event.type === 'user.interrupt' ||
        (event.type === 'session.status_idle' && (event.stop_reason as { type?: string } | undefined)?.type === 'requires_action')
      ) {
        consumedUpTo = i;
      }
    });
    if (after(consumedUpTo).some((e) => e.type === 'user.message')) return { kind: 'start_turn' };
    // Or the user answered everything the last turn was waiting for.
    if (facts.openToolUses.length && facts.lastIdle >= 0) {
      const idle = events[facts.lastIdle].event;
      const reason = (idle.stop_reason as { type?: string } | undefined)?.type;
      const since = after(facts.lastIdle);
      if (reason === 'requires_action' && facts.openToolUses.some((t) => answered(t, since))) {
        return { kind: 'start_turn' };
      }
    }
    return { kind: 'none' };
  }

  const turn = after(facts.running);
  let requestStart: SessionEvent | null = null;
  for (const e of turn) {
    if (e.type === 'span.model_request_start') requestStart = e;
    else if (e.type === 'span.model_request_end') requestStart = null;
  }

  if (turn.some((e) => e.type === 'user.interrupt')) {
    return { kind: 'interrupt', danglingRequestId: requestStart?.id ?? null, openToolUses: facts.openToolUses };
  }
  if (requestStart) return { kind: 'close_request', requestId: requestStart.id };

  // Tool calls first: one that may run, else (if all wait for the user) idle until answered.
  const waiting: string[] = [];
  for (const toolUse of facts.openToolUses) {
    if (toolUse.type === 'agent.custom_tool_use') {
      waiting.push(toolUse.id);
      continue;
    }
    if (toolUse.evaluated_permission === 'ask') {
      const confirmation = findConfirmation(toolUse, events.map((s) => s.event)) ?? null;
      if (!confirmation) {
        waiting.push(toolUse.id);
        continue;
      }
      return { kind: 'run_tool', toolUse, confirmation };
    }
    return { kind: 'run_tool', toolUse, confirmation: null };
  }
  if (waiting.length) return { kind: 'requires_action', eventIds: waiting };

  // No open tool calls. If the model's last answer in this turn had no tool call and no user
  // message arrived since it was asked, the turn is over; otherwise the model is asked (again).
  let lastRequestIdx = -1;
  turn.forEach((e, i) => {
    if (e.type === 'span.model_request_start') lastRequestIdx = i;
  });
  if (lastRequestIdx >= 0) {
    const sinceRequest = turn.slice(lastRequestIdx + 1);
    const end = sinceRequest.find((e) => e.type === 'span.model_request_end');
    const ok = end && end.is_error !== true;
    const calledTools = sinceRequest.some((e) => TOOL_USE_TYPES.has(e.type));
    const newUserMessage = sinceRequest.some((e) => e.type === 'user.message');
    if (ok && !calledTools && !newUserMessage) return { kind: 'end_turn' };
  }
  // Consecutive failed model requests at the end of the turn decide the attempt number.
  let failures = 0;
  for (const e of turn) {
    if (e.type !== 'span.model_request_end') continue;
    failures = e.is_error === true ? failures + 1 : 0;
  }
  if (failures >= maxAttempts) return { kind: 'retries_exhausted' };
  return { kind: 'call_model', attempt: failures + 1 };
}

function answered(toolUse: SessionEvent, since: SessionEvent[]): boolean {
  if (toolUse.type === 'agent.custom_tool_use') {
    return since.some((e) => e.type === 'user.custom_tool_result' && e.custom_tool_use_id === toolUse.id);
  }
  return since.some((e) => e.type === 'user.tool_confirmation' && e.tool_use_id === toolUse.id);
}

function findConfirmation(toolUse: SessionEvent, events: SessionEvent[]): SessionEvent | undefined {
  return events.find((e) => e.type === 'user.tool_confirmation' && e.tool_use_id === toolUse.id);
}
