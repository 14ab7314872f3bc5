/**
 * Corral's configuration contract on AWS: the environment variables the deployed functions read,
 * and the parsers that read them. The CDK app (infra/) writes every function's environment
 * through these names and the Lambda entries read it through these parsers, so the two cannot
 * drift; `test/infra/config-contract.test.ts` parses each synthesized function's environment with
 * its entry's parser.
 *
 * Imported by the CDK app too: nothing here may import the AWS SDK or anything that starts work
 * at module load.
 *
 * `ANTHROPIC_API_KEY` is deliberately not part of it: on AWS the model key is read from SSM
 * (`CORRAL_MODEL_API_KEY_PARAMETER`) and never placed in a function's environment.
 */
import { en } from 'zod/locales';
import * as z from 'zod/mini';
import { REPOSITORY_URL_ALLOW_ENV, parseRepositoryUrlAllow } from './resources/repository-url.js';
import { DEFAULT_RATE_LIMIT_SHARDS, parseRateLimits } from './resources/rate-limits.js';
import { isAllowedIssuerUrl, type OidcIssuer } from './auth/oidc.js';
import { ROLES } from './auth/roles.js';
import { MODEL_TABLE } from './harness/model-ids.js';
import type { BackoffPolicy } from './webhooks/backoff.js';

