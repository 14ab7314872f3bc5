import { randomUUID } from 'node:crypto';
import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { WakeOptions, WakeQueue } from '../../core/harness/queue.js';
import { parseTraceparent } from '../../core/telemetry/trace.js';

/** A wake message on the queue. */
export interface WakeMessage {
  sessionId: string;
  /** The W3C trace context of the wake's span, when tracing is on (the harness step continues it). */
  traceparent?: string;
}

/**
 * The wake queue on SQS FIFO: message group = session id, so wakes of one session are delivered
 * in order and one at a time, while sessions proceed in parallel. Every send has its own
 * deduplication id: a wake is idempotent, and FIFO deduplication must never swallow a wake that
 * comes after an earlier one was consumed. FIFO queues have no per-message delay; a delayed wake
 * is sent at once and the harness, finding the session busy, hands it back to the queue, whose
 * visibility timeout is the delay.
 */
export class SqsWakeQueue implements WakeQueue {
  constructor(
    private readonly client: SQSClient,
    private readonly queueUrl: string,
  ) {}

  async wake(sessionId: string, opts: WakeOptions = {}): Promise<void> {
    const body: WakeMessage = { sessionId, ...(opts.traceparent ? { traceparent: opts.traceparent } : {}) };
    await this.client.send(
      new SendMessageCommand({
        QueueUrl: this.queueUrl,
        MessageBody: JSON.stringify(body),
        MessageGroupId: sessionId,
        MessageDeduplicationId: randomUUID(),
      }),
    );
  }
}

export function parseWakeMessage(body: string): WakeMessage | null {
  try {
    const parsed = JSON.parse(body);
    if (typeof parsed?.sessionId !== 'string' || parsed.sessionId.length === 0) return null;
    // A malformed trace context is dropped, not the wake: the step then starts a trace of its own.
    const traceparent = typeof parsed.traceparent === 'string' && parseTraceparent(parsed.traceparent) ? parsed.traceparent : undefined;
    return { sessionId: parsed.sessionId, ...(traceparent ? { traceparent } : {}) };
  } catch {
    return null;
  }
}
