import { currentTraceparent, withSpan } from '../telemetry/trace.js';

/** A wake's options. */
export interface WakeOptions {
  delayMs?: number;
  /**
   * The W3C `traceparent` of the span that asked for the wake (the `wake` span, see
   * `tracedWakeQueue`), carried with the message so that the harness step continues the trace.
   * Absent when tracing is off.
   */
  traceparent?: string;
}

/**
 * The wake queue: how anything (the API after a user event, a harness that ran out of time, the
 * start-up recovery) asks for a harness step on a session. Delivery is at least once and per
 * session in order (SQS FIFO, message group = session id); a wake for a session with nothing to do
 * is harmless, so correctness never depends on how often a wake arrives.
 */
export interface WakeQueue {
  wake(sessionId: string, opts?: WakeOptions): Promise<void>;
}

/**
 * The queue as the core uses it: each wake is a `wake` span (a producer, in whatever span asked
 * for it) whose context travels with the message. With tracing off it is the queue itself.
 */
export function tracedWakeQueue(queue: WakeQueue): WakeQueue {
  return {
    wake: (sessionId, opts = {}) =>
      withSpan('wake', { kind: 'producer', attributes: { 'corral.session.id': sessionId, 'corral.wake.delay_ms': opts.delayMs } }, () =>
        queue.wake(sessionId, { ...opts, traceparent: opts.traceparent ?? currentTraceparent() }),
      ),
  };
}
