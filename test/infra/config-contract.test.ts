import { readFileSync } from 'node:fs';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { IConstruct } from 'constructs';
import { beforeAll, describe, expect, it } from 'vitest';
import { stackPropsFromContext } from '../../infra/lib/context.js';
import { CorralStack, type CorralStackProps } from '../../infra/lib/corral-stack.js';
import {
  CORRAL_ENV,
  isConfigEnvName,
  readApiConfig,
  readCredentialProxyConfig,
  readHarnessStepConfig,
  readOidcIssuers,
  readSandboxReaperConfig,
  readWebhookConfig,
  type Env,
} from '../../lambdas/core/config.js';
import { readTelemetryConfig } from '../../lambdas/core/telemetry/config.js';

/**
 * The configuration contract (lambdas/core/config.ts) against the synthesized template: every
 * Corral variable a function's environment sets is one the contract knows, and each function's
 * environment, with CloudFormation references replaced by values of the shape they resolve to,
 * parses with the parser its Lambda entry uses.
 */
const cdkContext = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')).context as Record<string, unknown>;

type Resources = Record<string, { Type: string; Properties: Record<string, unknown> }>;

const REGION = 'eu-west-1';
const ACCOUNT = '123456789012';
const PSEUDO: Record<string, string> = { 'AWS::Region': REGION, 'AWS::AccountId': ACCOUNT, 'AWS::Partition': 'aws', 'AWS::URLSuffix': 'amazonaws.com' };
const hex = (id: string) => Buffer.from(id).toString('hex').slice(0, 17).padEnd(17, '0');

/** A value of the shape a reference resolves to at deploy time; unknown kinds fail the test, so a new one gets a shape. */
function resolve(value: unknown, resources: Resources, parameters: Record<string, { Default?: string }> = {}): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  const v = value as Record<string, unknown>;
  if (typeof v.Ref === 'string') {
    if (PSEUDO[v.Ref]) return PSEUDO[v.Ref];
    // A stack parameter: the value it deploys with unless the operator gives another.
    if (parameters[v.Ref]) return parameters[v.Ref].Default ?? '';
    const type = resources[v.Ref]?.Type;
    switch (type) {
      case 'AWS::SQS::Queue':
        return `https://sqs.${REGION}.amazonaws.com/${ACCOUNT}/${v.Ref}.fifo`;
      case 'AWS::DynamoDB::Table':
      case 'AWS::Lambda::Function':
      case 'AWS::ECS::Cluster':
      case 'AWS::Scheduler::ScheduleGroup':
        return `Corral-${v.Ref}`;
      case 'AWS::ECS::TaskDefinition':
        return `arn:aws:ecs:${REGION}:${ACCOUNT}:task-definition/${v.Ref}:1`;
      case 'AWS::EC2::Subnet':
        return `subnet-${hex(v.Ref)}`;
      case 'AWS::S3::Bucket':
        return `corral-${v.Ref.toLowerCase()}-${hex(v.Ref).slice(0, 12)}`;
      default:
        throw new Error(`no placeholder for a Ref to ${v.Ref} (${type})`);
    }
  }
  if (Array.isArray(v['Fn::GetAtt'])) {
    const [id, attribute] = v['Fn::GetAtt'] as [string, string];
    const type = resources[id]?.Type;
    if (attribute === 'GroupId' && type === 'AWS::EC2::SecurityGroup') return `sg-${hex(id)}`;
    if (attribute === 'Arn' && type === 'AWS::ECS::Cluster') return `arn:aws:ecs:${REGION}:${ACCOUNT}:cluster/Corral-${id}`;
    if (attribute === 'Arn' && type === 'AWS::IAM::Role') return `arn:aws:iam::${ACCOUNT}:role/Corral-${id}`;
    if (attribute === 'Arn' && type === 'AWS::Lambda::Function') return `arn:aws:lambda:${REGION}:${ACCOUNT}:function:Corral-${id}`;
    if (attribute === 'Arn' && type === 'AWS::KMS::Key') return `arn:aws:kms:${REGION}:${ACCOUNT}:key/${Buffer.from(id).toString('hex').slice(0, 8)}-0000-4000-8000-000000000000`;
    if (attribute === 'QueueUrl' && type === 'AWS::SQS::Queue') return `https://sqs.${REGION}.amazonaws.com/${ACCOUNT}/${id}.fifo`;
    // The proxy service's internal NLB (deployed by default): its name, as ELB gives it.
    if (attribute === 'DNSName' && type === 'AWS::ElasticLoadBalancingV2::LoadBalancer') return `Corral-${id.slice(0, 20)}-${hex(id).slice(0, 12)}.elb.${REGION}.amazonaws.com`;
    throw new Error(`no placeholder for ${id}.${attribute} (${type})`);
  }
  if (Array.isArray(v['Fn::Join'])) {
    const [separator, parts] = v['Fn::Join'] as [string, unknown[]];
    return parts.map((p) => resolve(p, resources, parameters)).join(separator);
  }
  throw new Error(`no placeholder for ${JSON.stringify(value)}`);
}