/** Every variable, by the name the code uses for it. */
export const CORRAL_ENV = {
  /** The events table (session log): one item per event. API, harness. */
  eventsTable: 'CORRAL_EVENTS_TABLE',
  /** The state table (agents, sessions, leases, sandboxes, API keys, rate limits). Every function. */
  stateTable: 'CORRAL_STATE_TABLE',
  /** URL of the SQS FIFO wake queue. API, harness. */
  wakeQueueUrl: 'CORRAL_WAKE_QUEUE_URL',
  /** ECS cluster (name or ARN) sandbox tasks run in, or several, comma-separated (CDK context `sandboxClusters`). API, harness, reaper. */
  sandboxCluster: 'CORRAL_SANDBOX_CLUSTER',
  /** The sandbox task definition (ARN) RunTask starts. API, harness. */
  sandboxTaskDefinition: 'CORRAL_SANDBOX_TASK_DEFINITION',
  /** Comma-separated subnet ids for sandbox tasks. API, harness. */
  sandboxSubnets: 'CORRAL_SANDBOX_SUBNETS',
  /** Comma-separated security group ids for sandbox tasks. API, harness. */
  sandboxSecurityGroups: 'CORRAL_SANDBOX_SECURITY_GROUPS',
  /** Name of the sandbox agent's container in the task definition. API, harness. */
  sandboxContainer: 'CORRAL_SANDBOX_CONTAINER',
  /** Port the sandbox agent listens on. Optional, default 8080. */
  sandboxPort: 'CORRAL_SANDBOX_PORT',
  /** `true` gives sandbox tasks public IPs (subnets without NAT). Optional, default `false`. */
  sandboxAssignPublicIp: 'CORRAL_SANDBOX_ASSIGN_PUBLIC_IP',
  /**
   * `true`: ECS's task state change events of the sandbox cluster are recorded in the state table
   * (the stack's rule, to the reaper), so a starting task is watched there instead of with
   * DescribeTasks. Optional, default `false`. API, harness.
   */
  sandboxTaskEvents: 'CORRAL_SANDBOX_TASK_EVENTS',
  /** `true`: sandbox tasks run on Fargate Spot, on demand when Spot has no capacity. Optional, default `false`. API, harness. */
  sandboxSpot: 'CORRAL_SANDBOX_SPOT',
  /**
   * `host:port` of the proxy service's sandbox port (CDK context `proxyService=fargate`): sandbox
   * tasks get an egress grant and reach the internet only through it. Optional, default none (the
   * sandbox security group allows all outbound traffic). API, harness.
   */
  proxyServiceAddress: 'CORRAL_PROXY_SERVICE_ADDRESS',
  /** A Messages-API-compatible endpoint. Optional, default the Anthropic API. Harness. */
  modelBaseUrl: 'ANTHROPIC_BASE_URL',
  /** Name of the SSM SecureString parameter holding the model key (`anthropic`, `gateway`). Harness. */
  modelApiKeyParameter: 'CORRAL_MODEL_API_KEY_PARAMETER',
  /**
   * Where the harness sends its model calls (`anthropic`, `gateway`) without a key: the proxy
   * service's harness-facing port (`http://<address>:8081/model`), which alone reads the key and
   * forwards them. Optional; without it the harness reads the key itself (the parameter above). Harness.
   */
  modelProxyUrl: 'CORRAL_MODEL_PROXY_URL',
  /**
   * Who serves model calls: `anthropic` (the Claude API, a key), `bedrock` (Amazon Bedrock with the
   * function's IAM role, no key) or `gateway` (a Messages-compatible endpoint at `ANTHROPIC_BASE_URL`,
   * a key). Optional, default `anthropic`. API (refuses agents the provider cannot serve), harness.
   */
  modelProvider: 'CORRAL_MODEL_PROVIDER',
  /**
   * Comma-separated Claude model ids the deployment serves (with `bedrock`, the ones its IAM grants).
   * Optional, default any (with `bedrock`, any in the model table). API, harness.
   */
  models: 'CORRAL_MODELS',
  /** The region Bedrock is called in. Optional, default `AWS_REGION`. Harness. */
  bedrockRegion: 'CORRAL_BEDROCK_REGION',
  /** Bedrock inference-profile prefix (`us`, `eu`, `apac`, `global`...). Optional, default the region's geography. Harness. */
  bedrockProfile: 'CORRAL_BEDROCK_PROFILE',
  /** How long a harness's session lease lasts without renewal, ms. Optional. */
  leaseTtlMs: 'CORRAL_LEASE_TTL_MS',
  /** Comma-separated session attributes added as metric dimensions: `agent`, `environment`. Optional. Harness. */
  metricsSessionDimensions: 'CORRAL_METRICS_SESSION_DIMENSIONS',
  /** The credential proxy function (name or ARN) the harness and the API invoke. Optional. */
  credentialProxyFunction: 'CORRAL_CREDENTIAL_PROXY_FUNCTION',
  /** How long before the function's timeout a wake stops starting new actions, ms. Optional. Harness. */
  wakeSafetyMarginMs: 'CORRAL_WAKE_SAFETY_MARGIN_MS',
  /** A sandbox no tool call used for this long is stopped, ms. Optional, default 15 minutes. Reaper. */
  sandboxIdleMs: 'CORRAL_SANDBOX_IDLE_MS',
  /**
   * Warm pools: `<environment id>=<size>,...`, sandboxes started ahead per environment
   * (`readWarmPool`, lambdas/core/sandbox/warm-pool.ts). Optional, default none. Harness, reaper.
   */
  warmPool: 'CORRAL_WARM_POOL',
  /** A pooled sandbox never claimed is stopped this long after it started, ms. Optional, default 30 minutes. Harness, reaper. */
  warmPoolMaxAgeMs: 'CORRAL_WARM_POOL_MAX_AGE_MS',
  /** Most bytes of files a workspace snapshot holds. Optional, default 1 GiB. Reaper, harness. */
  workspaceSnapshotMaxBytes: 'CORRAL_WORKSPACE_SNAPSHOT_MAX_BYTES',
  /** Most entries (files, directories, links) a workspace snapshot holds. Optional, default 200000. Reaper, harness. */
  workspaceSnapshotMaxEntries: 'CORRAL_WORKSPACE_SNAPSHOT_MAX_ENTRIES',
  /** The KMS key new vault secrets are encrypted with. Optional. Credential proxy. */
  vaultKmsKeyId: 'CORRAL_VAULT_KMS_KEY_ID',
  /** The URL sandboxes reach the git channel at: the proxy service's `http://<address>:3128/git`. Optional. Credential proxy. */
  gitProxyUrl: 'CORRAL_GIT_PROXY_URL',
  /**
   * ARN of the KMS key that seals sandbox capabilities in the state table (data keys, see
   * lambdas/adapters/aws/kms-capability-sealer.ts). API (not the stream), harness. Without it
   * capabilities are stored as they are.
   */
  sandboxCapabilityKey: 'CORRAL_SANDBOX_CAPABILITY_KEY',
  /**
   * Repository origins accepted besides public `https://` ones, comma-separated
   * (`parseRepositoryUrlAllow`). Optional, default none. API.
   */
  repositoryUrlAllow: REPOSITORY_URL_ALLOW_ENV,
  /**
   * Per-tenant requests per minute by class, `create=N,write=N,read=N` (any subset over the
   * defaults, `parseRateLimits`; 0 turns a class's limit off). Optional, default
   * `DEFAULT_RATE_LIMITS`. API (both functions).
   */
  rateLimits: 'CORRAL_RATE_LIMITS',
  /** Most shards a tenant's counter of one class is spread over (`shardPlan`). Optional, default 10. API (both functions). */
  rateLimitShards: 'CORRAL_RATE_LIMIT_SHARDS',
  /**
   * The S3 bucket of blobs (uploaded files, session outputs, workspace snapshots), keys under
   * `files/` and `workspaces/` (lambdas/core/storage/blob-store.ts). API, harness, reaper; each
   * role may touch only its prefixes. Optional: without it there is no blob store.
   */
  blobBucket: 'CORRAL_BLOB_BUCKET',
  /**
   * The OIDC issuers whose bearer tokens the API accepts, as JSON (`readOidcIssuers`,
   * docs/SIGN-IN.md). Optional, default none (API keys only). API (both functions).
   */
  oidcIssuers: 'CORRAL_OIDC_ISSUERS',
  /**
   * Name of an SSM SecureString parameter holding the OTLP exporter's headers
   * (`key=value,...`, as `OTEL_EXPORTER_OTLP_HEADERS`), read once per cold start, so that a
   * collector's key is in neither the template nor the environment. Optional; only with
   * `OTEL_EXPORTER_OTLP_ENDPOINT` (docs/TELEMETRY.md). API (both functions), harness.
   */
  otlpHeadersParameter: 'CORRAL_OTLP_HEADERS_PARAMETER',
  /**
   * Deployments' schedules on EventBridge Scheduler (docs/DEPLOYMENTS.md): the schedule group, the
   * role the scheduler assumes, and the deployment-fire function it invokes. Optional, all three
   * or none (`readDeploymentSchedulesConfig`): without them deployments are stored and run now
   * works, but no schedule fires. API (both functions).
   */
  scheduleGroup: 'CORRAL_SCHEDULE_GROUP',
  schedulerRoleArn: 'CORRAL_SCHEDULER_ROLE_ARN',
  deploymentFireArn: 'CORRAL_DEPLOYMENT_FIRE_ARN',
  /**
   * Webhook origins accepted besides public `https://` ones, comma-separated (`http://127.0.0.1`
   * for a receiver on loopback; core/webhooks/url.ts). Optional, default none. API, webhook deliverer.
   */
  webhookUrlAllow: 'CORRAL_WEBHOOK_URL_ALLOW',
  /** URL of the SQS queue that asks the webhook deliverer to run (docs/WEBHOOKS.md). Optional: without it, no webhooks. API, harness. */
  webhookQueueUrl: 'CORRAL_WEBHOOK_QUEUE_URL',
  /** URL of the SQS dead-letter queue of deliveries past their retry horizon. Webhook deliverer. */
  webhookDeadLetterQueueUrl: 'CORRAL_WEBHOOK_DEAD_LETTER_QUEUE_URL',
  /** The Secrets Manager name prefix of webhook signing secrets (`<prefix>webhook/<endpoint id>`). API (writes), webhook deliverer (reads). */
  webhookSecretPrefix: 'CORRAL_WEBHOOK_SECRET_PREFIX',
  /** Webhook retry schedule, `base=MS,cap=MS,horizon=MS` (any subset; core/webhooks/backoff.ts). Optional, default 5 s, 1 h, 24 h. Webhook deliverer. */
  webhookBackoff: 'CORRAL_WEBHOOK_BACKOFF',
} as const;

