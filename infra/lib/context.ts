import { Duration } from 'aws-cdk-lib';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import type { CorralStackProps } from './corral-stack.js';
import { parseRepositoryUrlAllow } from '../../lambdas/core/resources/repository-url.js';
import { parseSandboxLimits } from '../../sandbox/limits.js';
import { parseRateLimits } from '../../lambdas/core/resources/rate-limits.js';
import { readOidcIssuers, readWarmPool } from '../../lambdas/core/config.js';
import { parseModelProvider } from '../../lambdas/core/harness/model-ids.js';
import { readTelemetryConfig } from '../../lambdas/core/telemetry/config.js';

/**
 * CDK context keys the app reads (`npx cdk deploy -c key=value`, or `context` in cdk.json).
 * Values given with `-c` arrive as strings, values in cdk.json as JSON; both are accepted.
 */
export const CONTEXT_KEYS = {
  stackName: 'Name of the stack (default Corral)',
  vpcId: 'Existing VPC to run the harness and sandboxes in (with privateSubnetIds and availabilityZones)',
  privateSubnetIds: 'Comma-separated private subnet ids of that VPC (they need a route to the internet)',
  availabilityZones: 'Comma-separated availability zones of those subnets, in the same order',
  sandboxCidrBlocks:
    'Secondary /16 CIDR blocks a new VPC adds for sandbox subnets, 0-4 (default 0: two /20 private subnets, 8,182 addresses; each block adds 65,526 in two /17s)',
  vpcInterfaceEndpoints:
    'true: ECR (api, dkr) and CloudWatch Logs interface endpoints in a new VPC, so image pulls and sandbox logs skip the NAT (default false; about 43.80 USD a month for 3 endpoints in 2 zones, see docs/DEPLOY.md)',
  nat: 'gateway (default) or instance: how a VPC the stack creates reaches the internet',
  sandboxCpu: 'vCPU units of a sandbox task (default 1024)',
  sandboxMemoryMiB: 'Memory of a sandbox task in MiB (default 2048)',
  sandboxEphemeralStorageGiB: 'Ephemeral storage of a sandbox task in GiB, 21-200 (default 20, included in Fargate)',
  sandboxLimits:
    'Limits of the tools in a sandbox, e.g. processes=256,memory=1g,file_size=1g,cpu_seconds=3600,disk=10g (any subset; default those, memory and disk capped by the task size)',
  repositoryUrlAllow: 'Comma-separated repository origins accepted besides public https ones, e.g. https://git.internal.example (default none)',
  webhookUrlAllow: 'Comma-separated webhook origins accepted besides public https ones, e.g. http://127.0.0.1 for a receiver on loopback (default none)',
  fargateSpot: 'true: sandbox tasks run on Fargate Spot, on demand when Spot has no capacity (default false; a reclaimed task is a sandbox death: a tool error, then a fresh sandbox)',
  sandboxClusters:
    'ECS clusters sandbox tasks are spread over, 1-20 (default 1): each takes at most 500 tasks PROVISIONING at once (not adjustable), so 100,000 sessions need 2 or more (docs/SCALE.md)',
  sandboxImage: 'A prebuilt sandbox image (registry URI) instead of building sandbox/Dockerfile',
  sandboxIdleMinutes: 'Stop sandboxes no tool call used for this many minutes (default 15)',
  warmPool: 'Sandbox tasks started ahead per environment, e.g. env_a=2,env_b=1 (at most 10 each; default none); see docs/SANDBOXES.md#warm-pools for what it costs',
  warmPoolMaxAgeMinutes: 'Stop a pooled sandbox task no session claimed after this many minutes (default 30)',
  anthropicBaseUrl: 'Messages API endpoint (default https://api.anthropic.com)',
  modelApiKeyParameter: 'SSM SecureString parameter holding the model API key (default /corral/anthropic-api-key; not with modelProvider=bedrock)',
  modelProvider: 'Who serves model calls: anthropic (default: the Claude API, key in SSM), bedrock (Amazon Bedrock with the harness role, no key) or gateway (a Messages-compatible endpoint at anthropicBaseUrl, key in SSM)',
  models: 'Comma-separated Claude model ids agents may use; with bedrock the harness may invoke these only (default: with bedrock, every model of the id table; otherwise any)',
  bedrockRegion: 'Region Bedrock is called in, with modelProvider=bedrock (default the stack region)',
  bedrockProfile: 'Bedrock inference-profile prefix, with modelProvider=bedrock: us, eu, apac, global... (default the region geography, found at run time)',
  harnessTimeoutMinutes: 'Longest harness invocation, 1-15 (default 15)',
  harnessBatchSize: 'Wakes per harness invocation (default 1)',
  harnessMaxConcurrency: 'Most concurrent harness invocations the wake queue starts (default: harnessReservedConcurrency, else the account limit)',
  harnessMemoryMiB: 'Memory of the harness function in MiB, 128-10240 (default 256, from measurement: docs/SCALE.md "Right-sized functions")',
  harnessReservedConcurrency:
    'Concurrent executions reserved for the harness, 2 or more (default none: an account whose limit is 10 cannot reserve any; recommended wherever the limit allows)',
  streamMaxConcurrency: 'Most event streams open at once, the stream function\'s reserved concurrency (default no cap; recommended wherever the account limit allows)',
  apiThrottleRate: 'Steady-state requests per second the API stage accepts across all tenants (default 100)',
  apiThrottleBurst: 'Requests the API stage accepts at once above the steady rate (default 200)',
  rateLimits: 'Per-tenant requests per minute by class, e.g. create=300,write=1200,read=6000 (any subset; 0 turns a class off; default those)',
  rateLimitShards: 'Most shards a tenant\'s rate-limit counter of one class is spread over, 1-1000 (default 10)',
  maxReceiveCount: 'Deliveries of a wake before the dead-letter queue (default 10)',
  metricsSessionDimensions: 'Comma-separated session dimensions for metrics: agent, environment (default none)',
  timeToFirstTokenP95ThresholdMs: 'Alarm threshold for p95 time to first token in ms (default 10000)',
  timeToFirstTokenP99ThresholdMs: 'Alarm threshold for p99 time to first token in ms (default 20000)',
  api5xxRatePercent: 'Alarm threshold for the share of API requests answered with a 5XX, in percent (default 5)',
  alarmEmail: 'Email address that receives alarm notifications',
  logRetentionDays: 'Days logs are kept (a CloudWatch retention value, default 30)',
  streamTimeoutMinutes: 'Longest event stream before the client reconnects, 1-15 (default 15)',
  streamTier:
    'Who serves event streams: lambda (default: one function execution per open stream, nothing billed while none is open) or fargate (a Fargate service holding many streams per task, fed by DynamoDB Streams; see docs/SCALE.md)',
  proxyService:
    'fargate (default): the proxy service (an autoscaled Fargate service behind an internal NLB) is every sandbox\'s only way out, enforces environments\' networking and alone reads the model key; turns on vpcInterfaceEndpoints, refused with vpcId (docs/EGRESS.md). none: sandboxes\' security group allows all outbound traffic, environments\' networking is not enforced, environment_variable credentials and private repositories do not work on Fargate, and the harness reads the model key',
  s3PrefixListId: 'The region\'s S3 managed prefix list id (pl-…) sandbox tasks pull image layers through (default: looked up at deploy time with ec2:DescribeManagedPrefixLists for com.amazonaws.<region>.s3)',
  proxyServiceMinTasks: 'Proxy service tasks always running, with proxyService=fargate, 1-100 (default 2)',
  proxyServiceMaxTasks: 'Most proxy service tasks, with proxyService=fargate, 1-100 (default 10)',
  streamTierMinTasks: 'Stream tier tasks always running, with streamTier=fargate, 1-100 (default 2)',
  streamTierMaxTasks: 'Most stream tier tasks, with streamTier=fargate, 1-100 (default 4; every task reads every shard of the events stream)',
  workspaceSnapshotDays: 'Days a workspace snapshot is kept after its last write, 1-3650 (default 30); a session idle longer restarts with an empty workspace',
  oidcIssuers: 'Default of the OidcIssuers stack parameter: a JSON array of the OIDC issuers whose tokens the API accepts (docs/SIGN-IN.md; default none, API keys only)',
  deletedFileRetentionDays: 'Days the bytes of a deleted or replaced file stay recoverable in the blob bucket, 1-365 (default 7)',
  otlpEndpoint: 'OpenTelemetry collector (OTLP/HTTP JSON) base URL the API and harness functions export traces to, e.g. https://otel.example.com:4318 (default none: no export)',
  otlpHeadersParameter: 'SSM SecureString parameter holding the exporter headers, key=value,... (read at cold start; default none). Only with otlpEndpoint',
} as const;

