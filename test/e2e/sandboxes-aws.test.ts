/**
 * The AWS sandbox path end to end: the runtime with the Fargate provider (ECS mocked, a real
 * sandbox agent on 127.0.0.1 standing in for the task). A session that answers without tools
 * never calls RunTask; one that uses a tool starts exactly one task, and deleting the session
 * stops it; one with a repository it holds a token for starts none (Fargate has no git channel).
 */
import { DescribeTasksCommand, ECSClient, RunTaskCommand, StopTaskCommand, type RunTaskCommandInput } from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';
import fs from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EcsSandboxProvider } from '../../lambdas/adapters/aws/ecs-sandbox-provider.js';
import { collectUntil, createAgentAndEnvironment, isIdle, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { startAgent, tempDir, type AgentHandle } from '../sandbox/helpers.js';

const text = (t: string) => [{ type: 'text' as const, text: t }];
const ARN = 'arn:aws:ecs:eu-west-1:123456789012:task/corral/e2e0001';

describe('sessions on the Fargate provider (ECS mocked)', () => {
  const ecs = mockClient(ECSClient);
  let t: TestRuntime;
  let root: string;
  let port: number;
  const agents: AgentHandle[] = [];
  let agentId: string;
  let envId: string;

  beforeAll(async () => {
    root = tempDir('corral-e2e-ecs-');
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    port = (srv.address() as net.AddressInfo).port;
    await new Promise((r) => srv.close(r));

    ecs.on(RunTaskCommand).callsFake(async (input: RunTaskCommandInput) => {
      const env = Object.fromEntries((input.overrides?.containerOverrides?.[0]?.environment ?? []).map((e) => [e.name!, e.value!]));
      agents.push(
        await startAgent({
          root: fs.mkdtempSync(`${root}/task-`),
          mode: 'tcp',
          port,
          capability: env.CORRAL_SANDBOX_CAPABILITY,
          env: { CORRAL_SANDBOX_RECIPE: env.CORRAL_SANDBOX_RECIPE },
        }),
      );
      return { tasks: [{ taskArn: ARN, lastStatus: 'PROVISIONING' }], failures: [] };
    });
    ecs.on(DescribeTasksCommand).resolves({
      tasks: [
        {
          taskArn: ARN,
          lastStatus: 'RUNNING',
          desiredStatus: 'RUNNING',
          attachments: [{ type: 'ElasticNetworkInterface', status: 'ATTACHED', details: [{ name: 'privateIPv4Address', value: '127.0.0.1' }] }],
        },
      ],
    });
    ecs.on(StopTaskCommand).callsFake(async () => {
      await Promise.all(agents.map((a) => a.stop()));
      return {};
    });

    const sandboxProvider = new EcsSandboxProvider({
      ecs: new ECSClient({ region: 'eu-west-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } }),
      cluster: 'corral',
      taskDefinition: 'corral-sandbox:1',
      subnets: ['subnet-private-a'],
      securityGroups: ['sg-sandbox'],
      containerName: 'sandbox',
      port,
      pollIntervalMs: 20,
    });
    t = await startTestRuntime({ runtime: { sandboxProvider } });
    const { agent, environment } = await createAgentAndEnvironment(t.client);
    agentId = agent.id;
    envId = environment.id;
  });
  afterAll(async () => {
    await t?.close();
    await Promise.all(agents.map((a) => a.stop()));
    ecs.restore();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('starts no Fargate task for a session that answers without tools', async () => {
    const session = await t.client.beta.sessions.create({ agent: agentId, environment_id: envId });
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('just talk') }] });
    const seen = await collectUntil(stream, isIdle);
    expect(seen.find((e) => e.type === 'agent.message')).toMatchObject({ content: [{ type: 'text', text: 'You said: just talk' }] });
    expect(seen.at(-1)).toMatchObject({ stop_reason: { type: 'end_turn' } });
    expect(ecs.commandCalls(RunTaskCommand)).toHaveLength(0);
    expect(ecs.commandCalls(DescribeTasksCommand)).toHaveLength(0);
    expect(await t.runtime.services.sandboxes.list(session.id)).toEqual([]);
  });

  it('starts one task on the first tool call, reuses it, and stops it when the session is deleted', async () => {
    const session = await t.client.beta.sessions.create({ agent: agentId, environment_id: envId });
    t.fake.push(
      { kind: 'tool_use', calls: [{ name: 'bash', input: { command: 'echo on-fargate > f' } }] },
      { kind: 'tool_use', calls: [{ name: 'read', input: { file_path: 'f' } }] },
      { kind: 'text', text: 'done' },
    );
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('work') }] });
    const seen = await collectUntil(stream, isIdle);
    const results = seen.filter((e) => e.type === 'agent.tool_result');
    expect(results.map((r) => [r.is_error, r.sandbox])).toEqual([
      [false, 'default'],
      [false, 'default'],
    ]);
    expect(results[1]).toMatchObject({ content: [{ type: 'text', text: '     1\ton-fargate' }] });
    expect(ecs.commandCalls(RunTaskCommand)).toHaveLength(1);
    const record = (await t.runtime.services.sandboxes.get(session.id, 'default'))!;
    expect(record).toMatchObject({ ref: ARN, state: 'ready', endpoint: { kind: 'tcp', host: '127.0.0.1', port } });

    await t.client.beta.sessions.delete(session.id);
    expect(ecs.commandCalls(StopTaskCommand).map((c) => c.args[0].input)).toEqual([
      { cluster: 'corral', task: ARN, reason: `corral: released sandbox default of session ${session.id}` },
    ]);
  });

  it('without the proxy service\'s git channel, refuses a repository the session holds a token for before any task starts, as a tool error and a session error', async () => {
    const token = `ghp_fargate_${Date.now()}`;
    const tasksBefore = ecs.commandCalls(RunTaskCommand).length;
    const session = await t.client.beta.sessions.create({
      agent: agentId,
      environment_id: envId,
      resources: [{ type: 'github_repository', url: 'https://git.example.com/org/private.git', authorization_token: token }],
    });
    t.fake.push({ kind: 'tool_use', calls: [{ name: 'bash', input: { command: 'ls' } }] }, { kind: 'text', text: 'ok' });
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('clone it') }] });
    const seen = await collectUntil(stream, isIdle);
    const result = seen.find((e) => e.type === 'agent.tool_result') as unknown as { content: Array<{ text: string }>; is_error: boolean };
    expect(result.is_error).toBe(true);
    expect(result.content.map((c) => c.text).join('')).toBe(
      'could not start sandbox "default": repository_clone_error: repository https://git.example.com/org/private.git needs the credential this session holds for it, ' +
        "which reaches a sandbox only through the credential proxy's git channel, and this deployment gives Fargate sandboxes no git channel (the proxy service's URL is not configured)",
    );
    expect(seen.find((e) => e.type === 'session.error')).toMatchObject({ error: { type: 'repository_clone_error', retry_status: { type: 'terminal' } } });
    expect(ecs.commandCalls(RunTaskCommand)).toHaveLength(tasksBefore);
    expect(await t.runtime.services.sandboxes.list(session.id)).toEqual([]);
    expect(JSON.stringify(seen)).not.toContain(token);
  });
});
