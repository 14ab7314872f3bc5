/**
 * The Fargate provider against the ECS API shapes (aws-sdk-client-mock: ECS has no local
 * emulator), with a real sandbox agent on 127.0.0.1 standing in for the task's ENI address.
 */
import {
  DescribeTasksCommand,
  ECSClient,
  InvalidParameterException,
  RunTaskCommand,
  ServerException,
  StopTaskCommand,
  type RunTaskCommandInput,
  type Task,
} from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EcsSandboxProvider, FARGATE_RECIPE_SUPPORT, clusterForSession, clusterOfTask, taskPrivateIp } from '../../lambdas/adapters/aws/ecs-sandbox-provider.js';
import { SandboxClient } from '../../lambdas/core/sandbox/client.js';
import { SandboxSetupError, SandboxUnavailableError, type SandboxRecipe } from '../../lambdas/core/sandbox/types.js';
import { makeGitFixture, recipeFor, startAgent, tempDir, type AgentHandle, type GitFixture } from './helpers.js';
import { StateTableEgressGrants } from '../../lambdas/core/sandbox/egress-grant.js';
import { MemoryStateTable } from '../unit/memory-store.js';

const ecs = mockClient(ECSClient);
const ARN = 'arn:aws:ecs:eu-west-1:123456789012:task/corral-sandboxes/0123456789abcdef';
const emptyRecipe: SandboxRecipe = { environmentId: 'env_1', packages: {}, repositories: [] };

let root: string;
let repo: GitFixture;
const agents: AgentHandle[] = [];

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

function task(lastStatus: string, extra: Partial<Task> = {}): Task {
  return {
    taskArn: ARN,
    lastStatus,
    desiredStatus: lastStatus === 'STOPPED' ? 'STOPPED' : 'RUNNING',
    attachments: [
      {
        type: 'ElasticNetworkInterface',
        status: lastStatus === 'PROVISIONING' ? 'PRECREATED' : 'ATTACHED',
        details: [
          { name: 'subnetId', value: 'subnet-a' },
          { name: 'networkInterfaceId', value: 'eni-1' },
          { name: 'privateIPv4Address', value: '127.0.0.1' },
        ],
      },
    ],
    containers: [{ name: 'sandbox', lastStatus }],
    ...extra,
  };
}

