import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, Stack, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { stackPropsFromContext } from '../../infra/lib/context.js';
import { CorralStack, type CorralStackProps } from '../../infra/lib/corral-stack.js';
import { RESOURCELESS_ACTIONS } from '../../infra/lib/roles.js';
import { DEFAULT_HARNESS_MEMORY_MIB, EVENT_SOURCE_MAX_CONCURRENCY } from '../../infra/lib/constructs/harness-step.js';
import { RateLimiter, type RateClass } from '../../lambdas/core/resources/rate-limits.js';
import type { StateTable } from '../../lambdas/core/store.js';
import { keys as keyOf } from '../../lambdas/core/storage/keys.js';

/**
 * Assertions on the synthesized template. Bundling is skipped here (the templates do not depend on
 * the bundles' contents; `npx cdk synth` bundles for real), so one synthesis takes seconds.
 */
/** The feature flags `npx cdk synth` runs with, so these templates are the ones it produces. */
const cdkContext = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')).context as Record<string, unknown>;
const newApp = () => new App({ context: { ...cdkContext, 'aws:cdk:bundling-stacks': [] } });

function synth(props: CorralStackProps = {}, id = 'CorralTest') {
  const app = newApp();
  const stack = new CorralStack(app, id, props);
  return { app, stack, template: Template.fromStack(stack) };
}

type Statement = { Effect: string; Action: string | string[]; Resource?: unknown; Condition?: unknown };
const asArray = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
const logicalId = (stack: Stack, c: IConstruct) => stack.getLogicalId(c.node.defaultChild as never);

/** Every IAM statement that applies to a role: inline policies, attached AWS::IAM::Policy resources. */
function statementsOf(template: Template, roleId: string): Statement[] {
  const resources = template.toJSON().Resources as Record<string, { Type: string; Properties: Record<string, unknown> }>;
  const out: Statement[] = [];
  const role = resources[roleId];
  for (const p of asArray(role.Properties.Policies as Array<{ PolicyDocument: { Statement: Statement[] } }>)) out.push(...p.PolicyDocument.Statement);
  for (const r of Object.values(resources)) {
    if (r.Type !== 'AWS::IAM::Policy') continue;
    const roles = asArray(r.Properties.Roles as Array<{ Ref: string }>).map((x) => x.Ref);
    if (roles.includes(roleId)) out.push(...(r.Properties.PolicyDocument as { Statement: Statement[] }).Statement);
  }
  return out;
}

/** Would this action pattern allow reading a Secrets Manager secret? */
function readsSecrets(action: string): boolean {
  const a = action.toLowerCase();
  if (a === '*' || a === 'secretsmanager:*') return true;
  if (!a.startsWith('secretsmanager:')) return false;
  const pattern = new RegExp('^' + a.slice('secretsmanager:'.length).replace(/\*/g, '.*') + '$');
  return ['getsecretvalue', 'batchgetsecretvalue', 'describesecret', 'listsecretversionids'].some((x) => pattern.test(x));
}

/** Would this action pattern allow writing a DynamoDB item? */
function writesItems(action: string): boolean {
  const a = action.toLowerCase();
  if (a === '*' || a === 'dynamodb:*') return true;
  if (!a.startsWith('dynamodb:')) return false;
  const pattern = new RegExp('^' + a.slice('dynamodb:'.length).replace(/\*/g, '.*') + '$');
  return ['putitem', 'updateitem', 'deleteitem', 'batchwriteitem', 'partiqlinsert', 'partiqlupdate', 'partiqldelete'].some((x) => pattern.test(x));
}

