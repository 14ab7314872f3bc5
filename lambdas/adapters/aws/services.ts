import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ECSClient } from '@aws-sdk/client-ecs';
import { KMSClient } from '@aws-sdk/client-kms';
import { SQSClient } from '@aws-sdk/client-sqs';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { awsWebhookPublishing } from './webhooks.js';
import { readWebhookConfig } from '../../core/config.js';
import { CORRAL_ENV, readServicesConfig, readWarmPool, SANDBOX_ENV_NAMES, type ServicesConfig } from '../../core/config.js';
import { readDeploymentSchedulesConfig } from '../../core/config.js';
import { EventBridgeDeploymentSchedules } from './deployment-schedules.js';
import type { HarnessOptions } from '../../core/harness/harness.js';
import type { Logger } from '../../core/logger.js';
import type { ModelClient, ModelRequest, ModelResponse } from '../../core/harness/model.js';
import type { SandboxProvider } from '../../core/sandbox/types.js';
import { StateTableEgressGrants } from '../../core/sandbox/egress-grant.js';
import type { StateTable } from '../../core/store.js';
import { createServices, type CorralServices } from '../../core/services.js';
import { TablePreviewChannel } from '../../core/session/previews.js';
import type { StoredEvent } from '../../core/session/events.js';
import { CredentialProxyClient } from '../../core/vault/protocol.js';
import { createDynamoClient } from './dynamodb-client.js';
import { LambdaProxyTransport } from './credential-proxy-client.js';
import { LambdaInvoker } from './lambda-invoke.js';
import { DynamoEventLog } from './dynamodb-event-log.js';
import { EcsSandboxProvider } from './ecs-sandbox-provider.js';
import { taskStateSource } from './ecs-task-events.js';
import { DynamoStateTable } from './dynamodb-state-table.js';
import { KmsCapabilitySealer } from './kms-capability-sealer.js';
import { S3BlobStore } from './s3-blob-store.js';
import { S3Client } from './s3-client.js';
import { SqsWakeQueue } from './sqs-queue.js';

/**
 * The environment variables the CDK stack sets on the Lambda functions: the names and their
 * parsing live in lambdas/core/config.ts, which the constructs write the environment through.
 * @deprecated use `CORRAL_ENV` from lambdas/core/config.ts
 */
export const AWS_ENV = CORRAL_ENV;

type Env = Record<string, string | undefined>;

export type AwsConfig = ServicesConfig;

/** Read and check the API's and the harness's configuration from the environment (`readServicesConfig`). */
export function readAwsConfig(env: Env = process.env): AwsConfig {
  return readServicesConfig(env);
}

/**
 * The Fargate sandbox provider, from the configuration. The adapter is imported statically: in a
 * bundle, a dynamic `import()` makes esbuild wrap the module for lazy evaluation, and a wrapped
 * module keeps every export of the ECS client package (the aggregated client, every command and
 * schema), about 75 KB more per bundle for nothing.
 */
export async function createEcsSandboxProvider(
  config: NonNullable<AwsConfig['sandbox']>,
  ecs: ECSClient,
  state?: StateTable,
  credentialProxy?: CredentialProxyClient,
): Promise<SandboxProvider> {
  return new EcsSandboxProvider({
    // environment_variable credentials: their names and hosts (no secret), for the placeholders.
    ...(credentialProxy ? { environmentCredentials: { list: (sessionId: string) => credentialProxy.egressCredentials({ sessionId }) } } : {}),
    // Private repositories: a git channel from the credential proxy, served by the proxy service.
    ...(credentialProxy ? { gitChannels: credentialProxy } : {}),
    ...(config.taskEvents && state ? { taskStates: taskStateSource(state, config.containerName) } : {}),
    ecs,
    cluster: config.cluster,
    taskDefinition: config.taskDefinition,
    subnets: config.subnets,
    securityGroups: config.securityGroups,
    containerName: config.containerName,
    port: config.port,
    assignPublicIp: config.assignPublicIp,
    spot: config.spot,
    ...(config.proxyServiceAddress && state ? { egress: { address: config.proxyServiceAddress, grants: new StateTableEgressGrants(state) } } : {}),
  });
}

/** A logger whose methods take `(message, ...extra)`, like Powertools' Logger. */
export interface ExtraFieldsLogger {
  info(message: string, ...extra: never[]): void;
  warn(message: string, ...extra: never[]): void;
  error(message: string, ...extra: never[]): void;
}

/** The core's `(msg, fields)` logger over Powertools' Logger (fields become keys of the line). */
export function coreLogger(logger: ExtraFieldsLogger): Logger {
  const call = (fn: (message: string, ...extra: never[]) => void) => (msg: string, fields?: Record<string, unknown>) =>
    fields ? fn.call(logger, msg, fields as never) : fn.call(logger, msg);
  return { info: call(logger.info), warn: call(logger.warn), error: call(logger.error) };
}

/**
 * The model of services built without one: the API's. The API never calls the model (only the
 * harness step does), and leaving the real one out keeps the Anthropic SDK and the SSM client out
 * of the API's bundle. A call is a programming error, said as such.
 */
export const NO_MODEL: ModelClient = {
  complete(_request: ModelRequest): Promise<ModelResponse> {
    return Promise.reject(new Error('these services were built without a model (the API never calls it; the harness step passes createAwsModel)'));
  },
};

