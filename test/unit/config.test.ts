import { describe, expect, it } from 'vitest';
import {
  CORRAL_ENV,
  configEnvironment,
  DEFAULT_SANDBOX_IDLE_MS,
  isConfigEnvName,
  parseSessionDimensions,
  readCredentialProxyConfig,
  readHarnessStepConfig,
  readSandboxIdleMs,
  readSandboxReaperConfig,
  readServicesConfig,
  readModelConfig,
  readWakeSafetyMarginMs,
  readOidcIssuers,
  readWarmPool,
  DEFAULT_WARM_POOL_MAX_AGE_MS,
  WARM_POOL_MAX_SIZE,
} from '../../lambdas/core/config.js';

/** The configuration contract's parsers, on environments built by hand. */
const base = {
  CORRAL_EVENTS_TABLE: 'events',
  CORRAL_STATE_TABLE: 'state',
  CORRAL_WAKE_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/123456789012/wake.fifo',
};
const sandbox = {
  CORRAL_SANDBOX_CLUSTER: 'corral',
  CORRAL_SANDBOX_TASK_DEFINITION: 'arn:aws:ecs:eu-west-1:123456789012:task-definition/sandbox:3',
  CORRAL_SANDBOX_SUBNETS: 'subnet-a, subnet-b',
  CORRAL_SANDBOX_SECURITY_GROUPS: 'sg-1',
  CORRAL_SANDBOX_CONTAINER: 'agent',
};