const newApp = () => new App({ context: { ...cdkContext, 'aws:cdk:bundling-stacks': [] } });
const logicalId = (stack: Stack, c: IConstruct) => stack.getLogicalId(c.node.defaultChild as never);

function synth(props: CorralStackProps, id: string, change?: (stack: CorralStack) => void) {
  const app = newApp();
  const stack = new CorralStack(app, id, props);
  change?.(stack);
  const json = Template.fromStack(stack).toJSON();
  const resources = json.Resources as Resources;
  const parameters = (json.Parameters ?? {}) as Record<string, { Default?: string }>;
  const envOf = (fn: IConstruct): Record<string, unknown> =>
    ((resources[logicalId(stack, fn)].Properties.Environment as { Variables?: Record<string, unknown> } | undefined)?.Variables ?? {});
  /** Each function with the parser its Lambda entry reads its environment with. */
  const functions = {
    harness: { fn: stack.harness.function, parse: readHarnessStepConfig },
    api: { fn: stack.api.handler, parse: readApiConfig },
    stream: { fn: stack.api.streamHandler, parse: readApiConfig },
    credentialProxy: { fn: stack.credentialProxy.function, parse: readCredentialProxyConfig },
    reaper: { fn: stack.sandboxReaper.function, parse: readSandboxReaperConfig },
    webhooks: { fn: stack.webhooks.function, parse: readWebhookConfig },
    // EventBridge Scheduler's target builds the API's services from the API's environment.
    deploymentFire: { fn: stack.deployments.fireFunction, parse: readApiConfig },
  } satisfies Record<string, { fn: IConstruct; parse: (env: Env) => unknown }>;
  const resolved = (fn: IConstruct): Env => Object.fromEntries(Object.entries(envOf(fn)).map(([k, v]) => [k, resolve(v, resources, parameters)]));
  return { stack, resources, envOf, resolved, functions };
}

const VARIANTS: Array<[string, Record<string, unknown>]> = [
  ['defaults', {}],
  [
    'every optional setting',
    {
      anthropicBaseUrl: 'https://llm.example.com',
      modelApiKeyParameter: '/team/model-key',
      metricsSessionDimensions: 'agent,environment',
      sandboxIdleMinutes: '30',
      harnessReservedConcurrency: '10',
      streamMaxConcurrency: '20',
      sandboxLimits: 'processes=128,disk=5g',
      sandboxEphemeralStorageGiB: '40',
      repositoryUrlAllow: 'https://git.internal.example',
      rateLimits: 'write=2400,read=0',
      rateLimitShards: '16',
      apiThrottleRate: '500',
      apiThrottleBurst: '1000',
      oidcIssuers: '[{"issuer":"https://idp.example.com","audiences":["corral"],"tenant":"acme","roles":{"eng":"developer"}}]',
      otlpEndpoint: 'https://otel.example.com:4318',
      otlpHeadersParameter: '/corral/otlp-headers',
    },
  ],
  // A user VPC takes proxyService=none (the proxy service needs the interface endpoints of a VPC the stack makes).
  ['an existing VPC', { proxyService: 'none', vpcId: 'vpc-0abc', privateSubnetIds: 'subnet-0aaa,subnet-0bbb', availabilityZones: 'eu-west-1a,eu-west-1b' }],
];

