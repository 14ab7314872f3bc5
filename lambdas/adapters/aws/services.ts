import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ECSClient } from '@aws-sdk/client-ecs';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { SQSClient } from '@aws-sdk/client-sqs';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { z } from 'zod';
import type { HarnessOptions } from '../../core/harness/harness.js';
import type { Logger } from '../../core/logger.js';
import { AnthropicModel, type ModelClient } from '../../core/harness/model.js';
import type { SandboxProvider } from '../../core/sandbox/types.js';
import { createServices, type CorralServices } from '../../core/services.js';
import type { StoredEvent } from '../../core/session/events.js';
import { CredentialProxyClient } from '../../core/vault/protocol.js';
import { LambdaProxyTransport } from '../../credential-proxy/lambda-transport.js';
import { DynamoEventLog } from './dynamodb-event-log.js';
import { DynamoStateTable } from './dynamodb-state-table.js';
import { SqsWakeQueue } from './sqs-queue.js';

/**
 * Environment variables the CDK stack sets on the Lambda functions (infra/lib/constructs/*.ts
 * writes them from the same names). Everything the AWS wiring needs comes from here.
 */
export const AWS_ENV = {
  eventsTable: 'CORRAL_EVENTS_TABLE',
  stateTable: 'CORRAL_STATE_TABLE',
  wakeQueueUrl: 'CORRAL_WAKE_QUEUE_URL',
  sandboxCluster: 'CORRAL_SANDBOX_CLUSTER',
  sandboxTaskDefinition: 'CORRAL_SANDBOX_TASK_DEFINITION',
  sandboxSubnets: 'CORRAL_SANDBOX_SUBNETS',
  sandboxSecurityGroups: 'CORRAL_SANDBOX_SECURITY_GROUPS',
  sandboxContainer: 'CORRAL_SANDBOX_CONTAINER',
  sandboxPort: 'CORRAL_SANDBOX_PORT',
  sandboxAssignPublicIp: 'CORRAL_SANDBOX_ASSIGN_PUBLIC_IP',
  modelBaseUrl: 'ANTHROPIC_BASE_URL',
  modelApiKeyParameter: 'CORRAL_MODEL_API_KEY_PARAMETER',
  leaseTtlMs: 'CORRAL_LEASE_TTL_MS',
  metricsSessionDimensions: 'CORRAL_METRICS_SESSION_DIMENSIONS',
  /** The credential proxy function (name or ARN) the harness and the API invoke. */
  credentialProxyFunction: 'CORRAL_CREDENTIAL_PROXY_FUNCTION',
} as const;

type Env = Record<string, string | undefined>;

const list = z
  .string()
  .transform((s) => s.split(',').map((p) => p.trim()).filter(Boolean))
  .pipe(z.array(z.string()).min(1));
const flag = z.enum(['true', 'false']).transform((v) => v === 'true');

const ConfigSchema = z.object({
  eventsTable: z.string().min(1),
  stateTable: z.string().min(1),
  wakeQueueUrl: z.string().min(1),
  sandbox: z
    .object({
      cluster: z.string().min(1),
      taskDefinition: z.string().min(1),
      subnets: list,
      securityGroups: list,
      containerName: z.string().min(1),
      port: z.coerce.number().int().min(1).max(65535).default(8080),
      assignPublicIp: flag.default(false),
    })
    .optional(),
  model: z.object({
    baseUrl: z.string().url().optional(),
    apiKeyParameter: z.string().min(1).optional(),
  }),
  leaseTtlMs: z.coerce.number().int().positive().optional(),
  credentialProxyFunction: z.string().min(1).optional(),
});

export type AwsConfig = z.infer<typeof ConfigSchema>;

/**
 * Read and check the configuration from the environment. The sandbox block is all or nothing:
 * when none of its variables is set it is absent (a caller may bring its own provider); a
 * partial one is an error that names what is missing.
 */
