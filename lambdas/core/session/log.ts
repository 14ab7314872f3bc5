import type { SessionEvent, StoredEvent } from './events.js';

export interface GetEventsOptions {
  /** First position to return (inclusive). Positions start at 1. Default 1. */
  from?: number;
  /** Position to stop before (exclusive), like `Array.prototype.slice`. Default: no bound. */
  to?: number;
  /** Most events to return. */
  limit?: number;
  /** `asc` (default) reads forward from `from`; `desc` reads backwards from `to`. */
  order?: 'asc' | 'desc';
}

/**
 * The session: an append-only event log, the only durable state of a run.
 *
 * Every append is a conditional write on (session id, position): a second writer at the same
 * position gets `PositionConflictError` instead of overwriting. Nothing is ever updated in place
 * and nothing is deleted, except when the whole session is deleted.
 */
export interface EventLog {
  /**
   * Append one event. With `position`, write exactly there or fail with `PositionConflictError`.
   * Without it, append at the current tail, retrying on conflict (for writers such as the API
   * that only need "after everything so far").
   */
  emitEvent(sessionId: string, event: SessionEvent, opts?: { position?: number }): Promise<StoredEvent>;
  /**
   * Append events that belong together (one model response, a status change that ends it).
   * The first event carries the others, so a batch whose writer died can be finished from the
   * log (`missingBatchEvents`). The head goes exactly at `position`. If another writer takes a
   * later position first, the rest follow after what it wrote when every such event passes
   * `mayFollow` (the harness allows user events, which the API appends at any time); otherwise
   * the append stops with `PositionConflictError`, leaving a recoverable batch.
   *
   * `onHead` is called once the head is in: from then on the batch is part of the log (a reader
   * that finds it unfinished finishes it), so a writer may go on while the rest is written.
   */
  appendBatch(
    sessionId: string,
    events: SessionEvent[],
    opts: { position: number; mayFollow?: (interloper: SessionEvent) => boolean; onHead?: (head: StoredEvent) => void },
  ): Promise<StoredEvent[]>;
  /** A positional slice of the log. */
  getEvents(sessionId: string, opts?: GetEventsOptions): Promise<StoredEvent[]>;
  /** Position of the last event, 0 when the log is empty. */
  lastPosition(sessionId: string): Promise<number>;
  /** Remove every event of a session (session deletion only). */
  deleteAll(sessionId: string): Promise<void>;
}

/**
 * Events of an interrupted batch that are not in the log yet: for the last batch head among
 * `tail` (events read from some position to the end of the log), the events it carries whose ids
 * do not appear after it.
 */
export function missingBatchEvents(tail: StoredEvent[]): SessionEvent[] {
  for (let i = tail.length - 1; i >= 0; i--) {
    const head = tail[i];
    if (!head.rest) continue;
    const seen = new Set(tail.slice(i + 1).map((e) => e.event.id));
    return head.rest.filter((e) => !seen.has(e.id));
  }
  return [];
}
