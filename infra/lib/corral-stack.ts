import { Arn, ArnFormat, CfnOutput, CfnParameter, Duration, RemovalPolicy, Stack, type CfnElement, type StackProps } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import { acknowledge as acknowledgeOn, defaultPolicyOf, type Acknowledgment } from './nag.js';
import type { Construct, IConstruct } from 'constructs';
import { Api } from './constructs/api.js';
import { BlobBucket, type BlobBucketProps } from './constructs/blob-bucket.js';
import { CredentialProxy } from './constructs/credential-proxy.js';
import { Deployments } from './constructs/deployments.js';
import { HarnessStep, modelEnvironment, type ModelSettings } from './constructs/harness-step.js';
import { configEnvironment } from '../../lambdas/core/config.js';
import { Network, type NetworkProps } from './constructs/network.js';
import { Observability, type WatchedFunction } from './constructs/observability.js';
import { Sandboxes, type SandboxesProps } from './constructs/sandboxes.js';
import { SandboxReaper } from './constructs/sandbox-reaper.js';
import { Webhooks } from './constructs/webhooks.js';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { SessionLog } from './constructs/session-log.js';
import { StreamTier, type StreamTierProps } from './constructs/stream-tier.js';
import { ProxyService, type ProxyServiceProps } from './constructs/proxy-service.js';
import { WakeQueue, visibilityForConsumer } from './constructs/wake-queue.js';
import type { RateLimits } from '../../lambdas/core/resources/rate-limits.js';
import { CORRAL_ENV, readOidcIssuers, type WarmPoolSettings } from '../../lambdas/core/config.js';
import { keys } from '../../lambdas/core/storage/keys.js';

export interface HarnessSettings {
  /** Longest one harness invocation runs before it yields and queues its continuation. @default 15 minutes */
  readonly timeout?: Duration;
  /** @default 1 */
  readonly batchSize?: number;
  /** Most concurrent invocations the wake queue starts. @default - reservedConcurrency, else the account's limit */
  readonly maxConcurrency?: number;
  /**
   * Concurrent executions reserved for the harness, so nothing else in the account (open event
   * streams above all) can starve it. Recommended wherever the account's concurrency limit allows
   * it (the limit minus all reservations must stay at least 10, so a new account limited to 10
   * cannot reserve any); see HarnessStepProps.reservedConcurrency.
   * @default - none reserved
   */
  readonly reservedConcurrency?: number;
  readonly memorySize?: number;
  /** Deliveries of a wake before it goes to the dead-letter queue. @default 10 */
  readonly maxReceiveCount?: number;
  /** Session attributes added as metric dimensions. @default - none (service only) */
  readonly metricsSessionDimensions?: Array<'agent' | 'environment'>;
}