/** An IAM `StringLike` pattern as a regular expression (`*` any run, `?` one character). */
const likePattern = (p: string) => new RegExp('^' + p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$');

describe('CorralStack template', () => {
  let stack: CorralStack;
  let template: Template;
  let app: App;
  // Synthesis bundles every function (esbuild): a loaded machine needs more than the default hook time.
  beforeAll(() => {
    ({ app, stack, template } = synth());
  }, 180_000);

  it('keeps the session log in two on-demand, encrypted, point-in-time-recoverable tables that outlive the stack', () => {
    const tables = template.findResources('AWS::DynamoDB::Table');
    expect(Object.keys(tables)).toHaveLength(2);
    for (const t of Object.values(tables)) {
      expect(t.DeletionPolicy).toBe('Retain');
      expect(t.UpdateReplacePolicy).toBe('Retain');
      expect(t.Properties).toMatchObject({
        BillingMode: 'PAY_PER_REQUEST',
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        // SSEEnabled without a key id: KMS with the AWS-managed aws/dynamodb key
        SSESpecification: { SSEEnabled: true },
      });
    }
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [
        { AttributeName: 'sessionId', KeyType: 'HASH' },
        { AttributeName: 'position', KeyType: 'RANGE' },
      ],
      AttributeDefinitions: [
        { AttributeName: 'sessionId', AttributeType: 'S' },
        { AttributeName: 'position', AttributeType: 'N' },
      ],
    });
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      GlobalSecondaryIndexes: [
        {
          IndexName: 'gsi1',
          KeySchema: [
            { AttributeName: 'gsi1pk', KeyType: 'HASH' },
            { AttributeName: 'gsi1sk', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'ALL' },
        },
      ],
    });
  });

  it('expires rate-limit counters through the state table\'s TTL attribute, which they set in epoch seconds', async () => {
    const resources = template.toJSON().Resources;
    expect(resources[logicalId(stack, stack.sessionLog.state)].Properties.TimeToLiveSpecification).toEqual({ AttributeName: 'expiresAt', Enabled: true });
    expect(resources[logicalId(stack, stack.sessionLog.events)].Properties.TimeToLiveSpecification).toBeUndefined();
    const writes: Array<Record<string, unknown>> = [];
    const table = {
      increment: async (_pk: string, _sk: string, _attr: string, _by: number, extra: Record<string, unknown>) => {
        writes.push(extra);
        return 1;
      },
    } as unknown as StateTable;
    const now = Date.parse('2026-03-01T12:00:30Z');
    await new RateLimiter(table).check('tenant_01', 'read', now);
    const expiresAt = writes[0]?.expiresAt;
    expect(typeof expiresAt).toBe('number');
    // Seconds, not milliseconds: after the window, within minutes of it.
    expect(expiresAt as number).toBeGreaterThan(now / 1000 + 30);
    expect(expiresAt as number).toBeLessThan(now / 1000 + 600);
  });

  it('wakes the harness through a FIFO queue with a FIFO dead-letter queue and a visibility timeout longer than a step', () => {
    const queueId = logicalId(stack, stack.wakeQueue.queue);
    const dlqId = logicalId(stack, stack.wakeQueue.deadLetterQueue);
    const resources = template.toJSON().Resources;
    const queue = resources[queueId].Properties;
    expect(queue).toMatchObject({
      FifoQueue: true,
      ContentBasedDeduplication: false,
      SqsManagedSseEnabled: true,
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [dlqId, 'Arn'] }, maxReceiveCount: 10 },
    });
    expect(resources[dlqId].Properties).toMatchObject({ FifoQueue: true });
    const harness = resources[logicalId(stack, stack.harness.function)].Properties;
    expect(queue.VisibilityTimeout).toBeGreaterThan(harness.Timeout);
    expect(harness.Timeout).toBe(900);
    // TLS only, on both queues
    for (const id of [queueId, dlqId]) {
      template.hasResourceProperties('AWS::SQS::QueuePolicy', {
        Queues: [{ Ref: id }],
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          ]),
        },
      });
    }
  });

  it('runs every function on ARM64 and Node.js 22, traced, with a log group that expires', () => {
    const functions = Object.entries(template.findResources('AWS::Lambda::Function')).filter(([, f]) => f.Properties.Runtime?.startsWith('nodejs'));
    const ours = functions.filter(([, f]) => f.Properties.Environment?.Variables?.POWERTOOLS_SERVICE_NAME);
    expect(ours).toHaveLength(7); // harness step, API, API stream, credential proxy, sandbox reaper, webhook delivery, deployment fire
    const logGroups = template.toJSON().Resources;
    for (const [, f] of ours) {
      expect(f.Properties).toMatchObject({
        Architectures: ['arm64'],
        Runtime: 'nodejs22.x',
        TracingConfig: { Mode: 'Active' },
        Environment: { Variables: { NODE_OPTIONS: '--enable-source-maps', POWERTOOLS_METRICS_NAMESPACE: 'Corral' } },
      });
      const group = f.Properties.LoggingConfig.LogGroup.Ref as string;
      expect(logGroups[group].Properties.RetentionInDays).toBe(30);
    }
  });

  it('feeds the harness from the wake queue with partial batch responses, inside the VPC', () => {
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: { 'Fn::GetAtt': [logicalId(stack, stack.wakeQueue.queue), 'Arn'] },
      FunctionName: { Ref: logicalId(stack, stack.harness.function) },
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      BatchSize: 1,
    });
    const harness = template.toJSON().Resources[logicalId(stack, stack.harness.function)].Properties;
    expect(harness.VpcConfig.SecurityGroupIds).toEqual([{ 'Fn::GetAtt': [logicalId(stack, stack.harness.securityGroup), 'GroupId'] }]);
    expect(harness.Environment.Variables).toMatchObject({
      CORRAL_SANDBOX_CONTAINER: 'agent',
      CORRAL_SANDBOX_PORT: '8080',
      CORRAL_MODEL_API_KEY_PARAMETER: '/corral/anthropic-api-key',
    });
  });

  it('serves the API through API Gateway, streaming the event stream from its own function', () => {
    const stream = logicalId(stack, stack.api.streamHandler);
    const api = logicalId(stack, stack.api.handler);
    const methods = Object.values(template.findResources('AWS::ApiGateway::Method')).map((m) => m.Properties);
    const streaming = methods.filter((m) => m.Integration.ResponseTransferMode === 'STREAM');
    const resources = template.toJSON().Resources;
    const pathOf = (resourceId: string): string => {
      const r = resources[resourceId];
      if (!r) return '';
      return `${pathOf(r.Properties.ParentId?.Ref ?? '')}/${r.Properties.PathPart}`;
    };
    // A session's stream and a coordinator's thread's stream (docs/THREADS.md), and nothing else.
    expect(streaming.map((m) => pathOf(m.ResourceId.Ref)).sort()).toEqual(['/v1/sessions/{id}/events/stream', '/v1/sessions/{id}/threads/{thread_id}/stream']);
    for (const m of streaming) {
      expect(m).toMatchObject({ HttpMethod: 'GET', Integration: { Type: 'AWS_PROXY', TimeoutInMillis: 900_000 } });
      const uri = JSON.stringify(m.Integration.Uri);
      expect(uri).toContain('/response-streaming-invocations');
      expect(uri).toContain(stream);
    }
    for (const m of methods.filter((x) => x.Integration.ResponseTransferMode !== 'STREAM')) {
      expect(JSON.stringify(m.Integration.Uri)).toContain(api);
      expect(m.Integration.Type).toBe('AWS_PROXY');
    }
    template.hasResourceProperties('AWS::ApiGateway::Stage', { TracingEnabled: true, AccessLogSetting: Match.anyValue() });
    template.hasOutput('ApiUrl', Match.anyValue());
  });

  it('passes bytes through the API both ways: every media type is binary, so uploads reach the function base64 and marked downloads leave as bytes', () => {
    // Any narrower list breaks a client: the SDK's download sends `Accept: application/binary`,
    // curl `*/*`, and API Gateway decides on the first Accept value (docs/DEPLOY.md).
    const apis = Object.values(template.findResources('AWS::ApiGateway::RestApi'));
    expect(apis).toHaveLength(1);
    expect(apis[0].Properties.BinaryMediaTypes).toEqual(['*/*']);
  });

  it('gives no Secrets Manager read access to the harness, the API or the sandbox', () => {
    const resources = template.toJSON().Resources;
    const roleOf = (fnId: string) => resources[fnId].Properties.Role['Fn::GetAtt'][0] as string;
    const taskDef = resources[logicalId(stack, stack.sandboxes.taskDefinition)].Properties;
    const roles = {
      harness: roleOf(logicalId(stack, stack.harness.function)),
      api: roleOf(logicalId(stack, stack.api.handler)),
      stream: roleOf(logicalId(stack, stack.api.streamHandler)),
      reaper: roleOf(logicalId(stack, stack.sandboxReaper.function)),
      sandboxTask: taskDef.TaskRoleArn['Fn::GetAtt'][0] as string,
      sandboxExecution: taskDef.ExecutionRoleArn['Fn::GetAtt'][0] as string,
    };
    for (const [name, roleId] of Object.entries(roles)) {
      const actions = statementsOf(template, roleId)
        .filter((s) => s.Effect === 'Allow')
        .flatMap((s) => asArray(s.Action));
      expect(actions.length, name).toBeGreaterThan(name === 'sandboxTask' ? -1 : 0);
      expect(actions.filter(readsSecrets), `${name} may read secrets`).toEqual([]);
      const managed = JSON.stringify(resources[roleId].Properties.ManagedPolicyArns ?? []);
      expect(managed, name).not.toMatch(/SecretsManager|AdministratorAccess|PowerUser/i);
    }
    // The sandbox task role has no permission at all.
    expect(statementsOf(template, roles.sandboxTask)).toEqual([]);
    expect(resources[roles.sandboxTask].Properties.ManagedPolicyArns).toBeUndefined();
    // and the check itself would notice a grant
    expect(['secretsmanager:GetSecretValue', 'secretsmanager:Get*', 'secretsmanager:*', '*'].every(readsSecrets)).toBe(true);
    expect(readsSecrets('secretsmanager:CreateSecret')).toBe(false);
  });

  it('lets the event stream write nothing but rate-limit counters (the /v1 middleware charges every request) and its preview watch items', async () => {
    const resources = template.toJSON().Resources;
    const roleId = resources[logicalId(stack, stack.api.streamHandler)].Properties.Role['Fn::GetAtt'][0] as string;
    const writing = statementsOf(template, roleId).filter((st) => st.Effect === 'Allow' && asArray(st.Action).some(writesItems));
    expect(writing).toEqual([
      expect.objectContaining({
        Action: 'dynamodb:UpdateItem',
        Resource: { 'Fn::GetAtt': [logicalId(stack, stack.sessionLog.state), 'Arn'] },
        Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['rate#*', 'watch#*'] } },
      }),
    ]);
    // The condition admits the keys the rate limiter really increments, and no other item's.
    const keys: string[] = [];
    const table = {
      increment: async (pk: string) => {
        keys.push(pk);
        return 1;
      },
    } as unknown as StateTable;
    // every shard of every class: the first and the last shard of each
    for (const random of [() => 0, () => 0.9999]) {
      const limiter = new RateLimiter(table, undefined, { random });
      for (const kind of ['create', 'write', 'read'] as RateClass[]) await limiter.check('tenant_01', kind);
    }
    expect(new Set(keys).size).toBe(6);
    const patterns = (writing[0].Condition as Record<string, Record<string, string[]>>)['ForAllValues:StringLike']['dynamodb:LeadingKeys'].map(likePattern);
    const allowed = { test: (k: string) => patterns.some((p) => p.test(k)) };
    for (const k of [...keys, keyOf.previewWatch('sesn_1').pk]) expect(allowed.test(k), k).toBe(true);
    for (const other of ['session#sesn_1', 'apikey#abc', 'lease#sesn_1', keyOf.head('session', 'sesn_1').pk]) expect(allowed.test(other), other).toBe(false);
    expect(['dynamodb:UpdateItem', 'dynamodb:*', 'dynamodb:Put*', '*'].every(writesItems)).toBe(true);
    expect(writesItems('dynamodb:GetItem')).toBe(false);
  });

  it('runs the idle sandbox reaper on a schedule, allowed only to stop sandbox tasks', () => {
    const resources = template.toJSON().Resources;
    const fnId = logicalId(stack, stack.sandboxReaper.function);
    expect(resources[fnId].Properties.Environment.Variables).toMatchObject({ CORRAL_SANDBOX_IDLE_MS: String(15 * 60_000) });
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(5 minutes)',
      Targets: [{ Arn: { 'Fn::GetAtt': [fnId, 'Arn'] } }],
    });
    const roleId = resources[fnId].Properties.Role['Fn::GetAtt'][0] as string;
    const actions = statementsOf(template, roleId)
      .filter((st) => st.Effect === 'Allow')
      .flatMap((st) => asArray(st.Action));
    const ecsActions = actions.filter((a) => String(a).startsWith('ecs:'));
    expect(ecsActions.sort()).toEqual(['ecs:DescribeTasks', 'ecs:StopTask']);
    expect(actions.some((a) => /RunTask|PassRole/.test(String(a)))).toBe(false);
  });

  it('records the sandbox cluster\'s task state changes through the reaper, and tells the functions that start tasks to wait on them', () => {
    const resources = template.toJSON().Resources;
    const fnId = logicalId(stack, stack.sandboxReaper.function);
    const clusterId = logicalId(stack, stack.sandboxes.cluster);
    // Only this cluster's task state changes, only to the reaper (which may write the state table).
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: { source: ['aws.ecs'], 'detail-type': ['ECS Task State Change'], detail: { clusterArn: [{ 'Fn::GetAtt': [clusterId, 'Arn'] }] } },
      State: 'ENABLED',
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [fnId, 'Arn'] }, RetryPolicy: Match.objectLike({ MaximumRetryAttempts: 2 }) })],
    });
    const ruleId = logicalId(stack, stack.sandboxReaper.taskEventsRule);
    template.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      Principal: 'events.amazonaws.com',
      FunctionName: { 'Fn::GetAtt': [fnId, 'Arn'] },
      SourceArn: { 'Fn::GetAtt': [ruleId, 'Arn'] },
    });
    // The harness and the API start tasks: they read the records (GetItem on the state table) instead of polling.
    for (const fn of [stack.harness.function, stack.api.handler]) {
      expect(resources[logicalId(stack, fn)].Properties.Environment.Variables.CORRAL_SANDBOX_TASK_EVENTS, fn.node.path).toBe('true');
    }
    const harnessRole = resources[logicalId(stack, stack.harness.function)].Properties.Role['Fn::GetAtt'][0] as string;
    expect(statementsOf(template, harnessRole).some((st) => st.Effect === 'Allow' && asArray(st.Action).includes('dynamodb:GetItem'))).toBe(true);
    const reaperRole = resources[fnId].Properties.Role['Fn::GetAtt'][0] as string;
    expect(statementsOf(template, reaperRole).some((st) => st.Effect === 'Allow' && asArray(st.Action).includes('dynamodb:PutItem'))).toBe(true);
  });

  it('runs sandboxes on demand by default, and on Fargate Spot with context fargateSpot=true', () => {
    const resources = template.toJSON().Resources;
    expect(resources[logicalId(stack, stack.harness.function)].Properties.Environment.Variables.CORRAL_SANDBOX_SPOT).toBeUndefined();
    template.resourceCountIs('AWS::ECS::ClusterCapacityProviderAssociations', 0);
    const { props } = stackPropsFromContext((k) => (k === 'fargateSpot' ? 'true' : undefined));
    const spot = synth(props, 'CorralSpot');
    const spotResources = spot.template.toJSON().Resources;
    for (const fn of [spot.stack.harness.function, spot.stack.api.handler]) {
      expect(spotResources[logicalId(spot.stack, fn)].Properties.Environment.Variables.CORRAL_SANDBOX_SPOT, fn.node.path).toBe('true');
    }
    spot.template.hasResourceProperties('AWS::ECS::ClusterCapacityProviderAssociations', {
      CapacityProviders: Match.arrayWith(['FARGATE', 'FARGATE_SPOT']),
      Cluster: { Ref: logicalId(spot.stack, spot.stack.sandboxes.cluster) },
    });
    expect(() => stackPropsFromContext((k) => (k === 'fargateSpot' ? 'yes' : undefined))).toThrow(/fargateSpot: true or false/);
  });

  it('keeps warm pools only with context warmPool: the harness and the reaper get the setting, the reaper may delete pool items and no other', () => {
    const resources = template.toJSON().Resources;
    for (const fn of [stack.harness.function, stack.sandboxReaper.function]) expect(resources[logicalId(stack, fn)].Properties.Environment.Variables.CORRAL_WARM_POOL).toBeUndefined();
    const { props } = stackPropsFromContext((k) => (k === 'warmPool' ? 'env_a=2,env_b=1' : k === 'warmPoolMaxAgeMinutes' ? '20' : undefined));
    expect(props.warmPool).toEqual({ sizes: { env_a: 2, env_b: 1 }, maxAgeMs: 20 * 60_000 });
    const pooled = synth(props, 'CorralWarmPool');
    const res = pooled.template.toJSON().Resources;
    for (const fn of [pooled.stack.harness.function, pooled.stack.sandboxReaper.function]) {
      expect(res[logicalId(pooled.stack, fn)].Properties.Environment.Variables, fn.node.path).toMatchObject({ CORRAL_WARM_POOL: 'env_a=2,env_b=1', CORRAL_WARM_POOL_MAX_AGE_MS: '1200000' });
    }
    expect(res[logicalId(pooled.stack, pooled.stack.api.handler)].Properties.Environment.Variables.CORRAL_WARM_POOL).toBeUndefined();
    const reaperRole = res[logicalId(pooled.stack, pooled.stack.sandboxReaper.function)].Properties.Role['Fn::GetAtt'][0] as string;
    const deletes = statementsOf(pooled.template, reaperRole).filter((st) => st.Effect === 'Allow' && asArray(st.Action).includes('dynamodb:DeleteItem'));
    expect(deletes).toHaveLength(1);
    expect(deletes[0].Condition).toEqual({ 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [`${keyOf.warmPool('')}*`] } });
    expect(() => stackPropsFromContext((k) => (k === 'warmPool' ? 'env_a=11' : undefined))).toThrow(/context warmPool: .*at most 10/);
    expect(() => stackPropsFromContext((k) => (k === 'warmPoolMaxAgeMinutes' ? '5' : undefined))).toThrow(/warmPoolMaxAgeMinutes: only with warmPool/);
  });

  it('spreads sandboxes over sandboxClusters clusters: every function, grant and the task-events rule cover each', () => {
    template.resourceCountIs('AWS::ECS::Cluster', 1);
    const { props } = stackPropsFromContext((k) => (k === 'sandboxClusters' ? '3' : undefined));
    const many = synth(props, 'CorralClusters');
    many.template.resourceCountIs('AWS::ECS::Cluster', 3);
    const resources = many.template.toJSON().Resources;
    const ids = many.stack.sandboxes.clusters.map((c) => logicalId(many.stack, c));
    // The first keeps the single cluster's logical id: raising the count replaces no cluster.
    expect(ids[0]).toBe(logicalId(stack, stack.sandboxes.cluster));
    const arns = ids.map((id) => ({ 'Fn::GetAtt': [id, 'Arn'] }));
    // Every function that starts or stops tasks is told all of them, comma-separated.
    for (const fn of [many.stack.harness.function, many.stack.api.handler, many.stack.sandboxReaper.function]) {
      expect(resources[logicalId(many.stack, fn)].Properties.Environment.Variables.CORRAL_SANDBOX_CLUSTER, fn.node.path).toEqual({ 'Fn::Join': [',', arns] });
    }
    const statementsFor = (fn: IConstruct) => statementsOf(many.template, resources[logicalId(many.stack, fn)].Properties.Role['Fn::GetAtt'][0] as string);
    const run = statementsFor(many.stack.harness.function).filter((st) => asArray(st.Action).includes('ecs:RunTask'));
    expect(run).toHaveLength(1);
    expect(run[0].Condition).toEqual({ ArnEquals: { 'ecs:cluster': arns } });
    for (const fn of [many.stack.harness.function, many.stack.api.handler, many.stack.sandboxReaper.function]) {
      const stop = statementsFor(fn).filter((st) => asArray(st.Action).includes('ecs:StopTask'));
      expect(stop, fn.node.path).toHaveLength(1);
      expect(asArray(stop[0].Resource)).toHaveLength(3);
      expect(JSON.stringify(stop[0].Resource)).toContain(ids[2]);
      expect(stop[0].Condition).toEqual({ ArnEquals: { 'ecs:cluster': arns } });
    }
    many.template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: { source: ['aws.ecs'], 'detail-type': ['ECS Task State Change'], detail: { clusterArn: arns } },
    });
    expect(() => stackPropsFromContext((k) => (k === 'sandboxClusters' ? '0' : undefined))).toThrow(/sandboxClusters: expected an integer from 1 to 20/);
    expect(() => stackPropsFromContext((k) => (k === 'sandboxClusters' ? '21' : undefined))).toThrow(/sandboxClusters/);
  });

  it('lets the reaper keep the workspaces it stops: in the VPC, sandboxes reachable, capabilities opened, snapshots written', () => {
    const resources = template.toJSON().Resources;
    const fnId = logicalId(stack, stack.sandboxReaper.function);
    const fn = resources[fnId].Properties;
    const reaperSg = logicalId(stack, stack.sandboxReaper.securityGroup);
    // In the private subnets, in a security group of its own.
    expect(fn.VpcConfig.SecurityGroupIds).toEqual([{ 'Fn::GetAtt': [reaperSg, 'GroupId'] }]);
    expect(fn.VpcConfig.SubnetIds).toEqual(resources[logicalId(stack, stack.harness.function)].Properties.VpcConfig.SubnetIds);
    const statements = statementsOf(template, fn.Role['Fn::GetAtt'][0] as string).filter((st) => st.Effect === 'Allow');
    // KMS: decrypt only (it opens capabilities, never seals one), of the capability key, in its context.
    const kmsStatements = statements.filter((st) => asArray(st.Action).some((a) => String(a).startsWith('kms:')));
    expect(kmsStatements).toEqual([
      expect.objectContaining({
        Action: 'kms:Decrypt',
        Resource: { 'Fn::GetAtt': [logicalId(stack, stack.sandboxes.capabilityKey), 'Arn'] },
        Condition: { StringEquals: { 'kms:EncryptionContext:corral:purpose': 'sandbox-capability' } },
      }),
    ]);
    expect(fn.Environment.Variables.CORRAL_SANDBOX_CAPABILITY_KEY).toEqual({ 'Fn::GetAtt': [logicalId(stack, stack.sandboxes.capabilityKey), 'Arn'] });
    // S3: write and delete under workspaces/ only; no read, no listing.
    const s3Statements = statements.filter((st) => asArray(st.Action).some((a) => String(a).startsWith('s3:')));
    expect(s3Statements).toHaveLength(1);
    expect(asArray(s3Statements[0].Action).sort()).toEqual(['s3:AbortMultipartUpload', 's3:DeleteObject', 's3:PutObject']);
    expect(JSON.stringify(s3Statements[0].Resource)).toMatch(/\/workspaces\/\*"\]\]\}$/);
    // Enough time to stream snapshots one after another.
    expect(fn.Timeout).toBe(300);
  });

  it('grants workspace snapshots by what each function calls: the harness reads, the API reads, writes and deletes', () => {
    const resources = template.toJSON().Resources;
    const workspaceActions = (fn: IConstruct) =>
      statementsOf(template, resources[logicalId(stack, fn)].Properties.Role['Fn::GetAtt'][0] as string)
        .filter((st) => st.Effect === 'Allow' && JSON.stringify(st.Resource).includes('/workspaces/*'))
        .flatMap((st) => asArray(st.Action))
        .sort();
    expect(workspaceActions(stack.harness.function)).toEqual(['s3:GetObject']);
    expect(workspaceActions(stack.api.handler)).toEqual(['s3:AbortMultipartUpload', 's3:DeleteObject', 's3:GetObject', 's3:PutObject']);
    expect(workspaceActions(stack.api.streamHandler)).toEqual([]);
    expect(workspaceActions(stack.credentialProxy.function)).toEqual([]);
  });

  it('grants the package cache (packages/) to the harness only, which starts sandboxes: read, write, delete', () => {
    const resources = template.toJSON().Resources;
    const packageActions = (fn: IConstruct) =>
      statementsOf(template, resources[logicalId(stack, fn)].Properties.Role['Fn::GetAtt'][0] as string)
        .filter((st) => st.Effect === 'Allow' && JSON.stringify(st.Resource).includes('/packages/*'))
        .flatMap((st) => asArray(st.Action))
        .sort();
    expect(packageActions(stack.harness.function)).toEqual(['s3:AbortMultipartUpload', 's3:DeleteObject', 's3:GetObject', 's3:PutObject']);
    expect(packageActions(stack.api.handler)).toEqual([]);
    expect(packageActions(stack.sandboxReaper.function)).toEqual([]);
    expect(packageActions(stack.credentialProxy.function)).toEqual([]);
    // Old versions' entries do not pile up.
    const rules = Object.values(template.findResources('AWS::S3::Bucket')).flatMap((b) => b.Properties.LifecycleConfiguration?.Rules ?? []);
    expect(rules).toContainEqual(expect.objectContaining({ Id: 'package-caches', Prefix: 'packages/', ExpirationInDays: 30, Status: 'Enabled' }));
  });

  it('keeps S3 and DynamoDB traffic of a new VPC off the NAT with gateway endpoints', () => {
    const endpoints = Object.values(template.findResources('AWS::EC2::VPCEndpoint')).map((e) => e.Properties);
    expect(endpoints.map((e) => e.VpcEndpointType ?? 'Gateway')).toEqual(['Gateway', 'Gateway']);
    expect(endpoints.map((e) => JSON.stringify(e.ServiceName).match(/\.(s3|dynamodb)"/)?.[1]).sort()).toEqual(['dynamodb', 's3']);
  });

  it('sizes the sandbox subnets with sandboxCidrBlocks: secondary /16 blocks split per zone, routed to the NAT and the gateway endpoints', () => {
    const usable = (cidr: string) => 2 ** (32 - Number(cidr.split('/')[1])) - 5;
    const privateCidrs = (t: Template) =>
      Object.values(t.findResources('AWS::EC2::Subnet'))
        .filter((r) => r.Properties.MapPublicIpOnLaunch !== true)
        .map((r) => r.Properties.CidrBlock as string);
    // The default: two /20s, 8,182 addresses, every one shared with the functions.
    expect(privateCidrs(template).sort()).toEqual(['10.0.16.0/20', '10.0.32.0/20']);
    expect(privateCidrs(template).reduce((n, c) => n + usable(c), 0)).toBe(8_182);
    template.resourceCountIs('AWS::EC2::VPCCidrBlock', 0);

    const { props } = stackPropsFromContext((k) => (k === 'sandboxCidrBlocks' ? '2' : undefined));
    const big = synth(props, 'CorralSubnets');
    const resources = big.template.toJSON().Resources;
    big.template.resourceCountIs('AWS::EC2::VPCCidrBlock', 2);
    for (const cidr of ['10.1.0.0/16', '10.2.0.0/16']) big.template.hasResourceProperties('AWS::EC2::VPCCidrBlock', { CidrBlock: cidr });
    const cidrs = privateCidrs(big.template).sort();
    expect(cidrs).toEqual(['10.0.16.0/20', '10.0.32.0/20', '10.1.0.0/17', '10.1.128.0/17', '10.2.0.0/17', '10.2.128.0/17']);
    // 8,182 + 4 x 32,763: 100,000 sandboxes at 72%.
    expect(cidrs.reduce((n, c) => n + usable(c), 0)).toBe(139_234);
    const sandboxSubnets = big.stack.network.sandboxSubnets;
    expect(sandboxSubnets).toHaveLength(4);
    const subnetIds = sandboxSubnets.map((sn) => logicalId(big.stack, sn));
    // Each depends on its block, routes 0.0.0.0/0 to the NAT gateway, and its route table is on both gateway endpoints.
    for (const id of subnetIds) expect(JSON.stringify(resources[id].DependsOn ?? [])).toMatch(/SandboxCidr/);
    const routeTables = sandboxSubnets.map((sn) => big.stack.resolve(sn.routeTable.routeTableId) as { Ref: string });
    for (const rt of routeTables) {
      big.template.hasResourceProperties('AWS::EC2::Route', { RouteTableId: rt, DestinationCidrBlock: '0.0.0.0/0', NatGatewayId: Match.anyValue() });
    }
    // (the gateway endpoints: the context default also turns on the proxy service's interface endpoints)
    const gateways = Object.values(big.template.findResources('AWS::EC2::VPCEndpoint')).filter((e) => (e.Properties.VpcEndpointType ?? 'Gateway') === 'Gateway');
    expect(gateways).toHaveLength(2);
    for (const e of gateways) expect(e.Properties.RouteTableIds).toEqual(expect.arrayContaining(routeTables));
    // Sandbox tasks start in all six; the functions stay in the two private subnets.
    for (const fn of [big.stack.harness.function, big.stack.api.handler]) {
      const env = resources[logicalId(big.stack, fn)].Properties.Environment.Variables.CORRAL_SANDBOX_SUBNETS;
      expect(JSON.stringify(env).match(/"Ref"/g)).toHaveLength(6);
      for (const id of subnetIds) expect(JSON.stringify(env)).toContain(id);
    }
    expect(resources[logicalId(big.stack, big.stack.harness.function)].Properties.VpcConfig.SubnetIds).toHaveLength(2);
    expect(() => stackPropsFromContext((k) => (k === 'sandboxCidrBlocks' ? '5' : undefined))).toThrow(/sandboxCidrBlocks/);
  });

  it('adds ECR and CloudWatch Logs interface endpoints with vpcInterfaceEndpoints=true, reachable on 443 from the VPC only', () => {
    const { props } = stackPropsFromContext((k) => ({ vpcInterfaceEndpoints: 'true', sandboxCidrBlocks: '1' })[k as string]);
    const withEndpoints = synth(props, 'CorralEndpoints');
    const endpoints = Object.values(withEndpoints.template.findResources('AWS::EC2::VPCEndpoint')).map((e) => e.Properties);
    const interfaces = endpoints.filter((e) => e.VpcEndpointType === 'Interface');
    expect(interfaces.map((e) => JSON.stringify(e.ServiceName).match(/\.(ecr\.api|ecr\.dkr|logs)"/)?.[1]).sort()).toEqual(['ecr.api', 'ecr.dkr', 'logs']);
    for (const e of interfaces) {
      expect(e.PrivateDnsEnabled).toBe(true);
      expect(e.SubnetIds).toHaveLength(2);
    }
    const sgId = interfaces[0].SecurityGroupIds[0]['Fn::GetAtt'][0] as string;
    const sg = withEndpoints.template.toJSON().Resources[sgId].Properties;
    expect(sg.SecurityGroupIngress.map((r: { CidrIp: unknown; FromPort: number }) => [r.FromPort, r.CidrIp])).toEqual([
      [443, '10.0.0.0/16'],
      [443, '10.1.0.0/16'],
    ]);
    // The default has none: the gateway endpoints alone.
    expect(Object.values(template.findResources('AWS::EC2::VPCEndpoint')).filter((e) => e.Properties.VpcEndpointType === 'Interface')).toEqual([]);
    expect(() => stackPropsFromContext((k) => ({ vpcInterfaceEndpoints: 'true', proxyService: 'none', vpcId: 'vpc-1', privateSubnetIds: 'subnet-1', availabilityZones: 'us-east-1a' })[k as string])).toThrow(/vpcInterfaceEndpoints: only for a VPC/);
  });

  it('lets only the harness, the API function (handoff) and the reaper (snapshots) reach the sandbox agent port', () => {
    const sandboxSg = logicalId(stack, stack.sandboxes.securityGroup);
    const harnessSg = logicalId(stack, stack.harness.securityGroup);
    const apiSg = logicalId(stack, stack.api.securityGroup);
    const reaperSg = logicalId(stack, stack.sandboxReaper.securityGroup);
    const ingress = [
      ...asArray(template.toJSON().Resources[sandboxSg].Properties.SecurityGroupIngress),
      ...Object.values(template.findResources('AWS::EC2::SecurityGroupIngress'))
        .map((r) => r.Properties)
        .filter((p) => JSON.stringify(p.GroupId).includes(sandboxSg)),
    ];
    expect(ingress).toHaveLength(3);
    expect(ingress).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ IpProtocol: 'tcp', FromPort: 8080, ToPort: 8080, SourceSecurityGroupId: { 'Fn::GetAtt': [harnessSg, 'GroupId'] } }),
        expect.objectContaining({ IpProtocol: 'tcp', FromPort: 8080, ToPort: 8080, SourceSecurityGroupId: { 'Fn::GetAtt': [apiSg, 'GroupId'] } }),
        expect.objectContaining({ IpProtocol: 'tcp', FromPort: 8080, ToPort: 8080, SourceSecurityGroupId: { 'Fn::GetAtt': [reaperSg, 'GroupId'] } }),
      ]),
    );
    // The API function sits in the private subnets for that; the stream function stays outside the VPC.
    const fns = template.toJSON().Resources;
    expect(fns[logicalId(stack, stack.api.handler)].Properties.VpcConfig.SecurityGroupIds).toEqual([{ 'Fn::GetAtt': [apiSg, 'GroupId'] }]);
    expect(fns[logicalId(stack, stack.api.streamHandler)].Properties.VpcConfig).toBeUndefined();
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      RequiresCompatibilities: ['FARGATE'],
      RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' },
      Cpu: '1024',
      Memory: '2048',
      ContainerDefinitions: [Match.objectLike({ Name: 'agent', PortMappings: [{ ContainerPort: 8080, Protocol: 'tcp' }] })],
    });
    // ECS tasks only through the harness (run) and the API (stop); nothing else gets ecs:RunTask
    const runners = Object.values(template.findResources('AWS::IAM::Policy')).filter((p) =>
      JSON.stringify(p.Properties.PolicyDocument).includes('ecs:RunTask'),
    );
    expect(runners).toHaveLength(1);
  });

  it('has a dashboard with p50/p95/p99 of every harness timing', () => {
    const dashboards = Object.values(template.findResources('AWS::CloudWatch::Dashboard'));
    expect(dashboards).toHaveLength(1);
    const body = JSON.stringify(dashboards[0].Properties.DashboardBody);
    for (const metric of ['TimeToFirstToken', 'ModelLatency', 'HarnessOverhead', 'SandboxProvisioningTime', 'ToolLatency', 'StepDuration']) {
      for (const p of ['p50', 'p95', 'p99']) {
        expect(body).toMatch(new RegExp(`\\[\\\\"Corral\\\\",\\\\"${metric}\\\\",\\\\"service\\\\",\\\\"corral-harness\\\\",\\{[^}]*\\\\"stat\\\\":\\\\"${p}\\\\"`));
      }
    }
    expect(body).toContain('Errors');
    template.hasOutput('DashboardUrl', Match.anyValue());
  });

  it('alarms on p95 and p99 time to first token, dead letters and the API stage\'s 5XX rate', () => {
    for (const [stat, threshold] of [['p95', 10_000], ['p99', 20_000]] as const) {
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'Corral',
        MetricName: 'TimeToFirstToken',
        ExtendedStatistic: stat,
        Dimensions: [{ Name: 'service', Value: 'corral-harness' }],
        ComparisonOperator: 'GreaterThanThreshold',
        Threshold: threshold,
        EvaluationPeriods: 3,
        DatapointsToAlarm: 2,
      });
    }
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [logicalId(stack, stack.wakeQueue.deadLetterQueue), 'QueueName'] } }],
      ComparisonOperator: 'GreaterThanThreshold',
      Threshold: 0,
    });
    // 5XXError averages to the share of requests answered with a 5XX, on the stage the API serves.
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/ApiGateway',
      MetricName: '5XXError',
      Statistic: 'Average',
      Dimensions: Match.arrayWith([
        { Name: 'ApiName', Value: Match.anyValue() },
        { Name: 'Stage', Value: { Ref: logicalId(stack, stack.api.restApi.deploymentStage) } },
      ]),
      ComparisonOperator: 'GreaterThanThreshold',
      Threshold: 0.05,
    });
  });

  it('alarms on errors, throttles and near-timeout durations of every function', () => {
    const resources = template.toJSON().Resources;
    const fns = {
      // the harness yields 60 s before its 15-minute timeout: alarm once an action eats half of that
      harness: [stack.harness.function, 870_000],
      api: [stack.api.handler, 26_100],
      // a stream ends itself 10 s before its 15-minute timeout
      stream: [stack.api.streamHandler, 895_000],
      credentialProxy: [stack.credentialProxy.function, 270_000],
      reaper: [stack.sandboxReaper.function, 270_000],
      webhooks: [stack.webhooks.function, 108_000],
      deploymentFire: [stack.deployments.fireFunction, 26_100],
    } as const;
    const ours = Object.values(template.findResources('AWS::Lambda::Function')).filter((f) => f.Properties.Environment?.Variables?.POWERTOOLS_SERVICE_NAME);
    expect(Object.keys(fns)).toHaveLength(ours.length);
    for (const [label, [fn, durationMs]] of Object.entries(fns)) {
      const dimensions = [{ Name: 'FunctionName', Value: { Ref: logicalId(stack, fn) } }];
      for (const metric of ['Errors', 'Throttles']) {
        template.hasResourceProperties('AWS::CloudWatch::Alarm', {
          Namespace: 'AWS/Lambda',
          MetricName: metric,
          Dimensions: dimensions,
          Statistic: 'Sum',
          ComparisonOperator: 'GreaterThanThreshold',
          Threshold: 0,
        });
      }
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'AWS/Lambda',
        MetricName: 'Duration',
        Dimensions: dimensions,
        Statistic: 'Maximum',
        ComparisonOperator: 'GreaterThanThreshold',
        Threshold: durationMs,
      });
      expect(durationMs, label).toBeLessThan(resources[logicalId(stack, fn)].Properties.Timeout * 1000);
    }
    template.resourceCountIs('AWS::CloudWatch::Alarm', 4 + 3 * ours.length + 1); // + the webhook dead-letter alarm
  });

  it('shows every alarm on the dashboard and, with an alarm email, sends each one to the topic', () => {
    const { stack: s, template: t } = synth({ alarmEmail: 'ops@example.com', timeToFirstTokenP99ThresholdMs: 30_000, api5xxRatePercent: 2 }, 'CorralAlarmed');
    const alarms = t.findResources('AWS::CloudWatch::Alarm');
    expect(Object.keys(alarms)).toHaveLength(s.observability.alarms.length);
    const topic = { Ref: Object.keys(t.findResources('AWS::SNS::Topic'))[0] };
    const body = JSON.stringify(Object.values(t.findResources('AWS::CloudWatch::Dashboard'))[0].Properties.DashboardBody);
    for (const [id, a] of Object.entries(alarms)) {
      expect(a.Properties.AlarmActions, id).toEqual([topic]);
      expect(a.Properties.OKActions, id).toEqual([topic]);
      expect(body, id).toContain(`"${id}","Arn"`);
    }
    t.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'TimeToFirstToken', ExtendedStatistic: 'p99', Threshold: 30_000 });
    t.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: '5XXError', Threshold: 0.02 });
    t.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'ops@example.com' });
  });

  it('passes the cdk-nag AwsSolutions checks, every acknowledgment with a reason', () => {
    const report = new AwsSolutionsChecks(app).validateScope(app);
    expect(report.violations.map((v) => `${v.ruleName} ${v.violatingResources.map((r) => r.constructPath).join(', ')}`)).toEqual([]);
    const acks = app.node
      .findAll()
      .flatMap((c) => c.node.metadata.filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY))
      .flatMap((m) => Object.entries(m.data as Record<string, string>));
    expect(acks.length).toBeGreaterThan(0);
    for (const [id, reason] of acks) expect(reason.length, id).toBeGreaterThan(30);
  });
});