export interface AwsServicesOptions {
  env?: Env;
  /** Clients to use (tests point DynamoDB at dynalite); created with default settings when absent. */
  clients?: { dynamodb?: DynamoDBClient; sqs?: SQSClient; ecs?: ECSClient; lambda?: Pick<LambdaInvoker, 'invoke'>; kms?: KMSClient; s3?: S3Client };
  /** Wraps every AWS client created here (the Powertools tracer's `captureAWSv3Client`). */
  instrument?: <T>(client: T) => T;
  /** A sandbox provider to use instead of the Fargate one from the configuration. */
  sandboxProvider?: SandboxProvider;
  /**
   * The model client, or how to build it from the configuration (the harness step passes
   * `createAwsModel` from ./model.js: the Messages API, its key read from SSM). Absent: `NO_MODEL`,
   * for the API, which never calls the model and so never touches its key.
   */
  model?: ModelClient | ((config: AwsConfig, instrument: <T>(client: T) => T) => Promise<ModelClient>);
  harness?: HarnessOptions;
  /** Called after each append to the session log (the handlers put the position on log lines). */
  onAppend?: (sessionId: string, stored: StoredEvent) => void;
}

export interface AwsServices {
  services: CorralServices;
  config: AwsConfig;
  clients: { dynamodb: DynamoDBClient; sqs: SQSClient; ecs: ECSClient };
}

/** The API's and the harness's webhook publishing, when `CORRAL_WEBHOOK_QUEUE_URL` is set. */
function awsWebhooks(env: Record<string, string | undefined>, sqs: SQSClient, instrument: <T>(c: T) => T) {
  const config = readWebhookConfig(env);
  if (!config.queueUrl) return undefined;
  return awsWebhookPublishing({ ...config, queueUrl: config.queueUrl }, { sqs, secrets: instrument(new SecretsManagerClient({})) });
}

/**
 * Corral's services on AWS: the same `createServices` the local runtime calls, wired to DynamoDB,
 * SQS FIFO and Fargate instead of dynalite, an in-process queue and local processes.
 */
export async function createAwsServices(opts: AwsServicesOptions = {}): Promise<AwsServices> {
  const config = readAwsConfig(opts.env ?? process.env);
  const instrument = opts.instrument ?? (<T>(c: T) => c);
  const dynamodb = instrument(opts.clients?.dynamodb ?? createDynamoClient());
  const sqs = instrument(opts.clients?.sqs ?? new SQSClient({}));
  const ecs = instrument(opts.clients?.ecs ?? new ECSClient({}));

  const model = typeof opts.model === 'function' ? await opts.model(config, instrument) : (opts.model ?? NO_MODEL);

  // The credential proxy: a function the harness and the API invoke; it alone reads secrets.
  const credentialProxy = config.credentialProxyFunction
    ? new CredentialProxyClient(
        new LambdaProxyTransport(
          opts.clients?.lambda ?? new LambdaInvoker({ credentials: dynamodb.config.credentials, region: dynamodb.config.region }),
          config.credentialProxyFunction,
        ),
      )
    : undefined;

  let sandboxProvider = opts.sandboxProvider;
  if (!sandboxProvider) {
    if (!config.sandbox) {
      throw new Error(`Corral configuration is invalid: ${SANDBOX_ENV_NAMES.join(', ')} are required`);
    }
    sandboxProvider = await createEcsSandboxProvider(config.sandbox, ecs, new DynamoStateTable(dynamodb, config.stateTable), credentialProxy);
  }

  // Sandbox capabilities are sealed with data keys of the stack's KMS key (only this function's
  // role and the other caller's may use it), so the state table alone opens no sandbox.
  const sandboxCapabilitySealer = config.sandboxCapabilityKey
    ? new KmsCapabilitySealer({ kms: instrument(opts.clients?.kms ?? new KMSClient({})), keyId: config.sandboxCapabilityKey })
    : undefined;

  // Blobs (files, outputs, workspace snapshots) in the stack's bucket; the function's role decides
  // which prefixes it may touch.
  // The minimal S3 client signs with the DynamoDB client's credentials (one default chain, resolved
  // once); it is not an SDK client, so the tracer does not wrap it.
  const blobs = config.blobBucket
    ? new S3BlobStore({ s3: opts.clients?.s3 ?? new S3Client({ credentials: dynamodb.config.credentials, region: dynamodb.config.region }), bucket: config.blobBucket })
    : undefined;
  const table = new DynamoStateTable(dynamodb, config.stateTable);
  const services = createServices({
    table,
    events: new DynamoEventLog(dynamodb, config.eventsTable, opts.onAppend),
    queue: new SqsWakeQueue(sqs, config.wakeQueueUrl),
    sandboxProvider,
    model,
    harness: opts.harness,
    leaseTtlMs: config.leaseTtlMs,
    credentialProxy,
    repositoryUrlAllow: config.repositoryUrlAllow,
    models: { provider: config.model.provider, allowed: config.model.models },
    rateLimits: config.rateLimits,
    rateLimitShards: config.rateLimitShards,
    sandboxCapabilitySealer,
    blobs,
    // The harness and the stream are different functions: previews (`event_deltas`) go through
    // short-lived items of the state table (core/session/previews.ts, docs/ARCHITECTURE.md).
    previews: new TablePreviewChannel(table),
    // Only the harness is given CORRAL_WARM_POOL (the stack): it claims and refills.
    warmPool: readWarmPool(opts.env ?? process.env),
    // Webhooks when the stack gives this function their queue (docs/WEBHOOKS.md).
    webhooks: awsWebhooks(opts.env ?? process.env, sqs, instrument),
  });
  // Deployments' schedules on EventBridge Scheduler (the API function's; docs/DEPLOYMENTS.md).
  const schedules = readDeploymentSchedulesConfig(opts.env ?? process.env);
  if (schedules) services.deployments.schedules = new EventBridgeDeploymentSchedules({ ...schedules, credentials: dynamodb.config.credentials, region: dynamodb.config.region });
  return { services, config, clients: { dynamodb, sqs, ecs } };
}
