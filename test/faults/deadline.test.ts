import { DescribeTasksCommand, ECSClient, RunTaskCommand, StopTaskCommand, type StopTaskCommandInput } from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EcsSandboxProvider } from '../../lambdas/adapters/aws/ecs-sandbox-provider.js';
import { planRecipe } from '../../lambdas/core/sandbox/recipe.js';
import type { CorralServices } from '../../lambdas/core/services.js';
import { makeEvent, type SessionEvent } from '../../lambdas/core/session/events.js';
import { waitFor } from '../helpers/runtime.js';
import { checkInvariants, logicalTranscript, startRig, type RecordingQueue, type Rig } from './harness-rig.js';

/**
 * The step deadline reaches every long call: a model call that hangs, a tool call longer than
 * the time left, a provisioning that takes too long. Each is cut at the deadline, the wake
 * yields and queues its continuation, and the next wake finishes the turn with nothing lost
 * or done twice.
 */
describe('a wake cut short by its deadline', () => {
  let rig: Rig;
  let agentId: string;
  let envId: string;
  const tenant = 'deadline';

  beforeAll(async () => {
    // No minimum time for a model call here, so that short deadlines still start one.
    rig = await startRig({ harness: { minModelCallMs: 0 } });
    const agent = await rig.services.agents.create(tenant, { name: 'deadline', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
    const env = await rig.services.environments.create(tenant, { name: 'env' });
    agentId = agent.id;
    envId = env.id;
  }, 60_000);
  afterAll(() => rig?.close());

  async function session(text = 'go') {
    const s = await rig.services.sessions.create(tenant, { agent: agentId, environment_id: envId });
    await rig.services.sessions.send(tenant, s.id, [{ type: 'user.message', content: [{ type: 'text', text }] }]);
    return s.id;
  }
  const wakesOf = (svc: CorralServices, id: string) => (svc.queue as RecordingQueue).wakes.filter((w) => w === id).length;
  async function log(id: string) {
    const stored = await rig.services.events.getEvents(id);
    return { positions: stored.map((s) => s.position), events: stored.map((s) => s.event as SessionEvent) };
  }
  const ofType = (events: SessionEvent[], type: string) => events.filter((e) => e.type === type);

  it('aborts a hanging model call at the deadline, yields, and the next wake completes the turn once', async () => {
    // Prepare
    const id = await session();
    rig.fake.push({ kind: 'hang' }, { kind: 'text', text: 'hello back' });
    const queued = wakesOf(rig.services, id);

    // Act
    const first = await rig.services.harness.wake(id, { deadline: Date.now() + 1_000 });

    // Assess: yielded, continuation queued, the cut request closed as a failed attempt
    expect(first).toEqual({ status: 'yielded' });
    expect(wakesOf(rig.services, id)).toBe(queued + 1);
    const cut = await log(id);
    expect(checkInvariants(cut.positions, cut.events)).toEqual([]);
    expect(ofType(cut.events, 'span.model_request_end')).toEqual([expect.objectContaining({ is_error: true })]);
    expect(ofType(cut.events, 'session.error')).toEqual([
      expect.objectContaining({ error: expect.objectContaining({ type: 'model_request_failed_error', retry_status: { type: 'retrying' } }) }),
    ]);
    expect(ofType(cut.events, 'agent.message')).toEqual([]);

    expect(await rig.services.harness.wake(id)).toEqual({ status: 'done' });
    const done = await log(id);
    expect(checkInvariants(done.positions, done.events)).toEqual([]);
    expect(logicalTranscript(done.events)).toEqual([
      { type: 'user.message', content: [{ type: 'text', text: 'go' }] },
      { type: 'session.status_running', stop_reason: undefined },
      { type: 'agent.message', content: [{ type: 'text', text: 'hello back' }] },
      { type: 'session.status_idle', stop_reason: { type: 'end_turn' } },
    ]);
    expect(ofType(done.events, 'span.model_request_start')).toHaveLength(2);
  });

  it('closes a model request a killed step left open, and carries on', async () => {
    // Prepare: the log as a step Lambda leaves it when it is killed during the model call.
    const id = await session();
    const tail = (await log(id)).positions.length;
    await rig.services.events.emitEvent(id, makeEvent({ type: 'session.status_running' }), { position: tail + 1 });
    const start = makeEvent({ type: 'span.model_request_start' });
    await rig.services.events.emitEvent(id, start, { position: tail + 2 });
    rig.fake.push({ kind: 'text', text: 'after the kill' });

    // Act
    expect(await rig.services.harness.wake(id)).toEqual({ status: 'done' });

    // Assess: the open request has exactly one (failed) end, and the turn completed
    const { positions, events } = await log(id);
    expect(checkInvariants(positions, events)).toEqual([]);
    expect(events.find((e) => e.type === 'span.model_request_end' && e.model_request_start_id === start.id)).toMatchObject({ is_error: true });
    expect(ofType(events, 'agent.message')).toEqual([expect.objectContaining({ content: [{ type: 'text', text: 'after the kill' }] })]);
    expect(events.at(-1)).toMatchObject({ type: 'session.status_idle', stop_reason: { type: 'end_turn' } });
  });

  it('does not start a model call with less than the minimum time left, after the first action', async () => {
    // Prepare
    const strict = rig.servicesWith({ harness: { minModelCallMs: 60_000 } });
    const id = await session();
    const asked = rig.fake.requests.length;

    // Act: 30 s left, a model call needs 60 s
    const first = await strict.harness.wake(id, { deadline: Date.now() + 30_000 });

    // Assess: the turn started, the model was not asked, the rest was handed on
    expect(first).toEqual({ status: 'yielded' });
    expect(wakesOf(strict, id)).toBe(1);
    expect(rig.fake.requests.length).toBe(asked);
    expect((await log(id)).events.map((e) => e.type)).toEqual(['user.message', 'session.status_running']);
    expect(await rig.services.harness.wake(id)).toEqual({ status: 'done' });
    expect((await log(id)).events.at(-1)).toMatchObject({ type: 'session.status_idle', stop_reason: { type: 'end_turn' } });
  });

  /** A session whose model runs `command` in bash, then answers with its output. */
  async function toolSession(command: string) {
    const id = await session('run it');
    // A sandbox ready beforehand, so that the deadline cuts the command and not its provisioning.
    await rig.services.sandboxes.ensure(id, 'default', planRecipe({ session: { environment_id: envId, resources: [] }, environment: { config: { type: 'cloud' } }, credentials: [] }));
    rig.fake.push({ kind: 'tool_use', calls: [{ name: 'bash', input: { command } }] });
    return { id, runs: join(rig.provider.workspaceDir(id, 'default'), 'runs.txt') };
  }

  it('stops waiting for a tool call at the deadline; the next wake joins the running command, which ran once', async () => {
    // Prepare
    const { id, runs } = await toolSession('echo start >> runs.txt; sleep 3; echo end >> runs.txt; echo finished');
    const queued = wakesOf(rig.services, id);

    // Act
    const first = await rig.services.harness.wake(id, { deadline: Date.now() + 1_500 });

    // Assess: yielded with the tool call open, the command running in the sandbox
    expect(first).toEqual({ status: 'yielded' });
    expect(wakesOf(rig.services, id)).toBe(queued + 1);
    const cut = await log(id);
    expect(ofType(cut.events, 'agent.tool_use')).toHaveLength(1);
    expect(ofType(cut.events, 'agent.tool_result')).toEqual([]);
    expect(readFileSync(runs, 'utf8')).toBe('start\n');
    expect((await rig.services.sandboxes.get(id, 'default'))?.busyUntil).toBeDefined();

    // The next wake comes while the command still runs: it waits for that run's result.
    expect(await rig.services.harness.wake(id)).toEqual({ status: 'done' });
    const done = await log(id);
    expect(checkInvariants(done.positions, done.events)).toEqual([]);
    expect(ofType(done.events, 'agent.tool_result')).toEqual([
      expect.objectContaining({ is_error: false, content: [{ type: 'text', text: 'finished\n' }] }),
    ]);
    expect(readFileSync(runs, 'utf8')).toBe('start\nend\n');
    expect(done.events.at(-1)).toMatchObject({ type: 'session.status_idle', stop_reason: { type: 'end_turn' } });
  });

  it('gives the next wake the result of a command that finished after the deadline, without running it again', async () => {
    // Prepare
    const { id, runs } = await toolSession('echo start >> runs.txt; sleep 2; echo end >> runs.txt; echo finished');
    expect(await rig.services.harness.wake(id, { deadline: Date.now() + 1_000 })).toEqual({ status: 'yielded' });
    expect(ofType((await log(id)).events, 'agent.tool_result')).toEqual([]);

    // Act: the next wake comes after the command finished
    await waitFor(async () => existsSync(runs) && readFileSync(runs, 'utf8').includes('end'), 'the command to finish');
    expect(await rig.services.harness.wake(id)).toEqual({ status: 'done' });

    // Assess
    const done = await log(id);
    expect(checkInvariants(done.positions, done.events)).toEqual([]);
    expect(ofType(done.events, 'agent.tool_result')).toEqual([expect.objectContaining({ content: [{ type: 'text', text: 'finished\n' }] })]);
    expect(readFileSync(runs, 'utf8')).toBe('start\nend\n');
  });

  it('stops a Fargate task whose provisioning the deadline cut, and provisions afresh on the next wake', async () => {
    // Prepare: ECS as the harness role sees it (RunTask, DescribeTasks, StopTask); the task never gets past PENDING.
    const ecs = mockClient(ECSClient);
    const arn = 'arn:aws:ecs:eu-west-1:123456789012:task/corral-sandboxes/deadline0001';
    ecs.on(RunTaskCommand).resolves({ tasks: [{ taskArn: arn, lastStatus: 'PROVISIONING' }], failures: [] });
    let stopped = false;
    ecs.on(DescribeTasksCommand).callsFake(async () => ({
      tasks: [{ taskArn: arn, lastStatus: stopped ? 'STOPPED' : 'PENDING', desiredStatus: stopped ? 'STOPPED' : 'RUNNING' }],
    }));
    ecs.on(StopTaskCommand).callsFake(async () => {
      stopped = true;
      return { task: { taskArn: arn, desiredStatus: 'STOPPED' } };
    });
    const provider = new EcsSandboxProvider({
      ecs: new ECSClient({ region: 'eu-west-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } }),
      cluster: 'corral-sandboxes',
      taskDefinition: 'corral-sandbox:7',
      subnets: ['subnet-a'],
      securityGroups: ['sg-sandbox'],
      containerName: 'sandbox',
      port: 8080,
      pollIntervalMs: 20,
    });
    const onEcs = rig.servicesWith({ sandboxProvider: provider });
    const id = await session('run it');
    rig.fake.push({ kind: 'tool_use', calls: [{ name: 'bash', input: { command: 'echo hi' } }] });

    try {
      // Act
      const first = await onEcs.harness.wake(id, { deadline: Date.now() + 1_000 });

      // Assess: yielded; the task it started is stopped; no sandbox recorded; the tool call still open
      expect(first).toEqual({ status: 'yielded' });
      expect(wakesOf(onEcs, id)).toBe(1);
      expect(ecs.commandCalls(RunTaskCommand)).toHaveLength(1);
      expect(ecs.commandCalls(StopTaskCommand).map((c) => (c.args[0].input as StopTaskCommandInput).task)).toEqual([arn]);
      expect(await onEcs.sandboxes.list(id)).toEqual([]);
      const { events } = await log(id);
      expect(ofType(events, 'agent.tool_use')).toHaveLength(1);
      expect(ofType(events, 'agent.tool_result')).toEqual([]);
      expect(ofType(events, 'session.error')).toEqual([]);

      // The next wake (here with the local sandboxes) provisions again and runs the call.
      expect(await rig.services.harness.wake(id)).toEqual({ status: 'done' });
      const done = await log(id);
      expect(checkInvariants(done.positions, done.events)).toEqual([]);
      expect(ofType(done.events, 'agent.tool_result')).toEqual([expect.objectContaining({ is_error: false, content: [{ type: 'text', text: 'hi\n' }] })]);
    } finally {
      ecs.restore();
    }
  });
});
