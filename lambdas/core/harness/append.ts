import { PositionConflictError } from '../errors.js';
import type { SessionService } from '../resources/sessions.js';
import { makeEvent, type EventBody, type SessionEvent, type SessionStatus } from '../session/events.js';
import type { EventLog } from '../session/log.js';
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
  const status = events
    .map((e): SessionStatus | null => (e.type === 'session.status_running' ? 'running' : e.type === 'session.status_idle' ? 'idle' : null))
    .filter((x): x is SessionStatus => x !== null)
    .pop();
  if (status) {
    await w.sessions.mutate(HARNESS, sessionId, (s) => (s.status === status ? null : { ...s, status, updated_at: now.toISOString() }));
  }
  if (events.length === 1) await w.events.emitEvent(sessionId, events[0], { position: tail + 1 });
  else await w.events.appendBatch(sessionId, events, { position: tail + 1, mayFollow: isUserEvent });
  return events;
}

/**
 * Append a batch after `position`. If user events slipped in meanwhile (the API appends them at
 * any time), the batch follows them; if anything else did, another harness is writing and the
 * batch is dropped (the loop reads the log again and decides anew).
 */
export async function appendAfter(w: Writer, sessionId: string, position: number, bodies: Array<EventBody | SessionEvent>) {
  for (let attempt = 0; ; attempt++) {
    try {
      await append(w, sessionId, position, bodies);
      return;
    } catch (err) {
      if (!(err instanceof PositionConflictError) || attempt > 20) throw err;
      const fresh = await w.events.getEvents(sessionId, { from: position + 1 });
      if (!fresh.every((e) => isUserEvent(e.event))) throw err;
      position = fresh.length ? fresh[fresh.length - 1].position : position;
    }
  }
}
