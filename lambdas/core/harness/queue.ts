/**
 * The wake queue: how anything (the API after a user event, a harness that ran out of time, the
 * start-up recovery) asks for a harness step on a session. Delivery is at least once and per
 * session in order (SQS FIFO, message group = session id); a wake for a session with nothing to do
 * is harmless, so correctness never depends on how often a wake arrives.
 */
export interface WakeQueue {
  wake(sessionId: string, opts?: { delayMs?: number }): Promise<void>;
}