/** Where deployments' schedules go on AWS, or undefined when the deployment of Corral has none. */
export function readDeploymentSchedulesConfig(env: Record<string, string | undefined>): { group: string; roleArn: string; targetArn: string } | undefined {
  const group = env[CORRAL_ENV.scheduleGroup] || undefined;
  const roleArn = env[CORRAL_ENV.schedulerRoleArn] || undefined;
  const targetArn = env[CORRAL_ENV.deploymentFireArn] || undefined;
  if (!group && !roleArn && !targetArn) return undefined;
  const missing = [!group && CORRAL_ENV.scheduleGroup, !roleArn && CORRAL_ENV.schedulerRoleArn, !targetArn && CORRAL_ENV.deploymentFireArn].filter(Boolean);
  if (missing.length) throw new Error(`Corral configuration of deployments' schedules is invalid: ${missing.join(', ')}: required with the others`);
  if (!/^arn:aws[a-z-]*:iam::\d{12}:role\//.test(roleArn!)) throw new Error(`Corral configuration of deployments' schedules is invalid: ${CORRAL_ENV.schedulerRoleArn}: expected an IAM role ARN`);
  if (!/^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:/.test(targetArn!)) throw new Error(`Corral configuration of deployments' schedules is invalid: ${CORRAL_ENV.deploymentFireArn}: expected a Lambda function ARN`);
  return { group: group!, roleArn: roleArn!, targetArn: targetArn! };
}

export type ConfigKey = keyof typeof CORRAL_ENV;
export type ConfigEnvName = (typeof CORRAL_ENV)[ConfigKey];
export type Env = Record<string, string | undefined>;

/** Is `name` a variable of the contract? */
export function isConfigEnvName(name: string): name is ConfigEnvName {
  return (Object.values(CORRAL_ENV) as string[]).includes(name);
}

/** An environment written through the contract's keys (the CDK constructs use this). */
export function configEnvironment(values: Partial<Record<ConfigKey, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(values) as Array<[ConfigKey, string | undefined]>) {
    if (value !== undefined) out[CORRAL_ENV[key]] = value;
  }
  return out;
}

export const DEFAULT_SANDBOX_IDLE_MS = 15 * 60_000;

/** Most sandboxes one environment's warm pool may hold, whatever the setting says. */
export const WARM_POOL_MAX_SIZE = 10;
export const DEFAULT_WARM_POOL_MAX_AGE_MS = 30 * 60_000;

/** Warm pools (lambdas/core/sandbox/warm-pool.ts). */
export interface WarmPoolSettings {
  /** Pooled sandboxes kept per environment id (each at most `WARM_POOL_MAX_SIZE`). */
  sizes: Readonly<Record<string, number>>;
  /** A pooled sandbox never claimed is stopped this long after it started. */
  maxAgeMs: number;
}

