/**
 * Warm pools on Fargate: the pool's tasks are started ahead in the environment's cluster, a
 * session claims one through the state table (dynalite), and the reaper stops the ones never
 * claimed. ECS has no local emulator: the ECS API answers through aws-sdk-client-mock, with a
 * real sandbox agent on 127.0.0.1 standing in for each task's ENI address (as in
 * ecs-sandbox-provider.test.ts).
 */
import { DescribeTasksCommand, ECSClient, RunTaskCommand, StopTaskCommand, type RunTaskCommandInput, type Task } from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DynamoStateTable } from '../../lambdas/adapters/aws/dynamodb-state-table.js';
import { EcsSandboxProvider, FARGATE_RECIPE_SUPPORT, clusterForSession } from '../../lambdas/adapters/aws/ecs-sandbox-provider.js';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite, type EmbeddedDynamo } from '../../lambdas/adapters/local/dynalite.js';
import { SandboxManager } from '../../lambdas/core/sandbox/manager.js';
import { reapIdleSandboxes } from '../../lambdas/core/sandbox/reaper.js';
import { fitRecipe } from '../../lambdas/core/sandbox/recipe.js';
import { POOL_OWNER_PREFIX, poolOwner } from '../../lambdas/core/sandbox/warm-pool.js';
import { planFor, startAgent, tempDir, type AgentHandle } from './helpers.js';

const ecs = mockClient(ECSClient);
const CLUSTERS = ['corral-sandboxes-0', 'corral-sandboxes-1'];

let db: EmbeddedDynamo;
let table: DynamoStateTable;
let root: string;
const agents: AgentHandle[] = [];
let n = 0;

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

function running(taskArn: string): Task {
  return {
    taskArn,
    lastStatus: 'RUNNING',
    desiredStatus: 'RUNNING',
    attachments: [{ type: 'ElasticNetworkInterface', status: 'ATTACHED', details: [{ name: 'privateIPv4Address', value: '127.0.0.1' }] }],
    containers: [{ name: 'sandbox', lastStatus: 'RUNNING' }],
  };
}

/**
 * ECS as the pool sees it: the first RunTask starts a real agent on `port` (one task fits on one
 * port); later ones find no capacity, so a refill after a claim starts nothing here.
 */
function fakeEcs(port: number) {
  const runs: RunTaskCommandInput[] = [];
  ecs.on(RunTaskCommand).callsFake(async (input: RunTaskCommandInput) => {
    runs.push(input);
    if (runs.length > 1) return { tasks: [], failures: [{ reason: 'RESOURCE:FARGATE', detail: 'no capacity in this test' }] };
    const env = Object.fromEntries((input.overrides?.containerOverrides?.[0]?.environment ?? []).map((e) => [e.name!, e.value!]));
    agents.push(await startAgent({ root: fs.mkdtempSync(path.join(root, 'task-')), mode: 'tcp', port, capability: env.CORRAL_SANDBOX_CAPABILITY, env: { CORRAL_SANDBOX_RECIPE: env.CORRAL_SANDBOX_RECIPE }, waitReady: false }));
    return { tasks: [{ taskArn: `arn:aws:ecs:eu-west-1:123456789012:task/${input.cluster}/${crypto.randomBytes(8).toString('hex')}`, lastStatus: 'PROVISIONING' }], failures: [] };
  });
  ecs.on(DescribeTasksCommand).callsFake(async (input: { tasks: string[] }) => ({ tasks: input.tasks.map(running) }));
  ecs.on(StopTaskCommand).resolves({});
  return runs;
}