describe('cdk-nag with the fleet settings', () => {
  it('passes with several sandbox clusters, sandbox CIDR blocks and interface endpoints', () => {
    const context: Record<string, string> = { sandboxClusters: '2', sandboxCidrBlocks: '1', vpcInterfaceEndpoints: 'true' };
    const { props } = stackPropsFromContext((k) => context[k]);
    const app = newApp();
    new CorralStack(app, 'Fleet', props);
    const report = new AwsSolutionsChecks(app).validateScope(app);
    expect(report.violations.map((v) => `${v.ruleName} ${v.violatingResources.map((r) => r.constructPath).join(', ')}`)).toEqual([]);
  });
});

describe('cdk-nag acknowledgments', () => {
  afterEach(() => vi.restoreAllMocks());

  it('each one answers a finding on the construct it is made on (none is stale, none is made wider than its finding)', () => {
    const acknowledged: Array<{ id: string; path: string }> = [];
    vi.spyOn(Validations.prototype, 'acknowledge').mockImplementation(function (this: Validations, ...rules) {
      const scope = (this as unknown as { scope: IConstruct }).scope;
      for (const r of rules) if (r.id.startsWith('AwsSolutions-')) acknowledged.push({ id: r.id, path: scope.node.path });
    });
    const app = newApp();
    new CorralStack(app, 'Bare', { network: { nat: 'instance' } });
    const found = new AwsSolutionsChecks(app)
      .validateScope(app)
      .violations.flatMap((v) => v.violatingResources.map((r) => ({ id: v.ruleName, path: r.constructPath ?? '' })));
    expect(acknowledged.length).toBeGreaterThan(5);
    const stale = acknowledged.filter((a) => !found.some((f) => f.id === a.id && (f.path === a.path || f.path.startsWith(`${a.path}/`))));
    expect(stale).toEqual([]);
    // A wildcard resource is only ever acknowledged on one policy, never on a function, a role or a construct above them.
    for (const a of acknowledged.filter((x) => x.id.startsWith('AwsSolutions-IAM5'))) expect(a.path, a.id).toMatch(/\/(DefaultPolicy|ResourcelessActions)$/);
  });

  it('grants only the actions that support no resource-level permission through the acknowledged policies', () => {
    const { template } = synth({}, 'CorralResourceless');
    const resourceless = Object.entries(template.findResources('AWS::IAM::Policy')).filter(([id]) => id.includes('ResourcelessActions'));
    expect(resourceless.length).toBe(8); // seven functions and the sandbox execution role
    for (const [id, p] of resourceless) {
      for (const st of p.Properties.PolicyDocument.Statement as Statement[]) {
        expect(st.Resource, id).toBe('*');
        for (const a of asArray(st.Action)) expect(Object.keys(RESOURCELESS_ACTIONS), id).toContain(a);
      }
    }
  });

  it('do not hide a wildcard grant added later: synthesis with the AwsSolutions checks fails and names it', () => {
    const outdir = mkdtempSync(join(tmpdir(), 'corral-nag-'));
    try {
      const app = new App({ outdir, context: { ...cdkContext, 'aws:cdk:bundling-stacks': [] } });
      const stack = new CorralStack(app, 'Widened');
      stack.harness.function.addToRolePolicy(new iam.PolicyStatement({ actions: ['s3:*'], resources: ['*'] }));
      stack.api.streamHandler.addToRolePolicy(new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: ['*'] }));
      // An action without resource-level permissions does not smuggle others past the check.
      stack.api.handler.addToRolePolicy(new iam.PolicyStatement({ actions: ['xray:PutTraceSegments', 'xray:GetTraceSummaries'], resources: ['*'] }));
      Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
      expect(() => app.synth()).toThrow(/wildcard permissions/);
      const report = JSON.parse(readFileSync(join(outdir, 'validation-report.json'), 'utf8')) as {
        pluginReports: Array<{ violations: Array<{ ruleName: string; violatingConstructs: Array<{ constructPath: string }> }> }>;
      };
      const reported = report.pluginReports.flatMap((p) => p.violations.flatMap((v) => v.violatingConstructs.map((c) => `${v.ruleName} ${c.constructPath}`)));
      expect(reported.sort()).toEqual(
        [
          'AwsSolutions-IAM5[Action::s3:*] Widened/HarnessStep/FunctionServiceRole/DefaultPolicy/Resource',
          'AwsSolutions-IAM5[Resource::*] Widened/HarnessStep/FunctionServiceRole/DefaultPolicy/Resource',
          'AwsSolutions-IAM5[Resource::*] Widened/Api/StreamHandlerServiceRole/DefaultPolicy/Resource',
          'AwsSolutions-IAM5[Resource::*] Widened/Api/HandlerServiceRole/DefaultPolicy/Resource',
        ].sort(),
      );
    } finally {
      rmSync(outdir, { recursive: true, force: true });
    }
  });
});