/**
 * `CORRAL_WARM_POOL` (`env_a=2,env_b=1`) and `CORRAL_WARM_POOL_MAX_AGE_MS`, or undefined when no
 * environment has a pool. A size above `WARM_POOL_MAX_SIZE`, or anything malformed, is an error.
 */
export function readWarmPool(env: Env = process.env): WarmPoolSettings | undefined {
  const v = reader(env);
  const raw = v(CORRAL_ENV.warmPool);
  const rawAge = v(CORRAL_ENV.warmPoolMaxAgeMs);
  let maxAgeMs = DEFAULT_WARM_POOL_MAX_AGE_MS;
  if (rawAge !== undefined) {
    maxAgeMs = Number(rawAge);
    if (!/^[0-9]+$/.test(rawAge.trim()) || !Number.isSafeInteger(maxAgeMs) || maxAgeMs <= 0) throw new Error(`${CORRAL_ENV.warmPoolMaxAgeMs} must be a positive integer of milliseconds, got ${JSON.stringify(rawAge)}`);
  }
  if (raw === undefined || raw.trim() === '') return undefined;
  const sizes: Record<string, number> = {};
  for (const part of raw.split(',').map((p) => p.trim()).filter(Boolean)) {
    const m = /^([A-Za-z0-9_-]{1,128})=([0-9]{1,3})$/.exec(part);
    if (!m) throw new Error(`${CORRAL_ENV.warmPool} must be <environment id>=<size>,..., got ${JSON.stringify(part)}`);
    const size = Number(m[2]);
    if (size > WARM_POOL_MAX_SIZE) throw new Error(`${CORRAL_ENV.warmPool}: the pool of ${m[1]} may hold at most ${WARM_POOL_MAX_SIZE} sandboxes, got ${size}`);
    if (Object.hasOwn(sizes, m[1])) throw new Error(`${CORRAL_ENV.warmPool} names ${m[1]} twice`);
    sizes[m[1]] = size;
  }
  return { sizes, maxAgeMs };
}

/** Session attributes that may become metric dimensions (opt-in: their cardinality is the user's). */
export type SessionDimension = 'agent' | 'environment';

/*
 * The schemas use zod's functional API (`zod/mini`): every Lambda bundle parses its environment
 * here, and the method-chaining API would bring all of zod's schema classes into bundles that
 * have no other use for zod (about 60 KB of the harness step's). zod/mini ships without a locale;
 * the English one is the classic API's default, so the messages are the same.
 */
z.config(en());

const list = (prefix?: string) =>
  z.pipe(
    z.pipe(
      z.string(),
      z.transform((s: string) => s.split(',').map((p) => p.trim()).filter(Boolean)),
    ),
    z.array(prefix ? z.string().check(z.startsWith(prefix, `expected ids starting with ${prefix}`)) : z.string()).check(z.minLength(1)),
  );
const flag = z.pipe(z.enum(['true', 'false']), z.transform((v: 'true' | 'false') => v === 'true'));
const positiveInt = z.coerce.number().check(z.int(), z.positive());
const nonEmpty = () => z.string().check(z.minLength(1));
/** An S3 bucket name (3-63 lower-case letters, digits, dots and hyphens). */
const bucketName = () => z.string().check(z.regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'expected an S3 bucket name'));

/**
 * Parse `raw` (built from the environment) with `schema`; on failure, one error that names each
 * variable at fault (`names` maps a schema path to its variable).
 */
function parse<T extends z.ZodMiniType>(schema: T, raw: unknown, names: Record<string, string>, what: string): z.infer<T> {
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((i) => {
    // The longest leading part of the path that names a variable: `sandbox.subnets.0` is an item
    // of CORRAL_SANDBOX_SUBNETS, and the item's index says which.
    const parts = i.path.map(String);
    for (let n = parts.length; n >= 0; n--) {
      const variable = names[parts.slice(0, n).join('.')];
      if (variable) return `${variable}${n < parts.length ? ` (item ${parts.slice(n).join('.')})` : ''}: ${i.message}`;
    }
    return `${parts.join('.')}: ${i.message}`;
  });
  throw new Error(`Corral configuration${what ? ` of ${what}` : ''} is invalid: ${problems.join('; ')}`);
}

/** `env[name]`, with an empty value counting as unset. */
const reader = (env: Env) => (name: string) => (env[name] === '' ? undefined : env[name]);

const SandboxSchema = z.object({
  cluster: nonEmpty(),
  taskDefinition: nonEmpty(),
  subnets: list('subnet-'),
  securityGroups: list('sg-'),
  containerName: nonEmpty(),
  port: z._default(z.coerce.number().check(z.int(), z.minimum(1), z.maximum(65535)), 8080),
  assignPublicIp: z._default(flag, false),
  taskEvents: z._default(flag, false),
  spot: z._default(flag, false),
  proxyServiceAddress: z.optional(z.string().check(z.regex(/^[A-Za-z0-9.-]+:\d{1,5}$/, 'expected host:port'))),
});

