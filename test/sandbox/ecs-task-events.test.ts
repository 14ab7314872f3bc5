/**
 * Task state from ECS's events: the reaper function records the sandbox cluster's task state
 * changes in a real state table (dynalite), and the Fargate provider waits on those records
 * instead of polling DescribeTasks (ECS mocked: it has no local emulator; a real sandbox agent on
 * 127.0.0.1 stands in for the task).
 */
import { DescribeTasksCommand, ECSClient, RunTaskCommand, StopTaskCommand, type RunTaskCommandInput, type Task } from '@aws-sdk/client-ecs';
import type { Logger as PowertoolsLogger } from '@aws-lambda-powertools/logger';
import { mockClient } from 'aws-sdk-client-mock';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DynamoStateTable } from '../../lambdas/adapters/aws/dynamodb-state-table.js';
import { EcsSandboxProvider } from '../../lambdas/adapters/aws/ecs-sandbox-provider.js';
import { taskStateOf, taskStateSource } from '../../lambdas/adapters/aws/ecs-task-events.js';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite, type EmbeddedDynamo } from '../../lambdas/adapters/local/dynalite.js';
import { taskStateRecords } from '../../lambdas/core/storage/items.js';
import type { SandboxRecipe } from '../../lambdas/core/sandbox/types.js';
import { createSandboxReaperHandler } from '../../lambdas/sandbox-reaper/handler.js';
import { startAgent, tempDir, type AgentHandle } from './helpers.js';

const ecs = mockClient(ECSClient);
const emptyRecipe: SandboxRecipe = { environmentId: 'env_1', packages: {}, repositories: [] };
let db: EmbeddedDynamo;
let table: DynamoStateTable;
let root: string;
const agents: AgentHandle[] = [];
let n = 0;
const newArn = () => `arn:aws:ecs:eu-west-1:123456789012:task/corral-sandboxes/${(++n).toString(16).padStart(32, '0')}`;

const quiet = { debug() {}, info() {}, warn() {}, error() {}, addContext() {} } as unknown as PowertoolsLogger;
/** The reaper function as EventBridge invokes it with the sandbox cluster's events. */
const reaper = () => createSandboxReaperHandler(() => ({ table, provider: undefined as never, idleMs: 60_000, logger: quiet }));

/** An ECS Task State Change event as EventBridge delivers it (`detail` is the task, plus `version`). */
function event(taskArn: string, version: number, lastStatus: string, extra: Partial<Task> = {}) {
  return {
    version: '0',
    id: `evt-${taskArn.slice(-4)}-${version}`,
    'detail-type': 'ECS Task State Change',
    source: 'aws.ecs',
    account: '123456789012',
    time: new Date().toISOString(),
    region: 'eu-west-1',
    resources: [taskArn],
    detail: {
      clusterArn: 'arn:aws:ecs:eu-west-1:123456789012:cluster/corral-sandboxes',
      taskArn,
      lastStatus,
      desiredStatus: lastStatus === 'STOPPED' || lastStatus === 'DEPROVISIONING' ? 'STOPPED' : 'RUNNING',
      version,
      updatedAt: new Date().toISOString(),
      attachments:
        lastStatus === 'PROVISIONING'
          ? []
          : [{ type: 'eni', status: 'ATTACHED', details: [{ name: 'subnetId', value: 'subnet-a' }, { name: 'privateIPv4Address', value: '127.0.0.1' }] }],
      containers: [{ name: 'sandbox', lastStatus }],
      ...extra,
    },
  };
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

function provider(port: number, extra: Partial<ConstructorParameters<typeof EcsSandboxProvider>[0]> = {}) {
  return new EcsSandboxProvider({
    ecs: new ECSClient({ region: 'eu-west-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } }),
    cluster: 'corral-sandboxes',
    taskDefinition: 'corral-sandbox:7',
    subnets: ['subnet-a'],
    securityGroups: ['sg-sandbox'],
    containerName: 'sandbox',
    port,
    pollIntervalMs: 20,
    stateReadIntervalMs: 20,
    healthTimeoutMs: 20_000,
    taskStates: taskStateSource(table, 'sandbox'),
    ...extra,
  });
}

/** RunTask starts a real agent on `port` and (as ECS would) sends the task's events, through the reaper. */
function runTaskWithEvents(arn: string, port: number | undefined, statuses: Array<[string, Partial<Task>?]>) {
  ecs.on(RunTaskCommand).callsFake(async (input: RunTaskCommandInput) => {
    if (port !== undefined) {
      const env = Object.fromEntries((input.overrides?.containerOverrides?.[0]?.environment ?? []).map((e) => [e.name!, e.value!]));
      agents.push(
        await startAgent({ root: fs.mkdtempSync(path.join(root, 'task-')), mode: 'tcp', port, capability: env.CORRAL_SANDBOX_CAPABILITY, waitReady: false }),
      );
    }
    void (async () => {
      for (const [i, [status, extra]] of statuses.entries()) {
        await new Promise((r) => setTimeout(r, 30));
        await reaper()(event(arn, i + 1, status, extra));
      }
    })();
    return { tasks: [{ taskArn: arn, lastStatus: 'PROVISIONING' }], failures: [] };
  });
}

beforeAll(async () => {
  db = await startDynalite();
  await ensureTables(db.client, { events: 'events', state: 'state' });
  table = new DynamoStateTable(db.client, 'state');
  root = tempDir('corral-task-events-');
});
beforeEach(() => {
  ecs.reset();
});
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.stop()));
});
afterAll(async () => {
  await db.close();
  fs.rmSync(root, { recursive: true, force: true });
});

