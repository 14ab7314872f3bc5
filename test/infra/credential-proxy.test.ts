import { readFileSync } from 'node:fs';
import { App, type Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { IConstruct } from 'constructs';
import { beforeAll, describe, expect, it } from 'vitest';
import { CorralStack } from '../../infra/lib/corral-stack.js';

/**
 * The credential proxy in the synthesized template: the only role that may read (or write) the
 * vault's secrets, scoped to `corral/vault/*`; invoked by the harness and the API, by nothing
 * else; and the sandbox task role still has no permission at all.
 */
const cdkContext = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')).context as Record<string, unknown>;

type Statement = { Effect: string; Action: string | string[]; Resource?: unknown; Sid?: string };
type Resource = { Type: string; Properties: Record<string, any> };
const asArray = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
const logicalId = (stack: Stack, c: IConstruct) => stack.getLogicalId(c.node.defaultChild as never);

describe('CredentialProxy construct in the stack', () => {
  let stack: CorralStack;
  let resources: Record<string, Resource>;

  /** Every statement attached to each role, by role logical id. */
  let byRole: Map<string, Statement[]>;

  beforeAll(() => {
    const app = new App({ context: { ...cdkContext, 'aws:cdk:bundling-stacks': [] } });
    stack = new CorralStack(app, 'CorralProxyTest');
    resources = Template.fromStack(stack).toJSON().Resources;
    byRole = new Map();
    for (const [id, r] of Object.entries(resources)) {
      if (r.Type === 'AWS::IAM::Role') {
        byRole.set(id, asArray(r.Properties.Policies).flatMap((p: any) => p.PolicyDocument.Statement));
      }
    }
    for (const r of Object.values(resources)) {
      if (r.Type !== 'AWS::IAM::Policy') continue;
      for (const role of asArray(r.Properties.Roles as Array<{ Ref: string }>)) byRole.get(role.Ref)?.push(...r.Properties.PolicyDocument.Statement);
    }
  });

  const roleOf = (fn: IConstruct) => resources[logicalId(stack, fn)].Properties.Role['Fn::GetAtt'][0] as string;
  const actionsOf = (roleId: string) => (byRole.get(roleId) ?? []).filter((s) => s.Effect === 'Allow').flatMap((s) => asArray(s.Action));

  it('only the proxy role touches Secrets Manager under corral/vault/; the webhook roles only under corral/webhook/', () => {
    const proxyRole = roleOf(stack.credentialProxy.function);
    const withSecrets = [...byRole.entries()].filter(([, st]) => st.some((s) => asArray(s.Action).some((a) => /^secretsmanager:|^\*$/i.test(a))));
    const webhookRoles = [roleOf(stack.api.handler), expect.stringMatching(/^WebhooksFunctionServiceRole/)];
    expect(withSecrets.map(([id]) => id).sort()).toEqual(expect.arrayContaining([proxyRole, ...webhookRoles]));
    expect(withSecrets).toHaveLength(3);
    // The API (it writes new signing secrets) and the delivery function (it reads them) touch only webhook secrets.
    for (const [id, statements] of withSecrets.filter(([id]) => id !== proxyRole)) {
      const onSecrets = statements.filter((s) => asArray(s.Action).some((a) => /^secretsmanager:/i.test(a)));
      for (const s of onSecrets) expect(JSON.stringify(s.Resource), id).toMatch(/:secret:corral\/webhook\//);
      expect(JSON.stringify(onSecrets), id).not.toMatch(/corral\/vault/);
    }
    const statement = byRole.get(proxyRole)!.find((s) => asArray(s.Action).includes('secretsmanager:GetSecretValue'))!;
    expect(JSON.stringify(statement.Resource)).toContain(':secret:corral/vault/*');
    expect(asArray(statement.Resource)).toHaveLength(1);
    // no role anywhere holds a managed policy that could read secrets
    for (const r of Object.values(resources)) {
      if (r.Type === 'AWS::IAM::Role') expect(JSON.stringify(r.Properties.ManagedPolicyArns ?? [])).not.toMatch(/SecretsManager|AdministratorAccess|PowerUser|ReadOnlyAccess/);
    }
  });

  it('the proxy reads the state table and does nothing else with AWS', () => {
    const actions = actionsOf(roleOf(stack.credentialProxy.function));
    const other = actions.filter((a) => !a.startsWith('secretsmanager:') && !a.startsWith('xray:') && !a.startsWith('logs:'));
    expect(other.sort()).toEqual(['dynamodb:GetItem', 'dynamodb:Query']);
    const fn = resources[logicalId(stack, stack.credentialProxy.function)].Properties;
    expect(fn.Environment.Variables.CORRAL_STATE_TABLE).toEqual({ Ref: logicalId(stack, stack.sessionLog.state) });
    expect(fn.VpcConfig.SecurityGroupIds).toEqual([{ 'Fn::GetAtt': [logicalId(stack, stack.credentialProxy.securityGroup), 'GroupId'] }]);
    expect(fn.Timeout).toBe(300);
  });

  it('the harness and the API may invoke it (and know its name); the stream, the sandboxes and nobody else may not', () => {
    const proxyFn = logicalId(stack, stack.credentialProxy.function);
    const invokers = [...byRole.entries()]
      .filter(([, st]) => st.some((s) => asArray(s.Action).includes('lambda:InvokeFunction') && JSON.stringify(s.Resource).includes(proxyFn)))
      .map(([id]) => id)
      .sort();
    expect(invokers).toEqual([roleOf(stack.harness.function), roleOf(stack.api.handler)].sort());
    // no resource policy opens it to anything else (API Gateway, other accounts, a function URL)
    const permissions = Object.values(resources).filter((r) => r.Type === 'AWS::Lambda::Permission' && JSON.stringify(r.Properties.FunctionName).includes(proxyFn));
    expect(permissions).toEqual([]);
    expect(Object.values(resources).filter((r) => r.Type === 'AWS::Lambda::Url')).toEqual([]);
    for (const fn of [stack.harness.function, stack.api.handler]) {
      expect(resources[logicalId(stack, fn)].Properties.Environment.Variables.CORRAL_CREDENTIAL_PROXY_FUNCTION).toEqual({ Ref: proxyFn });
    }
    expect(resources[logicalId(stack, stack.api.streamHandler)].Properties.Environment.Variables.CORRAL_CREDENTIAL_PROXY_FUNCTION).toBeUndefined();
  });

  it('the sandbox task role has no permission at all', () => {
    const taskDef = resources[logicalId(stack, stack.sandboxes.taskDefinition)].Properties;
    const taskRole = taskDef.TaskRoleArn['Fn::GetAtt'][0] as string;
    expect(byRole.get(taskRole)).toEqual([]);
    expect(resources[taskRole].Properties.ManagedPolicyArns).toBeUndefined();
  });
});