describe('CorralStack in an existing VPC (from CDK context, no lookups)', () => {
  const context: Record<string, unknown> = {
    // A user VPC has no interface endpoints for the proxy service's sandboxes to start through.
    proxyService: 'none',
    vpcId: 'vpc-0abc',
    privateSubnetIds: 'subnet-0aaa,subnet-0bbb',
    availabilityZones: 'eu-west-1a,eu-west-1b',
    sandboxCpu: '2048',
    sandboxMemoryMiB: '4096',
  };

  it('runs the harness and the sandboxes in the given private subnets and creates no network', () => {
    const { stackName, props } = stackPropsFromContext((k) => context[k]);
    expect(stackName).toBe('Corral');
    const { stack, template } = synth(props, 'CorralInVpc');
    template.resourceCountIs('AWS::EC2::VPC', 0);
    template.resourceCountIs('AWS::EC2::NatGateway', 0);
    template.resourceCountIs('AWS::EC2::Subnet', 0);
    const resources = template.toJSON().Resources;
    const harness = resources[logicalId(stack, stack.harness.function)].Properties;
    expect(harness.VpcConfig.SubnetIds).toEqual(['subnet-0aaa', 'subnet-0bbb']);
    expect(harness.Environment.Variables.CORRAL_SANDBOX_SUBNETS).toBe('subnet-0aaa,subnet-0bbb');
    for (const sg of Object.values(template.findResources('AWS::EC2::SecurityGroup'))) expect(sg.Properties.VpcId).toBe('vpc-0abc');
    template.hasResourceProperties('AWS::ECS::TaskDefinition', { Cpu: '2048', Memory: '4096' });
  });

  it('rejects an incomplete description of the VPC', () => {
    expect(() => stackPropsFromContext((k) => ({ vpcId: 'vpc-1' })[k as string])).toThrow(/privateSubnetIds and availabilityZones/);
    expect(() => stackPropsFromContext((k) => ({ privateSubnetIds: 'subnet-1' })[k as string])).toThrow(/need vpcId/);
    expect(() => stackPropsFromContext((k) => ({ nat: 'none' })[k as string])).toThrow(/gateway or instance/);
    expect(() => stackPropsFromContext((k) => ({ logRetentionDays: '31' })[k as string])).toThrow(/not a CloudWatch Logs retention/);
  });

  it('reserves no concurrency by default, so it deploys in an account whose limit is 10', () => {
    const { template } = synth({}, 'CorralDefaultConcurrency');
    for (const f of Object.values(template.findResources('AWS::Lambda::Function'))) expect(f.Properties.ReservedConcurrentExecutions).toBeUndefined();
    for (const m of Object.values(template.findResources('AWS::Lambda::EventSourceMapping'))) expect(m.Properties.ScalingConfig).toBeUndefined();
  });

  it('reserves concurrency for the harness and caps open event streams when asked', () => {
    const { props } = stackPropsFromContext((k) => ({ harnessReservedConcurrency: '40', streamMaxConcurrency: '25' })[k as string]);
    const { stack, template } = synth(props, 'CorralConcurrency');
    const resources = template.toJSON().Resources;
    const fn = (c: IConstruct) => resources[logicalId(stack, c)].Properties;
    expect(fn(stack.harness.function).ReservedConcurrentExecutions).toBe(40);
    expect(fn(stack.api.streamHandler).ReservedConcurrentExecutions).toBe(25);
    for (const other of [stack.api.handler, stack.credentialProxy.function, stack.sandboxReaper.function]) {
      expect(fn(other).ReservedConcurrentExecutions).toBeUndefined();
    }
    // The wake queue never starts more invocations than are reserved: a throttled wake would count as a delivery.
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: logicalId(stack, stack.harness.function) },
      ScalingConfig: { MaximumConcurrency: 40 },
    });
    const explicit = synth({ harness: { reservedConcurrency: 40, maxConcurrency: 30 } }, 'CorralConcurrencyExplicit');
    explicit.template.hasResourceProperties('AWS::Lambda::EventSourceMapping', { ScalingConfig: { MaximumConcurrency: 30 } });
  });

  it('throttles the stage and limits each tenant with documented defaults, which context overrides', () => {
    const stageOf = (template: Template) => Object.values(template.findResources('AWS::ApiGateway::Stage'))[0].Properties;
    const rateEnv = (stack: CorralStack, template: Template) => {
      const resources = template.toJSON().Resources;
      return [stack.api.handler, stack.api.streamHandler].map((fn) => {
        const vars = resources[logicalId(stack, fn)].Properties.Environment.Variables;
        return [vars.CORRAL_RATE_LIMITS, vars.CORRAL_RATE_LIMIT_SHARDS];
      });
    };
    // The defaults docs/DEPLOY.md documents: 100 rps, burst 200; create 300, write 1200, read 6000 per minute; 10 shards.
    const defaults = synth({}, 'CorralThrottleDefaults');
    expect(stageOf(defaults.template).MethodSettings).toEqual([
      expect.objectContaining({ HttpMethod: '*', ResourcePath: '/*', ThrottlingRateLimit: 100, ThrottlingBurstLimit: 200 }),
    ]);
    expect(rateEnv(defaults.stack, defaults.template)).toEqual([
      ['create=300,write=1200,read=6000', '10'],
      ['create=300,write=1200,read=6000', '10'],
    ]);
    const { props } = stackPropsFromContext(
      (k) => ({ apiThrottleRate: '2500', apiThrottleBurst: '5000', rateLimits: 'write=60000,read=0', rateLimitShards: '32' })[k as string],
    );
    const custom = synth(props, 'CorralThrottleCustom');
    expect(stageOf(custom.template).MethodSettings).toEqual([expect.objectContaining({ ThrottlingRateLimit: 2500, ThrottlingBurstLimit: 5000 })]);
    expect(rateEnv(custom.stack, custom.template)).toEqual([
      ['create=300,write=60000,read=0', '32'],
      ['create=300,write=60000,read=0', '32'],
    ]);
    expect(() => stackPropsFromContext((k) => ({ rateLimits: 'delete=1' })[k as string])).toThrow(/context rateLimits: .*create=N/);
    expect(() => stackPropsFromContext((k) => ({ rateLimitShards: '0' })[k as string])).toThrow(/rateLimitShards/);
    expect(() => stackPropsFromContext((k) => ({ apiThrottleRate: 'fast' })[k as string])).toThrow(/apiThrottleRate/);
  });

  it('sizes the harness from measurement (256 MB by default) and takes harnessMemoryMiB as context', () => {
    const memoryOf = (stack: CorralStack, template: Template) => template.toJSON().Resources[logicalId(stack, stack.harness.function)].Properties.MemorySize;
    const defaults = synth({}, 'CorralHarnessMemoryDefault');
    expect(memoryOf(defaults.stack, defaults.template)).toBe(DEFAULT_HARNESS_MEMORY_MIB);
    expect(DEFAULT_HARNESS_MEMORY_MIB).toBe(256);
    const { props } = stackPropsFromContext((k) => ({ harnessMemoryMiB: '768' })[k as string]);
    const custom = synth(props, 'CorralHarnessMemory');
    expect(memoryOf(custom.stack, custom.template)).toBe(768);
    expect(() => stackPropsFromContext((k) => ({ harnessMemoryMiB: '64' })[k as string])).toThrow(/harnessMemoryMiB/);
  });

  it('leaves the wake queue uncapped when more than the event source\'s 1,000 is reserved, so the reservation alone caps the harness', () => {
    const { props } = stackPropsFromContext((k) => ({ harnessReservedConcurrency: '60000' })[k as string]);
    const { stack, template } = synth(props, 'CorralLargeReservation');
    expect(template.toJSON().Resources[logicalId(stack, stack.harness.function)].Properties.ReservedConcurrentExecutions).toBe(60000);
    for (const m of Object.values(template.findResources('AWS::Lambda::EventSourceMapping'))) expect(m.Properties.ScalingConfig).toBeUndefined();
    const edge = synth({ harness: { reservedConcurrency: EVENT_SOURCE_MAX_CONCURRENCY } }, 'CorralEdgeReservation');
    edge.template.hasResourceProperties('AWS::Lambda::EventSourceMapping', { ScalingConfig: { MaximumConcurrency: EVENT_SOURCE_MAX_CONCURRENCY } });
  });

  it('rejects a harness event source allowed more invocations than are reserved', () => {
    expect(() => synth({ harness: { reservedConcurrency: 10, maxConcurrency: 20 } }, 'CorralOverReserved')).toThrow(/maxConcurrency \(20\) above its reservedConcurrency \(10\)/);
    expect(() => stackPropsFromContext((k) => ({ harnessReservedConcurrency: '1' })[k as string])).toThrow(/harnessReservedConcurrency/);
    expect(() => stackPropsFromContext((k) => ({ streamMaxConcurrency: '0' })[k as string])).toThrow(/streamMaxConcurrency/);
  });

  it('can use a NAT instance instead of a NAT gateway', () => {
    const { template } = synth({ network: { nat: 'instance' } }, 'CorralNatInstance');
    template.resourceCountIs('AWS::EC2::NatGateway', 0);
    template.resourceCountIs('AWS::EC2::Instance', 1);
  });
});
