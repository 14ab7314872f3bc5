import { Arn, ArnFormat, Duration, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { CORRAL_ENV, configEnvironment, type ConfigKey } from '../../../lambdas/core/config.js';
import { DEFAULT_MODEL_PROVIDER, MODEL_TABLE, bedrockTarget, type ModelProvider } from '../../../lambdas/core/harness/model-ids.js';
import { CorralFunction } from './corral-function.js';
import { acknowledge, defaultPolicyOf } from '../nag.js';
import type { Network } from './network.js';
import type { Sandboxes } from './sandboxes.js';
import type { SessionLog } from './session-log.js';
import type { WakeQueue } from './wake-queue.js';

/** Where the harness calls the model, and with which key (or IAM role). */
export interface ModelSettings {
  /**
   * Who serves model calls: `anthropic` (the Claude API, key in SSM), `gateway` (a
   * Messages-compatible endpoint at `baseUrl`, key in SSM) or `bedrock` (Amazon Bedrock with the
   * harness's IAM role: no key, no parameter, no SSM access). @default 'anthropic'
   */
  readonly provider?: ModelProvider;
  /**
   * Claude model ids the deployment serves (model-ids.ts); with `bedrock`, the harness may invoke
   * these and no others. @default - with `bedrock`, every id of the table; otherwise any
   */
  readonly models?: string[];
  /** With `bedrock`: the region it is called in. @default - the stack's region */
  readonly bedrockRegion?: string;
  /**
   * With `bedrock`: the inference-profile prefix (`us`, `eu`, `apac`, `global`). @default - the
   * region's geography, found by the harness at run time; the grant then names the configured
   * models' profiles of any geography
   */
  readonly bedrockProfile?: string;
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
  /**
   * The proxy service forwards the model calls (`anthropic`, `gateway`; the stack sets it with
   * `proxyService`): the harness gets neither the key parameter's name nor any grant on it, and
   * calls the service's harness port instead (`useModelProxy`). @default false
   */
  readonly modelThroughProxy?: boolean;
}

export const DEFAULT_MODEL_KEY_PARAMETER = '/corral/anthropic-api-key';

/** The model variables the harness and the API read (config.ts): the provider and its models. */
export function modelEnvironment(model: ModelSettings | undefined): Partial<Record<ConfigKey, string>> {
  const provider = model?.provider ?? DEFAULT_MODEL_PROVIDER;
  if (provider === DEFAULT_MODEL_PROVIDER && !model?.models?.length) return {};
  return {
    modelProvider: provider,
    models: model?.models?.length ? model.models.join(',') : undefined,
    bedrockRegion: provider === 'bedrock' ? model?.bedrockRegion : undefined,
    bedrockProfile: provider === 'bedrock' ? model?.bedrockProfile : undefined,
  };
}

/**
 * `bedrock:InvokeModelWithResponseStream` on the configured models only: each one's inference
 * profile in the region it is called in (Claude 4 models are served only through one) and the
 * foundation model behind it in any region (a geographic profile routes a call to any region of
 * its geography, and IAM checks the foundation model there too). Without a configured prefix the
 * profile is named for any geography (`*.anthropic.…`): still these models and no others.
 */
export function bedrockInvokeStatement(stack: Stack, model: ModelSettings): iam.PolicyStatement {
  const ids = model.models?.length ? model.models : Object.keys(MODEL_TABLE);
  const region = model.bedrockRegion ?? stack.region;
  const resources = new Set<string>();
  for (const id of ids) {
    const target = bedrockTarget(id, { profile: model.bedrockProfile ?? '*' });
    resources.add(`arn:${stack.partition}:bedrock:*::foundation-model/${target.foundationModel}`);
    if (target.inferenceProfile) resources.add(`arn:${stack.partition}:bedrock:${region}:${stack.account}:inference-profile/${target.inferenceProfile}`);
  }
  return new iam.PolicyStatement({ actions: ['bedrock:InvokeModelWithResponseStream'], resources: [...resources] });
}

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
 * sandbox tasks, and reads the model key from SSM (or, with Bedrock, invokes the configured models
 * with its own role and reads no key). It has no access to Secrets Manager: the
 * vault's secrets are the credential proxy's alone.
 */
export class HarnessStep extends Construct {
  readonly function: CorralFunction;
  readonly securityGroup: ec2.SecurityGroup;
  readonly timeout: Duration;
  /** The SSM parameter holding the model key (`anthropic`, `gateway`); read by the harness unless `modelThroughProxy`. */
  readonly modelKeyParameter?: string;

  constructor(scope: Construct, id: string, props: HarnessStepProps) {
    super(scope, id);
    this.timeout = props.timeout;
    this.securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.network.vpc,
      description: 'Corral harness: calls the model, AWS APIs and the sandbox agents',
      allowAllOutbound: true,
    });
    const provider = props.model?.provider ?? DEFAULT_MODEL_PROVIDER;
    if (provider === 'gateway' && !props.model?.baseUrl) throw new Error('model provider gateway: the gateway URL (anthropicBaseUrl) is required');
    if (provider === 'bedrock' && props.model?.apiKeyParameterName) throw new Error('model provider bedrock: no model key parameter (Bedrock is called with the harness role)');
    for (const m of provider === 'bedrock' ? (props.model?.models ?? []) : []) {
      if (!MODEL_TABLE[m]) throw new Error(`model provider bedrock: no Bedrock id for model ${m} (lambdas/core/harness/model-ids.ts)`);
    }
    // Bedrock needs no key: no parameter is named, read or granted.
    this.modelKeyParameter = provider === 'bedrock' ? undefined : (props.model?.apiKeyParameterName ?? DEFAULT_MODEL_KEY_PARAMETER);
    // Through the proxy service, the harness is told nothing of the key and may not read it.
    const keyParameter = props.modelThroughProxy ? undefined : this.modelKeyParameter;
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
          ...modelEnvironment(props.model),
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
    if (keyParameter) {
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
    }
    if (provider === 'bedrock') {
      const statement = bedrockInvokeStatement(Stack.of(this), props.model ?? {});
      this.function.addToRolePolicy(statement);
      // cdk-nag: the region (and, without a configured prefix, the geography) is the wildcard; the model never is.
      const wildcards = statement.resources.filter((r) => r.includes('*'));
      acknowledge(
        defaultPolicyOf(this.function),
        ...wildcards.map((r) => ({
          id: `AwsSolutions-IAM5[Resource::${r.replace(/\$\{Token\[AWS\.(\w+)\.\d+\]\}/g, '<AWS::$1>')}]`,
          reason: 'A Bedrock inference profile routes a call to any region of its geography, where IAM checks the foundation model too: every region, this one model.',
        })),
      );
    }
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

  /** Send model calls to the proxy service's model route (its harness-facing URL, `http://host:8081`), with no key. */
  useModelProxy(harnessUrl: string): void {
    this.function.addEnvironment(CORRAL_ENV.modelProxyUrl, `${harnessUrl}/model`);
  }
}