function provider(port: number, extra: Partial<ConstructorParameters<typeof EcsSandboxProvider>[0]> = {}) {
  return new EcsSandboxProvider({
    ecs: new ECSClient({ region: 'eu-west-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } }),
    cluster: 'corral-sandboxes',
    taskDefinition: 'corral-sandbox:7',
    subnets: ['subnet-a', 'subnet-b'],
    securityGroups: ['sg-sandbox'],
    containerName: 'sandbox',
    port,
    pollIntervalMs: 20,
    healthTimeoutMs: 20_000,
    ...extra,
  });
}

/** RunTask starts a real agent with the capability and recipe from the overrides, on `port`. */
function runTaskStartsAgent(port: number, seen: { input?: RunTaskCommandInput; capability?: string }) {
  ecs.on(RunTaskCommand).callsFake(async (input: RunTaskCommandInput) => {
    seen.input = input;
    const env = Object.fromEntries((input.overrides?.containerOverrides?.[0]?.environment ?? []).map((e) => [e.name!, e.value!]));
    seen.capability = env.CORRAL_SANDBOX_CAPABILITY;
    const agent = await startAgent({
      root: fs.mkdtempSync(path.join(root, 'task-')),
      mode: 'tcp',
      port,
      capability: env.CORRAL_SANDBOX_CAPABILITY,
      env: { CORRAL_SANDBOX_RECIPE: env.CORRAL_SANDBOX_RECIPE, ...(env.CORRAL_EGRESS_CHANNEL ? { CORRAL_EGRESS_CHANNEL: env.CORRAL_EGRESS_CHANNEL } : {}) },
      waitReady: false,
    });
    agents.push(agent);
    return { tasks: [{ taskArn: ARN, lastStatus: 'PROVISIONING' }], failures: [] };
  });
}

beforeAll(() => {
  root = tempDir('corral-ecs-');
  repo = makeGitFixture(root);
});
beforeEach(() => {
  ecs.reset();
});
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.stop()));
});
afterAll(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

describe('EcsSandboxProvider.provision', () => {
  it('with the proxy service: writes the task\'s egress grant, hands the agent its channel (never the tools), and revokes the grant when the sandbox is released', async () => {
    const port = await freePort();
    const seen: { input?: RunTaskCommandInput; capability?: string } = {};
    runTaskStartsAgent(port, seen);
    ecs.on(DescribeTasksCommand).resolves({ tasks: [task('RUNNING')] });
    ecs.on(StopTaskCommand).resolves({});
    const grants = new StateTableEgressGrants(new MemoryStateTable());
    const networking = { type: 'limited' as const, allowedHosts: ['pypi.org'], allowPackageManagers: false, allowMcpServers: false, mcpServerHosts: [] };
    const p = provider(port, { egress: { address: 'internal-proxy.elb.eu-west-1.amazonaws.com:3128', grants } });
    const sb = await p.provision({ sessionId: 'sesn_egress', name: 'default', recipe: { ...emptyRecipe, networking } });

    const env = Object.fromEntries(seen.input!.overrides!.containerOverrides![0]!.environment!.map((e) => [e.name!, e.value!]));
    const channel = JSON.parse(env.CORRAL_EGRESS_CHANNEL!) as { address: string; capability: string };
    expect(channel.address).toBe('internal-proxy.elb.eu-west-1.amazonaws.com:3128');
    expect(await grants.get(channel.capability)).toMatchObject({ sessionId: 'sesn_egress', sandbox: 'default', policy: networking, credentials: [] });
    // The tools get the forwarder as their proxy; neither the channel nor the capability.
    const out = (await new SandboxClient(sb.endpoint).execute('bash', { command: 'echo "$HTTPS_PROXY"; env | grep -c CORRAL_EGRESS || true' })).output;
    expect(out).toMatch(/^http:\/\/127\.0\.0\.1:\d+\n0\n$/);
    expect(JSON.stringify(out)).not.toContain(channel.capability);

    await p.release('sesn_egress', 'default', sb.ref);
    expect(await grants.get(channel.capability)).toBeUndefined();
  });

  it('runs a Fargate task, waits for RUNNING and health, and hands back a rotated capability', async () => {
    // Prepare
    const port = await freePort();
    const seen: { input?: RunTaskCommandInput; capability?: string } = {};
    runTaskStartsAgent(port, seen);
    ecs.on(DescribeTasksCommand).resolvesOnce({ tasks: [task('PROVISIONING')] }).resolvesOnce({ tasks: [task('PENDING')] }).resolves({ tasks: [task('RUNNING')] });
    // As planned from a session (a token given with a resource never reaches the plan).
    const recipe = recipeFor(FARGATE_RECIPE_SUPPORT, {
      environmentId: 'env_1',
      config: { type: 'cloud', packages: { type: 'packages', pip: ['requests'] } },
      resources: [{ type: 'github_repository', url: repo.url, authorization_token: 'ghp_do_not_leak', checkout: { type: 'branch', name: 'feature' } }],
    });

    // Act
    const sb = await provider(port).provision({ sessionId: 'sesn_01HAPPY', name: 'api', recipe });

    // Assess: the RunTask request
    expect(ecs.commandCalls(RunTaskCommand)).toHaveLength(1);
    expect(seen.input).toMatchObject({
      cluster: 'corral-sandboxes',
      taskDefinition: 'corral-sandbox:7',
      launchType: 'FARGATE',
      count: 1,
      networkConfiguration: { awsvpcConfiguration: { subnets: ['subnet-a', 'subnet-b'], securityGroups: ['sg-sandbox'], assignPublicIp: 'DISABLED' } },
      startedBy: 'corral/sesn_01HAPPY/api',
      tags: expect.arrayContaining([
        { key: 'corral:session', value: 'sesn_01HAPPY' },
        { key: 'corral:sandbox', value: 'api' },
        { key: 'corral:environment', value: 'env_1' },
      ]),
    });
    expect(seen.input!.clientToken).toBeTypeOf('string');
    const override = seen.input!.overrides!.containerOverrides![0]!;
    expect(override.name).toBe('sandbox');
    expect(override.environment!.map((e) => e.name)).toEqual(['CORRAL_SANDBOX_CAPABILITY', 'CORRAL_SANDBOX_RECIPE']);
    expect(JSON.stringify(seen.input)).not.toContain('ghp_do_not_leak');
    expect(JSON.parse(override.environment![1]!.value!)).toMatchObject({ packages: { pip: ['requests'] }, resources: [{ url: repo.url, checkout: { type: 'branch', name: 'feature' } }] });

    // Assess: the sandbox
    expect(sb.ref).toBe(ARN);
    expect(sb.endpoint).toMatchObject({ kind: 'tcp', host: '127.0.0.1', port });
    expect(sb.notes).toEqual([expect.stringMatching(/packages \(pip: requests\) are not installed/)]);
    expect(sb.endpoint.capability).not.toBe(seen.capability);
    const c = new SandboxClient(sb.endpoint);
    expect((await c.execute('bash', { command: 'cat demo/feature.txt' })).output).toBe('feature\n');
    // the bootstrap capability (visible to DescribeTasks readers) no longer opens it
    await expect(new SandboxClient({ ...sb.endpoint, capability: seen.capability! }).execute('bash', { command: 'true' })).rejects.toBeInstanceOf(
      SandboxUnavailableError,
    );
    expect(ecs.commandCalls(StopTaskCommand)).toHaveLength(0);
  });

  it('spreads sessions over several clusters, each session in one, and stops a task in the cluster its ARN names', async () => {
    const clusters = ['arn:aws:ecs:eu-west-1:123456789012:cluster/corral-a', 'arn:aws:ecs:eu-west-1:123456789012:cluster/corral-b', 'corral-c'];
    // Every session id lands in one cluster, always the same, and 300 sessions use all three about evenly.
    const counts = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      const c = clusterForSession(clusters, `sesn_01J${i.toString(36).padStart(8, '0')}`);
      expect(clusterForSession(clusters, `sesn_01J${i.toString(36).padStart(8, '0')}`)).toBe(c);
      counts.set(c, (counts.get(c) ?? 0) + 1);
    }
    expect([...counts.keys()].sort()).toEqual([...clusters].sort());
    for (const n of counts.values()) expect(n).toBeGreaterThan(60);
    // RunTask goes to the session's cluster; StopTask and DescribeTasks to the task's own.
    const inputs: RunTaskCommandInput[] = [];
    ecs.on(RunTaskCommand).callsFake(async (input: RunTaskCommandInput) => {
      inputs.push(input);
      return { tasks: [], failures: [{ arn: 'x', reason: 'MISSING' }] };
    });
    ecs.on(StopTaskCommand).resolves({});
    const p = provider(1, { cluster: clusters.join(',') });
    await p.provision({ sessionId: 'sesn_spread', name: 'default', recipe: emptyRecipe }).catch(() => undefined);
    expect(inputs.map((i) => i.cluster)).toEqual([clusterForSession(clusters, 'sesn_spread')]);
    await p.release('sesn_spread', 'default', 'arn:aws:ecs:eu-west-1:123456789012:task/corral-b/0123');
    await p.release('sesn_spread', 'default', 'arn:aws:ecs:eu-west-1:123456789012:task/corral-c/0456');
    await p.release('sesn_spread', 'default', 'arn:aws:ecs:eu-west-1:123456789012:task/0789'); // old ARN format: the first cluster
    expect(ecs.commandCalls(StopTaskCommand).map((c) => c.args[0].input.cluster)).toEqual([clusters[1], 'corral-c', clusters[0]]);
    expect(clusterOfTask(clusters, 'arn:aws:ecs:eu-west-1:123456789012:task/corral-a/1')).toBe(clusters[0]);
  });

  it('assigns a public IP only when asked', async () => {
    const port = await freePort();
    const seen: { input?: RunTaskCommandInput } = {};
    runTaskStartsAgent(port, seen);
    ecs.on(DescribeTasksCommand).resolves({ tasks: [task('RUNNING')] });
    await provider(port, { assignPublicIp: true }).provision({ sessionId: 'sesn_pub', name: 'default', recipe: emptyRecipe });
    expect(seen.input!.networkConfiguration!.awsvpcConfiguration!.assignPublicIp).toBe('ENABLED');
  });

  it('on Spot: asks for FARGATE_SPOT, and starts the same task on demand when Spot has no capacity', async () => {
    const inputs: RunTaskCommandInput[] = [];
    ecs.on(RunTaskCommand).callsFake(async (input: RunTaskCommandInput) => {
      inputs.push(input);
      if (input.capacityProviderStrategy) return { tasks: [], failures: [{ arn: 'x', reason: 'Capacity is unavailable at this time. Please try again later or in a different availability zone' }] };
      return { tasks: [{ taskArn: ARN }], failures: [] };
    });
    // The on-demand task starts (RunTask answered with it); it stops at once, which ends the test.
    ecs.on(DescribeTasksCommand).resolves({ tasks: [task('STOPPED', { stoppedReason: 'test ends here' })] });
    ecs.on(StopTaskCommand).resolves({});
    const err = await provider(1, { spot: true }).provision({ sessionId: 'sesn_spot', name: 'default', recipe: emptyRecipe }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/stopped while starting: test ends here/);
    expect(inputs).toHaveLength(2);
    expect(inputs[0]).toMatchObject({ capacityProviderStrategy: [{ capacityProvider: 'FARGATE_SPOT', weight: 1 }] });
    expect(inputs[0].launchType).toBeUndefined();
    expect(inputs[1]).toMatchObject({ launchType: 'FARGATE' });
    expect(inputs[1].capacityProviderStrategy).toBeUndefined();
    // the same sandbox: same capability and recipe in both
    expect(inputs[1].overrides).toEqual(inputs[0].overrides);
  });

  it('turns RunTask capacity failures into a clear error, without stopping anything', async () => {
    ecs.on(RunTaskCommand).resolves({ tasks: [], failures: [{ arn: 'arn:aws:ecs:eu-west-1:123:container-instance/x', reason: 'RESOURCE:MEMORY' }] });
    const err = await provider(1).provision({ sessionId: 'sesn_cap', name: 'default', recipe: emptyRecipe }).catch((e: unknown) => e);
    expect((err as Error).message).toBe('Fargate has no capacity for a sandbox right now (RESOURCE:MEMORY); try again in a minute');

    ecs.reset();
    ecs.on(RunTaskCommand).resolves({ tasks: [], failures: [{ reason: 'Capacity is unavailable at this time. Please try again later or in a different availability zone' }] });
    const fargate = await provider(1).provision({ sessionId: 'sesn_cap', name: 'default', recipe: emptyRecipe }).catch((e: unknown) => e);
    expect((fargate as Error).message).toMatch(/^Fargate has no capacity for a sandbox right now \(Capacity is unavailable/);

    ecs.reset();
    ecs.on(RunTaskCommand).rejects(Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' }));
    const throttled = await provider(1).provision({ sessionId: 'sesn_cap', name: 'default', recipe: emptyRecipe }).catch((e: unknown) => e);
    expect((throttled as Error).message).toMatch(/no capacity .*ThrottlingException: Rate exceeded/);

    ecs.reset();
    ecs.on(RunTaskCommand).resolves({ tasks: [], failures: [{ reason: 'MISSING', detail: 'task definition corral-sandbox:7 not found' }] });
    const missing = await provider(1).provision({ sessionId: 'sesn_cap', name: 'default', recipe: emptyRecipe }).catch((e: unknown) => e);
    expect((missing as Error).message).toBe('Fargate could not start a sandbox task (MISSING: task definition corral-sandbox:7 not found)');
    expect(ecs.commandCalls(StopTaskCommand)).toHaveLength(0);
  });

  it('reports a task that stops on its own, with ECS’s reason and the exit code', async () => {
    let capability = '';
    ecs.on(RunTaskCommand).callsFake(async (input: RunTaskCommandInput) => {
      capability = input.overrides!.containerOverrides![0]!.environment![0]!.value!;
      return { tasks: [{ taskArn: ARN }] };
    });
    ecs.on(DescribeTasksCommand)
      .resolvesOnce({ tasks: [task('PENDING')] })
      .resolves({
        tasks: [
          task('STOPPED', {
            stoppedReason: 'Essential container in task exited',
            stopCode: 'EssentialContainerExited',
            containers: [{ name: 'sandbox', lastStatus: 'STOPPED', exitCode: 2 }],
          }),
        ],
      });
    ecs.on(StopTaskCommand).resolves({});
    const err = await provider(1).provision({ sessionId: 'sesn_stop', name: 'default', recipe: emptyRecipe }).catch((e: unknown) => e);
    expect((err as Error).message).toBe(
      'sandbox task 0123456789abcdef stopped while starting: Essential container in task exited; stop code EssentialContainerExited; container exit code 2',
    );
    expect((err as Error).message).not.toContain(capability);
  });

  it('reports a task that stops while its agent is being health-checked, at once', async () => {
    const port = await freePort(); // nothing listens: health checks fail until the task is seen stopped
    ecs.on(RunTaskCommand).resolves({ tasks: [{ taskArn: ARN }] });
    ecs.on(DescribeTasksCommand)
      .resolvesOnce({ tasks: [task('RUNNING')] })
      .resolvesOnce({ tasks: [task('RUNNING')] })
      .resolves({ tasks: [task('STOPPED', { stoppedReason: 'Task failed container health checks', containers: [{ name: 'sandbox', exitCode: 137 }] })] });
    const err = await provider(port, { healthTimeoutMs: 120_000 }).provision({ sessionId: 'sesn_s2', name: 'default', recipe: emptyRecipe }).catch((e: unknown) => e);
    expect((err as Error).message).toBe('sandbox task 0123456789abcdef stopped while starting: Task failed container health checks; container exit code 137');
  });

  it('stops a task whose health check never passes, and says so', async () => {
    const port = await freePort();
    let capability = '';
    ecs.on(RunTaskCommand).callsFake(async (input: RunTaskCommandInput) => {
      capability = input.overrides!.containerOverrides![0]!.environment![0]!.value!;
      return { tasks: [{ taskArn: ARN }] };
    });
    ecs.on(DescribeTasksCommand).resolves({ tasks: [task('RUNNING')] });
    ecs.on(StopTaskCommand).resolves({ task: task('STOPPING') });
    const err = await provider(port, { healthTimeoutMs: 400 }).provision({ sessionId: 'sesn_sick', name: 'default', recipe: emptyRecipe }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(
      new RegExp(`^sandbox task 0123456789abcdef is running but its agent at 127\\.0\\.0\\.1:${port} did not pass its health check within 400 ms, so it was stopped`),
    );
    expect((err as Error).message).not.toContain(capability);
    const stops = ecs.commandCalls(StopTaskCommand);
    expect(stops).toHaveLength(1);
    expect(stops[0]!.args[0].input).toMatchObject({ cluster: 'corral-sandboxes', task: ARN });
  });

  it('stops a task whose recipe fails and reports the setup error type', async () => {
    const port = await freePort();
    const seen: { input?: RunTaskCommandInput } = {};
    runTaskStartsAgent(port, seen);
    ecs.on(DescribeTasksCommand).resolves({ tasks: [task('RUNNING')] });
    ecs.on(StopTaskCommand).resolves({});
    const recipe = recipeFor(FARGATE_RECIPE_SUPPORT, { resources: [{ type: 'github_repository', url: path.join(root, 'nope.git') }] });
    const err = await provider(port).provision({ sessionId: 'sesn_clone', name: 'default', recipe }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SandboxSetupError);
    expect(err).toMatchObject({ type: 'repository_clone_error' });
    expect((err as Error).message).toMatch(/^repository_clone_error: git clone of .*nope\.git into \/workspace\/nope failed/);
    expect(ecs.commandCalls(StopTaskCommand)).toHaveLength(1);
  });

  it('stops a task that does not reach RUNNING in time', async () => {
    ecs.on(RunTaskCommand).resolves({ tasks: [{ taskArn: ARN }] });
    ecs.on(DescribeTasksCommand).resolves({ tasks: [task('PENDING')] });
    ecs.on(StopTaskCommand).resolves({});
    const err = await provider(1, { startTimeoutMs: 200 }).provision({ sessionId: 'sesn_slow', name: 'default', recipe: emptyRecipe }).catch((e: unknown) => e);
    expect((err as Error).message).toBe('sandbox task 0123456789abcdef did not reach RUNNING within 200 ms (last status PENDING); it was stopped');
    expect(ecs.commandCalls(StopTaskCommand)).toHaveLength(1);
  });

  describe('cut short by its signal (the harness step deadline)', () => {
    const deadline = () => Object.assign(new Error("the harness step's deadline came before provisioning the sandbox finished"), { name: 'StepDeadlineError' });

    it('starts nothing when the signal has already fired', async () => {
      const cut = new AbortController();
      cut.abort(deadline());
      const err = await provider(1).provision({ sessionId: 'sesn_late', name: 'default', recipe: emptyRecipe, signal: cut.signal }).catch((e: unknown) => e);
      expect(err).toBe(cut.signal.reason);
      expect(ecs.commandCalls(RunTaskCommand)).toHaveLength(0);
    });

    it('stops waiting for RUNNING and stops the task it started', async () => {
      // Prepare: the signal fires while the task is still PENDING
      const cut = new AbortController();
      ecs.on(RunTaskCommand).resolves({ tasks: [{ taskArn: ARN }] });
      let described = 0;
      ecs.on(DescribeTasksCommand).callsFake(async () => {
        if (++described === 2) cut.abort(deadline());
        return { tasks: [task('PENDING')] };
      });
      ecs.on(StopTaskCommand).resolves({});
      // Act
      const err = await provider(1).provision({ sessionId: 'sesn_cut', name: 'default', recipe: emptyRecipe, signal: cut.signal }).catch((e: unknown) => e);
      // Assess
      expect(err).toBe(cut.signal.reason);
      const stops = ecs.commandCalls(StopTaskCommand);
      expect(stops).toHaveLength(1);
      expect(stops[0]!.args[0].input).toMatchObject({ cluster: 'corral-sandboxes', task: ARN });
    });

    it('stops health-checking and stops the task it started', async () => {
      // Prepare: RUNNING, and an "agent" that accepts the health check and never answers; the
      // signal fires once the health check has connected.
      const cut = new AbortController();
      const sockets: net.Socket[] = [];
      const silent = net.createServer((socket) => {
        sockets.push(socket);
        cut.abort(deadline());
      });
      await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
      const { port } = silent.address() as net.AddressInfo;
      ecs.on(RunTaskCommand).resolves({ tasks: [{ taskArn: ARN }] });
      ecs.on(DescribeTasksCommand).resolves({ tasks: [task('RUNNING')] });
      ecs.on(StopTaskCommand).resolves({});
      try {
        // Act
        const err = await provider(port).provision({ sessionId: 'sesn_cut2', name: 'default', recipe: emptyRecipe, signal: cut.signal }).catch((e: unknown) => e);
        // Assess
        expect(err).toBe(cut.signal.reason);
        expect(sockets.length).toBeGreaterThan(0);
        expect(ecs.commandCalls(StopTaskCommand).map((c) => c.args[0].input.task)).toEqual([ARN]);
      } finally {
        sockets.forEach((s) => s.destroy());
        await new Promise((r) => silent.close(r));
      }
    });
  });

  it('reads the private IP from the ENI attachment, or from the container', () => {
    expect(taskPrivateIp(task('RUNNING'))).toBe('127.0.0.1');
    expect(taskPrivateIp({ containers: [{ networkInterfaces: [{ privateIpv4Address: '10.0.1.5' }] }] })).toBe('10.0.1.5');
    expect(taskPrivateIp({ attachments: [] })).toBeUndefined();
  });
});

describe('EcsSandboxProvider.release', () => {
  it('stops the task, and a task that is already gone is fine', async () => {
    const p = provider(8080);
    ecs.on(StopTaskCommand).resolvesOnce({ task: task('STOPPING') }).rejects(new InvalidParameterException({ message: 'The referenced task was not found.', $metadata: {} }));
    await p.release('sesn_r', 'default', ARN);
    await p.release('sesn_r', 'default', ARN);
    expect(ecs.commandCalls(StopTaskCommand).map((c) => c.args[0].input)).toEqual([
      { cluster: 'corral-sandboxes', task: ARN, reason: 'corral: released sandbox default of session sesn_r' },
      { cluster: 'corral-sandboxes', task: ARN, reason: 'corral: released sandbox default of session sesn_r' },
    ]);
  });

  it('reports other failures, so the caller can try again', async () => {
    ecs.on(StopTaskCommand).rejects(new ServerException({ message: 'internal', $metadata: {} }));
    await expect(provider(8080).release('sesn_r', 'default', ARN)).rejects.toThrow(/StopTask failed for sandbox task 0123456789abcdef: ServerException/);
  });
});
