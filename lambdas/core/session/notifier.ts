/**
 * Tells readers of a session's log that it grew, so they need not wait for their next poll.
 * In one process (the local runtime) appends are announced directly; where none is available
 * (Lambda), readers poll.
 */
export interface LogNotifier {
  subscribe(sessionId: string, onAppend: () => void): () => void;
}