const kmsKeyArn = z.optional(z.string().check(z.regex(/^arn:[^:]+:kms:[^:]+:\d{12}:key\/[A-Za-z0-9-]+$/, 'expected a KMS key ARN')));

/** The model provider's settings (`model-ids.ts` has the providers and the id table). */
const ModelSchema = z.object({
  provider: z._default(z.enum(['anthropic', 'bedrock', 'gateway']), 'anthropic'),
  baseUrl: z.optional(z.url()),
  apiKeyParameter: z.optional(nonEmpty()),
  proxyUrl: z.optional(z.url()),
  models: z.optional(list()),
  bedrockRegion: z.optional(z.string().check(z.regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'expected a region such as us-east-1'))),
  bedrockProfile: z.optional(z.string().check(z.regex(/^[a-z]+(-[a-z]+)?$/, 'expected an inference-profile prefix such as us, eu, apac or global'))),
});

const ServicesSchema = z.object({
  eventsTable: nonEmpty(),
  stateTable: nonEmpty(),
  wakeQueueUrl: z.url(),
  sandbox: z.optional(SandboxSchema),
  model: ModelSchema,
  leaseTtlMs: z.optional(positiveInt),
  credentialProxyFunction: z.optional(nonEmpty()),
  sandboxCapabilityKey: kmsKeyArn,
  repositoryUrlAllow: z.pipe(
    z.optional(z.string()),
    z.transform((text: string | undefined, ctx) => {
      try {
        return parseRepositoryUrlAllow(text);
      } catch (err) {
        ctx.issues.push({ code: 'custom', message: (err as Error).message, input: text });
        return z.NEVER;
      }
    }),
  ),
  rateLimits: z.pipe(
    z.optional(z.string()),
    z.transform((text: string | undefined, ctx) => {
      try {
        return parseRateLimits(text);
      } catch (err) {
        ctx.issues.push({ code: 'custom', message: (err as Error).message, input: text });
        return z.NEVER;
      }
    }),
  ),
  rateLimitShards: z._default(z.coerce.number().check(z.int(), z.minimum(1), z.maximum(1000)), DEFAULT_RATE_LIMIT_SHARDS),
  blobBucket: z.optional(bucketName()),
});

/** What `createAwsServices` needs (lambdas/adapters/aws/services.ts): the API's and the harness's wiring. */
export type ServicesConfig = z.infer<typeof ServicesSchema>;

const SERVICES_NAMES: Record<string, string> = {
  eventsTable: CORRAL_ENV.eventsTable,
  stateTable: CORRAL_ENV.stateTable,
  wakeQueueUrl: CORRAL_ENV.wakeQueueUrl,
  'sandbox.cluster': CORRAL_ENV.sandboxCluster,
  'sandbox.taskDefinition': CORRAL_ENV.sandboxTaskDefinition,
  'sandbox.subnets': CORRAL_ENV.sandboxSubnets,
  'sandbox.securityGroups': CORRAL_ENV.sandboxSecurityGroups,
  'sandbox.containerName': CORRAL_ENV.sandboxContainer,
  'sandbox.port': CORRAL_ENV.sandboxPort,
  'sandbox.assignPublicIp': CORRAL_ENV.sandboxAssignPublicIp,
  'sandbox.taskEvents': CORRAL_ENV.sandboxTaskEvents,
  'sandbox.spot': CORRAL_ENV.sandboxSpot,
  'sandbox.proxyServiceAddress': CORRAL_ENV.proxyServiceAddress,
  'model.baseUrl': CORRAL_ENV.modelBaseUrl,
  'model.apiKeyParameter': CORRAL_ENV.modelApiKeyParameter,
  'model.proxyUrl': CORRAL_ENV.modelProxyUrl,
  'model.provider': CORRAL_ENV.modelProvider,
  'model.models': CORRAL_ENV.models,
  'model.bedrockRegion': CORRAL_ENV.bedrockRegion,
  'model.bedrockProfile': CORRAL_ENV.bedrockProfile,
  leaseTtlMs: CORRAL_ENV.leaseTtlMs,
  credentialProxyFunction: CORRAL_ENV.credentialProxyFunction,
  sandboxCapabilityKey: CORRAL_ENV.sandboxCapabilityKey,
  repositoryUrlAllow: CORRAL_ENV.repositoryUrlAllow,
  rateLimits: CORRAL_ENV.rateLimits,
  rateLimitShards: CORRAL_ENV.rateLimitShards,
  blobBucket: CORRAL_ENV.blobBucket,
};

/** The variables of the sandbox block, all or nothing. */
export const SANDBOX_ENV_NAMES = [
  CORRAL_ENV.sandboxCluster,
  CORRAL_ENV.sandboxTaskDefinition,
  CORRAL_ENV.sandboxSubnets,
  CORRAL_ENV.sandboxSecurityGroups,
  CORRAL_ENV.sandboxContainer,
] as const;

/**
 * The API's and the harness's configuration (both go through `createAwsServices`). The sandbox
 * block is all or nothing: when none of its variables is set it is absent (a caller may bring its
 * own provider); a partial one is an error that names what is missing.
 */