export interface CorralStackProps extends StackProps {
  readonly network?: NetworkProps;
  readonly sandbox?: Omit<SandboxesProps, 'network'>;
  /** A sandbox no tool call used for this long is stopped by the reaper. @default 15 minutes */
  readonly sandboxIdleTimeout?: Duration;
  /**
   * Sandbox tasks started ahead per environment (lambdas/core/sandbox/warm-pool.ts): the harness
   * claims and refills them, the reaper stops the ones never claimed. @default - none
   */
  readonly warmPool?: WarmPoolSettings;
  readonly model?: ModelSettings;
  readonly harness?: HarnessSettings;
  /**
   * Repository origins sessions may name besides public `https://` ones (`scheme://host[:port]`;
   * the API refuses local paths, `file://` and private addresses otherwise). @default - none
   */
  readonly repositoryUrlAllow?: string[];
  /** Webhook origins accepted besides public https ones (`CORRAL_WEBHOOK_URL_ALLOW`; the rehearsal's loopback receiver). @default - none */
  readonly webhookUrlAllow?: string[];
  /** Longest an event stream stays open before it ends and the client reconnects. @default 15 minutes */
  readonly streamTimeout?: Duration;
  /** Most event streams open at once (the stream function's reserved concurrency). @default - no cap; see ApiProps.streamMaxConcurrency */
  readonly streamMaxConcurrency?: number;
  /**
   * Who serves the event streams: `lambda`, the stream function (one execution per open stream,
   * nothing billed while none is open), or `fargate`, the stream tier (infra/lib/constructs/stream-tier.ts:
   * a Fargate service holding many streams per task, woken by the events table's DynamoDB stream,
   * billed for its tasks and load balancer around the clock). docs/SCALE.md compares them.
   * @default 'lambda'
   */
  readonly streamTier?: 'lambda' | 'fargate';
  /**
   * The proxy service (infra/lib/constructs/proxy-service.ts): sandboxes' only way out, which
   * enforces environments' networking (docs/EGRESS.md). Needs the VPC's interface endpoints.
   * @default - none: the sandbox security group allows all outbound traffic
   */
  readonly proxyService?: Pick<ProxyServiceProps, 's3PrefixListId' | 'minTasks' | 'maxTasks' | 'cpu' | 'memoryMiB'>;
  /** The stream tier's tasks, with `streamTier: 'fargate'`. @default see StreamTierProps */
  readonly streamTierSettings?: Pick<StreamTierProps, 'minTasks' | 'maxTasks' | 'cpu' | 'memoryMiB'>;
  /** Steady-state requests per second the API stage accepts. @default 100; see ApiProps.throttlingRateLimit */
  readonly apiThrottlingRateLimit?: number;
  /** Requests the API stage accepts at once above the steady rate. @default 200 */
  readonly apiThrottlingBurstLimit?: number;
  /** Per-tenant requests per minute by class. @default create 300, write 1200, read 6000; see ApiProps.rateLimits */
  readonly rateLimits?: RateLimits;
  /** Most shards a tenant's rate-limit counter of one class is spread over. @default 10; see ApiProps.rateLimitShards */
  readonly rateLimitShards?: number;
  /**
   * Default of the `OidcIssuers` stack parameter (`CORRAL_OIDC_ISSUERS` of the API functions and
   * the stream tier): a JSON array of OIDC issuers, each bound to a tenant (docs/SIGN-IN.md).
   * Checked at synthesis. @default '' (none: API keys only)
   */
  readonly oidcIssuers?: string;
  /** p95 time to first token above which the alarm fires, in ms. @default 10000 */
  readonly timeToFirstTokenP95ThresholdMs?: number;
  /** p99 time to first token above which the alarm fires, in ms. @default 20000 */
  readonly timeToFirstTokenP99ThresholdMs?: number;
  /** Share of API requests answered with a 5XX, in percent, above which the alarm fires. @default 5 */
  readonly api5xxRatePercent?: number;
  /** An email address that receives alarm notifications. @default - no notifications */
  readonly alarmEmail?: string;
  readonly logRetention?: logs.RetentionDays;
  /** What happens to the DynamoDB tables when the stack is deleted. @default RemovalPolicy.RETAIN */
  readonly tableRemovalPolicy?: RemovalPolicy;
  /** The blob bucket's retention and removal (files, outputs, workspace snapshots). @default see BlobBucketProps */
  readonly blobs?: BlobBucketProps;
  /**
   * OpenTelemetry trace export of the API and harness functions (docs/TELEMETRY.md): the OTLP/HTTP
   * base URL, and the SSM SecureString parameter holding the exporter's headers (read at cold
   * start, so a collector's key is in neither the template nor the functions' configuration).
   * @default no export
   */
  readonly telemetry?: { readonly endpoint: string; readonly headersParameterName?: string };
}

export const METRICS_NAMESPACE = 'Corral';
export const HARNESS_SERVICE = 'corral-harness';
export const API_SERVICE = 'corral-api';
export const PROXY_SERVICE = 'corral-credential-proxy';
/** Service name of the proxy service's log lines. */
export const PROXY_SERVICE_TIER = 'corral-proxy-service';
export const REAPER_SERVICE = 'corral-sandbox-reaper';
export const STREAM_TIER_SERVICE = 'corral-stream-tier';

/**
 * Corral on AWS, composed from one construct per concern. Nothing here runs while no session is
 * active: the tables and the queue are billed per request, functions per invocation, sandbox
 * tasks only exist while a session uses them. The one exception is the NAT of a VPC the stack
 * creates (see NetworkProps.nat).
 *
 * The credential proxy is a function in `network`, the only principal granted access to the
 * vault's secrets (`corral/vault/*` in Secrets Manager); the harness and the API may only invoke it.
 */
