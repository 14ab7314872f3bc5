import type { StoredEvent } from './events.js';

/**
 * Tells readers of a session's log that it grew, so they need not wait for their next poll.
 * In one process (the local runtime) appends are announced directly, each with the event it
 * stored, so a reader that has everything before it can deliver it without reading the log;
 * where none is available (Lambda), readers poll.
 *
 * An announcement is a hint, never the only way an event reaches a reader: announcements of
 * concurrent appends may come out of position order, and one without `stored` (or one a reader
 * cannot place right after what it has) means "read the log".
 */
export interface LogNotifier {
  subscribe(sessionId: string, onAppend: (stored?: StoredEvent) => void): () => void;
}
