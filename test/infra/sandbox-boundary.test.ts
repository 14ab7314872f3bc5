import { readFileSync } from 'node:fs';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { stackPropsFromContext, type ContextKey } from '../../infra/lib/context.js';
import { CorralStack, type CorralStackProps } from '../../infra/lib/corral-stack.js';
import { sandboxLimitsFor } from '../../infra/lib/constructs/sandboxes.js';
import { CORRAL_ENV, readServicesConfig } from '../../lambdas/core/config.js';
import { CAPABILITY_ENCRYPTION_CONTEXT } from '../../lambdas/core/sandbox/sealing.js';
import { DEFAULT_SANDBOX_LIMITS, SANDBOX_LIMITS_ENV, formatSandboxLimits, parseSandboxLimits } from '../../sandbox/limits.js';

/**
 * The sandbox boundary as the template states it (docs/SECURITY.md): the capability key usable by
 * the harness and the API only, the tools' limits in the task definition, the repository rule's
 * setting on the API. The rehearsal's `sandbox-boundary` scenario runs the same template.
 */
const cdkContext = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')).context as Record<string, unknown>;
function synth(props: CorralStackProps = {}) {
  const app = new App({ context: { ...cdkContext, 'aws:cdk:bundling-stacks': [] } });
  const stack = new CorralStack(app, 'BoundaryTest', props);
  return { stack, template: Template.fromStack(stack) };
}
const fromContext = (ctx: Partial<Record<ContextKey, string>>) => stackPropsFromContext((k) => ctx[k]).props;

type Statement = { Effect: string; Action: string | string[]; Resource?: unknown; Condition?: unknown; Principal?: unknown };
type Resource = { Type: string; Properties: Record<string, any> };
const asArray = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** Every IAM statement of each role: inline policies and AWS::IAM::Policy resources attached to it. */
function statementsByRole(resources: Record<string, Resource>): Map<string, Statement[]> {
  const out = new Map<string, Statement[]>();
  for (const [id, r] of Object.entries(resources)) {
    if (r.Type !== 'AWS::IAM::Role') continue;
    out.set(id, asArray(r.Properties.Policies as Array<{ PolicyDocument: { Statement: Statement[] } }>).flatMap((p) => p.PolicyDocument.Statement));
  }
  for (const r of Object.values(resources)) {
    if (r.Type !== 'AWS::IAM::Policy') continue;
    for (const ref of asArray(r.Properties.Roles as Array<{ Ref: string }>)) out.get(ref.Ref)?.push(...(r.Properties.PolicyDocument as { Statement: Statement[] }).Statement);
  }
  return out;
}

/** Could this statement let its role use a KMS key for data (any key: `*`, or the given one)? */
function usesKey(s: Statement, keyId: string): boolean {
  if (s.Effect !== 'Allow') return false;
  const acts = asArray(s.Action).map((a) => a.toLowerCase());
  const data = acts.some((a) => a === '*' || (a.startsWith('kms:') && /^(\*|decrypt|encrypt|generatedatakey.*|reencrypt.*|\*?[a-z]*\*)$/.test(a.slice(4))));
  if (!data) return false;
  const resources = asArray(s.Resource).map((r) => JSON.stringify(r));
  return resources.some((r) => r === '"*"' || r.includes(`"${keyId}"`));
}