export type ContextKey = keyof typeof CONTEXT_KEYS;

function asString(key: string, value: unknown): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value === 'string') return value.trim();
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw new Error(`context ${key}: expected a string, got ${JSON.stringify(value)}`);
}

function asList(key: string, value: unknown): string[] | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (Array.isArray(value)) return value.map((v) => asString(key, v)).filter((v): v is string => !!v);
  return asString(key, value)!
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

function asInt(key: string, value: unknown, min: number, max: number): number | undefined {
  const s = asString(key, value);
  if (s === undefined) return undefined;
  const n = Number(s);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`context ${key}: expected an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  return n;
}

/** Stack name and props from CDK context, validated; unknown values fail synthesis with a clear message. */
export function stackPropsFromContext(get: (key: ContextKey) => unknown): { stackName: string; props: CorralStackProps } {
  const vpcId = asString('vpcId', get('vpcId'));
  const privateSubnetIds = asList('privateSubnetIds', get('privateSubnetIds'));
  const availabilityZones = asList('availabilityZones', get('availabilityZones'));
  if (!vpcId && (privateSubnetIds || availabilityZones)) throw new Error('context privateSubnetIds/availabilityZones need vpcId');
  if (vpcId && (!privateSubnetIds?.length || !availabilityZones?.length)) {
    throw new Error('context vpcId needs privateSubnetIds and availabilityZones (ids only: the app does no lookups)');
  }
  const nat = asString('nat', get('nat'));
  if (nat !== undefined && nat !== 'gateway' && nat !== 'instance') throw new Error('context nat: gateway or instance');
  const dims = asList('metricsSessionDimensions', get('metricsSessionDimensions'));
  for (const d of dims ?? []) if (d !== 'agent' && d !== 'environment') throw new Error(`context metricsSessionDimensions: unknown ${JSON.stringify(d)}`);
  const retentionDays = asInt('logRetentionDays', get('logRetentionDays'), 1, 3653);
  if (retentionDays !== undefined && !Object.values(logs.RetentionDays).includes(retentionDays as logs.RetentionDays)) {
    throw new Error(`context logRetentionDays: ${retentionDays} is not a CloudWatch Logs retention (1, 3, 5, 7, 14, 30, 60, 90, ...)`);
  }
  const sandboxImage = asString('sandboxImage', get('sandboxImage'));
  const harnessTimeout = asInt('harnessTimeoutMinutes', get('harnessTimeoutMinutes'), 1, 15);
  const streamTimeout = asInt('streamTimeoutMinutes', get('streamTimeoutMinutes'), 1, 15);
  const checked = <T>(key: ContextKey, parse: (text: string | undefined) => T): T => {
    try {
      return parse(asList(key, get(key))?.join(','));
    } catch (err) {
      throw new Error(`context ${key}: ${(err as Error).message}`);
    }
  };
  const sandboxLimits = checked('sandboxLimits', parseSandboxLimits);
  const repositoryUrlAllow = checked('repositoryUrlAllow', parseRepositoryUrlAllow);
  const webhookUrlAllow = checked('webhookUrlAllow', parseRepositoryUrlAllow);
  const rateLimitsText = asList('rateLimits', get('rateLimits'))?.join(',');
  const rateLimits = rateLimitsText ? checked('rateLimits', parseRateLimits) : undefined;
  const apiThrottleRate = asInt('apiThrottleRate', get('apiThrottleRate'), 1, 1_000_000);
  const apiThrottleBurst = asInt('apiThrottleBurst', get('apiThrottleBurst'), 0, 1_000_000);
  const snapshotDays = asInt('workspaceSnapshotDays', get('workspaceSnapshotDays'), 1, 3650);
  const deletedFileDays = asInt('deletedFileRetentionDays', get('deletedFileRetentionDays'), 1, 365);
  const streamTier = asString('streamTier', get('streamTier'));
  if (streamTier !== undefined && streamTier !== 'lambda' && streamTier !== 'fargate') {
    throw new Error(`context streamTier: lambda or fargate, not ${JSON.stringify(streamTier)}`);
  }
  // The proxy service is the default: sandboxes' only way out, and the harness holds no model key.
  // `none` opts out (docs/EGRESS.md says what that gives up).
  const proxyServiceGiven = asString('proxyService', get('proxyService'));
  if (proxyServiceGiven !== undefined && proxyServiceGiven !== 'none' && proxyServiceGiven !== 'fargate') {
    throw new Error(`context proxyService: none or fargate, not ${JSON.stringify(proxyServiceGiven)}`);
  }
  if (proxyServiceGiven !== 'none' && vpcId) {
    // Sandbox tasks behind the proxy start through the interface endpoints the stack adds to a VPC it makes.
    throw new Error(
      `context vpcId: the proxy service${proxyServiceGiven ? '' : ' (the default)'} needs a VPC the stack creates (sandbox tasks start through its interface endpoints); ` +
        'leave out vpcId, or set proxyService=none (sandboxes then reach the internet and environments\' networking is not enforced; docs/EGRESS.md)',
    );
  }
  const proxyService = proxyServiceGiven ?? 'fargate';
  const s3PrefixListId = asString('s3PrefixListId', get('s3PrefixListId'));
  if (s3PrefixListId !== undefined && !/^pl-[0-9a-f]{8,17}$/.test(s3PrefixListId)) throw new Error(`context s3PrefixListId: a managed prefix list id (pl-…), not ${JSON.stringify(s3PrefixListId)}`);
  const proxyServiceMinTasks = asInt('proxyServiceMinTasks', get('proxyServiceMinTasks'), 1, 100);
  const proxyServiceMaxTasks = asInt('proxyServiceMaxTasks', get('proxyServiceMaxTasks'), 1, 100);
  if (proxyService !== 'fargate' && (proxyServiceMinTasks !== undefined || proxyServiceMaxTasks !== undefined || s3PrefixListId !== undefined)) {
    throw new Error('context proxyServiceMinTasks, proxyServiceMaxTasks, s3PrefixListId: not with proxyService=none');
  }
  const streamTierMinTasks = asInt('streamTierMinTasks', get('streamTierMinTasks'), 1, 100);
  const streamTierMaxTasks = asInt('streamTierMaxTasks', get('streamTierMaxTasks'), 1, 100);
  if (streamTier !== 'fargate' && (streamTierMinTasks !== undefined || streamTierMaxTasks !== undefined)) {
    throw new Error('context streamTierMinTasks, streamTierMaxTasks: only with streamTier=fargate');
  }

  const oidcRaw = get('oidcIssuers');
  const oidcIssuers = oidcRaw === undefined || oidcRaw === null || oidcRaw === '' ? undefined : typeof oidcRaw === 'string' ? oidcRaw.trim() : JSON.stringify(oidcRaw);
  if (oidcIssuers !== undefined) {
    try {
      readOidcIssuers({ CORRAL_OIDC_ISSUERS: oidcIssuers });
    } catch (err) {
      throw new Error(`context oidcIssuers: ${(err as Error).message}`);
    }
  }

  return {
    stackName: asString('stackName', get('stackName')) ?? 'Corral',
    props: {
      network: {
        existingVpc: vpcId ? { vpcId, privateSubnetIds: privateSubnetIds!, availabilityZones: availabilityZones! } : undefined,
        nat: nat as 'gateway' | 'instance' | undefined,
        interfaceEndpoints: (() => {
          const v = asString('vpcInterfaceEndpoints', get('vpcInterfaceEndpoints'));
          if (v !== undefined && v !== 'true' && v !== 'false') throw new Error('context vpcInterfaceEndpoints: true or false');
          if (v === 'true' && vpcId) throw new Error('context vpcInterfaceEndpoints: only for a VPC the stack creates (add endpoints to your own VPC yourself)');
          // Sandbox tasks behind the proxy start through the endpoints (they have no other way out).
          if (proxyService === 'fargate') {
            if (v === 'false') throw new Error('context vpcInterfaceEndpoints=false: the proxy service needs them (or set proxyService=none)');
            return true;
          }
          return v === undefined ? undefined : v === 'true';
        })(),
        sandboxCidrBlocks: (() => {
          const n = asInt('sandboxCidrBlocks', get('sandboxCidrBlocks'), 0, 4);
          if (n && vpcId) throw new Error('context sandboxCidrBlocks: only for a VPC the stack creates (with vpcId, give subnets sized for the sandboxes)');
          return n;
        })(),
      },
      sandbox: {
        cpu: asInt('sandboxCpu', get('sandboxCpu'), 256, 16384),
        memoryMiB: asInt('sandboxMemoryMiB', get('sandboxMemoryMiB'), 512, 122880),
        ephemeralStorageGiB: asInt('sandboxEphemeralStorageGiB', get('sandboxEphemeralStorageGiB'), 21, 200),
        clusters: asInt('sandboxClusters', get('sandboxClusters'), 1, 20),
        limits: Object.keys(sandboxLimits).length ? sandboxLimits : undefined,
        image: sandboxImage ? ecs.ContainerImage.fromRegistry(sandboxImage) : undefined,
        spot: (() => {
          const v = asString('fargateSpot', get('fargateSpot'));
          if (v !== undefined && v !== 'true' && v !== 'false') throw new Error('context fargateSpot: true or false');
          return v === undefined ? undefined : v === 'true';
        })(),
      },
      sandboxIdleTimeout: (() => {
        const minutes = asInt('sandboxIdleMinutes', get('sandboxIdleMinutes'), 1, 1440);
        return minutes ? Duration.minutes(minutes) : undefined;
      })(),
      warmPool: (() => {
        const pool = asString('warmPool', get('warmPool'));
        const minutes = asInt('warmPoolMaxAgeMinutes', get('warmPoolMaxAgeMinutes'), 1, 1440);
        if (minutes && !pool) throw new Error('context warmPoolMaxAgeMinutes: only with warmPool');
        try {
          return readWarmPool({ CORRAL_WARM_POOL: pool, CORRAL_WARM_POOL_MAX_AGE_MS: minutes ? String(minutes * 60_000) : undefined });
        } catch (err) {
          throw new Error(`context warmPool: ${(err as Error).message}`);
        }
      })(),
      model: {
        provider: (() => {
          try {
            return parseModelProvider(asString('modelProvider', get('modelProvider')));
          } catch (err) {
            throw new Error(`context modelProvider: ${(err as Error).message}`);
          }
        })(),
        baseUrl: asString('anthropicBaseUrl', get('anthropicBaseUrl')),
        apiKeyParameterName: asString('modelApiKeyParameter', get('modelApiKeyParameter')),
        models: asList('models', get('models')),
        bedrockRegion: asString('bedrockRegion', get('bedrockRegion')),
        bedrockProfile: asString('bedrockProfile', get('bedrockProfile')),
      },
      harness: {
        timeout: harnessTimeout ? Duration.minutes(harnessTimeout) : undefined,
        batchSize: asInt('harnessBatchSize', get('harnessBatchSize'), 1, 10),
        maxConcurrency: asInt('harnessMaxConcurrency', get('harnessMaxConcurrency'), 2, 1000),
        reservedConcurrency: asInt('harnessReservedConcurrency', get('harnessReservedConcurrency'), 2, 100_000),
        memorySize: asInt('harnessMemoryMiB', get('harnessMemoryMiB'), 128, 10_240),
        maxReceiveCount: asInt('maxReceiveCount', get('maxReceiveCount'), 1, 1000),
        metricsSessionDimensions: dims as Array<'agent' | 'environment'> | undefined,
      },
      repositoryUrlAllow: repositoryUrlAllow.length ? repositoryUrlAllow : undefined,
      webhookUrlAllow: webhookUrlAllow.length ? webhookUrlAllow : undefined,
      streamTimeout: streamTimeout ? Duration.minutes(streamTimeout) : undefined,
      streamMaxConcurrency: asInt('streamMaxConcurrency', get('streamMaxConcurrency'), 1, 100_000),
      streamTier: streamTier as 'lambda' | 'fargate' | undefined,
      proxyService: proxyService === 'fargate' ? { s3PrefixListId, minTasks: proxyServiceMinTasks, maxTasks: proxyServiceMaxTasks } : undefined,
      streamTierSettings: streamTier === 'fargate' ? { minTasks: streamTierMinTasks, maxTasks: streamTierMaxTasks } : undefined,
      apiThrottlingRateLimit: apiThrottleRate,
      apiThrottlingBurstLimit: apiThrottleBurst,
      rateLimits,
      oidcIssuers,
      rateLimitShards: asInt('rateLimitShards', get('rateLimitShards'), 1, 1000),
      timeToFirstTokenP95ThresholdMs: asInt('timeToFirstTokenP95ThresholdMs', get('timeToFirstTokenP95ThresholdMs'), 1, 3_600_000),
      timeToFirstTokenP99ThresholdMs: asInt('timeToFirstTokenP99ThresholdMs', get('timeToFirstTokenP99ThresholdMs'), 1, 3_600_000),
      api5xxRatePercent: asInt('api5xxRatePercent', get('api5xxRatePercent'), 1, 100),
      alarmEmail: asString('alarmEmail', get('alarmEmail')),
      telemetry: (() => {
        const endpoint = asString('otlpEndpoint', get('otlpEndpoint'));
        const headersParameterName = asString('otlpHeadersParameter', get('otlpHeadersParameter'));
        if (!endpoint) {
          if (headersParameterName) throw new Error('context otlpHeadersParameter: only with otlpEndpoint');
          return undefined;
        }
        // The functions read it as OTEL_EXPORTER_OTLP_ENDPOINT: refused here, not at their cold start.
        readTelemetryConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: endpoint }, 'corral');
        if (headersParameterName && !/^\/?[A-Za-z0-9_.\-/]+$/.test(headersParameterName)) throw new Error('context otlpHeadersParameter: an SSM parameter name');
        return { endpoint, headersParameterName };
      })(),
      logRetention: retentionDays as logs.RetentionDays | undefined,
      blobs: {
        workspaceSnapshotRetention: snapshotDays ? Duration.days(snapshotDays) : undefined,
        deletedFileRetention: deletedFileDays ? Duration.days(deletedFileDays) : undefined,
      },
    },
  };
}
