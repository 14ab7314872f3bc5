import { beforeAll, describe, expect, it } from 'vitest';
import {
  accessDeniedMessage,
  actionMatches,
  arnMatches,
  assumedRoleArn,
  conditionBlockMatches,
  evaluate,
  managedPolicy,
  resourcePolicies,
  resourcePolicyFor,
  role,
  roles,
  type AuthorizationRequest,
  type PolicyStatement,
} from '../../infra/rehearsal/iam.js';
import { createContext, dynamoTables, ecsTaskDefinitions, functions, resourcesOfType, sqsQueues, type CfnTemplate, type ResolveContext } from '../../infra/rehearsal/template.js';
import { keys } from '../../lambdas/core/storage/keys.js';
import { PREVIEW_LIMITS, TablePreviewChannel } from '../../lambdas/core/session/previews.js';
import type { StateTable } from '../../lambdas/core/store.js';
import { synthesizedTemplate } from './synth.js';

const caller = 'arn:aws:sts::111122223333:assumed-role/AppRole/app-fn';
const table = 'arn:aws:dynamodb:us-east-1:111122223333:table/Orders';
const req = (action: string, resource: string, context?: AuthorizationRequest['context']): AuthorizationRequest => ({ principalArn: caller, action, resource, context });
const allow = (s: Partial<PolicyStatement>): PolicyStatement => ({ Effect: 'Allow', ...s });
const deny = (s: Partial<PolicyStatement>): PolicyStatement => ({ Effect: 'Deny', ...s });

describe('action and resource matching', () => {
  it('matches actions case-insensitively with * and ?', () => {
    expect(actionMatches('dynamodb:GetItem', 'DynamoDB:getitem')).toBe(true);
    expect(actionMatches('dynamodb:Get*', 'dynamodb:GetRecords')).toBe(true);
    expect(actionMatches('dynamodb:Get*', 'dynamodb:PutItem')).toBe(false);
    expect(actionMatches('sqs:?eleteMessage', 'sqs:DeleteMessage')).toBe(true);
    expect(actionMatches('sqs:?eleteMessage', 'sqs:DeleteMessageBatch')).toBe(false);
    expect(actionMatches('*', 'anything:AtAll')).toBe(true);
  });

  it('matches resources case-sensitively; * in the resource part spans / and :', () => {
    expect(arnMatches(table, table)).toBe(true);
    expect(arnMatches(table, table.replace('Orders', 'orders'))).toBe(false);
    expect(arnMatches(`${table}/index/*`, `${table}/index/byDate`)).toBe(true);
    expect(arnMatches(`${table}/index/*`, table)).toBe(false);
    expect(arnMatches('arn:aws:dynamodb:*:*:table/Orders', table)).toBe(true);
    expect(arnMatches('arn:aws:dynamodb:us-east-1:111122223333:table/Order?', table)).toBe(true);
    expect(arnMatches('arn:aws:logs:us-east-1:111122223333:log-group:/x:*', 'arn:aws:logs:us-east-1:111122223333:log-group:/x:log-stream:s')).toBe(true);
    expect(arnMatches('arn:aws:sqs:*:111122223333:*', 'arn:aws:sqs:eu-west-1:999988887777:q')).toBe(false);
  });
});