function setup(port: number, env: string) {
  const provider = new EcsSandboxProvider({
    ecs: new ECSClient({ region: 'eu-west-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } }),
    cluster: CLUSTERS.join(','),
    taskDefinition: 'corral-sandbox:7',
    subnets: ['subnet-a'],
    securityGroups: ['sg-sandbox'],
    containerName: 'sandbox',
    port,
    pollIntervalMs: 20,
    healthTimeoutMs: 20_000,
  });
  const manager = new SandboxManager(provider, table, crypto.randomBytes(32), undefined, undefined, { warmPool: { sizes: { [env]: 1 }, maxAgeMs: 60_000 } });
  return { provider, manager, pool: manager.warmPool! };
}

beforeAll(async () => {
  db = await startDynalite();
  await ensureTables(db.client, { events: 'events', state: 'state' });
  table = new DynamoStateTable(db.client, 'state');
  root = tempDir('corral-pool-ecs-');
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

describe('a warm pool of Fargate tasks', () => {
  it("starts its tasks ahead in the environment's cluster with nothing of a session, and a session's first call claims one through the state table", async () => {
    const env = `env_ecs_${++n}`;
    const port = await freePort();
    const runs = fakeEcs(port);
    const { manager, pool } = setup(port, env);
    const plan = planFor({ environmentId: env, config: { type: 'cloud', packages: { type: 'packages', pip: ['requests'] } } });
    await pool.replenish(fitRecipe(plan, FARGATE_RECIPE_SUPPORT).recipe);

    expect(runs).toHaveLength(1);
    const owner = poolOwner(env, '').sessionId;
    expect(runs[0].cluster).toBe(clusterForSession(CLUSTERS, owner));
    expect(runs[0].tags).toEqual(expect.arrayContaining([{ key: 'corral:session', value: owner }, { key: 'corral:environment', value: env }]));
    expect(JSON.stringify(runs[0])).not.toMatch(/sesn_/);
    const [slot] = await pool.slots(env);
    expect(slot).toMatchObject({ state: 'ready', ref: expect.stringMatching(new RegExp(`:task/${runs[0].cluster}/`)) });

    const sid = `sesn_ecs_${n}`;
    const out = await manager.execute(sid, 'default', plan, 'bash', { command: 'echo from the pool' });
    expect(out.isError).toBe(false);
    // What the task's agent said when it started (here: no packages installed) reaches the model as a fresh task's would.
    expect(out.output).toMatch(/^\[corral\] sandbox "default": the environment's packages \(pip: requests\)[^\n]*\nfrom the pool\n$/);
    expect((await manager.get(sid, 'default'))!.ref).toBe(slot.ref);
    // No task was started for the session: the only RunTask calls are the pool's.
    await pool.settled();
    expect(runs.every((r) => r.tags!.some((t) => t.key === 'corral:session' && t.value!.startsWith(POOL_OWNER_PREFIX)))).toBe(true);
    expect(ecs.commandCalls(StopTaskCommand)).toHaveLength(0);

    // Released with the session, as a fresh one would be.
    await manager.releaseAll(sid);
    expect(ecs.commandCalls(StopTaskCommand).map((c) => c.args[0].input.task)).toEqual([slot.ref]);
  });

  it('stops a pooled task never claimed once it is past its age, in its own cluster', async () => {
    const env = `env_ecs_${++n}`;
    const port = await freePort();
    fakeEcs(port);
    const { provider, pool } = setup(port, env);
    await pool.replenish(fitRecipe(planFor({ environmentId: env }), FARGATE_RECIPE_SUPPORT).recipe);
    const [slot] = await pool.slots(env);
    expect(slot.state).toBe('ready');

    expect((await reapIdleSandboxes({ table, provider, idleMs: 60_000, warmPool: pool })).pooled).toEqual([]);
    expect(ecs.commandCalls(StopTaskCommand)).toHaveLength(0);
    const result = await reapIdleSandboxes({ table, provider, idleMs: 60_000, warmPool: pool, now: new Date(Date.now() + 120_000) });
    expect(result.pooled).toEqual([{ environmentId: env, ref: slot.ref, reason: 'never claimed' }]);
    const stops = ecs.commandCalls(StopTaskCommand).map((c) => c.args[0].input);
    expect(stops).toEqual([expect.objectContaining({ task: slot.ref, cluster: slot.ref!.split('/')[1] })]);
    expect(await pool.slots(env)).toEqual([]);
  });
});
