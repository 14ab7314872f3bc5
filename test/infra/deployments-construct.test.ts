import { readFileSync } from 'node:fs';
import { App, Duration, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { Deployments } from '../../infra/lib/constructs/deployments.js';
import { Network } from '../../infra/lib/constructs/network.js';
import { SessionLog } from '../../infra/lib/constructs/session-log.js';
import { WakeQueue } from '../../infra/lib/constructs/wake-queue.js';
import { readDeploymentSchedulesConfig } from '../../lambdas/core/config.js';
import { synthesizedTemplate } from '../rehearsal/synth.js';

/**
 * The deployments construct on its own (CorralStack composes it: see the second suite): the schedule
 * group, the role EventBridge Scheduler assumes (only it, only from this account, and it may only
 * invoke the fire function), and what the API's role gets to manage the schedules.
 */
const cdkContext = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')).context as Record<string, unknown>;

describe('the deployments construct', () => {
  const app = new App({ context: { ...cdkContext, 'aws:cdk:bundling-stacks': [] } });
  const stack = new Stack(app, 'DeploymentsTest', { env: { account: '123456789012', region: 'eu-west-1' } });
  const sessionLog = new SessionLog(stack, 'SessionLog', {});
  const wakeQueue = new WakeQueue(stack, 'WakeQueue', { visibilityTimeout: Duration.minutes(6) });
  const network = new Network(stack, 'Network', {});
  const deployments = new Deployments(stack, 'Deployments', { sessionLog, wakeQueue, network, environment: {}, serviceName: 'corral', metricsNamespace: 'Corral' });
  const apiRole = new iam.Role(stack, 'ApiRole', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
  deployments.grantManageSchedules(apiRole);
  const template = Template.fromStack(stack);
  const json = template.toJSON() as { Resources: Record<string, { Type: string; Properties: Record<string, unknown> }> };
  const logicalId = (c: { node: { defaultChild?: unknown } } | unknown) => stack.getLogicalId(((c as { node: { defaultChild: unknown } }).node.defaultChild ?? c) as never);
  const policiesOf = (roleId: string) =>
    Object.values(json.Resources)
      .filter((r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties.Roles).includes(roleId))
      .flatMap((r) => (r.Properties.PolicyDocument as { Statement: Array<Record<string, unknown>> }).Statement);

  it('has one schedule group', () => {
    template.resourceCountIs('AWS::Scheduler::ScheduleGroup', 1);
  });

  it('the scheduler role: assumed by EventBridge Scheduler of this account only, and allowed to invoke the fire function only', () => {
    const role = json.Resources[logicalId(deployments.schedulerRole)];
    expect(role.Properties.AssumeRolePolicyDocument).toMatchObject({
      Statement: [{ Action: 'sts:AssumeRole', Effect: 'Allow', Principal: { Service: 'scheduler.amazonaws.com' }, Condition: { StringEquals: { 'aws:SourceAccount': '123456789012' } } }],
    });
    const statements = policiesOf(logicalId(deployments.schedulerRole));
    expect(statements.map((s) => s.Action)).toEqual(['lambda:InvokeFunction']);
    expect(JSON.stringify(statements[0].Resource)).toContain(logicalId(deployments.fireFunction));
  });

  it("the API's role may manage only this group's corral-* schedules, and pass the scheduler role only to EventBridge Scheduler", () => {
    const statements = policiesOf(logicalId(apiRole));
    const manage = statements.find((s) => JSON.stringify(s.Action).includes('scheduler:'))!;
    expect([...(manage.Action as string[])].sort()).toEqual(['scheduler:CreateSchedule', 'scheduler:DeleteSchedule', 'scheduler:GetSchedule', 'scheduler:UpdateSchedule']);
    expect(JSON.stringify(manage.Resource)).toMatch(/:schedule\/".*\/corral-\*/);
    const pass = statements.find((s) => s.Action === 'iam:PassRole')!;
    expect(pass.Condition).toEqual({ StringEquals: { 'iam:PassedToService': 'scheduler.amazonaws.com' } });
    expect(JSON.stringify(pass.Resource)).toContain(logicalId(deployments.schedulerRole));
    expect(statements.filter((s) => s.Action === '*' || JSON.stringify(s.Resource) === '"*"')).toEqual([]);
  });

  it("the fire function reads and writes the tables and sends wakes; the API's variables are the configuration contract's", () => {
    const fn = json.Resources[logicalId(deployments.fireFunction)];
    expect(fn.Type).toBe('AWS::Lambda::Function');
    expect(Object.keys(deployments.environment).sort()).toEqual(['CORRAL_DEPLOYMENT_FIRE_ARN', 'CORRAL_SCHEDULER_ROLE_ARN', 'CORRAL_SCHEDULE_GROUP']);
    const actions = JSON.stringify(policiesOf(fn.Properties.Role ? JSON.stringify(fn.Properties.Role).match(/"Fn::GetAtt":\["(\w+)"/)![1] : '').map((s) => s.Action));
    expect(actions).toContain('dynamodb:PutItem');
    expect(actions).toContain('sqs:SendMessage');
    expect(() => readDeploymentSchedulesConfig({ CORRAL_SCHEDULE_GROUP: 'g' })).toThrow();
  });
});

/**
 * The deployments construct as CorralStack composes it (the cached synthesis of the real app): the
 * API function manages the group's schedules and knows where they point; nothing else may.
 */
describe('deployments in CorralStack', () => {
  type Res = { Type: string; Properties: Record<string, unknown> };
  let resources: Record<string, Res>;
  beforeAll(async () => {
    resources = (await synthesizedTemplate()).Resources as unknown as Record<string, Res>;
  });
  const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type);
  const statementsOf = (roleId: string) =>
    ofType('AWS::IAM::Policy')
      .filter(([, r]) => JSON.stringify(r.Properties.Roles).includes(`"${roleId}"`))
      .flatMap(([, r]) => (r.Properties.PolicyDocument as { Statement: Array<Record<string, unknown>> }).Statement);
  const roleOf = (fn: Res) => JSON.stringify(fn.Properties.Role).match(/"Fn::GetAtt":\["(\w+)"/)![1];
  const fnByEntry = (prefix: string) => ofType('AWS::Lambda::Function').find(([id]) => id.startsWith(prefix))!;

  it("has one schedule group; the scheduler role may only invoke the fire function", () => {
    const groups = ofType('AWS::Scheduler::ScheduleGroup');
    expect(groups).toHaveLength(1);
    const [fireId] = fnByEntry('DeploymentsFire');
    const [schedulerRoleId, schedulerRole] = ofType('AWS::IAM::Role').find(([id]) => id.startsWith('DeploymentsSchedulerRole'))!;
    expect(JSON.stringify(schedulerRole.Properties.AssumeRolePolicyDocument)).toContain('scheduler.amazonaws.com');
    const statements = statementsOf(schedulerRoleId);
    expect(statements.map((s) => s.Action)).toEqual(['lambda:InvokeFunction']);
    for (const r of statements[0].Resource as unknown[]) expect(JSON.stringify(r)).toContain(fireId);
  });

  it("the API function's role manages the group's corral-* schedules and passes the scheduler role to EventBridge Scheduler only; its environment names them", () => {
    const [groupId] = ofType('AWS::Scheduler::ScheduleGroup')[0];
    const [fireId] = fnByEntry('DeploymentsFire');
    const [schedulerRoleId] = ofType('AWS::IAM::Role').find(([id]) => id.startsWith('DeploymentsSchedulerRole'))!;
    const [, api] = fnByEntry('ApiHandler');
    const statements = statementsOf(roleOf(api));
    const manage = statements.filter((s) => JSON.stringify(s.Action).includes('scheduler:'));
    expect(manage).toHaveLength(1);
    expect(JSON.stringify(manage[0].Resource)).toMatch(new RegExp(`schedule/",\\{"Ref":"${groupId}"\\},"/corral-\\*`));
    const pass = statements.filter((s) => JSON.stringify(s.Action).includes('iam:PassRole'));
    expect(pass).toHaveLength(1);
    expect(pass[0].Condition).toEqual({ StringEquals: { 'iam:PassedToService': 'scheduler.amazonaws.com' } });
    expect(JSON.stringify(pass[0].Resource)).toBe(JSON.stringify({ 'Fn::GetAtt': [schedulerRoleId, 'Arn'] }));
    const env = (api.Properties.Environment as { Variables: Record<string, unknown> }).Variables;
    expect(env.CORRAL_SCHEDULE_GROUP).toEqual({ Ref: groupId });
    expect(env.CORRAL_SCHEDULER_ROLE_ARN).toEqual({ 'Fn::GetAtt': [schedulerRoleId, 'Arn'] });
    expect(env.CORRAL_DEPLOYMENT_FIRE_ARN).toEqual({ 'Fn::GetAtt': [fireId, 'Arn'] });
    // No other role may touch schedules or pass the scheduler role.
    for (const [id] of ofType('AWS::IAM::Role').filter(([id]) => id !== roleOf(api))) {
      const statements = statementsOf(id);
      expect(JSON.stringify(statements.map((s) => s.Action)), id).not.toContain('scheduler:');
      expect(JSON.stringify(statements.filter((s) => JSON.stringify(s.Action).includes('iam:PassRole')).map((s) => s.Resource)), id).not.toContain(schedulerRoleId);
    }
  });
});
