import { randomUUID } from 'node:crypto';
import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { WakeQueue } from '../../core/harness/queue.js';

/** A wake message on the queue. */
export interface WakeMessage {
  sessionId: string;
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

  async wake(sessionId: string): Promise<void> {
    const body: WakeMessage = { sessionId };
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
    return typeof parsed?.sessionId === 'string' && parsed.sessionId.length > 0 ? { sessionId: parsed.sessionId } : null;
  } catch {
    return null;
  }
}
