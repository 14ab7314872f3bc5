import { readFileSync } from 'node:fs';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { beforeAll, describe, expect, it } from 'vitest';
import { stackPropsFromContext } from '../../infra/lib/context.js';
import { CorralStack } from '../../infra/lib/corral-stack.js';
import { bedrockInvokeStatement } from '../../infra/lib/constructs/harness-step.js';
import { MODEL_TABLE } from '../../lambdas/core/harness/model-ids.js';
import { readModelConfig, type Env } from '../../lambdas/core/config.js';

/**
 * The model provider in the synthesized template. With `bedrock`, the harness role may invoke the
 * configured models and nothing else of Bedrock, and the stack holds no model key: no parameter
 * named, no SSM read granted to anyone. With `anthropic` (the default), the key parameter and its
 * one grant are as before, and no role may call Bedrock.
 */
const cdkContext = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')).context as Record<string, unknown>;

type Statement = { Effect: string; Action: string | string[]; Resource?: unknown };
type Resource = { Type: string; Properties: Record<string, any> };
const asArray = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** A resource ARN with CloudFormation's pseudo parameters written out. */
const arnOf = (r: unknown): string =>
  typeof r === 'string'
    ? r
    : (r as { 'Fn::Join': [string, unknown[]] })['Fn::Join'][1].map((p) => (typeof p === 'string' ? p : `\${${(p as { Ref: string }).Ref}}`)).join('');

function synth(context: Record<string, unknown>, id: string) {
  const app = new App({ context: { ...cdkContext, 'aws:cdk:bundling-stacks': [] } });
  const stack = new CorralStack(app, id, stackPropsFromContext((k) => context[k]).props);
  const resources = Template.fromStack(stack).toJSON().Resources as Record<string, Resource>;
  /** Allow statements by role logical id. */
  const byRole = new Map<string, Statement[]>();
  for (const [rid, r] of Object.entries(resources)) if (r.Type === 'AWS::IAM::Role') byRole.set(rid, asArray(r.Properties.Policies).flatMap((p: any) => p.PolicyDocument.Statement));
  for (const r of Object.values(resources)) {
    if (r.Type !== 'AWS::IAM::Policy') continue;
    for (const role of asArray(r.Properties.Roles as Array<{ Ref: string }>)) byRole.get(role.Ref)?.push(...r.Properties.PolicyDocument.Statement);
  }
  const fnResource = (fn: IConstruct) => resources[stack.getLogicalId(fn.node.defaultChild as never)];
  const roleOf = (fn: IConstruct) => fnResource(fn).Properties.Role['Fn::GetAtt'][0] as string;
  const envOf = (fn: IConstruct) => (fnResource(fn).Properties.Environment?.Variables ?? {}) as Record<string, unknown>;
  /** Statements of any role whose actions match. */
  const granting = (action: RegExp) =>
    [...byRole.entries()].flatMap(([role, st]) => st.filter((s) => s.Effect === 'Allow' && asArray(s.Action).some((a) => action.test(a) || a === '*')).map((s) => ({ role, s })));
  const arn = arnOf;
  return { app, stack, resources, roleOf, envOf, granting, arn };
}