export function readServicesConfig(env: Env = process.env): ServicesConfig {
  const v = reader(env);
  const anySandbox = SANDBOX_ENV_NAMES.some((name) => v(name) !== undefined);
  const raw = {
    eventsTable: v(CORRAL_ENV.eventsTable),
    stateTable: v(CORRAL_ENV.stateTable),
    wakeQueueUrl: v(CORRAL_ENV.wakeQueueUrl),
    sandbox: anySandbox
      ? {
          cluster: v(CORRAL_ENV.sandboxCluster),
          taskDefinition: v(CORRAL_ENV.sandboxTaskDefinition),
          subnets: v(CORRAL_ENV.sandboxSubnets),
          securityGroups: v(CORRAL_ENV.sandboxSecurityGroups),
          containerName: v(CORRAL_ENV.sandboxContainer),
          port: v(CORRAL_ENV.sandboxPort),
          assignPublicIp: v(CORRAL_ENV.sandboxAssignPublicIp),
          taskEvents: v(CORRAL_ENV.sandboxTaskEvents),
          spot: v(CORRAL_ENV.sandboxSpot),
          proxyServiceAddress: v(CORRAL_ENV.proxyServiceAddress),
        }
      : undefined,
    model: rawModel(v),
    leaseTtlMs: v(CORRAL_ENV.leaseTtlMs),
    credentialProxyFunction: v(CORRAL_ENV.credentialProxyFunction),
    sandboxCapabilityKey: v(CORRAL_ENV.sandboxCapabilityKey),
    repositoryUrlAllow: v(CORRAL_ENV.repositoryUrlAllow),
    rateLimits: v(CORRAL_ENV.rateLimits),
    rateLimitShards: v(CORRAL_ENV.rateLimitShards),
    blobBucket: v(CORRAL_ENV.blobBucket),
  };
  const config = parse(ServicesSchema, raw, SERVICES_NAMES, '');
  checkModelConfig(config.model);
  return config;
}

function rawModel(v: (name: string) => string | undefined) {
  return {
    provider: v(CORRAL_ENV.modelProvider)?.toLowerCase(),
    baseUrl: v(CORRAL_ENV.modelBaseUrl),
    apiKeyParameter: v(CORRAL_ENV.modelApiKeyParameter),
    proxyUrl: v(CORRAL_ENV.modelProxyUrl),
    models: v(CORRAL_ENV.models),
    bedrockRegion: v(CORRAL_ENV.bedrockRegion),
    bedrockProfile: v(CORRAL_ENV.bedrockProfile),
  };
}

/** What the model variables say together: a gateway has a URL; Bedrock's models are in the table. */
function checkModelConfig(model: ModelConfig): void {
  if (model.provider === 'gateway' && !model.baseUrl) {
    throw new Error(`Corral configuration is invalid: ${CORRAL_ENV.modelBaseUrl}: the gateway model provider needs the gateway's URL`);
  }
  const unknown = model.provider === 'bedrock' ? (model.models ?? []).filter((m) => !MODEL_TABLE[m]) : [];
  if (unknown.length) {
    throw new Error(`Corral configuration is invalid: ${CORRAL_ENV.models}: no Bedrock id for ${unknown.join(', ')} (lambdas/core/harness/model-ids.ts)`);
  }
}

export type ModelConfig = z.infer<typeof ModelSchema>;

/** The model provider's settings alone (`npm start` reads them so; the functions within `readServicesConfig`). */
export function readModelConfig(env: Env = process.env): ModelConfig {
  const names = Object.fromEntries(Object.entries(SERVICES_NAMES).filter(([k]) => k.startsWith('model.')).map(([k, n]) => [k.slice('model.'.length), n]));
  const model = parse(ModelSchema, rawModel(reader(env)), names, '');
  checkModelConfig(model);
  return model;
}

/** The API's functions (`lambdas/api/lambda.ts`, buffered and streaming): the services wiring. */
export const readApiConfig = readServicesConfig;

/** `agent,environment` (any case, any subset) -> the dimensions a wake of that session carries. */
export function parseSessionDimensions(value: string | undefined): SessionDimension[] {
  if (!value) return [];
  const out: SessionDimension[] = [];
  for (const part of value.split(',').map((s) => s.trim().toLowerCase())) {
    if (part === 'agent' || part === 'environment') out.push(part);
    else if (part) throw new Error(`${CORRAL_ENV.metricsSessionDimensions}: unknown dimension ${JSON.stringify(part)} (use agent, environment)`);
  }
  return out;
}

export interface HarnessStepConfig extends ServicesConfig {
  sessionDimensions: SessionDimension[];
  /** @default - the harness-step handler's own margin */
  safetyMarginMs?: number;
}

/** `CORRAL_METRICS_SESSION_DIMENSIONS`. */
export function readSessionDimensions(env: Env = process.env): SessionDimension[] {
  return parseSessionDimensions(reader(env)(CORRAL_ENV.metricsSessionDimensions));
}