export function readAwsConfig(env: Env = process.env): AwsConfig {
  const v = (name: string) => (env[name] === '' ? undefined : env[name]);
  const sandboxVars = [
    AWS_ENV.sandboxCluster,
    AWS_ENV.sandboxTaskDefinition,
    AWS_ENV.sandboxSubnets,
    AWS_ENV.sandboxSecurityGroups,
    AWS_ENV.sandboxContainer,
  ];
  const anySandbox = sandboxVars.some((name) => v(name) !== undefined);
  const raw = {
    eventsTable: v(AWS_ENV.eventsTable),
    stateTable: v(AWS_ENV.stateTable),
    wakeQueueUrl: v(AWS_ENV.wakeQueueUrl),
    sandbox: anySandbox
      ? {
          cluster: v(AWS_ENV.sandboxCluster),
          taskDefinition: v(AWS_ENV.sandboxTaskDefinition),
          subnets: v(AWS_ENV.sandboxSubnets),
          securityGroups: v(AWS_ENV.sandboxSecurityGroups),
          containerName: v(AWS_ENV.sandboxContainer),
          port: v(AWS_ENV.sandboxPort),
          assignPublicIp: v(AWS_ENV.sandboxAssignPublicIp),
        }
      : undefined,
    model: { baseUrl: v(AWS_ENV.modelBaseUrl), apiKeyParameter: v(AWS_ENV.modelApiKeyParameter) },
    leaseTtlMs: v(AWS_ENV.leaseTtlMs),
    credentialProxyFunction: v(AWS_ENV.credentialProxyFunction),
  };
  const parsed = ConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const names: Record<string, string> = {
      eventsTable: AWS_ENV.eventsTable,
      stateTable: AWS_ENV.stateTable,
      wakeQueueUrl: AWS_ENV.wakeQueueUrl,
      'sandbox.cluster': AWS_ENV.sandboxCluster,
      'sandbox.taskDefinition': AWS_ENV.sandboxTaskDefinition,
      'sandbox.subnets': AWS_ENV.sandboxSubnets,
      'sandbox.securityGroups': AWS_ENV.sandboxSecurityGroups,
      'sandbox.containerName': AWS_ENV.sandboxContainer,
      'sandbox.port': AWS_ENV.sandboxPort,
      'sandbox.assignPublicIp': AWS_ENV.sandboxAssignPublicIp,
      'model.baseUrl': AWS_ENV.modelBaseUrl,
      'model.apiKeyParameter': AWS_ENV.modelApiKeyParameter,
      leaseTtlMs: AWS_ENV.leaseTtlMs,
      credentialProxyFunction: AWS_ENV.credentialProxyFunction,
    };
    const problems = parsed.error.issues.map((i) => {
      const path = i.path.join('.');
      return `${names[path] ?? path}: ${i.message}`;
    });
    throw new Error(`Corral configuration is invalid: ${problems.join('; ')}`);
  }
  return parsed.data;
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
  clients?: { dynamodb?: DynamoDBClient; sqs?: SQSClient; ecs?: ECSClient; ssm?: SSMClient; lambda?: LambdaClient };
  /** Wraps every AWS client created here (the Powertools tracer's `captureAWSv3Client`). */
  instrument?: <T>(client: T) => T;
  /** A sandbox provider to use instead of the Fargate one from the configuration. */
  sandboxProvider?: SandboxProvider;
  /** A model client to use instead of the Messages API from the configuration. */
  model?: ModelClient;
  /**
   * Read the model API key from `CORRAL_MODEL_API_KEY_PARAMETER`. Only the harness calls the
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
      throw new Error(
        `Corral configuration is invalid: ${AWS_ENV.sandboxCluster}, ${AWS_ENV.sandboxTaskDefinition}, ` +
          `${AWS_ENV.sandboxSubnets}, ${AWS_ENV.sandboxSecurityGroups} and ${AWS_ENV.sandboxContainer} are required`,
      );
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

  const services = createServices({
    table: new DynamoStateTable(dynamodb, config.stateTable),
    events: new DynamoEventLog(dynamodb, config.eventsTable, opts.onAppend),
    queue: new SqsWakeQueue(sqs, config.wakeQueueUrl),
    sandboxProvider,
    model,
    harness: opts.harness,
    leaseTtlMs: config.leaseTtlMs,
    credentialProxy,
  });
  return { services, config, clients: { dynamodb, sqs, ecs } };
}
