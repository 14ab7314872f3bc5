import { Arn, ArnFormat, Duration, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { configEnvironment } from '../../../lambdas/core/config.js';
import { CorralFunction } from './corral-function.js';
import type { Network } from './network.js';
import type { Sandboxes } from './sandboxes.js';
import type { SessionLog } from './session-log.js';
import type { WakeQueue } from './wake-queue.js';

/** Where the harness calls the model, and with which key. */
export interface ModelSettings {
  /** An Anthropic-compatible Messages API endpoint. @default - https://api.anthropic.com */
  readonly baseUrl?: string;
  /**
   * Name of an SSM SecureString parameter holding the model API key (read once per cold start by
   * the harness alone; the API never reads it). @default '/corral/anthropic-api-key'
   */
  readonly apiKeyParameterName?: string;
}

export interface HarnessStepProps {
  readonly sessionLog: SessionLog;
  readonly wakeQueue: WakeQueue;
  readonly sandboxes: Sandboxes;
  readonly network: Network;
  /** Longest a single invocation runs; a wake yields (and queues its continuation) before it. */
  readonly timeout: Duration;
  readonly model?: ModelSettings;
  /**
   * Wakes per invocation. A wake can run for minutes and the records of a batch run one after
   * another (FIFO order), so more than one delays the other sessions in the batch.
   * @default 1
   */
  readonly batchSize?: number;
  /**
   * Most concurrent harness invocations the wake queue's event source starts (2-1000).
   * @default - `reservedConcurrency` when that is set, else no limit beyond the account's
   */
  readonly maxConcurrency?: number;
  /**
   * Concurrent executions reserved for the harness: the account's other functions (open event
   * streams above all) can never take them, and the harness never runs more than this. The event
   * source is capped to it too (`maxConcurrency`) up to 1,000, the most an event source takes,
   * because a throttled SQS invocation returns its wake to the queue and counts as a delivery,
   * pushing it towards the dead-letter queue. Above 1,000 the source is left uncapped (a cap of
   * 1,000 would hold the harness there): size the reservation above the harness's peak
   * (`npm run capacity` shows its use) so that throttling stays the exception.
   * Lambda keeps at least 10 executions of the account unreserved, so a new account whose
   * concurrency limit is 10 cannot reserve any: leave it unset there.
   * @default - none reserved
   */
  readonly reservedConcurrency?: number;
  /** Memory of the harness function in MiB (Lambda gives CPU in proportion). @default DEFAULT_HARNESS_MEMORY_MIB */
  readonly memorySize?: number;
  /** Session attributes added as metric dimensions (`agent`, `environment`). @default - none */
  readonly metricsSessionDimensions?: Array<'agent' | 'environment'>;
  readonly metricsNamespace: string;
  readonly serviceName: string;
  readonly logRetention?: logs.RetentionDays;
}

export const DEFAULT_MODEL_KEY_PARAMETER = '/corral/anthropic-api-key';

/**
 * The harness function's memory, from measurement (the benchmark's overhead and bundles suites;
 * docs/SCALE.md "Right-sized functions"): the bundle holds about 68 MB resident after import, and
 * the benchmark's one process (API, harness, store and model fixture together) peaks at about
 * 82 MB of heap over its turns, so the harness alone stays under about 150 MB: 256 MB leaves 1.7
 * times that. A harness mostly waits on the model and the sandbox; its CPU per step (at most the
 * step's `HarnessOverhead`, about 17 ms at a full vCPU) takes about 7 times as long at 256 MB's
 * share of a vCPU (256 / 1,769), about 0.1 s a step; raise it (CDK context `harnessMemoryMiB`)
 * where that matters more than the cost.
 */
export const DEFAULT_HARNESS_MEMORY_MIB = 256;

/** The most an SQS event source mapping's maximum concurrency may be (AWS::Lambda::EventSourceMapping ScalingConfig). */
export const EVENT_SOURCE_MAX_CONCURRENCY = 1000;

/**
 * The harness step: a Lambda function fed by the wake queue (partial batch responses), running
 * in the private subnets so that it, and only it, can reach the sandbox agents. It reads and
 * appends to the session log, sends its own continuation when it yields, starts and stops
 * sandbox tasks, and reads the model key from SSM. It has no access to Secrets Manager: the
 * vault's secrets are the credential proxy's alone.
 */
export class HarnessStep extends Construct {
  readonly function: CorralFunction;
  readonly securityGroup: ec2.SecurityGroup;
  readonly timeout: Duration;

  constructor(scope: Construct, id: string, props: HarnessStepProps) {
    super(scope, id);
    this.timeout = props.timeout;
    this.securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.network.vpc,
      description: 'Corral harness: calls the model, AWS APIs and the sandbox agents',
      allowAllOutbound: true,
    });
    const keyParameter = props.model?.apiKeyParameterName ?? DEFAULT_MODEL_KEY_PARAMETER;
    const reserved = props.reservedConcurrency;
    if (reserved !== undefined && (!Number.isInteger(reserved) || reserved < 2)) {
      throw new Error('harness reservedConcurrency: at least 2 (the wake queue event source runs at least 2 invocations)');
    }
    if (reserved !== undefined && props.maxConcurrency !== undefined && props.maxConcurrency > reserved) {
      throw new Error(
        `harness maxConcurrency (${props.maxConcurrency}) above its reservedConcurrency (${reserved}): the extra invocations would be throttled and their wakes redelivered towards the dead-letter queue`,
      );
    }
    this.function = new CorralFunction(this, 'Function', {
      entry: 'lambdas/harness-step/index.ts',
      description: 'Corral harness step: SQS FIFO wake -> harness.wake(sessionId)',
      serviceName: props.serviceName,
      metricsNamespace: props.metricsNamespace,
      logRetention: props.logRetention,
      timeout: props.timeout,
      memorySize: props.memorySize ?? DEFAULT_HARNESS_MEMORY_MIB,
      reservedConcurrentExecutions: reserved,
      vpc: props.network.vpc,
      vpcSubnets: props.network.subnets,
      securityGroups: [this.securityGroup],
      environment: {
        ...props.sessionLog.environment,
        ...props.wakeQueue.environment,
        ...props.sandboxes.environment,
        ...configEnvironment({
          modelApiKeyParameter: keyParameter,
          modelBaseUrl: props.model?.baseUrl,
          metricsSessionDimensions: props.metricsSessionDimensions?.length ? props.metricsSessionDimensions.join(',') : undefined,
        }),
      },
    });
    if (props.wakeQueue.visibilityTimeout.toSeconds() <= props.timeout.toSeconds()) {
      throw new Error('the wake queue visibility timeout must be longer than the harness step timeout');
    }
    props.sessionLog.grantReadWrite(this.function);
    props.wakeQueue.grantSend(this.function);
    props.sandboxes.grantManage(this.function);
    props.sandboxes.grantCapabilitySealing(this.function);
    props.sandboxes.allowAgentAccessFrom(this.securityGroup);
    this.function.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['ssm:GetParameter'],
        resources: [
          Arn.format(
            { service: 'ssm', resource: 'parameter', resourceName: keyParameter.replace(/^\//, ''), arnFormat: ArnFormat.SLASH_RESOURCE_NAME },
            Stack.of(this),
          ),
        ],
      }),
    );
    // Grants ReceiveMessage, DeleteMessage, ChangeMessageVisibility (the handler shortens it for
    // busy sessions) and GetQueueAttributes on the wake queue.
    this.function.addEventSource(
      new SqsEventSource(props.wakeQueue.queue, {
        batchSize: props.batchSize ?? 1,
        reportBatchItemFailures: true,
        // The event source accepts at most 1000: above that the reservation alone caps the harness
        // (capping the source at 1000 would hold it to 1000 executions, whatever was reserved).
        maxConcurrency: props.maxConcurrency ?? (reserved !== undefined && reserved <= EVENT_SOURCE_MAX_CONCURRENCY ? reserved : undefined),
      }),
    );
  }
}