/** `CORRAL_WAKE_SAFETY_MARGIN_MS`, a positive integer of milliseconds, when set. */
export function readWakeSafetyMarginMs(env: Env = process.env): number | undefined {
  return parse(z.optional(positiveInt), reader(env)(CORRAL_ENV.wakeSafetyMarginMs), { '': CORRAL_ENV.wakeSafetyMarginMs }, 'the harness step');
}

/**
 * The harness step's function (`lambdas/harness-step/index.ts`): the services wiring (read when
 * its runtime is built), metric dimensions and its safety margin (read at module load).
 */
export function readHarnessStepConfig(env: Env = process.env): HarnessStepConfig {
  return { ...readServicesConfig(env), sessionDimensions: readSessionDimensions(env), safetyMarginMs: readWakeSafetyMarginMs(env) };
}

const ProxySchema = z.object({
  stateTable: nonEmpty(),
  kmsKeyId: z.optional(nonEmpty()),
  // The proxy service's git channel, `http://<service address>:3128/git` (inside the VPC).
  gitProxyUrl: z.optional(z.url({ protocol: /^https?$/ })),
});

export type CredentialProxyConfig = z.infer<typeof ProxySchema>;

/** The credential proxy's function (`lambdas/credential-proxy/handler.ts`). */
export function readCredentialProxyConfig(env: Env = process.env): CredentialProxyConfig {
  const v = reader(env);
  return parse(
    ProxySchema,
    { stateTable: v(CORRAL_ENV.stateTable), kmsKeyId: v(CORRAL_ENV.vaultKmsKeyId), gitProxyUrl: v(CORRAL_ENV.gitProxyUrl) },
    { stateTable: CORRAL_ENV.stateTable, kmsKeyId: CORRAL_ENV.vaultKmsKeyId, gitProxyUrl: CORRAL_ENV.gitProxyUrl },
    'the credential proxy',
  );
}