describe('the configuration contract', () => {
  it('names each variable once, and writes an environment through its keys', () => {
    const names = Object.values(CORRAL_ENV);
    expect(new Set(names).size).toBe(names.length);
    expect(isConfigEnvName('CORRAL_STATE_TABLE')).toBe(true);
    expect(isConfigEnvName('ANTHROPIC_API_KEY')).toBe(false);
    expect(configEnvironment({ stateTable: 's', leaseTtlMs: '5000', sandboxPort: undefined })).toEqual({ CORRAL_STATE_TABLE: 's', CORRAL_LEASE_TTL_MS: '5000' });
    // Read by the Lambda entries' trace export (lambdas/adapters/aws/telemetry.ts), not by a config parser.
    expect(configEnvironment({ otlpHeadersParameter: '/corral/otlp-headers' })).toEqual({ CORRAL_OTLP_HEADERS_PARAMETER: '/corral/otlp-headers' });
  });

  it('reads the services wiring; no sandbox variable means no sandbox block', () => {
    expect(readServicesConfig(base)).toEqual({
      eventsTable: 'events',
      stateTable: 'state',
      wakeQueueUrl: base.CORRAL_WAKE_QUEUE_URL,
      model: { provider: 'anthropic' },
      repositoryUrlAllow: [],
      rateLimits: { create: 300, write: 1200, read: 6000 },
      rateLimitShards: 10,
    });
    const full = readServicesConfig({
      ...base,
      ...sandbox,
      CORRAL_SANDBOX_PORT: '9000',
      CORRAL_SANDBOX_ASSIGN_PUBLIC_IP: 'true',
      ANTHROPIC_BASE_URL: 'http://127.0.0.1:4000',
      CORRAL_MODEL_API_KEY_PARAMETER: '/corral/model-key',
      CORRAL_LEASE_TTL_MS: '30000',
      CORRAL_CREDENTIAL_PROXY_FUNCTION: 'proxy',
      CORRAL_RATE_LIMITS: 'write=60000,read=0',
      CORRAL_RATE_LIMIT_SHARDS: '32',
      CORRAL_SANDBOX_TASK_EVENTS: 'true',
      CORRAL_SANDBOX_SPOT: 'true',
      CORRAL_PROXY_SERVICE_ADDRESS: 'internal-proxy.elb.amazonaws.com:3128',
    });
    expect(full).toEqual({
      eventsTable: 'events',
      stateTable: 'state',
      wakeQueueUrl: base.CORRAL_WAKE_QUEUE_URL,
      sandbox: { cluster: 'corral', taskDefinition: sandbox.CORRAL_SANDBOX_TASK_DEFINITION, subnets: ['subnet-a', 'subnet-b'], securityGroups: ['sg-1'], containerName: 'agent', port: 9000, assignPublicIp: true, taskEvents: true, spot: true, proxyServiceAddress: 'internal-proxy.elb.amazonaws.com:3128' },
      model: { provider: 'anthropic', baseUrl: 'http://127.0.0.1:4000', apiKeyParameter: '/corral/model-key' },
      leaseTtlMs: 30000,
      credentialProxyFunction: 'proxy',
      repositoryUrlAllow: [],
      rateLimits: { create: 300, write: 60000, read: 0 },
      rateLimitShards: 32,
    });
    expect(readServicesConfig({ ...base, ...sandbox }).sandbox).toMatchObject({ port: 8080, assignPublicIp: false, taskEvents: false, spot: false });
  });

  it('names every variable at fault in one error; an empty value counts as unset', () => {
    expect(() => readServicesConfig({ ...base, CORRAL_STATE_TABLE: '', CORRAL_WAKE_QUEUE_URL: 'not a url' })).toThrow(
      /^Corral configuration is invalid: CORRAL_STATE_TABLE: .*; CORRAL_WAKE_QUEUE_URL: /,
    );
    // a partial sandbox block names what is missing or wrong
    const partial = () => readServicesConfig({ ...base, CORRAL_SANDBOX_CLUSTER: 'c', CORRAL_SANDBOX_SUBNETS: 'vpc-1' });
    expect(partial).toThrow(/CORRAL_SANDBOX_TASK_DEFINITION/);
    // an element of a list is named by its variable and its index
    expect(partial).toThrow(/CORRAL_SANDBOX_SUBNETS \(item 0\): expected ids starting with subnet-/);
    expect(partial).toThrow(/CORRAL_SANDBOX_CONTAINER/);
    expect(() => readServicesConfig({ ...base, ...sandbox, CORRAL_SANDBOX_PORT: '70000' })).toThrow(/CORRAL_SANDBOX_PORT/);
    expect(() => readServicesConfig({ ...base, ...sandbox, CORRAL_SANDBOX_ASSIGN_PUBLIC_IP: 'yes' })).toThrow(/CORRAL_SANDBOX_ASSIGN_PUBLIC_IP/);
    expect(() => readServicesConfig({ ...base, CORRAL_LEASE_TTL_MS: '-5' })).toThrow(/CORRAL_LEASE_TTL_MS/);
    expect(() => readServicesConfig({ ...base, ...sandbox, CORRAL_PROXY_SERVICE_ADDRESS: 'http://proxy:3128' })).toThrow(/CORRAL_PROXY_SERVICE_ADDRESS: expected host:port/);
  });

  it('reads the model provider: anthropic by default, bedrock with its models and region, a gateway only with its URL', () => {
    expect(readModelConfig({}).provider).toBe('anthropic');
    expect(
      readServicesConfig({ ...base, CORRAL_MODEL_PROVIDER: 'Bedrock', CORRAL_MODELS: 'claude-sonnet-4-5, claude-haiku-4-5', CORRAL_BEDROCK_REGION: 'eu-west-1', CORRAL_BEDROCK_PROFILE: 'global' }).model,
    ).toEqual({ provider: 'bedrock', models: ['claude-sonnet-4-5', 'claude-haiku-4-5'], bedrockRegion: 'eu-west-1', bedrockProfile: 'global' });
    expect(() => readModelConfig({ CORRAL_MODEL_PROVIDER: 'vertex' })).toThrow(/CORRAL_MODEL_PROVIDER/);
    expect(() => readModelConfig({ CORRAL_MODEL_PROVIDER: 'bedrock', CORRAL_MODELS: 'claude-sonnet-4-5,claude-fake' })).toThrow(/CORRAL_MODELS: no Bedrock id for claude-fake/);
    expect(() => readModelConfig({ CORRAL_MODEL_PROVIDER: 'bedrock', CORRAL_BEDROCK_REGION: 'Ireland' })).toThrow(/CORRAL_BEDROCK_REGION/);
    expect(() => readServicesConfig({ ...base, CORRAL_MODEL_PROVIDER: 'gateway' })).toThrow(/ANTHROPIC_BASE_URL: the gateway model provider needs/);
    expect(readModelConfig({ CORRAL_MODEL_PROVIDER: 'gateway', ANTHROPIC_BASE_URL: 'https://llm.internal.example', CORRAL_MODEL_API_KEY_PARAMETER: '/k' })).toEqual({
      provider: 'gateway',
      baseUrl: 'https://llm.internal.example',
      apiKeyParameter: '/k',
    });
    // The harness's model calls through the proxy service: its address, never a key.
    expect(readModelConfig({ CORRAL_MODEL_PROXY_URL: 'http://10.0.1.5:8081/model' })).toEqual({ provider: 'anthropic', proxyUrl: 'http://10.0.1.5:8081/model' });
    expect(() => readModelConfig({ CORRAL_MODEL_PROXY_URL: '10.0.1.5 port 8081' })).toThrow(/CORRAL_MODEL_PROXY_URL/);
  });

  it('reads the harness step: metric dimensions and its safety margin', () => {
    expect(readHarnessStepConfig({ ...base, CORRAL_METRICS_SESSION_DIMENSIONS: 'Agent, environment', CORRAL_WAKE_SAFETY_MARGIN_MS: '2500' })).toMatchObject({
      eventsTable: 'events',
      sessionDimensions: ['agent', 'environment'],
      safetyMarginMs: 2500,
    });
    expect(readHarnessStepConfig(base)).toMatchObject({ sessionDimensions: [], safetyMarginMs: undefined });
    expect(parseSessionDimensions(undefined)).toEqual([]);
    expect(parseSessionDimensions('agent,,')).toEqual(['agent']);
    expect(() => parseSessionDimensions('agent,tenant')).toThrow('CORRAL_METRICS_SESSION_DIMENSIONS: unknown dimension "tenant" (use agent, environment)');
    expect(() => readWakeSafetyMarginMs({ CORRAL_WAKE_SAFETY_MARGIN_MS: '1.5' })).toThrow(/^Corral configuration of the harness step is invalid: CORRAL_WAKE_SAFETY_MARGIN_MS: /);
  });

  it('reads the credential proxy: git URLs must be http(s)', () => {
    expect(readCredentialProxyConfig({ CORRAL_STATE_TABLE: 's', CORRAL_VAULT_KMS_KEY_ID: 'k', CORRAL_GIT_PROXY_URL: 'https://git.proxy.example' })).toEqual({
      stateTable: 's',
      kmsKeyId: 'k',
      gitProxyUrl: 'https://git.proxy.example',
    });
    expect(readCredentialProxyConfig({ CORRAL_STATE_TABLE: 's', CORRAL_GIT_PROXY_URL: 'http://10.0.3.7:3128/git' }).gitProxyUrl).toBe('http://10.0.3.7:3128/git');
    expect(() => readCredentialProxyConfig({ CORRAL_STATE_TABLE: 's', CORRAL_GIT_PROXY_URL: 'ftp://git.proxy.example' })).toThrow(
      /^Corral configuration of the credential proxy is invalid: CORRAL_GIT_PROXY_URL: /,
    );
    expect(() => readCredentialProxyConfig({})).toThrow(/CORRAL_STATE_TABLE/);
  });

  it('reads the sandbox reaper, with a positive idle time or 15 minutes', () => {
    expect(readSandboxReaperConfig({ CORRAL_STATE_TABLE: 's', CORRAL_SANDBOX_CLUSTER: 'c' })).toEqual({ stateTable: 's', cluster: 'c', idleMs: DEFAULT_SANDBOX_IDLE_MS, workspaceLimits: {} });
    // With the bucket, the capability key and limits, it keeps workspaces (lambdas/sandbox-reaper/handler.ts).
    const key = 'arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';
    expect(
      readSandboxReaperConfig({
        CORRAL_STATE_TABLE: 's',
        CORRAL_SANDBOX_CLUSTER: 'c',
        CORRAL_BLOB_BUCKET: 'corral-blobs-1',
        CORRAL_SANDBOX_CAPABILITY_KEY: key,
        CORRAL_WORKSPACE_SNAPSHOT_MAX_BYTES: '1048576',
      }),
    ).toEqual({ stateTable: 's', cluster: 'c', idleMs: DEFAULT_SANDBOX_IDLE_MS, blobBucket: 'corral-blobs-1', sandboxCapabilityKey: key, workspaceLimits: { maxBytes: 1048576 } });
    expect(() => readSandboxReaperConfig({ CORRAL_STATE_TABLE: 's', CORRAL_SANDBOX_CLUSTER: 'c', CORRAL_SANDBOX_CAPABILITY_KEY: 'secret==' })).toThrow(/CORRAL_SANDBOX_CAPABILITY_KEY: expected a KMS key ARN/);
    expect(DEFAULT_SANDBOX_IDLE_MS).toBe(900_000);
    expect(readSandboxIdleMs({ CORRAL_SANDBOX_IDLE_MS: '60000' })).toBe(60000);
    for (const bad of ['0', '-1', 'soon']) expect(() => readSandboxIdleMs({ CORRAL_SANDBOX_IDLE_MS: bad })).toThrow(`CORRAL_SANDBOX_IDLE_MS must be a positive number of milliseconds, got "${bad}"`);
    expect(() => readSandboxReaperConfig({ CORRAL_STATE_TABLE: 's' })).toThrow(/^Corral configuration of the sandbox reaper is invalid: CORRAL_SANDBOX_CLUSTER: /);
  });
});