describe('the bedrock model provider in the template', () => {
  let s: ReturnType<typeof synth>;
  beforeAll(() => {
    s = synth({ modelProvider: 'bedrock', models: 'claude-sonnet-4-5,claude-haiku-4-5' }, 'CorralBedrock');
  });

  it('grants the harness, and only the harness, Bedrock invoke on the configured models only', () => {
    const grants = s.granting(/^bedrock:/);
    expect(grants.map((g) => g.role)).toEqual([s.roleOf(s.stack.harness.function)]);
    expect(asArray(grants[0].s.Action)).toEqual(['bedrock:InvokeModelWithResponseStream']);
    expect(asArray(grants[0].s.Resource).map(s.arn).sort()).toEqual(
      [
        'arn:${AWS::Partition}:bedrock:*::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0',
        'arn:${AWS::Partition}:bedrock:*::foundation-model/anthropic.claude-haiku-4-5-20251001-v1:0',
        // No prefix configured: the profiles of these models in any geography (the harness picks the region's at run time).
        'arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:inference-profile/*.anthropic.claude-sonnet-4-5-20250929-v1:0',
        'arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:inference-profile/*.anthropic.claude-haiku-4-5-20251001-v1:0',
      ].sort(),
    );
  });

  it('names the one inference profile when its prefix and region are configured, and every model of the table by default', () => {
    const stack = new Stack(new App(), 'Grant');
    const exact = stack.resolve(bedrockInvokeStatement(stack, { models: ['claude-sonnet-4-5'], bedrockProfile: 'eu', bedrockRegion: 'eu-west-1' }).toStatementJson());
    expect(asArray(exact.Resource).map(arnOf)).toEqual([
      'arn:${AWS::Partition}:bedrock:*::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0',
      'arn:${AWS::Partition}:bedrock:eu-west-1:${AWS::AccountId}:inference-profile/eu.anthropic.claude-sonnet-4-5-20250929-v1:0',
    ]);
    const all = stack.resolve(bedrockInvokeStatement(stack, {}).toStatementJson());
    const foundation = new Set(Object.values(MODEL_TABLE).map((m) => `arn:\${AWS::Partition}:bedrock:*::foundation-model/${m.bedrock}`));
    expect(new Set(asArray(all.Resource).map(arnOf).filter((r) => r.includes('foundation-model')))).toEqual(foundation);
  });

  it('passes the cdk-nag checks: each wildcard of the grant is a region or a geography, acknowledged with its reason', () => {
    const report = new AwsSolutionsChecks(s.app).validateScope(s.app);
    expect(report.violations.map((v) => `${v.ruleName} ${v.violatingResources.map((r) => r.constructPath).join(', ')}`)).toEqual([]);
  });

  it('has no model key: no parameter named, no SSM read granted, none in any environment', () => {
    expect(s.granting(/^ssm:/)).toEqual([]);
    expect(Object.values(s.resources).filter((r) => r.Type === 'AWS::SSM::Parameter')).toEqual([]);
    const template = JSON.stringify(s.resources);
    expect(template).not.toContain('CORRAL_MODEL_API_KEY_PARAMETER');
    expect(template).not.toContain('anthropic-api-key');
    expect(s.envOf(s.stack.harness.function)).toMatchObject({ CORRAL_MODEL_PROVIDER: 'bedrock', CORRAL_MODELS: 'claude-sonnet-4-5,claude-haiku-4-5' });
    // The API knows the provider and its models, to refuse agents it cannot serve.
    expect(s.envOf(s.stack.api.handler)).toMatchObject({ CORRAL_MODEL_PROVIDER: 'bedrock', CORRAL_MODELS: 'claude-sonnet-4-5,claude-haiku-4-5' });
    // ...in the shape the functions' configuration reads.
    expect(readModelConfig(s.envOf(s.stack.harness.function) as Env)).toEqual({ provider: 'bedrock', models: ['claude-sonnet-4-5', 'claude-haiku-4-5'] });
    expect(readModelConfig(s.envOf(s.stack.api.handler) as Env)).toMatchObject({ provider: 'bedrock', models: ['claude-sonnet-4-5', 'claude-haiku-4-5'] });
  });

  it('refuses settings that cannot work: a key parameter, or a model Bedrock has no id for', () => {
    expect(() => synth({ modelProvider: 'bedrock', modelApiKeyParameter: '/k' }, 'CorralBedrockKey')).toThrow(/no model key parameter/);
    expect(() => synth({ modelProvider: 'bedrock', models: 'claude-fake' }, 'CorralBedrockFake')).toThrow(/no Bedrock id for model claude-fake/);
    expect(() => synth({ modelProvider: 'vertex' }, 'CorralVertex')).toThrow(/context modelProvider/);
  });
});

describe('the default (anthropic) model provider in the template', () => {
  it('has the proxy service read the key from its SSM parameter (the harness calls through it, holding none), and no role may call Bedrock', () => {
    const s = synth({}, 'CorralAnthropic');
    expect(s.granting(/^bedrock:/)).toEqual([]);
    const ssm = s.granting(/^ssm:/);
    const proxyTaskRole = s.stack.getLogicalId(s.stack.proxyService!.taskRole.node.defaultChild as never);
    expect(ssm.map((g) => g.role)).toEqual([proxyTaskRole]);
    expect(asArray(ssm[0].s.Resource).map(s.arn)).toEqual(['arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/corral/anthropic-api-key']);
    const harnessEnv = s.envOf(s.stack.harness.function);
    expect(harnessEnv).not.toHaveProperty('CORRAL_MODEL_PROVIDER');
    expect(harnessEnv).not.toHaveProperty('CORRAL_MODEL_API_KEY_PARAMETER');
    expect(harnessEnv).toHaveProperty('CORRAL_MODEL_PROXY_URL');
  });
});