describe('evaluate', () => {
  it('allows only what an identity statement allows (implicit deny otherwise)', () => {
    const ids = [allow({ Action: ['dynamodb:GetItem', 'dynamodb:Query'], Resource: table })];
    expect(evaluate(req('dynamodb:GetItem', table), ids)).toMatchObject({ decision: 'allow', allowed: true });
    const d = evaluate(req('dynamodb:UpdateItem', table), ids);
    expect(d).toMatchObject({ decision: 'implicit-deny', allowed: false });
    expect(d.decidedBy).toBeUndefined();
  });

  it('lets an explicit Deny beat any Allow, whatever the order', () => {
    const ids = [allow({ Action: 'dynamodb:*', Resource: '*' }), deny({ Sid: 'NoDeletes', Action: 'dynamodb:DeleteItem', Resource: table })];
    const d = evaluate(req('dynamodb:DeleteItem', table), ids);
    expect(d).toMatchObject({ decision: 'explicit-deny', allowed: false });
    expect(d.decidedBy?.statement.Sid).toBe('NoDeletes');
    expect(evaluate(req('dynamodb:DeleteItem', table), [...ids].reverse()).decision).toBe('explicit-deny');
    expect(evaluate(req('dynamodb:PutItem', table), ids).decision).toBe('allow');
  });

  it('supports NotAction and NotResource', () => {
    const ids = [allow({ NotAction: 'iam:*', Resource: '*' }), deny({ Action: 'dynamodb:*', NotResource: [table, `${table}/index/*`] })];
    expect(evaluate(req('s3:GetObject', 'arn:aws:s3:::b/k'), ids).decision).toBe('allow');
    expect(evaluate(req('iam:PassRole', 'arn:aws:iam::111122223333:role/R'), ids).decision).toBe('implicit-deny');
    expect(evaluate(req('dynamodb:GetItem', table), ids).decision).toBe('allow');
    expect(evaluate(req('dynamodb:GetItem', `${table}/index/gsi1`), ids).decision).toBe('allow');
    expect(evaluate(req('dynamodb:GetItem', table.replace('Orders', 'Other')), ids).decision).toBe('explicit-deny');
  });

  it('applies a statement only when its conditions hold', () => {
    const ids = [allow({ Action: 'ecs:StopTask', Resource: '*', Condition: { ArnEquals: { 'ecs:cluster': 'arn:aws:ecs:us-east-1:111122223333:cluster/sandboxes' } } })];
    expect(evaluate(req('ecs:StopTask', 't', { 'ecs:cluster': 'arn:aws:ecs:us-east-1:111122223333:cluster/sandboxes' }), ids).decision).toBe('allow');
    expect(evaluate(req('ecs:StopTask', 't', { 'ecs:cluster': 'arn:aws:ecs:us-east-1:111122223333:cluster/other' }), ids).decision).toBe('implicit-deny');
    expect(evaluate(req('ecs:StopTask', 't'), ids).decision).toBe('implicit-deny');
  });

  it('fails loudly on a condition operator it does not know', () => {
    expect(() => evaluate(req('s3:GetObject', '*', { 'aws:SourceIp': '10.0.0.1' }), [allow({ Action: '*', Resource: '*', Condition: { IpAddress: { 'aws:SourceIp': '10.0.0.0/8' } } })])).toThrow(
      /IpAddress is not supported/,
    );
  });
});