describe.each(VARIANTS)('the configuration contract, on the stack synthesized with %s', (name, context) => {
  let s: ReturnType<typeof synth>;
  beforeAll(() => {
    s = synth(stackPropsFromContext((k) => context[k]).props, `Contract${name.replace(/\W/g, '')}`);
  });

  it('covers every function of the stack', () => {
    const ours = Object.values(s.resources).filter(
      (r) => r.Type === 'AWS::Lambda::Function' && (r.Properties.Environment as { Variables?: Record<string, unknown> } | undefined)?.Variables?.POWERTOOLS_SERVICE_NAME,
    );
    expect(Object.keys(s.functions)).toHaveLength(ours.length);
  });

  it('sets only Corral and Anthropic variables the configuration module knows', () => {
    for (const [label, { fn }] of Object.entries(s.functions)) {
      const names = Object.keys(s.envOf(fn)).filter((k) => /^(CORRAL|ANTHROPIC)_/.test(k));
      expect(names.length, label).toBeGreaterThan(0);
      expect(names.filter((k) => !isConfigEnvName(k)), label).toEqual([]);
    }
    // The model key is only ever read from SSM, never placed in an environment.
    expect(isConfigEnvName('ANTHROPIC_API_KEY')).toBe(false);
  });

  it('sets trace export on the API and harness functions only with otlpEndpoint, and its headers only as a parameter name', () => {
    for (const [label, { fn }] of Object.entries(s.functions)) {
      const env = s.resolved(fn);
      const exporting = !!context.otlpEndpoint && ['harness', 'api', 'stream'].includes(label);
      expect(readTelemetryConfig(env, 'corral')?.url, label).toBe(exporting ? 'https://otel.example.com:4318/v1/traces' : undefined);
      expect(env[CORRAL_ENV.otlpHeadersParameter], label).toBe(exporting ? '/corral/otlp-headers' : undefined);
      expect(Object.keys(env).filter((k) => /HEADERS$/.test(k) && k.startsWith('OTEL_')), label).toEqual([]);
      // The parameter is readable by the functions that export, and by no other.
      // (A role with many grants has some in a managed "overflow" policy: both kinds are read.)
      const policies = Object.values(s.resources).filter(
        (r) => (r.Type === 'AWS::IAM::Policy' || r.Type === 'AWS::IAM::ManagedPolicy') && JSON.stringify(r.Properties).includes('parameter/corral/otlp-headers'),
      );
      const role = ((s.resources[logicalId(s.stack, fn)].Properties as { Role: { 'Fn::GetAtt': [string, string] } }).Role)['Fn::GetAtt'][0];
      expect(policies.some((p) => JSON.stringify((p.Properties as { Roles: unknown }).Roles).includes(`"${role}"`)), label).toBe(exporting);
    }
  });

  it('gives each function an environment its entry parses', () => {
    const parsed = Object.fromEntries(Object.entries(s.functions).map(([label, { fn, parse }]) => [label, parse(s.resolved(fn))])) as {
      harness: ReturnType<typeof readHarnessStepConfig>;
      api: ReturnType<typeof readApiConfig>;
      stream: ReturnType<typeof readApiConfig>;
      credentialProxy: ReturnType<typeof readCredentialProxyConfig>;
      reaper: ReturnType<typeof readSandboxReaperConfig>;
    };
    const stateTable = `Corral-${logicalId(s.stack, s.stack.sessionLog.state)}`;
    for (const label of ['harness', 'api', 'stream', 'credentialProxy', 'reaper'] as const) expect(parsed[label].stateTable, label).toBe(stateTable);
    // The harness starts sandboxes and the API stops a deleted session's: both get the whole sandbox block.
    for (const label of ['harness', 'api'] as const) {
      expect(parsed[label].sandbox, label).toMatchObject({ containerName: 'agent', port: 8080, assignPublicIp: false });
      expect(parsed[label].credentialProxyFunction, label).toBe(`Corral-${logicalId(s.stack, s.stack.credentialProxy.function)}`);
    }
    if (context.proxyService === 'none') {
      // Opted out of the proxy service: the harness reads the model key itself.
      expect(parsed.harness.model.apiKeyParameter).toBe(context.modelApiKeyParameter ?? '/corral/anthropic-api-key');
      expect(parsed.harness.model.proxyUrl).toBeUndefined();
    } else {
      // The default: the harness calls the model through the proxy service and knows no key.
      expect(parsed.harness.model.apiKeyParameter).toBeUndefined();
      expect(parsed.harness.model.proxyUrl).toMatch(/^http:\/\/[^/]+\.elb\.[a-z0-9-]+\.amazonaws\.com:8081\/model$/);
    }
    expect(parsed.harness.model.baseUrl).toBe(context.anthropicBaseUrl);
    expect(parsed.harness.sessionDimensions).toEqual(context.metricsSessionDimensions ? ['agent', 'environment'] : []);
    // Webhooks: the API and the harness publish (the kick queue), the delivery function dead-letters.
    for (const label of ['api', 'harness'] as const) expect(readWebhookConfig(s.resolved(s.functions[label].fn)).queueUrl, label).toMatch(/^https:\/\/sqs\./);
    expect(readWebhookConfig(s.resolved(s.functions.webhooks.fn))).toMatchObject({ deadLetterQueueUrl: expect.stringMatching(/^https:\/\/sqs\./), secretPrefix: 'corral/' });
    expect(parsed.reaper.idleMs).toBe(Number(context.sandboxIdleMinutes ?? 15) * 60_000);
    expect(parsed.reaper.cluster).toBe(parsed.harness.sandbox?.cluster);
    if (context.privateSubnetIds) expect(parsed.harness.sandbox?.subnets).toEqual(['subnet-0aaa', 'subnet-0bbb']);
    // The two that call sandboxes seal their capabilities with the stack's KMS key; the stream does not.
    expect(parsed.harness.sandboxCapabilityKey).toMatch(/^arn:aws:kms:.*:key\//);
    expect(parsed.api.sandboxCapabilityKey).toBe(parsed.harness.sandboxCapabilityKey);
    expect(parsed.stream.sandboxCapabilityKey).toBeUndefined();
    // The reaper opens them to take workspace snapshots (decrypt only, see the stack test).
    expect(parsed.reaper.sandboxCapabilityKey).toBe(parsed.harness.sandboxCapabilityKey);
    expect(parsed.reaper.workspaceLimits).toEqual({});
    expect(parsed.api.repositoryUrlAllow).toEqual(context.repositoryUrlAllow ? [context.repositoryUrlAllow] : []);
    // One blob bucket for the API, the harness and the reaper; the stream never touches blobs.
    const bucket = `corral-${logicalId(s.stack, s.stack.blobs.bucket).toLowerCase()}-${hex(logicalId(s.stack, s.stack.blobs.bucket)).slice(0, 12)}`;
    for (const label of ['api', 'harness', 'reaper'] as const) expect(parsed[label].blobBucket, label).toBe(bucket);
    expect(parsed.stream.blobBucket).toBeUndefined();
    // Both API functions charge the same per-tenant limits, on the same shards.
    for (const label of ['api', 'stream'] as const) {
      expect(parsed[label].rateLimits, label).toEqual(context.rateLimits ? { create: 300, write: 2400, read: 0 } : { create: 300, write: 1200, read: 6000 });
      expect(parsed[label].rateLimitShards, label).toBe(Number(context.rateLimitShards ?? 10));
      // Both accept the same OIDC issuers (the OidcIssuers parameter; its default here).
      expect(readOidcIssuers(s.resolved(s.functions[label].fn)).map((i) => i.tenant), label).toEqual(context.oidcIssuers ? ['acme'] : []);
    }
  });
});

describe('the contract check itself', () => {
  it('would notice a variable the module does not know, and an environment its parser rejects', () => {
    const s = synth({}, 'ContractMutated', (stack) => stack.harness.function.addEnvironment('CORRAL_SANDBOX_SUBNET', 'subnet-0aaa'));
    const unknown = Object.keys(s.envOf(s.stack.harness.function)).filter((k) => /^(CORRAL|ANTHROPIC)_/.test(k) && !isConfigEnvName(k));
    expect(unknown).toEqual(['CORRAL_SANDBOX_SUBNET']);

    const env = s.resolved(s.stack.harness.function);
    expect(() => readHarnessStepConfig({ ...env, [CORRAL_ENV.sandboxSubnets]: undefined })).toThrow(/CORRAL_SANDBOX_SUBNETS/);
    expect(() => readHarnessStepConfig({ ...env, [CORRAL_ENV.wakeQueueUrl]: 'wake-queue' })).toThrow(/CORRAL_WAKE_QUEUE_URL/);
    expect(() => readCredentialProxyConfig({})).toThrow(/CORRAL_STATE_TABLE/);
    expect(() => readSandboxReaperConfig({ [CORRAL_ENV.stateTable]: 't' })).toThrow(/CORRAL_SANDBOX_CLUSTER/);
    expect(() => readHarnessStepConfig({ ...env, [CORRAL_ENV.wakeSafetyMarginMs]: 'soon' })).toThrow(/CORRAL_WAKE_SAFETY_MARGIN_MS/);
    expect(() => readApiConfig({ ...env, [CORRAL_ENV.rateLimits]: 'write=many' })).toThrow(/CORRAL_RATE_LIMITS: rate limit "write=many"/);
    expect(() => readApiConfig({ ...env, [CORRAL_ENV.rateLimitShards]: '0' })).toThrow(/CORRAL_RATE_LIMIT_SHARDS/);
  });
});