describe("deployments' schedules", () => {
  it('all three variables or none; ARNs of the right kind', async () => {
    const { readDeploymentSchedulesConfig } = await import('../../lambdas/core/config.js');
    expect(readDeploymentSchedulesConfig({})).toBeUndefined();
    const env = { CORRAL_SCHEDULE_GROUP: 'g', CORRAL_SCHEDULER_ROLE_ARN: 'arn:aws:iam::123456789012:role/s', CORRAL_DEPLOYMENT_FIRE_ARN: 'arn:aws:lambda:eu-west-1:123456789012:function:f' };
    expect(readDeploymentSchedulesConfig(env)).toEqual({ group: 'g', roleArn: env.CORRAL_SCHEDULER_ROLE_ARN, targetArn: env.CORRAL_DEPLOYMENT_FIRE_ARN });
    expect(() => readDeploymentSchedulesConfig({ CORRAL_SCHEDULE_GROUP: 'g' })).toThrow(/CORRAL_SCHEDULER_ROLE_ARN, CORRAL_DEPLOYMENT_FIRE_ARN: required/);
    expect(() => readDeploymentSchedulesConfig({ ...env, CORRAL_SCHEDULER_ROLE_ARN: 'role' })).toThrow(/expected an IAM role ARN/);
    expect(() => readDeploymentSchedulesConfig({ ...env, CORRAL_DEPLOYMENT_FIRE_ARN: 'f' })).toThrow(/expected a Lambda function ARN/);
  });
});

