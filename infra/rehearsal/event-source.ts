/**
 * A Lambda event source mapping for SQS, built from the template's `AWS::Lambda::EventSourceMapping`:
 * pollers receive batches from the queue (as the function's execution role, through the
 * rehearsal's AWS gateway, so the role must allow `ReceiveMessage`, `DeleteMessage`,
 * `GetQueueAttributes`), invoke the function with the SQS event, and delete what succeeded: the
 * whole batch, or, with `ReportBatchItemFailures`, all but the records the function names. A
 * failed or timed-out invocation deletes nothing, so its messages come back after their
 * visibility timeout and, past `maxReceiveCount`, go to the dead-letter queue (the emulator's
 * redrive policy). FIFO ordering is the queue's: one message group in flight at a time.
 */
import { DeleteMessageBatchCommand, GetQueueAttributesCommand, ReceiveMessageCommand, type SQSClient, type Message } from '@aws-sdk/client-sqs';
import type { InvokeResult } from './lambda-runtime.js';

export interface EventSourceMappingOptions {
  sqs: SQSClient;
  queueUrl: string;
  queueArn: string;
  region: string;
  batchSize: number;
  reportBatchItemFailures: boolean;
  /** ScalingConfig.MaximumConcurrency, or the rehearsal's cap. */
  maxConcurrency: number;
  invoke(event: unknown): Promise<InvokeResult>;
  /** Long-poll wait per receive (seconds); short in the rehearsal so it stops quickly. */
  waitSeconds?: number;
  onError?(err: unknown): void;
}

export class SqsEventSourceMapping {
  private running = false;
  private pollers: Promise<void>[] = [];
  readonly stats = { batches: 0, records: 0, deleted: 0, failedRecords: 0, failedInvocations: 0 };

  constructor(private readonly opts: EventSourceMappingOptions) {}

  async start(): Promise<void> {
    // Lambda reads the queue's attributes when the mapping is created (and fails to create it
    // when the role may not).
    await this.opts.sqs.send(new GetQueueAttributesCommand({ QueueUrl: this.opts.queueUrl, AttributeNames: ['All'] }));
    this.running = true;
    this.pollers = Array.from({ length: Math.max(1, this.opts.maxConcurrency) }, () => this.poll());
  }

  private record(m: Message) {
    return {
      messageId: m.MessageId,
      receiptHandle: m.ReceiptHandle,
      body: m.Body ?? '',
      attributes: { ...(m.Attributes ?? {}) },
      messageAttributes: {},
      md5OfBody: m.MD5OfBody,
      eventSource: 'aws:sqs',
      eventSourceARN: this.opts.queueArn,
      awsRegion: this.opts.region,
    };
  }

  private async poll(): Promise<void> {
    while (this.running) {
      try {
        const out = await this.opts.sqs.send(
          new ReceiveMessageCommand({
            QueueUrl: this.opts.queueUrl,
            MaxNumberOfMessages: this.opts.batchSize,
            WaitTimeSeconds: this.opts.waitSeconds ?? 1,
            MessageSystemAttributeNames: ['All'],
          }),
        );
        const messages = out.Messages ?? [];
        if (!messages.length || !this.running) continue;
        this.stats.batches++;
        this.stats.records += messages.length;
        const result = await this.opts.invoke({ Records: messages.map((m) => this.record(m)) });
        let done = messages;
        if (!result.ok) {
          this.stats.failedInvocations++;
          done = [];
        } else if (this.opts.reportBatchItemFailures) {
          const failures = (result.value as { batchItemFailures?: Array<{ itemIdentifier?: string }> } | null)?.batchItemFailures ?? [];
          const failed = new Set(failures.map((f) => f.itemIdentifier));
          // An identifier that names no record of the batch fails the whole batch, as Lambda does.
          if ([...failed].some((id) => !messages.some((m) => m.MessageId === id))) done = [];
          else done = messages.filter((m) => !failed.has(m.MessageId));
          this.stats.failedRecords += messages.length - done.length;
        }
        for (let i = 0; i < done.length; i += 10) {
          const chunk = done.slice(i, i + 10);
          await this.opts.sqs.send(
            new DeleteMessageBatchCommand({ QueueUrl: this.opts.queueUrl, Entries: chunk.map((m, j) => ({ Id: String(j), ReceiptHandle: m.ReceiptHandle! })) }),
          );
          this.stats.deleted += chunk.length;
        }
      } catch (err) {
        if (!this.running) return;
        this.opts.onError?.(err);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.pollers);
  }
}