describe('condition operators', () => {
  const m = (op: string, block: Record<string, string | string[] | number | boolean>, ctx?: AuthorizationRequest['context']) => conditionBlockMatches(op, block, ctx);

  it('StringEquals / StringNotEquals / StringEqualsIgnoreCase, with missing keys', () => {
    expect(m('StringEquals', { k: 'a' }, { k: 'a' })).toBe(true);
    expect(m('StringEquals', { k: 'a' }, { k: 'A' })).toBe(false);
    expect(m('StringEquals', { k: ['a', 'b'] }, { k: 'b' })).toBe(true); // values of one key are ORed
    expect(m('StringEquals', { k: 'a', j: 'b' }, { k: 'a', j: 'c' })).toBe(false); // keys are ANDed
    expect(m('StringEquals', { k: 'a' }, {})).toBe(false);
    expect(m('StringEquals', { K: 'a' }, { k: 'a' })).toBe(true); // key names are case-insensitive
    expect(m('StringNotEquals', { k: ['a', 'b'] }, { k: 'c' })).toBe(true);
    expect(m('StringNotEquals', { k: ['a', 'b'] }, { k: 'b' })).toBe(false);
    expect(m('StringNotEquals', { k: 'a' }, {})).toBe(true); // a negated operator holds when the key is missing
    expect(m('StringEqualsIgnoreCase', { k: 'ABC' }, { k: 'abc' })).toBe(true);
  });

  it('StringLike / StringNotLike with * and ?', () => {
    expect(m('StringLike', { 'iam:PassedToService': 'ecs-tasks.*' }, { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' })).toBe(true);
    expect(m('StringLike', { k: 'a?c' }, { k: 'abc' })).toBe(true);
    expect(m('StringLike', { k: 'a?c' }, { k: 'abbc' })).toBe(false);
    expect(m('StringLike', { k: 'A*' }, { k: 'abc' })).toBe(false);
    expect(m('StringNotLike', { k: 'tmp/*' }, { k: 'home/x' })).toBe(true);
    expect(m('StringNotLike', { k: 'tmp/*' }, { k: 'tmp/x' })).toBe(false);
    expect(m('StringNotLike', { k: 'tmp/*' }, {})).toBe(true);
  });

  it('ArnEquals / ArnLike / ArnNotEquals / ArnNotLike', () => {
    const c = 'arn:aws:ecs:us-east-1:111122223333:cluster/sandboxes';
    expect(m('ArnEquals', { 'ecs:cluster': c }, { 'ecs:cluster': c })).toBe(true);
    expect(m('ArnLike', { 'aws:SourceArn': 'arn:aws:execute-api:us-east-1:111122223333:abc/*/*/*' }, { 'aws:SourceArn': 'arn:aws:execute-api:us-east-1:111122223333:abc/prod/GET/v1' })).toBe(true);
    expect(m('ArnLike', { 'aws:SourceArn': 'arn:aws:execute-api:us-east-1:111122223333:abc/*/*/*' }, { 'aws:SourceArn': 'arn:aws:execute-api:us-east-1:111122223333:xyz/prod/GET/v1' })).toBe(false);
    expect(m('ArnNotEquals', { 'ecs:cluster': c }, { 'ecs:cluster': `${c}2` })).toBe(true);
    expect(m('ArnNotLike', { 'ecs:cluster': 'arn:aws:ecs:*:*:cluster/sand*' }, { 'ecs:cluster': c })).toBe(false);
    expect(m('ArnNotLike', { 'ecs:cluster': 'arn:aws:ecs:*:*:cluster/sand*' }, {})).toBe(true);
    expect(m('ArnEquals', { 'ecs:cluster': c }, {})).toBe(false);
  });

  it('Bool and Numeric*', () => {
    expect(m('Bool', { 'aws:SecureTransport': 'false' }, { 'aws:SecureTransport': 'false' })).toBe(true);
    expect(m('Bool', { 'aws:SecureTransport': 'false' }, { 'aws:SecureTransport': true })).toBe(false);
    expect(m('Bool', { 'aws:SecureTransport': 'false' }, {})).toBe(false);
    expect(m('NumericLessThan', { n: 10 }, { n: '9' })).toBe(true);
    expect(m('NumericLessThan', { n: 10 }, { n: 10 })).toBe(false);
    expect(m('NumericLessThanEquals', { n: 10 }, { n: 10 })).toBe(true);
    expect(m('NumericGreaterThan', { n: '10' }, { n: 11 })).toBe(true);
    expect(m('NumericGreaterThanEquals', { n: '10' }, { n: 9 })).toBe(false);
    expect(m('NumericEquals', { n: '10' }, { n: '10.0' })).toBe(true);
    expect(m('NumericNotEquals', { n: '10' }, { n: '11' })).toBe(true);
    expect(m('NumericNotEquals', { n: '10' }, { n: '10' })).toBe(false);
  });

  it('Null tests presence; IfExists holds when the key is missing', () => {
    expect(m('Null', { 'aws:TagKeys': 'true' }, {})).toBe(true);
    expect(m('Null', { 'aws:TagKeys': 'true' }, { 'aws:TagKeys': ['a'] })).toBe(false);
    expect(m('Null', { 'aws:TagKeys': 'false' }, { 'aws:TagKeys': ['a'] })).toBe(true);
    expect(m('Null', { 'aws:TagKeys': 'false' }, {})).toBe(false);
    expect(m('StringEqualsIfExists', { k: 'a' }, {})).toBe(true);
    expect(m('StringEqualsIfExists', { k: 'a' }, { k: 'a' })).toBe(true);
    expect(m('StringEqualsIfExists', { k: 'a' }, { k: 'b' })).toBe(false);
    expect(m('ArnLikeIfExists', { c: 'arn:aws:ecs:*:*:cluster/x' }, { c: 'arn:aws:ecs:us-east-1:1:cluster/y' })).toBe(false);
  });

  it('ForAllValues: every request value matches; true for a missing or empty key', () => {
    const keys = { 'dynamodb:LeadingKeys': ['tenant-a'] };
    expect(m('ForAllValues:StringEquals', keys, { 'dynamodb:LeadingKeys': ['tenant-a'] })).toBe(true);
    expect(m('ForAllValues:StringEquals', keys, { 'dynamodb:LeadingKeys': ['tenant-a', 'tenant-b'] })).toBe(false);
    expect(m('ForAllValues:StringEquals', keys, {})).toBe(true);
    expect(m('ForAllValues:StringEquals', keys, { 'dynamodb:LeadingKeys': [] })).toBe(true);
    expect(m('ForAllValues:StringLike', { 'aws:TagKeys': ['corral:*'] }, { 'aws:TagKeys': ['corral:session', 'corral:sandbox'] })).toBe(true);
    expect(m('ForAllValues:StringNotEquals', { 'aws:TagKeys': ['secret'] }, { 'aws:TagKeys': ['a', 'b'] })).toBe(true);
    expect(m('ForAllValues:StringNotEquals', { 'aws:TagKeys': ['secret'] }, { 'aws:TagKeys': ['a', 'secret'] })).toBe(false);
  });

  it('ForAnyValue: some request value matches; false for a missing or empty key', () => {
    const keys = { 'aws:TagKeys': ['corral:session'] };
    expect(m('ForAnyValue:StringEquals', keys, { 'aws:TagKeys': ['x', 'corral:session'] })).toBe(true);
    expect(m('ForAnyValue:StringEquals', keys, { 'aws:TagKeys': ['x'] })).toBe(false);
    expect(m('ForAnyValue:StringEquals', keys, {})).toBe(false);
    expect(m('ForAnyValue:StringEquals', keys, { 'aws:TagKeys': [] })).toBe(false);
    expect(m('ForAnyValue:StringNotEquals', keys, { 'aws:TagKeys': ['corral:session', 'other'] })).toBe(true);
    expect(m('ForAnyValue:StringNotEquals', keys, { 'aws:TagKeys': ['corral:session'] })).toBe(false);
  });
});

describe('resource policies', () => {
  const queue = 'arn:aws:sqs:us-east-1:111122223333:wake.fifo';
  const enforceSsl = [deny({ Principal: { AWS: '*' }, Action: 'sqs:*', Resource: queue, Condition: { Bool: { 'aws:SecureTransport': 'false' } } })];
  const ids = [allow({ Action: 'sqs:SendMessage', Resource: queue })];

  it('denies a plain-HTTP call through an enforceSSL policy, even when the identity allows it', () => {
    const overTls = evaluate(req('sqs:SendMessage', queue, { 'aws:SecureTransport': 'true' }), ids, enforceSsl);
    expect(overTls.decision).toBe('allow');
    const plain = evaluate(req('sqs:SendMessage', queue, { 'aws:SecureTransport': 'false' }), ids, enforceSsl);
    expect(plain).toMatchObject({ decision: 'explicit-deny', decidedBy: { policyType: 'resource' } });
    expect(accessDeniedMessage(req('sqs:SendMessage', queue), plain)).toBe(
      `User: ${caller} is not authorized to perform: sqs:SendMessage on resource: ${queue} with an explicit deny in a resource-based policy`,
    );
  });

  it('allows through a resource policy that names the role, but not through one that names only the account', () => {
    const byRole = [allow({ Principal: { AWS: 'arn:aws:iam::111122223333:role/path/AppRole' }, Action: 'sqs:ReceiveMessage', Resource: queue })];
    expect(evaluate(req('sqs:ReceiveMessage', queue), [], byRole).decision).toBe('allow');
    const byAccount = [allow({ Principal: { AWS: 'arn:aws:iam::111122223333:root' }, Action: 'sqs:ReceiveMessage', Resource: queue })];
    expect(evaluate(req('sqs:ReceiveMessage', queue), [], byAccount).decision).toBe('implicit-deny');
    const otherRole = [allow({ Principal: { AWS: 'arn:aws:iam::111122223333:role/OtherRole' }, Action: 'sqs:ReceiveMessage', Resource: queue })];
    expect(evaluate(req('sqs:ReceiveMessage', queue), [], otherRole).decision).toBe('implicit-deny');
  });

  it('formats AWS denial messages', () => {
    const d = evaluate(req('dynamodb:UpdateItem', table), []);
    expect(accessDeniedMessage(req('dynamodb:UpdateItem', table), d)).toBe(
      `User: ${caller} is not authorized to perform: dynamodb:UpdateItem on resource: ${table} because no identity-based policy allows the dynamodb:UpdateItem action`,
    );
    const e = evaluate(req('dynamodb:UpdateItem', table), [deny({ Action: '*', Resource: '*' })]);
    expect(accessDeniedMessage(req('dynamodb:UpdateItem', table), e)).toMatch(/with an explicit deny in an identity-based policy$/);
  });

  it('knows the managed policies the template uses and names any other', () => {
    expect(JSON.stringify(managedPolicy('arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole'))).toContain('logs:PutLogEvents');
    expect(() => managedPolicy('arn:aws:iam::aws:policy/AdministratorAccess')).toThrow(/AdministratorAccess.*not known/);
    expect(() => managedPolicy('arn:aws:iam::111122223333:policy/Mine')).toThrow(/customer managed/);
  });
});

describe('the roles of the synthesized Corral template', () => {
  let template: CfnTemplate;
  let ctx: ResolveContext;
  const fn = (prefix: string) => functions(ctx).find((f) => f.logicalId.startsWith(prefix))!;
  const check = (fnPrefix: string, action: string, resource: string, context: AuthorizationRequest['context'] = {}) => {
    const f = fn(fnPrefix);
    const r = role(ctx, f.roleLogicalId!);
    const request = { principalArn: assumedRoleArn(r.arn, f.functionName), action, resource, context };
    return { request, decision: evaluate(request, r.statements, resourcePolicyFor(resourcePolicies(ctx), resource)?.statements) };
  };

  beforeAll(async () => {
    template = await synthesizedTemplate();
    ctx = createContext(template);
  }, 120_000);

  it('resolves every role and its policies', () => {
    const all = roles(ctx);
    expect(all.length).toBeGreaterThanOrEqual(6);
    for (const r of all) {
      expect(r.arn).toMatch(/^arn:aws:iam::123456789012:role\//);
      expect(JSON.stringify(r.statements)).not.toMatch(/"(Ref|Fn::[A-Za-z]+)"/);
    }
    for (const f of functions(ctx)) expect(role(ctx, f.roleLogicalId!).arn).toBe(f.roleArn);
  });

  it('denies the API stream function writes to the state table but its rate-limit counters, and allows it reads', () => {
    const state = dynamoTables(ctx).find((t) => t.logicalId.startsWith('SessionLogState'))!;
    // DynamoDB always names the item's partition key for UpdateItem (dynamodb:LeadingKeys).
    // every shard of a tenant's counter (lambdas/core/storage/keys.ts, `keys.rateCounter`)
    for (const shard of [0, 1, 9]) {
      const pk = keys.rateCounter('t1', 'read', 0, shard).pk;
      expect(check('ApiStreamHandler', 'dynamodb:UpdateItem', state.arn, { 'dynamodb:LeadingKeys': [pk] }).decision.decision, pk).toBe('allow');
    }
    const update = check('ApiStreamHandler', 'dynamodb:UpdateItem', state.arn, { 'dynamodb:LeadingKeys': ['session#s1'] });
    expect(update.decision.decision).toBe('implicit-deny');
    expect(accessDeniedMessage(update.request, update.decision)).toBe(
      `User: arn:aws:sts::123456789012:assumed-role/${role(ctx, fn('ApiStreamHandler').roleLogicalId!).roleName}/${fn('ApiStreamHandler').functionName} ` +
        `is not authorized to perform: dynamodb:UpdateItem on resource: ${state.arn} because no identity-based policy allows the dynamodb:UpdateItem action`,
    );
    const get = check('ApiStreamHandler', 'dynamodb:GetItem', state.arn);
    expect(get.decision.decision).toBe('allow');
    expect(get.decision.decidedBy?.source).toMatch(/^AWS::IAM::Policy ApiStreamHandlerServiceRoleDefaultPolicy/);
    expect(check('ApiStreamHandler', 'dynamodb:Query', `${state.arn}/index/gsi1`).decision.decision).toBe('allow');
    expect(check('ApiHandler8', 'dynamodb:UpdateItem', state.arn).decision.decision).toBe('allow');
  });

  it('lets the harness write preview chunks (event_deltas) and the stream only read them; the chunks expire by the table\'s TTL', async () => {
    const state = dynamoTables(ctx).find((t) => t.logicalId.startsWith('SessionLogState'))!;
    const written: Array<Record<string, unknown>> = [];
    const capture = { put: async (item: Record<string, unknown>) => void written.push(item) } as unknown as StateTable;
    await new TablePreviewChannel(capture, { clock: () => 1_700_000_000_000 }).publish('sesn_1', { request: 'sevt_1', seq: 0, frames: [] });
    const chunk = written[0] as { pk: string; sk: string } & Record<string, unknown>;
    expect(chunk).toMatchObject(keys.previewChunk('sesn_1', 'sevt_1', 0));
    const leading = { 'dynamodb:LeadingKeys': [chunk.pk] };
    expect(check('HarnessStepFunction', 'dynamodb:PutItem', state.arn, leading).decision.decision).toBe('allow');
    expect(check('ApiStreamHandler', 'dynamodb:Query', state.arn, leading).decision.decision).toBe('allow');
    expect(check('ApiStreamHandler', 'dynamodb:PutItem', state.arn, leading).decision.decision).toBe('implicit-deny');
    expect(check('ApiStreamHandler', 'dynamodb:DeleteItem', state.arn, leading).decision.decision).toBe('implicit-deny');
    // The item carries the table's TTL attribute, in epoch seconds, so DynamoDB deletes it.
    expect(state.ttlAttribute).toBeDefined();
    expect(chunk[state.ttlAttribute!]).toBe(Math.ceil((1_700_000_000_000 + PREVIEW_LIMITS.ttlMs) / 1000));
  });

  it('lets a stream renew its watch of a session\'s previews, and write nothing in the session\'s own partition', () => {
    const state = dynamoTables(ctx).find((t) => t.logicalId.startsWith('SessionLogState'))!;
    const watch = { 'dynamodb:LeadingKeys': [keys.previewWatch('sesn_1').pk] };
    expect(check('ApiStreamHandler', 'dynamodb:UpdateItem', state.arn, watch).decision.decision).toBe('allow');
    expect(check('HarnessStepFunction', 'dynamodb:GetItem', state.arn, watch).decision.decision).toBe('allow');
    const session = { 'dynamodb:LeadingKeys': [keys.head('session', 'sesn_1').pk] };
    expect(check('ApiStreamHandler', 'dynamodb:UpdateItem', state.arn, session).decision.decision).toBe('implicit-deny');
    expect(check('ApiStreamHandler', 'dynamodb:PutItem', state.arn, watch).decision.decision).toBe('implicit-deny');
  });

  it('lets the harness run the sandbox task definition and pass only the sandbox roles to ECS', () => {
    const task = ecsTaskDefinitions(ctx)[0];
    const cluster = { 'ecs:cluster': String(ctx.physicalIds.getAtt(resourcesOfType(ctx, 'AWS::ECS::Cluster')[0], 'Arn', ctx)) };
    expect(check('HarnessStepFunction', 'ecs:RunTask', task.arn, cluster).decision.decision).toBe('allow');
    expect(check('HarnessStepFunction', 'ecs:RunTask', task.arn.replace(/:1$/, ':2'), cluster).decision.decision).toBe('implicit-deny');
    expect(check('HarnessStepFunction', 'ecs:RunTask', task.arn, { 'ecs:cluster': 'arn:aws:ecs:us-east-1:123456789012:cluster/other' }).decision.decision).toBe('implicit-deny');
    expect(check('HarnessStepFunction', 'iam:PassRole', task.taskRoleArn!, { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' }).decision.decision).toBe('allow');
    expect(check('HarnessStepFunction', 'iam:PassRole', task.taskRoleArn!, { 'iam:PassedToService': 'lambda.amazonaws.com' }).decision.decision).toBe('implicit-deny');
    expect(check('ApiHandler8', 'ecs:RunTask', task.arn).decision.decision).toBe('implicit-deny');
  });

  it('writes logs through the managed execution policy, and only the proxy reads vault secrets', () => {
    expect(check('SandboxReaperFunction', 'logs:PutLogEvents', 'arn:aws:logs:us-east-1:123456789012:log-group:x:log-stream:y').decision.decidedBy?.source).toBe(
      'managed policy service-role/AWSLambdaBasicExecutionRole',
    );
    const secret = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:corral/vault/v1/c1-AbCdEf';
    expect(check('CredentialProxyFunction', 'secretsmanager:GetSecretValue', secret).decision.decision).toBe('allow');
    for (const f of ['HarnessStepFunction', 'ApiHandler8', 'ApiStreamHandler', 'SandboxReaperFunction']) {
      expect(check(f, 'secretsmanager:GetSecretValue', secret).decision.decision, f).toBe('implicit-deny');
    }
  });

  it('reads the queue policies (enforceSSL) and the invoke permissions', () => {
    const policies = resourcePolicies(ctx);
    const wake = sqsQueues(ctx).find((q) => q.logicalId.startsWith('WakeQueueD6'))!;
    expect(check('ApiHandler8', 'sqs:SendMessage', wake.arn, { 'aws:SecureTransport': 'true' }).decision.decision).toBe('allow');
    expect(check('ApiHandler8', 'sqs:SendMessage', wake.arn, { 'aws:SecureTransport': 'false' }).decision).toMatchObject({
      decision: 'explicit-deny',
      decidedBy: { policyType: 'resource', source: expect.stringMatching(/^AWS::SQS::QueuePolicy WakeQueuePolicy/) },
    });
    const stream = fn('ApiStreamHandler');
    const api = policies.get(stream.arn)!;
    const restApiId = String(createContext(template).physicalIds.ref('ApiRestApiE35FEAFE', ctx));
    const invoke = (sourceArn: string) =>
      evaluate({ principalArn: 'apigateway.amazonaws.com', action: 'lambda:InvokeFunction', resource: stream.arn, context: { 'aws:SourceArn': sourceArn } }, [], api.statements).decision;
    expect(invoke(`arn:aws:execute-api:us-east-1:123456789012:${restApiId}/prod/GET/v1/sessions/s1/events/stream`)).toBe('allow');
    expect(invoke('arn:aws:execute-api:us-east-1:123456789012:otherapi01/prod/GET/v1/sessions/s1/events/stream')).toBe('implicit-deny');
    const reaper = fn('SandboxReaperFunction');
    const rule = String(ctx.physicalIds.getAtt('SandboxReaperSchedule98D8EFB5', 'Arn', ctx));
    const byEvents = (context: AuthorizationRequest['context']) =>
      evaluate({ principalArn: 'events.amazonaws.com', action: 'lambda:InvokeFunction', resource: reaper.arn, context }, [], policies.get(reaper.arn)!.statements).decision;
    expect(byEvents({ 'aws:SourceArn': rule })).toBe('allow');
    expect(byEvents({})).toBe('implicit-deny');
  });
});

describe('the stream tier task role (streamTier=fargate)', () => {
  let ctx: ResolveContext;
  beforeAll(async () => {
    ctx = createContext(await synthesizedTemplate({ streamTier: 'fargate' }));
  }, 180_000);

  it("reads the events table's stream (that stream only) and the log, and writes nothing but rate-limit counters", () => {
    const def = ecsTaskDefinitions(ctx).find((d) => d.taskRoleLogicalId?.startsWith('StreamTierTaskRole'))!;
    const r = role(ctx, def.taskRoleLogicalId!);
    const decide = (action: string, resource: string, context: AuthorizationRequest['context'] = {}) =>
      evaluate({ principalArn: assumedRoleArn(r.arn, 'task'), action, resource, context }, r.statements).decision;
    const events = dynamoTables(ctx).find((t) => t.logicalId.startsWith('SessionLogEvents'))!;
    const state = dynamoTables(ctx).find((t) => t.logicalId.startsWith('SessionLogState'))!;
    const stream = String(ctx.physicalIds.getAtt(events.logicalId, 'StreamArn', ctx));
    for (const action of ['dynamodb:DescribeStream', 'dynamodb:GetShardIterator', 'dynamodb:GetRecords']) {
      expect(decide(action, stream), action).toBe('allow');
      expect(decide(action, `${state.arn}/stream/2026-01-01T00:00:00.000`), `${action} on another stream`).toBe('implicit-deny');
    }
    expect(decide('dynamodb:ListStreams', '*')).toBe('implicit-deny');
    expect(decide('dynamodb:Query', events.arn, { 'dynamodb:LeadingKeys': ['s1'] })).toBe('allow');
    expect(decide('dynamodb:PutItem', events.arn, { 'dynamodb:LeadingKeys': ['s1'] })).toBe('implicit-deny');
    expect(decide('dynamodb:UpdateItem', state.arn, { 'dynamodb:LeadingKeys': ['session#s1'] })).toBe('implicit-deny');
  });
});