describe('CORRAL_WARM_POOL', () => {
  it('reads sizes per environment and the age a pooled sandbox may reach, within the hard maximum', () => {
    expect(readWarmPool({})).toBeUndefined();
    expect(readWarmPool({ CORRAL_WARM_POOL: 'env_a=2, env_b=1' })).toEqual({ sizes: { env_a: 2, env_b: 1 }, maxAgeMs: DEFAULT_WARM_POOL_MAX_AGE_MS });
    expect(DEFAULT_WARM_POOL_MAX_AGE_MS).toBe(1_800_000);
    expect(readWarmPool({ CORRAL_WARM_POOL: 'env_a=1', CORRAL_WARM_POOL_MAX_AGE_MS: '60000' })).toEqual({ sizes: { env_a: 1 }, maxAgeMs: 60_000 });
    expect(WARM_POOL_MAX_SIZE).toBe(10);
    expect(readWarmPool({ CORRAL_WARM_POOL: `env_a=${WARM_POOL_MAX_SIZE}` })!.sizes.env_a).toBe(WARM_POOL_MAX_SIZE);
    expect(() => readWarmPool({ CORRAL_WARM_POOL: `env_a=${WARM_POOL_MAX_SIZE + 1}` })).toThrow(`CORRAL_WARM_POOL: the pool of env_a may hold at most ${WARM_POOL_MAX_SIZE} sandboxes, got ${WARM_POOL_MAX_SIZE + 1}`);
    for (const bad of ['env_a', 'env_a=-1', 'env_a=x', 'env a=1', 'env_a=1,env_a=2']) expect(() => readWarmPool({ CORRAL_WARM_POOL: bad })).toThrow(/^CORRAL_WARM_POOL/);
    for (const bad of ['0', '-1', 'soon']) expect(() => readWarmPool({ CORRAL_WARM_POOL: 'env_a=1', CORRAL_WARM_POOL_MAX_AGE_MS: bad })).toThrow(/^CORRAL_WARM_POOL_MAX_AGE_MS must be a positive integer/);
  });
});

