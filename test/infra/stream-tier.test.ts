import { readFileSync } from 'node:fs';
import { App, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { stackPropsFromContext } from '../../infra/lib/context.js';
import { STREAM_TIER_CLIENT_ADDRESS_HEADER, STREAM_TIER_PORT } from '../../infra/lib/constructs/stream-tier.js';
import { CorralStack, type CorralStackProps } from '../../infra/lib/corral-stack.js';
import { STREAM_TIER_ENV } from '../../lambdas/stream-tier/env.js';
import { deployedShape } from '../../scripts/capacity/shape.js';
import type { CfnTemplate } from '../../infra/rehearsal/template.js';

/**
 * The stream tier's deployed shape (`streamTier=fargate`): the route through the VPC link, the
 * service, its role, and the events table's stream; and the default (`lambda`) left as it was.
 * Bundling is skipped (the template does not depend on the bundle's contents).
 */
const cdkContext = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')).context as Record<string, unknown>;
const newApp = () => new App({ context: { ...cdkContext, 'aws:cdk:bundling-stacks': [] } });

type Resource = { Type: string; Properties: Record<string, any> };
type Statement = { Effect: string; Action: string | string[]; Resource?: unknown; Condition?: unknown };
const asArray = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

function synth(props: CorralStackProps, id = 'TierTest') {
  const app = newApp();
  const stack = new CorralStack(app, id, props);
  return { app, stack, template: Template.fromStack(stack), resources: Template.fromStack(stack).toJSON().Resources as Record<string, Resource> };
}

/** Every statement of the policies attached to a role. */
function statementsOf(resources: Record<string, Resource>, roleId: string): Statement[] {
  return Object.values(resources)
    .filter((r) => r.Type === 'AWS::IAM::Policy' && asArray(r.Properties.Roles as Array<{ Ref: string }>).some((x) => x.Ref === roleId))
    .flatMap((r) => r.Properties.PolicyDocument.Statement as Statement[]);
}

/** The GET method of `/v1/sessions/{id}/events/stream`. */
function streamGet(resources: Record<string, Resource>) {
  const byId = (id: string) => resources[id];
  const path = (id: string): string => {
    const r = byId(id);
    const parent = r.Properties.ParentId;
    const part = r.Properties.PathPart as string;
    return parent?.Ref ? `${path(parent.Ref)}/${part}` : `/${part}`;
  };
  const methods = Object.values(resources).filter(
    (r) => r.Type === 'AWS::ApiGateway::Method' && r.Properties.HttpMethod === 'GET' && r.Properties.ResourceId?.Ref && path(r.Properties.ResourceId.Ref) === '/v1/sessions/{id}/events/stream',
  );
  expect(methods).toHaveLength(1);
  return methods[0];
}

describe('streamTier=fargate', () => {
  let s: ReturnType<typeof synth>;
  beforeAll(() => {
    const context: Record<string, unknown> = { streamTier: 'fargate' };
    s = synth(stackPropsFromContext((k) => context[k]).props);
  });

  it('routes GET /v1/sessions/{id}/events/stream through a VPC link to an internal NLB, streamed, with the stream timeout', () => {
    const get = streamGet(s.resources);
    const integration = get.Properties.Integration;
    expect(integration.Type).toBe('HTTP_PROXY');
    expect(integration.ConnectionType).toBe('VPC_LINK');
    expect(integration.ResponseTransferMode).toBe('STREAM');
    expect(integration.TimeoutInMillis).toBe(900_000);
    expect(JSON.stringify(integration.Uri)).toContain('/v1/sessions/{id}/events/stream');
    expect(integration.RequestParameters).toEqual({
      'integration.request.path.id': 'method.request.path.id',
      [`integration.request.header.${STREAM_TIER_CLIENT_ADDRESS_HEADER}`]: 'context.identity.sourceIp',
    });
    const nlbId = Object.keys(s.resources).find((id) => s.resources[id].Type === 'AWS::ElasticLoadBalancingV2::LoadBalancer')!;
    expect(s.resources[nlbId].Properties).toMatchObject({ Type: 'network', Scheme: 'internal' });
    expect(JSON.stringify(integration.Uri)).toContain(nlbId);
    s.template.hasResourceProperties('AWS::ApiGateway::VpcLink', { TargetArns: [{ Ref: nlbId }] });
    // Every other method on the path still goes to the buffered API function.
    s.template.hasResourceProperties('AWS::ApiGateway::Method', { HttpMethod: 'ANY', Integration: Match.objectLike({ Type: 'AWS_PROXY' }) });
  });

  it('gives the events table a keys-only stream, and the tasks its ARN', () => {
    s.template.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [
        { AttributeName: 'sessionId', KeyType: 'HASH' },
        { AttributeName: 'position', KeyType: 'RANGE' },
      ],
      StreamSpecification: { StreamViewType: 'KEYS_ONLY' },
    });
    const [task] = Object.values(s.template.findResources('AWS::ECS::TaskDefinition', { Properties: { Family: Match.stringLikeRegexp('StreamTier') } }));
    expect(task.Properties).toMatchObject({ Cpu: '1024', Memory: '2048', RuntimePlatform: { CpuArchitecture: 'ARM64' } });
    const env = Object.fromEntries((task.Properties.ContainerDefinitions[0].Environment as Array<{ Name: string; Value: unknown }>).map((e) => [e.Name, e.Value]));
    expect(JSON.stringify(env[STREAM_TIER_ENV.streamArn])).toContain('StreamArn');
    expect(env[STREAM_TIER_ENV.port]).toBe(String(STREAM_TIER_PORT));
    // Four tasks at most, each reading each shard once a second: four GetRecords a second per shard.
    expect(env[STREAM_TIER_ENV.shardPollMs]).toBe('1000');
    // The tier ends a stream 10 s before API Gateway would cut it.
    expect(env[STREAM_TIER_ENV.maxStreamMs]).toBe('890000');
    expect(env.CORRAL_EVENTS_TABLE).toBeDefined();
    expect(env.CORRAL_STATE_TABLE).toBeDefined();
  });

  it('runs the service in the private subnets, reachable on its port from the VPC only, scaled between 2 and 4 tasks', () => {
    const [service] = Object.values(s.template.findResources('AWS::ECS::Service'));
    expect(service.Properties.NetworkConfiguration.AwsvpcConfiguration.AssignPublicIp).toBe('DISABLED');
    expect(service.Properties.DesiredCount).toBe(2);
    const subnets = JSON.stringify(service.Properties.NetworkConfiguration.AwsvpcConfiguration.Subnets);
    expect(subnets).toMatch(/private/i);
    expect(subnets).not.toMatch(/public/i);
    s.template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', { MinCapacity: 2, MaxCapacity: 4, ScalableDimension: 'ecs:service:DesiredCount' });
    for (const metric of ['ECSServiceAverageMemoryUtilization', 'ECSServiceAverageCPUUtilization']) {
      s.template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
        TargetTrackingScalingPolicyConfiguration: Match.objectLike({ PredefinedMetricSpecification: { PredefinedMetricType: metric } }),
      });
    }
    const sgIds: string[] = service.Properties.NetworkConfiguration.AwsvpcConfiguration.SecurityGroups.map((g: { 'Fn::GetAtt': string[] }) => g['Fn::GetAtt'][0]);
    const ingress = sgIds.flatMap((id) => asArray(s.resources[id].Properties.SecurityGroupIngress as Array<Record<string, unknown>>));
    expect(ingress).toHaveLength(1);
    expect(ingress[0]).toMatchObject({ IpProtocol: 'tcp', FromPort: STREAM_TIER_PORT, ToPort: STREAM_TIER_PORT });
    expect(JSON.stringify(ingress[0].CidrIp)).toContain('CidrBlock');
  });

  it("gives the tasks the stream function's permissions and the events stream's reads, and no other write", () => {
    const [task] = Object.values(s.template.findResources('AWS::ECS::TaskDefinition', { Properties: { Family: Match.stringLikeRegexp('StreamTier') } }));
    const roleId = task.Properties.TaskRoleArn['Fn::GetAtt'][0] as string;
    const statements = statementsOf(s.resources, roleId);
    const actions = statements.flatMap((st) => asArray(st.Action));
    expect(actions).toEqual(expect.arrayContaining(['dynamodb:DescribeStream', 'dynamodb:GetShardIterator', 'dynamodb:GetRecords', 'dynamodb:Query', 'dynamodb:GetItem']));
    const writes = statements.filter((st) => asArray(st.Action).some((a) => /^dynamodb:(Put|Update|Delete|BatchWrite|TransactWrite)/.test(a)));
    expect(writes.map((w) => asArray(w.Action))).toEqual([['dynamodb:UpdateItem']]);
    expect(JSON.stringify(writes[0].Condition)).toContain('dynamodb:LeadingKeys');
    // The consumer's three calls, on the events table's stream and nothing else.
    const streamReads = statements.find((st) => JSON.stringify(st.Resource).includes('StreamArn'))!;
    expect(asArray(streamReads.Action).sort()).toEqual(['dynamodb:DescribeStream', 'dynamodb:GetRecords', 'dynamodb:GetShardIterator']);
    expect(actions.some((a) => /^(secretsmanager|s3|sqs|ecs|lambda|kms):/.test(a))).toBe(false);
  });

  it('is what the capacity model reads: task size, task bounds, shard poll, one NLB; the sandbox task is still the sandbox\'s', () => {
    const shape = deployedShape(s.template.toJSON() as CfnTemplate);
    expect(shape.streamTier).toEqual({ vcpu: 1, memoryGb: 2, arch: 'arm64', minTasks: 2, maxTasks: 4, shardPollMs: 1000, loadBalancers: 1 });
    expect(shape.sandboxTask).toMatchObject({ vcpu: 1, memoryGb: 2, ephemeralStorageGiB: 20 });
    expect(shape.tables.some((t) => t.streams)).toBe(true);
    const eight = synth({ streamTier: 'fargate', streamTierSettings: { maxTasks: 8 } }, 'TierEight');
    const wide = deployedShape(eight.template.toJSON() as CfnTemplate).streamTier!;
    // Eight tasks read each shard every 2 s: still 4 GetRecords a second per shard in all.
    expect(wide).toMatchObject({ maxTasks: 8, shardPollMs: 2000 });
  });

  it('alarms on unhealthy targets, too few tasks, tasks at the most, the events stream read behind its tip, tier errors and NLB resets; all notify the alarm topic', () => {
    const context: Record<string, unknown> = { streamTier: 'fargate', streamTierMinTasks: '3', streamTierMaxTasks: '6', alarmEmail: 'ops@example.com' };
    const { resources } = synth(stackPropsFromContext((k) => context[k]).props, 'TierAlarms');
    const alarms = Object.entries(resources).filter(([id, r]) => r.Type === 'AWS::CloudWatch::Alarm' && id.startsWith('StreamTier'));
    const byId = (prefix: string) => {
      const hit = alarms.find(([id]) => id.startsWith(`StreamTier${prefix}`));
      expect(hit, `no StreamTier${prefix} alarm`).toBeDefined();
      return hit![1].Properties;
    };
    const targetGroup = Object.keys(resources).find((id) => resources[id].Type === 'AWS::ElasticLoadBalancingV2::TargetGroup')!;
    const loadBalancer = Object.keys(resources).find((id) => resources[id].Type === 'AWS::ElasticLoadBalancingV2::LoadBalancer')!;
    const dims = (p: Record<string, any>) => JSON.stringify(p.Dimensions);
    const unhealthy = byId('UnhealthyTargets');
    expect(unhealthy).toMatchObject({ Namespace: 'AWS/NetworkELB', MetricName: 'UnHealthyHostCount', ComparisonOperator: 'GreaterThanThreshold', Threshold: 0 });
    expect(dims(unhealthy)).toContain(targetGroup);
    expect(byId('TooFewHealthyTasks')).toMatchObject({ MetricName: 'HealthyHostCount', ComparisonOperator: 'LessThanThreshold', Threshold: 3, TreatMissingData: 'breaching' });
    expect(byId('AtMaxTasks')).toMatchObject({ MetricName: 'HealthyHostCount', ComparisonOperator: 'GreaterThanOrEqualToThreshold', Threshold: 6 });
    const resets = byId('NlbResets');
    expect(resets).toMatchObject({ Namespace: 'AWS/NetworkELB', MetricName: 'TCP_ELB_Reset_Count' });
    expect(dims(resets)).toContain(loadBalancer);
    expect(byId('IteratorAge')).toMatchObject({ Namespace: 'Corral/StreamTier', MetricName: 'IteratorAgeMs', Threshold: 60_000 });
    expect(byId('Errors')).toMatchObject({ Namespace: 'Corral/StreamTier', MetricName: 'Errors' });
    // The metrics of the last two come from the tier's own log lines.
    const filters = Object.values(resources).filter((r) => r.Type === 'AWS::Logs::MetricFilter');
    const logGroup = Object.keys(resources).find((id) => id.startsWith('StreamTierLogs'))!;
    for (const [name, pattern] of [['IteratorAgeMs', 'iteratorAgeMs'], ['Errors', 'ERROR']]) {
      const f = filters.find((x) => x.Properties.MetricTransformations[0].MetricName === name);
      expect(f?.Properties.LogGroupName).toEqual({ Ref: logGroup });
      expect(f?.Properties.FilterPattern).toContain(pattern);
    }
    const topic = Object.keys(resources).find((id) => resources[id].Type === 'AWS::SNS::Topic')!;
    expect(alarms.length).toBe(6);
    for (const [, a] of alarms) {
      expect(a.Properties.AlarmActions).toEqual([{ Ref: topic }]);
      expect(a.Properties.OKActions).toEqual([{ Ref: topic }]);
    }
  });

  it('passes the cdk-nag AwsSolutions checks: every finding acknowledged with a reason, no acknowledgment stale', () => {
    // Acknowledgments are recorded instead of applied, so every finding shows.
    const acknowledged: Array<{ id: string; path: string; reason: string }> = [];
    const spy = vi.spyOn(Validations.prototype, 'acknowledge').mockImplementation(function (this: Validations, ...rules) {
      const scope = (this as unknown as { scope: IConstruct }).scope;
      for (const r of rules) if (r.id.startsWith('AwsSolutions-')) acknowledged.push({ id: r.id, path: scope.node.path, reason: r.reason });
    });
    try {
      const { app } = synth({ streamTier: 'fargate', network: { nat: 'instance' } }, 'TierNag');
      const found = new AwsSolutionsChecks(app)
        .validateScope(app)
        .violations.flatMap((v) => v.violatingResources.map((r) => ({ id: v.ruleName, path: r.constructPath ?? '' })));
      const covers = (a: { id: string; path: string }, f: { id: string; path: string }) => f.id === a.id && (f.path === a.path || f.path.startsWith(`${a.path}/`));
      expect(found.filter((f) => !acknowledged.some((a) => covers(a, f)))).toEqual([]);
      const tier = acknowledged.filter((a) => a.path.includes('/StreamTier'));
      expect(tier.length).toBeGreaterThan(0);
      expect(tier.filter((a) => !found.some((f) => covers(a, f)))).toEqual([]);
      for (const a of tier) expect(a.reason.length, a.id).toBeGreaterThan(30);
    } finally {
      spy.mockRestore();
    }
  });
});