export class CorralStack extends Stack {
  readonly sessionLog: SessionLog;
  readonly wakeQueue: WakeQueue;
  readonly network: Network;
  readonly sandboxes: Sandboxes;
  readonly harness: HarnessStep;
  readonly api: Api;
  readonly credentialProxy: CredentialProxy;
  readonly sandboxReaper: SandboxReaper;
  readonly webhooks: Webhooks;
  readonly blobs: BlobBucket;
  readonly observability: Observability;
  /** Deployments' schedules: the schedule group, the scheduler role and the fire function. */
  readonly deployments: Deployments;
  /** The stream tier, with `streamTier: 'fargate'`. */
  readonly streamTier?: StreamTier;
  /** The proxy service, with `proxyService`. */
  readonly proxyService?: ProxyService;

  constructor(scope: Construct, id: string, props: CorralStackProps = {}) {
    super(scope, id, props);
    const harnessTimeout = props.harness?.timeout ?? Duration.minutes(15);

    const fargateStreams = (props.streamTier ?? 'lambda') === 'fargate';
    this.sessionLog = new SessionLog(this, 'SessionLog', {
      removalPolicy: props.tableRemovalPolicy,
      // The stream tier needs only which session grew: keys only, so no event travels the stream.
      eventsStream: fargateStreams ? dynamodb.StreamViewType.KEYS_ONLY : undefined,
    });
    this.wakeQueue = new WakeQueue(this, 'WakeQueue', {
      // 6 x the function timeout (AWS's advice for Lambda event sources); the step's heartbeat
      // brings a killed step's wake back within 2 minutes regardless (see WakeQueueProps).
      visibilityTimeout: visibilityForConsumer(harnessTimeout),
      maxReceiveCount: props.harness?.maxReceiveCount,
    });
    this.network = new Network(this, 'Network', props.network);
    this.sandboxes = new Sandboxes(this, 'Sandboxes', {
      logRetention: props.logRetention,
      ...props.sandbox,
      restrictEgress: !!props.proxyService,
      network: this.network,
    });
    this.harness = new HarnessStep(this, 'HarnessStep', {
      sessionLog: this.sessionLog,
      wakeQueue: this.wakeQueue,
      sandboxes: this.sandboxes,
      network: this.network,
      timeout: harnessTimeout,
      model: props.model,
      batchSize: props.harness?.batchSize,
      maxConcurrency: props.harness?.maxConcurrency,
      reservedConcurrency: props.harness?.reservedConcurrency,
      memorySize: props.harness?.memorySize,
      metricsSessionDimensions: props.harness?.metricsSessionDimensions,
      metricsNamespace: METRICS_NAMESPACE,
      serviceName: HARNESS_SERVICE,
      logRetention: props.logRetention,
      // With the proxy service, it alone reads the model key and the harness calls it (Bedrock has no key).
      modelThroughProxy: !!props.proxyService,
    });
    if (props.oidcIssuers) readOidcIssuers({ CORRAL_OIDC_ISSUERS: props.oidcIssuers });
    // A stack parameter, so the issuers change with a parameter update (no synthesis); the API
    // checks the value when it starts (lambdas/core/config.ts) and answers 500s while it is invalid.
    const oidcIssuers = new CfnParameter(this, 'OidcIssuers', {
      type: 'String',
      default: props.oidcIssuers ?? '',
      description: 'OIDC issuers whose bearer tokens the API accepts: a JSON array of {issuer, audiences, tenant, roles, groups_claim?, client_id?, scopes?, clock_skew_seconds?} (docs/SIGN-IN.md). Empty: API keys only.',
    });
    this.api = new Api(this, 'Api', {
      sessionLog: this.sessionLog,
      network: this.network,
      wakeQueue: this.wakeQueue,
      sandboxes: this.sandboxes,
      serviceName: API_SERVICE,
      metricsNamespace: METRICS_NAMESPACE,
      logRetention: props.logRetention,
      streamTimeout: props.streamTimeout,
      streamMaxConcurrency: props.streamMaxConcurrency,
      repositoryUrlAllow: props.repositoryUrlAllow,
      throttlingRateLimit: props.apiThrottlingRateLimit,
      throttlingBurstLimit: props.apiThrottlingBurstLimit,
      rateLimits: props.rateLimits,
      rateLimitShards: props.rateLimitShards,
      oidcIssuers: oidcIssuers.valueAsString,
      streamRoute: fargateStreams ? 'external' : 'lambda',
    });
    if (fargateStreams) {
      this.streamTier = new StreamTier(this, 'StreamTier', {
        ...props.streamTierSettings,
        api: this.api,
        sessionLog: this.sessionLog,
        network: this.network,
        sandboxes: this.sandboxes,
        serviceName: STREAM_TIER_SERVICE,
        logRetention: props.logRetention,
        streamTimeout: this.api.streamTimeout,
      });
    }
    if (props.proxyService) {
      this.proxyService = new ProxyService(this, 'ProxyService', {
        ...props.proxyService,
        sessionLog: this.sessionLog,
        network: this.network,
        sandboxes: this.sandboxes,
        serviceName: PROXY_SERVICE_TIER,
        logRetention: props.logRetention,
      });
      this.proxyService.allowHarness(this.harness.securityGroup);
      if (this.harness.modelKeyParameter) {
        this.proxyService.forwardModelCalls({ keyParameter: this.harness.modelKeyParameter, baseUrl: props.model?.baseUrl });
        this.harness.useModelProxy(this.proxyService.harnessUrl);
      }
      // The sandbox provider (the harness; the API, which hands sandboxes off) writes each task's
      // egress grant and tells the task where the proxy is.
      for (const fn of [this.harness.function, this.api.handler]) {
        for (const [k, v] of Object.entries(this.proxyService.providerEnvironment)) fn.addEnvironment(k, v);
      }
    }
    this.credentialProxy = new CredentialProxy(this, 'CredentialProxy', {
      sessionLog: this.sessionLog,
      network: this.network,
      serviceName: PROXY_SERVICE,
      metricsNamespace: METRICS_NAMESPACE,
      logRetention: props.logRetention,
    });
    // Private repositories on Fargate: channels the credential proxy opens, the proxy service serves.
    if (this.proxyService) this.credentialProxy.serveGitFrom(this.proxyService, this.sessionLog);
    this.sandboxReaper = new SandboxReaper(this, 'SandboxReaper', {
      sessionLog: this.sessionLog,
      sandboxes: this.sandboxes,
      network: this.network,
      serviceName: REAPER_SERVICE,
      metricsNamespace: METRICS_NAMESPACE,
      logRetention: props.logRetention,
      idleTimeout: props.sandboxIdleTimeout,
    });
    // Blobs: the API serves the Files API (files/) and copies and deletes workspace snapshots
    // (forks, session deletion, handoff: workspaces/), the harness delivers files, catalogues
    // outputs (files/) and restores workspaces (workspaces/, read only), the reaper saves the
    // workspaces it stops (workspaces/, write and delete only). The event stream and the
    // sandboxes have no access.
    this.blobs = new BlobBucket(this, 'Blobs', props.blobs);
    this.blobs.grantFilesApi(this.api.handler);
    this.blobs.grantWorkspacesApi(this.api.handler);
    this.blobs.grantHarness(this.harness.function);
    this.blobs.grantSnapshotWrite(this.sandboxReaper.function);
    for (const fn of [this.api.handler, this.harness.function, this.sandboxReaper.function]) {
      for (const [k, v] of Object.entries(this.blobs.environment)) fn.addEnvironment(k, v);
    }
    // The API refuses agents whose model the provider cannot serve: it knows the provider and its models.
    const { modelProvider, models } = modelEnvironment(props.model);
    for (const [k, v] of Object.entries(configEnvironment({ modelProvider, models }))) this.api.handler.addEnvironment(k, v);
    // Warm pools: the harness claims and refills (it may start tasks already), the reaper stops
    // the ones never claimed (it may stop them already); the API claims nothing.
    if (props.warmPool) {
      const sizes = Object.entries(props.warmPool.sizes).map(([env, size]) => `${env}=${size}`).join(',');
      const pool = configEnvironment({ warmPool: sizes, warmPoolMaxAgeMs: String(props.warmPool.maxAgeMs) });
      for (const fn of [this.harness.function, this.sandboxReaper.function]) for (const [k, v] of Object.entries(pool)) fn.addEnvironment(k, v);
      // The reaper frees the slots of the pooled tasks it stops: it deletes pool items, no other.
      this.sandboxReaper.function.addToRolePolicy(
        new iam.PolicyStatement({
          sid: 'WarmPoolSlots',
          actions: ['dynamodb:DeleteItem'],
          resources: [this.sessionLog.state.tableArn],
          conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [`${keys.warmPool('')}*`] } },
        }),
      );
    }
    // The harness (MCP calls, git channels) and the API (storing new secrets) invoke it; the
    // event stream and the sandboxes cannot.
    for (const fn of [this.harness.function, this.api.handler]) {
      this.credentialProxy.grantInvoke(fn);
      for (const [k, v] of Object.entries(this.credentialProxy.environment)) fn.addEnvironment(k, v);
    }

    // Deployments' schedules (docs/DEPLOYMENTS.md): the fire function makes the session create
    // the API makes, so it gets the API's environment as the API function has it by now; the API
    // function keeps the schedules in step with the deployments.
    this.deployments = new Deployments(this, 'Deployments', {
      sessionLog: this.sessionLog,
      wakeQueue: this.wakeQueue,
      network: this.network,
      environment: { ...this.api.environment, ...this.blobs.environment, ...this.credentialProxy.environment, ...configEnvironment({ modelProvider, models }) },
      serviceName: API_SERVICE,
      metricsNamespace: METRICS_NAMESPACE,
      logRetention: props.logRetention,
    });
    this.deployments.grantManageSchedules(this.api.handler);
    for (const [k, v] of Object.entries(this.deployments.environment)) this.api.handler.addEnvironment(k, v);

    // Trace export: the functions that run the API and the harness, the ones that make spans.
    if (props.telemetry) {
      const { endpoint, headersParameterName } = props.telemetry;
      for (const fn of [this.api.handler, this.api.streamHandler, this.harness.function]) {
        fn.addEnvironment('OTEL_EXPORTER_OTLP_ENDPOINT', endpoint);
        if (!headersParameterName) continue;
        fn.addEnvironment(CORRAL_ENV.otlpHeadersParameter, headersParameterName);
        fn.addToRolePolicy(
          new iam.PolicyStatement({
            actions: ['ssm:GetParameter'],
            resources: [Arn.format({ service: 'ssm', resource: 'parameter', resourceName: headersParameterName.replace(/^\//, ''), arnFormat: ArnFormat.SLASH_RESOURCE_NAME }, this)],
          }),
        );
      }
    }

    // Webhooks (docs/WEBHOOKS.md): the API publishes resource changes and writes signing secrets,
    // the harness publishes the log's status changes; only the delivery function reads secrets.
    this.webhooks = new Webhooks(this, 'Webhooks', {
      sessionLog: this.sessionLog,
      serviceName: 'corral-webhooks',
      metricsNamespace: METRICS_NAMESPACE,
      logRetention: props.logRetention,
      urlAllow: props.webhookUrlAllow,
    });
    this.webhooks.grantPublish(this.api.handler, { writeSecrets: true });
    this.webhooks.grantPublish(this.harness.function);

    let alarmTopic: sns.Topic | undefined;
    if (props.alarmEmail) {
      alarmTopic = new sns.Topic(this, 'AlarmTopic', { displayName: 'Corral alarms', enforceSSL: true });
      alarmTopic.addSubscription(new subscriptions.EmailSubscription(props.alarmEmail));
    }
    // The stream tier's alarms (its construct makes them) notify the same topic.
    for (const a of alarmTopic ? (this.streamTier?.alarms ?? []) : []) {
      a.addAlarmAction(new cloudwatchActions.SnsAction(alarmTopic!));
      a.addOkAction(new cloudwatchActions.SnsAction(alarmTopic!));
    }
    // Webhook deliveries dead-lettered after their horizon notify the same topic.
    if (alarmTopic) {
      this.webhooks.deadLetterAlarm.addAlarmAction(new cloudwatchActions.SnsAction(alarmTopic));
      this.webhooks.deadLetterAlarm.addOkAction(new cloudwatchActions.SnsAction(alarmTopic));
    }
    this.observability = new Observability(this, 'Observability', {
      metricsNamespace: METRICS_NAMESPACE,
      serviceName: HARNESS_SERVICE,
      wakeQueue: this.wakeQueue.queue,
      deadLetterQueue: this.wakeQueue.deadLetterQueue,
      harnessFunction: this.harness.function,
      functions: {
        // A wake stops starting actions a safety margin before the timeout (the harness-step
        // handler: 60 s, at most half the time left); an action in flight that eats half of it is
        // close to being killed mid-step.
        harness: this.watch(this.harness.function, harnessTimeout.minus(Duration.millis(Math.min(60_000, harnessTimeout.toMilliseconds() / 2) / 2))),
        api: this.watch(this.api.handler),
        // A stream ends itself 10 s before the timeout (lambdas/api/lambda.ts); one still open 5 s
        // before it did not.
        stream: this.watch(this.api.streamHandler, this.api.streamTimeout.minus(Duration.seconds(5))),
        credentialProxy: this.watch(this.credentialProxy.function),
        reaper: this.watch(this.sandboxReaper.function),
        webhooks: this.watch(this.webhooks.function),
        deploymentFire: this.watch(this.deployments.fireFunction),
      },
      apiStage: this.api.restApi.deploymentStage,
      api5xxRatePercent: props.api5xxRatePercent,
      timeToFirstTokenP95ThresholdMs: props.timeToFirstTokenP95ThresholdMs,
      timeToFirstTokenP99ThresholdMs: props.timeToFirstTokenP99ThresholdMs,
      alarmTopic,
    });

    // The webhook dead-letter alarm is one of the stack's: on the dashboard, with the others.
    this.observability.alarms.push(this.webhooks.deadLetterAlarm);
    this.observability.dashboard.addWidgets(new cloudwatch.AlarmWidget({ title: 'Webhook deliveries dead-lettered', alarm: this.webhooks.deadLetterAlarm, width: 24 }));

    new CfnOutput(this, 'ApiUrl', { value: this.api.url, description: 'Base URL for the SDK (baseURL)' });
    new CfnOutput(this, 'DashboardUrl', { value: this.observability.dashboardUrl });
    new CfnOutput(this, 'StateTableName', { value: this.sessionLog.state.tableName });
    new CfnOutput(this, 'EventsTableName', { value: this.sessionLog.events.tableName });
    new CfnOutput(this, 'BlobBucketName', { value: this.blobs.bucket.bucketName, description: 'S3 bucket of uploaded files, session outputs and workspace snapshots' });
    new CfnOutput(this, 'DeadLetterQueueUrl', { value: this.wakeQueue.deadLetterQueue.queueUrl });
    new CfnOutput(this, 'CreateApiKeyCommand', {
      value: `npx tsx scripts/create-api-key.ts --table ${this.sessionLog.state.tableName} --region ${this.region} --tenant default`,
      description: 'Creates an API key (printed once) for a tenant',
    });

    this.acknowledgeGrantWildcards();
  }

  private watch(fn: lambda.Function, durationThreshold?: Duration): WatchedFunction {
    if (!fn.timeout) throw new Error(`${fn.node.path} has no timeout`);
    return { function: fn, timeout: fn.timeout, durationThreshold };
  }

  /**
   * cdk-nag findings on the wildcards CDK's grants produce, each with its reason. Each names the
   * exact resource pattern, on the one policy that holds it (the function role's default policy),
   * so the same wildcard granted anywhere else is still reported.
   */
  private acknowledgeGrantWildcards(): void {
    const ref = (c: IConstruct) => this.getLogicalId(c.node.defaultChild as CfnElement);
    const acknowledge = (fn: lambda.IFunction, ...rules: Acknowledgment[]) => acknowledgeOn(defaultPolicyOf(fn), ...rules);
    const indexes = {
      id: `AwsSolutions-IAM5[Resource::<${ref(this.sessionLog.state)}.Arn>/index/*]`,
      reason: 'DynamoDB grants on the state table also cover its indexes (`<table>/index/*`, its one index gsi1): listings and the reaper query it.',
    };
    const tasks = this.sandboxes.clusters.map((cluster) => ({
      id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task/<${ref(cluster)}>/*]`,
      reason: 'Sandbox tasks get fresh ARNs; StopTask, DescribeTasks and TagResource are limited to tasks of the sandbox clusters.',
    }));
    acknowledge(this.harness.function, indexes, ...tasks);
    acknowledge(this.api.handler, indexes, ...tasks);
    acknowledge(this.api.streamHandler, indexes);
    acknowledge(this.credentialProxy.function, indexes);
    acknowledge(this.sandboxReaper.function, indexes, ...tasks);
    acknowledge(this.webhooks.function, indexes);
    acknowledge(this.deployments.fireFunction, indexes);
    acknowledge(
      this.api.handler,
      {
        id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:scheduler:<AWS::Region>:<AWS::AccountId>:schedule/<${this.getLogicalId(this.deployments.group)}>/corral-*]`,
        reason: "Each deployment's EventBridge schedules are named corral-<deployment id>, made as deployments are: the API manages only those of Corral's schedule group.",
      },
    );
    acknowledgeOn(defaultPolicyOf(this.deployments.schedulerRole), {
      id: `AwsSolutions-IAM5[Resource::<${ref(this.deployments.fireFunction)}.Arn>:*]`,
      reason: 'The scheduler role invokes the deployment-fire function only: the function and its versions (CDK grantInvoke), nothing else.',
    });
  }
}