/** `CORRAL_SANDBOX_IDLE_MS` (milliseconds), or 15 minutes. The local runtime's reaper reads it too. */
export function readSandboxIdleMs(env: Env = process.env): number {
  const raw = reader(env)(CORRAL_ENV.sandboxIdleMs);
  if (raw === undefined) return DEFAULT_SANDBOX_IDLE_MS;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${CORRAL_ENV.sandboxIdleMs} must be a positive number of milliseconds, got ${JSON.stringify(raw)}`);
  return n;
}

/**
 * The bounds of a workspace snapshot (`CORRAL_WORKSPACE_SNAPSHOT_MAX_BYTES`, `..._MAX_ENTRIES`);
 * only those set, the rest take their defaults (lambdas/core/sandbox/workspaces.ts).
 */
export function readWorkspaceLimits(env: Env = process.env): { maxBytes?: number; maxEntries?: number } {
  const v = reader(env);
  const out: { maxBytes?: number; maxEntries?: number } = {};
  for (const [field, name] of [['maxBytes', CORRAL_ENV.workspaceSnapshotMaxBytes], ['maxEntries', CORRAL_ENV.workspaceSnapshotMaxEntries]] as const) {
    const raw = v(name);
    if (raw === undefined) continue;
    const n = Number(raw);
    if (!/^[0-9]+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
    out[field] = n;
  }
  return out;
}

export interface SandboxReaperConfig {
  stateTable: string;
  /** The cluster (or comma-separated clusters) whose tasks it may stop. */
  cluster: string;
  idleMs: number;
  /** The blob bucket workspace snapshots of stopped sandboxes go to (`workspaces/` only). */
  blobBucket?: string;
  /**
   * The KMS key sandbox capabilities are sealed with: the reaper opens them (`kms:Decrypt` only)
   * to ask a sandbox for its workspace before stopping it.
   */
  sandboxCapabilityKey?: string;
  /** Bounds of a snapshot (`CORRAL_WORKSPACE_SNAPSHOT_MAX_*`); unset ones take their defaults. */
  workspaceLimits: { maxBytes?: number; maxEntries?: number };
}

/** The idle sandbox reaper's function (`lambdas/sandbox-reaper/handler.ts`). */
export function readSandboxReaperConfig(env: Env = process.env): SandboxReaperConfig {
  const v = reader(env);
  const base = parse(
    z.object({ stateTable: nonEmpty(), cluster: nonEmpty(), blobBucket: z.optional(bucketName()), sandboxCapabilityKey: kmsKeyArn }),
    { stateTable: v(CORRAL_ENV.stateTable), cluster: v(CORRAL_ENV.sandboxCluster), blobBucket: v(CORRAL_ENV.blobBucket), sandboxCapabilityKey: v(CORRAL_ENV.sandboxCapabilityKey) },
    { stateTable: CORRAL_ENV.stateTable, cluster: CORRAL_ENV.sandboxCluster, blobBucket: CORRAL_ENV.blobBucket, sandboxCapabilityKey: CORRAL_ENV.sandboxCapabilityKey },
    'the sandbox reaper',
  );
  return { ...base, idleMs: readSandboxIdleMs(env), workspaceLimits: readWorkspaceLimits(env) };
}

const OidcIssuerSchema = z.strictObject({
  issuer: z.string().check(z.refine(isAllowedIssuerUrl, 'expected an https URL (http only on 127.0.0.1/localhost) without query or fragment')),
  audiences: z.array(z.string().check(z.minLength(1))).check(z.minLength(1)),
  tenant: z.string().check(z.regex(/^[A-Za-z0-9_.-]{1,64}$/, 'expected 1-64 letters, digits, _ . -')),
  groups_claim: z._default(z.string().check(z.minLength(1)), 'groups'),
  roles: z.record(z.string(), z.enum(ROLES)).check(z.refine((r) => Object.keys(r).length > 0, 'map at least one group to a role')),
  client_id: z._default(z.nullable(z.string().check(z.minLength(1))), null),
  scopes: z._default(z.array(z.string().check(z.regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'expected a scope token'))), ['openid', 'profile', 'offline_access']),
  clock_skew_seconds: z._default(z.number().check(z.int(), z.minimum(0), z.maximum(600)), 60),
});

/**
 * `CORRAL_OIDC_ISSUERS`: a JSON array of issuers, each
 * `{"issuer", "audiences": [...], "tenant", "groups_claim"?, "roles": {"<group>": "admin"|"developer"|"user"},
 * "client_id"?, "scopes"?, "clock_skew_seconds"?}`. One issuer may appear more than once, for
 * different tenants, with audiences that do not overlap (a token's audience picks its tenant).
 * Unset or empty: no issuer.
 */
export function readOidcIssuers(env: Env = process.env): OidcIssuer[] {
  const name = CORRAL_ENV.oidcIssuers;
  const raw = reader(env)(name);
  if (raw === undefined || raw.trim() === '' || raw.trim() === '[]') return [];
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    throw new Error(`Corral configuration is invalid: ${name}: not valid JSON`);
  }
  const list = parse(z.array(OidcIssuerSchema), json, { '': name }, '');
  const issuers = list.map((i) => ({
    issuer: i.issuer,
    audiences: i.audiences,
    tenant: i.tenant,
    groupsClaim: i.groups_claim,
    roles: i.roles,
    clientId: i.client_id,
    scopes: i.scopes,
    clockSkewSeconds: i.clock_skew_seconds,
  }));
  for (const [n, a] of issuers.entries()) {
    for (const b of issuers.slice(n + 1)) {
      if (a.issuer === b.issuer && a.audiences.some((x) => b.audiences.includes(x))) {
        throw new Error(`Corral configuration is invalid: ${name}: issuer ${a.issuer} is listed twice with an audience in common (the audience decides the tenant)`);
      }
    }
  }
  return issuers;
}

/** Webhooks (docs/WEBHOOKS.md): where deliveries may go, and how they are retried. */
export interface WebhookConfig {
  urlAllow: string[];
  backoff: Partial<BackoffPolicy>;
  queueUrl?: string;
  deadLetterQueueUrl?: string;
  secretPrefix?: string;
}

/** `CORRAL_WEBHOOK_*`; anything malformed is an error naming the variable. */
export function readWebhookConfig(env: Env = process.env): WebhookConfig {
  const v = reader(env);
  const fail = (name: string, why: string): never => {
    throw new Error(`Corral configuration is invalid: ${name}: ${why}`);
  };
  let urlAllow: string[] = [];
  try {
    urlAllow = parseRepositoryUrlAllow(v(CORRAL_ENV.webhookUrlAllow));
  } catch (err) {
    fail(CORRAL_ENV.webhookUrlAllow, (err as Error).message);
  }
  const backoff: Partial<BackoffPolicy> = {};
  const raw = v(CORRAL_ENV.webhookBackoff);
  const fields = { base: 'baseMs', cap: 'capMs', horizon: 'horizonMs' } as const;
  for (const part of raw ? raw.split(',') : []) {
    const [k, n] = part.trim().split('=');
    const key = fields[k as keyof typeof fields];
    if (!key || !/^[0-9]{1,10}$/.test(n ?? '') || Number(n) < 1) fail(CORRAL_ENV.webhookBackoff, `expected base=MS,cap=MS,horizon=MS (positive integers), not ${JSON.stringify(part)}`);
    backoff[key] = Number(n);
  }
  const url = (name: string) => {
    const u = v(name);
    if (u !== undefined && !/^https?:\/\//.test(u)) fail(name, 'expected a queue URL');
    return u;
  };
  const queueUrl = url(CORRAL_ENV.webhookQueueUrl);
  const deadLetterQueueUrl = url(CORRAL_ENV.webhookDeadLetterQueueUrl);
  const secretPrefix = v(CORRAL_ENV.webhookSecretPrefix);
  return { urlAllow, backoff, ...(queueUrl ? { queueUrl } : {}), ...(deadLetterQueueUrl ? { deadLetterQueueUrl } : {}), ...(secretPrefix ? { secretPrefix } : {}) };
}