describe('streamTier=lambda (the default)', () => {
  it('streams from the stream function, with no stream on the events table and no service', () => {
    const { resources, template } = synth({});
    const get = streamGet(resources);
    expect(get.Properties.Integration.Type).toBe('AWS_PROXY');
    expect(JSON.stringify(get.Properties.Integration.Uri)).toContain('StreamHandler');
    expect(Object.keys(template.findResources('AWS::ECS::Service'))).toEqual([]);
    expect(Object.keys(template.findResources('AWS::ApiGateway::VpcLink'))).toEqual([]);
    for (const t of Object.values(template.findResources('AWS::DynamoDB::Table'))) expect(t.Properties.StreamSpecification).toBeUndefined();
  });

  it('refuses an unknown tier and task counts without the fargate tier', () => {
    const from = (ctx: Record<string, unknown>) => () => stackPropsFromContext((k) => ctx[k]);
    expect(from({ streamTier: 'ec2' })).toThrow(/streamTier: lambda or fargate/);
    expect(from({ streamTierMaxTasks: '8' })).toThrow(/only with streamTier=fargate/);
    expect(from({ streamTier: 'fargate', streamTierMaxTasks: '8' })().props.streamTierSettings).toEqual({ minTasks: undefined, maxTasks: 8 });
  });
});
