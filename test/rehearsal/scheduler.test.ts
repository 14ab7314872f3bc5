import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventBridgeDeploymentSchedules } from '../../lambdas/adapters/aws/deployment-schedules.js';
import type { Deployment } from '../../lambdas/core/deployments/deployments.js';
import { AwsGateway, type AwsCall, type Caller } from '../../infra/rehearsal/aws-gateway.js';
import { posixOf, SchedulerEmulator } from '../../infra/rehearsal/scheduler.js';
import { classifyRequest } from '../../infra/rehearsal/aws-requests.js';

/**
 * The EventBridge Scheduler adapter of deployments against the rehearsal's emulation of the
 * Scheduler API, over real HTTP with SigV4 through the rehearsal's AWS gateway: the schedules a
 * deployment gets (one, or two for the OR of its day fields; none paused), and their firing with
 * scheduled time 600 times faster, each invocation carrying the deployment and its scheduled time.
 */
const GROUP = 'corral-deployments';
const TARGET = 'arn:aws:lambda:us-east-1:123456789012:function:corral-deployment-fire';
const ROLE = 'arn:aws:iam::123456789012:role/corral-scheduler';

function deployment(id: string, expression: string, status: 'active' | 'paused' = 'active'): Deployment {
  return {
    id, type: 'deployment', name: id, description: null, agent: { type: 'agent', id: 'agent_1', version: 1 }, environment_id: 'env_1',
    initial_events: [], metadata: {}, resources: [], vault_ids: [],
    schedule: { type: 'cron', expression, timezone: 'Europe/Paris', last_run_at: null, upcoming_runs_at: [] },
    status, paused_reason: status === 'paused' ? { type: 'manual' } : null, created_at: '', updated_at: '', archived_at: null,
  };
}

describe('deployment schedules on EventBridge Scheduler (emulated)', () => {
  const invoked: Array<{ target: { Arn: string; RoleArn: string }; payload: { deployment_id: string; scheduled_at: string } }> = [];
  const calls: AwsCall[] = [];
  let gateway: AwsGateway;
  let emulator: SchedulerEmulator;
  let schedules: EventBridgeDeploymentSchedules;
  beforeAll(async () => {
    emulator = new SchedulerEmulator({
      arnPrefix: 'arn:aws:scheduler:us-east-1:123456789012:schedule/',
      timeScale: 600,
      invoke: async (target, payload) => void invoked.push({ target, payload: JSON.parse(payload) }),
    });
    const api: Caller = { accessKeyId: 'AKIAAPI', name: 'Api', roleLogicalId: 'ApiRole', roleArn: 'arn:aws:iam::123456789012:role/api' };
    gateway = new AwsGateway({ callers: new Map([[api.accessKeyId, api]]), backends: { scheduler: emulator }, authorize: (c) => (calls.push(c), [{ allowed: true }]) });
    const url = await gateway.start();
    schedules = new EventBridgeDeploymentSchedules({
      group: GROUP, targetArn: TARGET, roleArn: ROLE, endpoint: url, region: 'us-east-1',
      credentials: { accessKeyId: 'AKIAAPI', secretAccessKey: 'secret' },
    });
  });
  afterAll(async () => {
    schedules?.destroy();
    emulator?.close();
    await gateway?.close();
  });

  it('EventBridge cron reads back as the POSIX cron it came from', () => {
    expect(posixOf('cron(0 9 ? * 2,3,4,5,6 *)')).toBe('0 9 * * 1,2,3,4,5');
    expect(posixOf('cron(0 0 13 * ? *)')).toBe('0 0 13 * *');
  });

  it('an active deployment gets its schedule, in its time zone, targeting the fire function as the scheduler role; each fire carries its scheduled time', async () => {
    await schedules.sync(deployment('depl_every', '* * * * *'));
    const s = emulator.schedules.get(`${GROUP}/corral-depl_every`)!;
    expect(s).toMatchObject({ expression: 'cron(* * * * ? *)', timezone: 'Europe/Paris', state: 'ENABLED', target: { Arn: TARGET, RoleArn: ROLE } });
    expect(calls.map((c) => `${c.service}:${c.method}`)).toContain('scheduler:PUT');
    await expect.poll(() => invoked.length, { timeout: 10_000, interval: 20 }).toBeGreaterThanOrEqual(2);
    const [a, b] = invoked.map((i) => i.payload);
    expect(a.deployment_id).toBe('depl_every');
    expect(Date.parse(a.scheduled_at) % 60_000).toBe(0);
    expect(Date.parse(b.scheduled_at) - Date.parse(a.scheduled_at)).toBe(60_000);
    expect(invoked[0].target.RoleArn).toBe(ROLE);
  });

  it('the OR of day-of-month and day-of-week is two schedules; pausing removes them', async () => {
    await schedules.sync(deployment('depl_or', '0 0 13 * 5'));
    expect([...emulator.schedules.keys()].filter((k) => k.includes('depl_or')).sort()).toEqual([`${GROUP}/corral-depl_or`, `${GROUP}/corral-depl_or-2`]);
    await schedules.sync(deployment('depl_or', '0 0 * * 5'));
    expect([...emulator.schedules.keys()].filter((k) => k.includes('depl_or'))).toEqual([`${GROUP}/corral-depl_or`]);
    await schedules.sync(deployment('depl_or', '0 0 * * 5', 'paused'));
    await schedules.sync(deployment('depl_every', '* * * * *', 'paused'));
    expect([...emulator.schedules.keys()]).toEqual([]);
  });
});

describe("the rehearsal's IAM checks of Scheduler calls", () => {
  const auth = 'AWS4-HMAC-SHA256 Credential=AKIAAPI/20261130/us-east-1/scheduler/aws4_request, SignedHeaders=host, Signature=x';
  const classify = (method: string, path: string, body?: unknown) => classifyRequest({ method, path, headers: { authorization: auth }, body }, { accountId: '123456789012' }).checks;
  const ARN = `arn:aws:scheduler:us-east-1:123456789012:schedule/${GROUP}/corral-depl_1`;

  it('creating or updating a schedule is checked on its ARN in its group, and passes its target role to EventBridge Scheduler', () => {
    for (const [method, action] of [['POST', 'scheduler:CreateSchedule'], ['PUT', 'scheduler:UpdateSchedule']]) {
      expect(classify(method, '/schedules/corral-depl_1', { GroupName: GROUP, Target: { Arn: TARGET, RoleArn: ROLE } })).toEqual([
        { action, resource: ARN, context: {} },
        { action: 'iam:PassRole', resource: ROLE, context: { 'iam:PassedToService': 'scheduler.amazonaws.com' } },
      ]);
    }
    expect(() => classify('POST', '/schedules/corral-depl_1', { GroupName: GROUP, Target: { Arn: TARGET } })).toThrow(/RoleArn/);
  });

  it('deleting and reading take the group from the query; anything else is refused as unsupported', () => {
    expect(classify('DELETE', `/schedules/corral-depl_1?groupName=${GROUP}`)).toEqual([{ action: 'scheduler:DeleteSchedule', resource: ARN, context: {} }]);
    expect(classify('GET', `/schedules/corral-depl_1?groupName=${GROUP}`)).toEqual([{ action: 'scheduler:GetSchedule', resource: ARN, context: {} }]);
    expect(() => classify('GET', '/schedules')).toThrow();
  });
});