describe('CORRAL_OIDC_ISSUERS', () => {
  const issuer = { issuer: 'https://idp.example.com/realms/acme', audiences: ['corral'], tenant: 'acme', roles: { eng: 'developer' } };
  const read = (v: unknown) => readOidcIssuers({ CORRAL_OIDC_ISSUERS: typeof v === 'string' ? v : JSON.stringify(v) });

  it('is part of the contract; unset or empty means no issuer', () => {
    expect(CORRAL_ENV.oidcIssuers).toBe('CORRAL_OIDC_ISSUERS');
    expect(readOidcIssuers({})).toEqual([]);
    expect(read('')).toEqual([]);
    expect(read([])).toEqual([]);
  });

  it('reads issuers with their defaults', () => {
    expect(read([issuer])).toEqual([
      { issuer: issuer.issuer, audiences: ['corral'], tenant: 'acme', groupsClaim: 'groups', roles: { eng: 'developer' }, clientId: null, scopes: ['openid', 'profile', 'offline_access'], clockSkewSeconds: 60 },
    ]);
    expect(read([{ ...issuer, groups_claim: 'cognito:groups', client_id: 'cli', scopes: ['openid'], clock_skew_seconds: 5 }])[0]).toMatchObject({ groupsClaim: 'cognito:groups', clientId: 'cli', scopes: ['openid'], clockSkewSeconds: 5 });
    expect(read([{ ...issuer, issuer: 'http://127.0.0.1:9000' }])[0].issuer).toBe('http://127.0.0.1:9000');
  });

  it('refuses what it cannot trust or does not know, naming the variable', () => {
    expect(() => read('{not json')).toThrow(/CORRAL_OIDC_ISSUERS: not valid JSON/);
    expect(() => read([{ ...issuer, issuer: 'http://idp.example.com' }])).toThrow(/CORRAL_OIDC_ISSUERS \(item 0.issuer\): expected an https URL/);
    expect(() => read([{ ...issuer, audiences: [] }])).toThrow(/CORRAL_OIDC_ISSUERS \(item 0.audiences\)/);
    expect(() => read([{ ...issuer, roles: { eng: 'superuser' } }])).toThrow(/CORRAL_OIDC_ISSUERS \(item 0.roles.eng\)/);
    expect(() => read([{ ...issuer, roles: {} }])).toThrow(/at least one group/);
    expect(() => read([{ ...issuer, tenant: 'a b' }])).toThrow(/item 0.tenant/);
    expect(() => read([{ ...issuer, client_secret: 'x' }])).toThrow(/client_secret/);
    expect(() => read([issuer, { ...issuer, tenant: 'other' }])).toThrow(/listed twice with an audience in common/);
    expect(read([issuer, { ...issuer, tenant: 'other', audiences: ['corral-other'] }]).map((i) => i.tenant)).toEqual(['acme', 'other']);
  });
});
