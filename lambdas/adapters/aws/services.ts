import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ECSClient } from '@aws-sdk/client-ecs';
import { KMSClient } from '@aws-sdk/client-kms';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { SQSClient } from '@aws-sdk/client-sqs';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { CORRAL_ENV, readServicesConfig, SANDBOX_ENV_NAMES, type ServicesConfig } from '../../core/config.js';
import type { HarnessOptions } from '../../core/harness/harness.js';
import type { Logger } from '../../core/logger.js';
import { AnthropicModel, type ModelClient } from '../../core/harness/model.js';
import type { SandboxProvider } from '../../core/sandbox/types.js';
import { createServices, type CorralServices } from '../../core/services.js';
import type { StoredEvent } from '../../core/session/events.js';
import { CredentialProxyClient } from '../../core/vault/protocol.js';
import { LambdaProxyTransport } from './credential-proxy-client.js';
import { DynamoEventLog } from './dynamodb-event-log.js';
import { DynamoStateTable } from './dynamodb-state-table.js';
import { KmsCapabilitySealer } from './kms-capability-sealer.js';
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
 * The Fargate sandbox provider, from the configuration. Imported lazily so that a process that
 * never starts a sandbox does not load the ECS adapter until it builds its services.
 */
export async function createEcsSandboxProvider(config: NonNullable<AwsConfig['sandbox']>, ecs: ECSClient): Promise<SandboxProvider> {
  const { EcsSandboxProvider } = await import('./ecs-sandbox-provider.js');
  return new EcsSandboxProvider({
    ecs,
    cluster: config.cluster,
    taskDefinition: config.taskDefinition,
    subnets: config.subnets,
    securityGroups: config.securityGroups,
    containerName: config.containerName,
    port: config.port,
    assignPublicIp: config.assignPublicIp,
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

/** The model API key, read once from an SSM SecureString parameter. */
export async function readModelApiKey(ssm: SSMClient, parameterName: string): Promise<string> {
  const out = await ssm.send(new GetParameterCommand({ Name: parameterName, WithDecryption: true }));
  const value = out.Parameter?.Value;
  if (!value) throw new Error(`SSM parameter ${parameterName} has no value`);
  return value;
}

export interface AwsServicesOptions {
  env?: Env;
  /** Clients to use (tests point DynamoDB at dynalite); created with default settings when absent. */
  clients?: { dynamodb?: DynamoDBClient; sqs?: SQSClient; ecs?: ECSClient; ssm?: SSMClient; lambda?: LambdaClient; kms?: KMSClient };
  /** Wraps every AWS client created here (the Powertools tracer's `captureAWSv3Client`). */
  instrument?: <T>(client: T) => T;
  /** A sandbox provider to use instead of the Fargate one from the configuration. */
  sandboxProvider?: SandboxProvider;
  /** A model client to use instead of the Messages API from the configuration. */
  model?: ModelClient;
  /**
   * Read the model API key from the SSM parameter `CORRAL_MODEL_API_KEY_PARAMETER` names. Only the harness calls the
   * model; the API builds the same services without ever touching the key.
   */
  loadModelKey?: boolean;
  harness?: HarnessOptions;
  /** Called after each append to the session log (the handlers put the position on log lines). */
  onAppend?: (sessionId: string, stored: StoredEvent) => void;
}

export interface AwsServices {
  services: CorralServices;
  config: AwsConfig;
  clients: { dynamodb: DynamoDBClient; sqs: SQSClient; ecs: ECSClient };
}

/**
 * Corral's services on AWS: the same `createServices` the local runtime calls, wired to DynamoDB,
 * SQS FIFO and Fargate instead of dynalite, an in-process queue and local processes.
 */
export async function createAwsServices(opts: AwsServicesOptions = {}): Promise<AwsServices> {
  const config = readAwsConfig(opts.env ?? process.env);
  const instrument = opts.instrument ?? (<T>(c: T) => c);
  const dynamodb = instrument(opts.clients?.dynamodb ?? new DynamoDBClient({}));
  const sqs = instrument(opts.clients?.sqs ?? new SQSClient({}));
  const ecs = instrument(opts.clients?.ecs ?? new ECSClient({}));

  let sandboxProvider = opts.sandboxProvider;
  if (!sandboxProvider) {
    if (!config.sandbox) {
      throw new Error(`Corral configuration is invalid: ${SANDBOX_ENV_NAMES.join(', ')} are required`);
    }
    sandboxProvider = await createEcsSandboxProvider(config.sandbox, ecs);
  }

  let model = opts.model;
  if (!model) {
    let apiKey: string | undefined;
    if (opts.loadModelKey && config.model.apiKeyParameter) {
      const ssm = instrument(opts.clients?.ssm ?? new SSMClient({}));
      apiKey = await readModelApiKey(ssm, config.model.apiKeyParameter);
    }
    model = new AnthropicModel({ apiKey, baseURL: config.model.baseUrl });
  }

  // The credential proxy: a function the harness and the API invoke; it alone reads secrets.
  const credentialProxy = config.credentialProxyFunction
    ? new CredentialProxyClient(
        new LambdaProxyTransport(instrument(opts.clients?.lambda ?? new LambdaClient({})), config.credentialProxyFunction),
      )
    : undefined;

  // Sandbox capabilities are sealed with data keys of the stack's KMS key (only this function's
  // role and the other caller's may use it), so the state table alone opens no sandbox.
  const sandboxCapabilitySealer = config.sandboxCapabilityKey
    ? new KmsCapabilitySealer({ kms: instrument(opts.clients?.kms ?? new KMSClient({})), keyId: config.sandboxCapabilityKey })
    : undefined;

  const services = createServices({
    table: new DynamoStateTable(dynamodb, config.stateTable),
    events: new DynamoEventLog(dynamodb, config.eventsTable, opts.onAppend),
    queue: new SqsWakeQueue(sqs, config.wakeQueueUrl),
    sandboxProvider,
    model,
    harness: opts.harness,
    leaseTtlMs: config.leaseTtlMs,
    credentialProxy,
    repositoryUrlAllow: config.repositoryUrlAllow,
    rateLimits: config.rateLimits,
    rateLimitShards: config.rateLimitShards,
    sandboxCapabilitySealer,
  });
  return { services, config, clients: { dynamodb, sqs, ecs } };
}
