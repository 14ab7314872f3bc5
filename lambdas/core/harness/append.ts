import { PositionConflictError } from '../errors.js';
import type { SessionService } from '../resources/sessions.js';
import { makeEvent, type EventBody, type SessionEvent, type SessionStatus, type StoredEvent } from '../session/events.js';
import type { EventLog } from '../session/log.js';
import { outcomesAhead } from './outcome.js';
import { HARNESS } from './step.js';

/** How the harness writes: right after the last position it read, never anywhere else. */
export type Writer = { events: EventLog; sessions: SessionService };

/** Events the API appends at any moment; a harness's events may follow them. */
export function isUserEvent(e: SessionEvent): boolean {
  return e.type.startsWith('user.');
}

/**
 * Append events from `tail + 1` on, as one batch when there are several. A status change is
 * written to the session record first, so a client that sees the status event in the stream
 * finds the session in that status (a failed append is corrected by the next `reconcile`).
 */
export async function append(w: Writer, sessionId: string, tail: number, bodies: Array<EventBody | SessionEvent>): Promise<SessionEvent[]> {
  const now = new Date();
  const events = bodies.map((b) => ('id' in b ? b : makeEvent(b, now)));
  await recordStatus(w, sessionId, events, now);
  if (events.length === 1) await w.events.emitEvent(sessionId, events[0], { position: tail + 1 });
  else await w.events.appendBatch(sessionId, events, { position: tail + 1, mayFollow: isUserEvent });
  return events;
}

/**
 * `append`, answering as soon as the first event is in rather than when all are: a batch is part
 * of the log from its head on (the head carries the rest, and a wake that finds the batch
 * unfinished finishes it), so the caller may go on meanwhile. `stored` settles with every event as
 * stored (after user events that came in between, if any), or rejects as `append` would; the
 * caller must await it before its step ends.
 */
export async function appendLeading(
  w: Writer,
  sessionId: string,
  tail: number,
  bodies: Array<EventBody | SessionEvent>,
): Promise<{ events: SessionEvent[]; stored: Promise<StoredEvent[]> }> {
  const now = new Date();
  const events = bodies.map((b) => ('id' in b ? b : makeEvent(b, now)));
  await recordStatus(w, sessionId, events, now);
  if (events.length === 1) {
    const one = await w.events.emitEvent(sessionId, events[0], { position: tail + 1 });
    return { events, stored: Promise.resolve([one]) };
  }
  let headIn!: () => void;
  const head = new Promise<void>((resolve) => (headIn = resolve));
  const stored = w.events.appendBatch(sessionId, events, { position: tail + 1, mayFollow: isUserEvent, onHead: () => headIn() });
  stored.catch(() => undefined); // handled: the caller awaits it
  await Promise.race([head, stored]);
  return { events, stored };
}

/** The session record takes the batch's last status change, and its outcomes' states (see `append`). */
async function recordStatus(w: Writer, sessionId: string, events: SessionEvent[], now: Date) {
  const status = events
    .map((e): SessionStatus | null => (e.type === 'session.status_running' ? 'running' : e.type === 'session.status_idle' ? 'idle' : null))
    .filter((x): x is SessionStatus => x !== null)
    .pop();
  const outcomes = events.some((e) => e.type === 'span.outcome_evaluation_start');
  if (status || outcomes) {
    await w.sessions.mutate(HARNESS, sessionId, (s) => {
      const evaluations = s.outcome_evaluations ? outcomesAhead(s.outcome_evaluations, events) : s.outcome_evaluations;
      if ((!status || s.status === status) && evaluations === s.outcome_evaluations) return null;
      return { ...s, ...(status ? { status } : {}), outcome_evaluations: evaluations, updated_at: now.toISOString() };
    });
  }
}

/**
 * Append a batch after `position`. If user events slipped in meanwhile (the API appends them at
 * any time), the batch follows them; if anything else did, another harness is writing and the
 * batch is dropped (the loop reads the log again and decides anew). Answers the position of the
 * batch's last event.
 */
export async function appendAfter(w: Writer, sessionId: string, position: number, bodies: Array<EventBody | SessionEvent>): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    try {
      await append(w, sessionId, position, bodies);
      return position + bodies.length;
    } catch (err) {
      if (!(err instanceof PositionConflictError) || attempt > 20) throw err;
      const fresh = await w.events.getEvents(sessionId, { from: position + 1 });
      if (!fresh.every((e) => isUserEvent(e.event))) throw err;
      position = fresh.length ? fresh[fresh.length - 1].position : position;
    }
  }
}