describe('the reaper function records task state change events', () => {
  it('keeps the newest state: an event delivered late or twice changes nothing', async () => {
    const arn = newArn();
    const id = arn.split('/').pop()!;
    expect(await reaper()(event(arn, 1, 'PROVISIONING'))).toMatchObject({ recorded: true, reaped: 0 });
    expect(await reaper()(event(arn, 3, 'RUNNING'))).toMatchObject({ recorded: true });
    expect(await reaper()(event(arn, 2, 'PENDING'))).toMatchObject({ recorded: false });
    expect(await reaper()(event(arn, 3, 'RUNNING'))).toMatchObject({ recorded: false });
    expect(await taskStateRecords.get(table, id)).toMatchObject({ taskArn: arn, version: 3, lastStatus: 'RUNNING', privateIp: '127.0.0.1' });
    const stopped = event(arn, 5, 'STOPPED', { stoppedReason: 'Essential container in task exited', stopCode: 'EssentialContainerExited', containers: [{ name: 'sandbox', exitCode: 2 }] });
    await reaper()(stopped);
    expect(await taskStateRecords.get(table, id)).toMatchObject({ version: 5, lastStatus: 'STOPPED', desiredStatus: 'STOPPED', stopCode: 'EssentialContainerExited', exitCode: 2 });
  });

  it('refuses an event without a task ARN, a status or a version', () => {
    const arn = newArn();
    expect(() => taskStateOf({ ...event(arn, 1, 'PENDING').detail, taskArn: undefined })).toThrow(/no task ARN/);
    expect(() => taskStateOf({ ...event(arn, 1, 'PENDING').detail, lastStatus: undefined })).toThrow(/no lastStatus/);
    expect(() => taskStateOf({ ...event(arn, 1, 'PENDING').detail, version: undefined })).toThrow(/no version/);
  });
});

describe('EcsSandboxProvider waiting on recorded task state', () => {
  it('starts a sandbox from the events alone: no DescribeTasks', async () => {
    const arn = newArn();
    const port = await freePort();
    runTaskWithEvents(arn, port, [['PROVISIONING'], ['PENDING'], ['RUNNING']]);
    const sb = await provider(port).provision({ sessionId: 'sesn_events', name: 'default', recipe: emptyRecipe });
    expect(sb.ref).toBe(arn);
    expect(sb.endpoint).toMatchObject({ kind: 'tcp', host: '127.0.0.1', port });
    expect(ecs.commandCalls(DescribeTasksCommand)).toHaveLength(0);
    expect(ecs.commandCalls(StopTaskCommand)).toHaveLength(0);
  });

  it('reports a task that stops while starting, from its event, with ECS’s reason and the exit code', async () => {
    const arn = newArn();
    ecs.on(StopTaskCommand).resolves({});
    runTaskWithEvents(arn, undefined, [
      ['PENDING'],
      ['STOPPED', { stoppedReason: 'CannotPullContainerError: pull access denied', stopCode: 'TaskFailedToStart', containers: [{ name: 'sandbox', exitCode: 1 }] }],
    ]);
    const err = await provider(1).provision({ sessionId: 'sesn_events_stop', name: 'default', recipe: emptyRecipe }).catch((e: unknown) => e);
    expect((err as Error).message).toBe(
      `sandbox task ${arn.split('/').pop()} stopped while starting: CannotPullContainerError: pull access denied; stop code TaskFailedToStart; container exit code 1`,
    );
    expect(ecs.commandCalls(DescribeTasksCommand)).toHaveLength(0);
  });

  it('sees a task stop while its agent is health-checked, from the event', async () => {
    const arn = newArn();
    const port = await freePort(); // nothing listens: health checks fail until the stop is seen
    ecs.on(StopTaskCommand).resolves({});
    runTaskWithEvents(arn, undefined, [['RUNNING'], ['STOPPED', { stoppedReason: 'Task failed container health checks', containers: [{ name: 'sandbox', exitCode: 137 }] }]]);
    const err = await provider(port, { healthTimeoutMs: 120_000 }).provision({ sessionId: 'sesn_events_s2', name: 'default', recipe: emptyRecipe }).catch((e: unknown) => e);
    expect((err as Error).message).toBe(`sandbox task ${arn.split('/').pop()} stopped while starting: Task failed container health checks; container exit code 137`);
    expect(ecs.commandCalls(DescribeTasksCommand)).toHaveLength(0);
  });

  it('falls back to DescribeTasks when no event arrives, and only then', async () => {
    const arn = newArn();
    const port = await freePort();
    runTaskWithEvents(arn, port, []); // the rule delivers nothing
    const running: Task = {
      taskArn: arn,
      lastStatus: 'RUNNING',
      desiredStatus: 'RUNNING',
      attachments: [{ type: 'ElasticNetworkInterface', details: [{ name: 'privateIPv4Address', value: '127.0.0.1' }] }],
      containers: [{ name: 'sandbox' }],
    };
    ecs.on(DescribeTasksCommand).resolves({ tasks: [running] });
    const sb = await provider(port, { describeFallbackMs: 200 }).provision({ sessionId: 'sesn_events_fallback', name: 'default', recipe: emptyRecipe });
    expect(sb.ref).toBe(arn);
    const calls = ecs.commandCalls(DescribeTasksCommand).length;
    expect(calls).toBeGreaterThanOrEqual(1);
    // Far fewer than one per read (reads every 20 ms; a DescribeTasks at most every 200 ms).
    expect(calls).toBeLessThanOrEqual(3);
  });
});