describe('sandbox boundary on AWS: the template', () => {
  let resources: Record<string, Resource>;
  let stack: CorralStack;
  beforeAll(() => {
    const s = synth();
    stack = s.stack;
    resources = s.template.toJSON().Resources;
  }, 180_000);

  const id = (c: { node: { defaultChild?: unknown } }) => stack.getLogicalId(c.node.defaultChild as never);
  const roleOf = (fnId: string) => resources[fnId].Properties.Role['Fn::GetAtt'][0] as string;

  it('lets only the harness and the API function use the capability key, and the reaper open with it, for data keys of sandbox capabilities', () => {
    const keyId = id(stack.sandboxes.capabilityKey);
    expect(resources[keyId].Type).toBe('AWS::KMS::Key');
    expect(resources[keyId].Properties.EnableKeyRotation).toBe(true);
    const users = [...statementsByRole(resources)].filter(([, st]) => st.some((s) => usesKey(s, keyId))).map(([roleId]) => roleId);
    const harness = roleOf(id(stack.harness.function));
    const api = roleOf(id(stack.api.handler));
    const reaper = roleOf(id(stack.sandboxReaper.function));
    expect(users.sort()).toEqual([harness, api, reaper].sort());
    const context = { StringEquals: Object.fromEntries(Object.entries(CAPABILITY_ENCRYPTION_CONTEXT).map(([k, v]) => [`kms:EncryptionContext:${k}`, v])) };
    // The reaper opens capabilities to snapshot workspaces; it seals none.
    expect(statementsByRole(resources).get(reaper)!.filter((s) => usesKey(s, keyId))).toEqual([
      { Effect: 'Allow', Action: 'kms:Decrypt', Resource: { 'Fn::GetAtt': [keyId, 'Arn'] }, Condition: context },
    ]);
    for (const roleId of [harness, api]) {
      const grants = statementsByRole(resources).get(roleId)!.filter((s) => usesKey(s, keyId));
      expect(grants).toEqual([
        {
          Effect: 'Allow',
          Action: ['kms:Decrypt', 'kms:GenerateDataKey'],
          Resource: { 'Fn::GetAtt': [keyId, 'Arn'] },
          Condition: { StringEquals: Object.fromEntries(Object.entries(CAPABILITY_ENCRYPTION_CONTEXT).map(([k, v]) => [`kms:EncryptionContext:${k}`, v])) },
        },
      ]);
    }
    // The key policy names no role directly: it delegates to the account's IAM policies only.
    for (const s of resources[keyId].Properties.KeyPolicy.Statement as Statement[]) {
      expect(JSON.stringify(s.Principal)).toMatch(/:root/);
    }
    // The check itself would see a wider grant.
    expect(usesKey({ Effect: 'Allow', Action: 'kms:*', Resource: '*' }, keyId)).toBe(true);
    expect(usesKey({ Effect: 'Allow', Action: 'kms:Decrypt', Resource: { 'Fn::GetAtt': [keyId, 'Arn'] } }, keyId)).toBe(true);
    expect(usesKey({ Effect: 'Allow', Action: 'kms:DescribeKey', Resource: '*' }, keyId)).toBe(false);
  });

  it('gives the key ARN (no secret) to the harness, the API function and the reaper only, which parse it', () => {
    const withKey = Object.entries(resources)
      .filter(([, r]) => r.Type === 'AWS::Lambda::Function' && r.Properties.Environment?.Variables?.[CORRAL_ENV.sandboxCapabilityKey])
      .map(([fnId]) => fnId);
    expect(withKey.sort()).toEqual([id(stack.harness.function), id(stack.api.handler), id(stack.sandboxReaper.function)].sort());
    for (const fnId of withKey) {
      expect(resources[fnId].Properties.Environment.Variables[CORRAL_ENV.sandboxCapabilityKey]).toEqual({ 'Fn::GetAtt': [id(stack.sandboxes.capabilityKey), 'Arn'] });
    }
    const cfg = readServicesConfig({
      CORRAL_EVENTS_TABLE: 'e',
      CORRAL_STATE_TABLE: 's',
      CORRAL_WAKE_QUEUE_URL: 'https://sqs.us-east-1.amazonaws.com/123456789012/q.fifo',
      [CORRAL_ENV.sandboxCapabilityKey]: 'arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab',
    });
    expect(cfg.sandboxCapabilityKey).toMatch(/:key\//);
    expect(() => readServicesConfig({ CORRAL_EVENTS_TABLE: 'e', CORRAL_STATE_TABLE: 's', CORRAL_WAKE_QUEUE_URL: 'https://x/1/q', [CORRAL_ENV.sandboxCapabilityKey]: 'base64secret==' })).toThrow(
      /CORRAL_SANDBOX_CAPABILITY_KEY: expected a KMS key ARN/,
    );
  });

  it('puts the default limits in the sandbox task definition, inside the task size', () => {
    const td = resources[id(stack.sandboxes.taskDefinition)].Properties;
    const env = Object.fromEntries((td.ContainerDefinitions[0].Environment as Array<{ Name: string; Value: string }>).map((e) => [e.Name, e.Value]));
    expect(env[SANDBOX_LIMITS_ENV]).toBe(formatSandboxLimits(DEFAULT_SANDBOX_LIMITS));
    expect(DEFAULT_SANDBOX_LIMITS.memory).toBeLessThanOrEqual(Number(td.Memory) * 1024 ** 2);
    // The API's repository rule has no extra origin unless the operator sets one.
    expect(resources[id(stack.api.handler)].Properties.Environment.Variables[CORRAL_ENV.repositoryUrlAllow]).toBeUndefined();
  });
});

describe('sandbox boundary on AWS: stack settings', () => {
  it('passes limits and allowed repository origins from CDK context to the task and the API function', () => {
    const { stack, template } = synth(fromContext({ sandboxLimits: 'processes=64,file_size=8m', repositoryUrlAllow: 'https://git.internal.example:8443' }));
    const resources = template.toJSON().Resources as Record<string, Resource>;
    const td = resources[stack.getLogicalId(stack.sandboxes.taskDefinition.node.defaultChild as never)].Properties;
    const env = Object.fromEntries((td.ContainerDefinitions[0].Environment as Array<{ Name: string; Value: string }>).map((e) => [e.Name, e.Value]));
    expect(parseSandboxLimits(env[SANDBOX_LIMITS_ENV])).toEqual({ ...DEFAULT_SANDBOX_LIMITS, processes: 64, file_size: 8 * 1024 ** 2 });
    const api = resources[stack.getLogicalId(stack.api.handler.node.defaultChild as never)].Properties.Environment.Variables;
    expect(api[CORRAL_ENV.repositoryUrlAllow]).toBe('https://git.internal.example:8443');
    expect(readServicesConfig({ CORRAL_EVENTS_TABLE: 'e', CORRAL_STATE_TABLE: 's', CORRAL_WAKE_QUEUE_URL: 'https://x/1/q', ...{ [CORRAL_ENV.repositoryUrlAllow]: api[CORRAL_ENV.repositoryUrlAllow] } }).repositoryUrlAllow).toEqual([
      'https://git.internal.example:8443',
    ]);
  }, 120_000); // a synthesis of the default stack (the proxy service with it)

  it('refuses limits the task cannot hold, and lowers the defaults to fit a small task', () => {
    expect(() => fromContext({ sandboxLimits: 'memry=1g' })).toThrow(/context sandboxLimits: .*memry/);
    expect(() => fromContext({ repositoryUrlAllow: 'file:///srv/git' })).toThrow(/context repositoryUrlAllow: .*not an http\(s\) origin/);
    expect(() => sandboxLimitsFor({ memory: 4 * 1024 ** 3 }, 2048, 20)).toThrow(/memory \(4 GiB\) is above the task's memory \(2048 MiB\)/);
    expect(() => sandboxLimitsFor({ disk: 30 * 1024 ** 3 }, 2048, 20)).toThrow(/disk \(30 GiB\) is above the task's ephemeral storage \(20 GiB\)/);
    expect(sandboxLimitsFor(undefined, 512, 20).memory).toBe(512 * 1024 ** 2);
    expect(sandboxLimitsFor(undefined, 8192, 21)).toEqual(DEFAULT_SANDBOX_LIMITS);
    expect(() => synth(fromContext({ sandboxMemoryMiB: '1024', sandboxLimits: 'memory=2g' }))).toThrow(/above the task's memory/);
  });
});
