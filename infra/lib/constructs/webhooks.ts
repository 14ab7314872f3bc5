import { Arn, ArnFormat, Duration, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { configEnvironment } from '../../../lambdas/core/config.js';
import { acknowledge, defaultPolicyOf } from '../nag.js';
import { CorralFunction } from './corral-function.js';
import type { SessionLog } from './session-log.js';

/** Secrets Manager prefix of webhook signing secrets: `corral/webhook/<endpoint id>`. */
export const WEBHOOK_SECRET_PREFIX = 'corral/';
const WEBHOOK_SECRET_NAMES = `${WEBHOOK_SECRET_PREFIX}webhook/*`;

export interface WebhooksProps {
  readonly sessionLog: SessionLog;
  readonly serviceName: string;
  readonly metricsNamespace: string;
  readonly logRetention?: logs.RetentionDays;
  /** Origins deliveries may go to besides public https ones (`CORRAL_WEBHOOK_URL_ALLOW`). @default - none */
  readonly urlAllow?: string[];
  /**
   * How often the delivery function sweeps for due deliveries (retries, lost kicks).
   * @default Duration.minutes(1)
   */
  readonly sweep?: Duration;
}

/**
 * Webhook delivery (docs/WEBHOOKS.md): a function that attempts every due delivery of the outbox
 * (items in the state table), run by a kick on its SQS queue after each publish and by a schedule
 * every minute. It runs outside the VPC: receivers are on the internet, and nothing of the VPC is
 * reachable from it. Its role is the only one that reads webhook signing secrets (the API writes
 * new ones but cannot read them). Deliveries past their retry horizon go to a dead-letter queue,
 * which an alarm watches.
 */
export class Webhooks extends Construct {
  readonly function: CorralFunction;
  readonly queue: sqs.Queue;
  readonly deadLetterQueue: sqs.Queue;
  readonly deadLetterAlarm: cloudwatch.Alarm;
  readonly rule: events.Rule;
  private readonly urlAllow: string | undefined;

  constructor(scope: Construct, id: string, props: WebhooksProps) {
    super(scope, id);
    this.urlAllow = props.urlAllow?.length ? props.urlAllow.join(',') : undefined;
    const timeout = Duration.minutes(2);
    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetters', {
      retentionPeriod: Duration.days(14),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    // Kicks carry nothing but "run": one that is lost or fails costs a sweep interval, no event.
    this.queue = new sqs.Queue(this, 'Kicks', {
      visibilityTimeout: Duration.seconds(6 * timeout.toSeconds()),
      retentionPeriod: Duration.hours(1),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    acknowledge(this.deadLetterQueue, { id: 'AwsSolutions-SQS3', reason: 'This is the dead-letter queue of webhook deliveries past their retry horizon; an alarm watches it.' });
    acknowledge(this.queue, { id: 'AwsSolutions-SQS3', reason: 'Kicks carry nothing but "run"; one that keeps failing expires within the hour, and the scheduled sweep delivers what it would have.' });
    this.function = new CorralFunction(this, 'Function', {
      entry: 'lambdas/webhook-delivery/handler.ts',
      handler: 'handler',
      description: 'Corral: delivers signed webhooks, retrying with backoff',
      serviceName: props.serviceName,
      metricsNamespace: props.metricsNamespace,
      logRetention: props.logRetention,
      timeout,
      memorySize: 256,
      environment: configEnvironment({
        stateTable: props.sessionLog.state.tableName,
        webhookSecretPrefix: WEBHOOK_SECRET_PREFIX,
        webhookDeadLetterQueueUrl: this.deadLetterQueue.queueUrl,
        webhookUrlAllow: this.urlAllow,
      }),
    });
    this.function.addEventSource(new SqsEventSource(this.queue, { batchSize: 10 }));
    props.sessionLog.state.grant(this.function, 'dynamodb:Query', 'dynamodb:GetItem', 'dynamodb:PutItem');
    this.deadLetterQueue.grantSendMessages(this.function);
    this.function.addToRolePolicy(new iam.PolicyStatement({ sid: 'WebhookSecretsRead', actions: ['secretsmanager:GetSecretValue'], resources: [this.secretArnPattern()] }));
    acknowledge(defaultPolicyOf(this.function), {
      id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:${WEBHOOK_SECRET_NAMES}]`,
      reason: 'Webhook signing secrets are created at run time, one per endpoint; the prefix corral/webhook/ confines the deliverer to them.',
    });
    this.rule = new events.Rule(this, 'Sweep', {
      description: 'Corral: deliver due webhooks (retries, and kicks that were lost)',
      schedule: events.Schedule.rate(props.sweep ?? Duration.minutes(1)),
      targets: [new targets.LambdaFunction(this.function, { retryAttempts: 0 })],
    });
    this.deadLetterAlarm = new cloudwatch.Alarm(this, 'DeadLetterAlarm', {
      alarmDescription: 'Corral: webhook deliveries failed for their whole retry horizon (see the dead-letter queue)',
      metric: this.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5), statistic: 'Maximum' }),
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
  }

  /** Every webhook signing secret (Secrets Manager appends a random suffix to each name). */
  secretArnPattern(): string {
    return Arn.format({ service: 'secretsmanager', resource: 'secret', resourceName: WEBHOOK_SECRET_NAMES, arnFormat: ArnFormat.COLON_RESOURCE_NAME }, Stack.of(this));
  }

  /**
   * Let `fn` publish: write outbox items (its state table grant already covers PutItem and Query),
   * kick the deliverer, and — with `writeSecrets` (the API) — create, replace and delete signing
   * secrets, never read them.
   */
  grantPublish(fn: CorralFunction, opts: { writeSecrets?: boolean } = {}): void {
    this.queue.grantSendMessages(fn);
    for (const [k, v] of Object.entries(configEnvironment({ webhookQueueUrl: this.queue.queueUrl, webhookSecretPrefix: WEBHOOK_SECRET_PREFIX, webhookUrlAllow: this.urlAllow }))) {
      fn.addEnvironment(k, v);
    }
    if (!opts.writeSecrets) return;
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'WebhookSecretsWrite',
        actions: ['secretsmanager:CreateSecret', 'secretsmanager:PutSecretValue', 'secretsmanager:DeleteSecret', 'secretsmanager:TagResource'],
        resources: [this.secretArnPattern()],
      }),
    );
    acknowledge(defaultPolicyOf(fn), {
      id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:${WEBHOOK_SECRET_NAMES}]`,
      reason: 'Webhook signing secrets are created at run time, one per endpoint; the API writes them under corral/webhook/ and cannot read them.',
    });
  }
}
