import { Duration } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { configEnvironment } from '../../../lambdas/core/config.js';

/** SQS's longest visibility timeout. */
const MAX_VISIBILITY = Duration.hours(12);

/**
 * The visibility timeout for a queue consumed by a Lambda function of this timeout: 6 times it,
 * as AWS advises for Lambda event sources (the poller's retries and batching window fit inside),
 * and at most SQS's 12 hours. For the harness's 15 minutes: 90 minutes.
 */
export function visibilityForConsumer(functionTimeout: Duration): Duration {
  return Duration.seconds(Math.min(6 * functionTimeout.toSeconds(), MAX_VISIBILITY.toSeconds()));
}

export interface WakeQueueProps {
  /**
   * How long a received wake stays invisible. Must be longer than the harness step's timeout: a
   * step that is still running must not see its own wake delivered to a second harness. Use
   * `visibilityForConsumer(timeout)`. It is long (90 minutes for a 15-minute step) only as the
   * fallback: the harness step's heartbeat keeps the messages of its batch invisible for 2
   * minutes at a time, renewed every minute while the wakes run, so a step Lambda kills gives
   * its wakes back within about 2 minutes (lambdas/harness-step/handler.ts).
   */
  readonly visibilityTimeout: Duration;
  /**
   * Deliveries before a wake goes to the dead-letter queue. A wake that finds its session busy is
   * handed back with a short visibility and counts as a delivery; one that throws backs off
   * exponentially (up to 5 minutes).
   * @default 10
   */
  readonly maxReceiveCount?: number;
}

/**
 * The wake queue: SQS FIFO, message group = session id, so a session's wakes arrive in order and
 * one at a time while different sessions run in parallel (high-throughput FIFO: deduplication and
 * throughput are scoped per message group). Senders give every message its own deduplication id
 * (lambdas/adapters/aws/sqs-queue.ts). Wakes that keep failing land in a FIFO dead-letter queue,
 * which an alarm watches.
 */
export class WakeQueue extends Construct {
  readonly queue: sqs.Queue;
  readonly deadLetterQueue: sqs.Queue;
  readonly maxReceiveCount: number;
  readonly visibilityTimeout: Duration;

  constructor(scope: Construct, id: string, props: WakeQueueProps) {
    super(scope, id);
    this.maxReceiveCount = props.maxReceiveCount ?? 10;
    if (props.visibilityTimeout.toSeconds() > MAX_VISIBILITY.toSeconds()) {
      throw new Error(`the wake queue visibility timeout is at most ${MAX_VISIBILITY.toHumanString()} (SQS's limit)`);
    }
    this.visibilityTimeout = props.visibilityTimeout;
    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetters', {
      fifo: true,
      retentionPeriod: Duration.days(14),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    this.queue = new sqs.Queue(this, 'Queue', {
      fifo: true,
      contentBasedDeduplication: false,
      deduplicationScope: sqs.DeduplicationScope.MESSAGE_GROUP,
      fifoThroughputLimit: sqs.FifoThroughputLimit.PER_MESSAGE_GROUP_ID,
      visibilityTimeout: props.visibilityTimeout,
      retentionPeriod: Duration.days(4),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: this.maxReceiveCount },
    });
  }

  /** Send wakes (the API after a user event, a harness that yields). */
  grantSend(grantee: iam.IGrantable): void {
    this.queue.grantSendMessages(grantee);
  }

  /** The queue, in the environment of the functions that send wakes (lambdas/core/config.ts). */
  get environment(): Record<string, string> {
    return configEnvironment({ wakeQueueUrl: this.queue.queueUrl });
  }
}
