/**
 * ECS on Fargate, as far as Corral uses it: `RunTask` of the sandbox task definition starts the
 * sandbox agent (the image's bundle, built from `sandbox/agent.ts` the way `sandbox/Dockerfile`
 * builds it) as a process with the image's command, the task definition's environment plus the
 * run's overrides, at a private address of the rehearsal VPC that serves the container port
 * through the security groups of the run's network configuration; `DescribeTasks` reports it
 * the way ECS does (status, ENI attachment with its private IPv4 address, stop reason, exit
 * code); `StopTask` stops it. Every change of a task's status is also sent as an ECS Task State
 * Change event (`onTaskStateChange`: its `detail` is the task as DescribeTasks describes it, with
 * ECS's `version`), which the rehearsal delivers to the rules of the template that match it.
 *
 * What cannot run here is left out and said so: the image's uid split (`--run-as-uid`,
 * `--setpriv`: tested in test/sandbox/agent-privileges.test.ts), package installation as root
 * (`--install-packages`), and tini.
 *
 * The image's `/mnt/session` (the session's file resources and outputs, `sandbox/Dockerfile`) is
 * the task's own `session` directory, bound at `/mnt/session` in a mount namespace of the task
 * (bubblewrap: the host's file system as it is, `/mnt` a fresh tmpfs), so the agent and the
 * model's commands use the paths they use on Fargate. Where bubblewrap cannot run, the agent is
 * pointed at the directory (`--session-dir`) and commands naming `/mnt/session` find nothing.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AwsCall, Backend } from './aws-gateway.js';
import { jsonError } from './aws-gateway.js';
import { PRIVATE_PREFIX, splice, type VpcNetwork } from './network.js';

export interface RehearsedTaskDefinition {
  arn: string;
  family: string;
  containers: Array<{
    name: string;
    /** The image reference (an asset of the cloud assembly, for the template's own images). */
    image?: string;
    environment: Record<string, string>;
    /** Container ports from the port mappings. */
    ports: number[];
    /** `Command`/`EntryPoint` from the task definition; absent = the image's. */
    command?: string[];
  }>;
  taskRoleArn?: string;
  taskRoleLogicalId?: string;
  executionRoleArn?: string;
}

export interface EcsEmulatorOptions {
  region: string;
  account: string;
  clusters: Array<{ name: string; arn: string }>;
  taskDefinitions: RehearsedTaskDefinition[];
  /** Subnets tasks may be placed in (the template's). */
  subnets: string[];
  network: VpcNetwork;
  /** The image's command (ENTRYPOINT + CMD) when the task definition has none. */
  imageCommand: string[];
  /** The bundled sandbox agent, standing in for `/opt/corral/agent.mjs` in the image. */
  agentBundle: string;
  /** Where each task's workspace and logs go. */
  dataDir: string;
  /** Extra environment for every task (the rehearsal's network identity). */
  taskEnvironment?: Record<string, string>;
  /** Called with each ECS Task State Change event (EventBridge's envelope), as ECS sends them. */
  onTaskStateChange?: (event: Record<string, unknown>) => void;
  /** The template's own images (assets of the cloud assembly), by image reference: what a service task runs. */
  images?: Map<string, RehearsedImage>;
  /** Loaded with `--import` into a service task: the VPC address it connects from, the port it listens on. */
  servicePreload?: string;
  /** The environment a service task gets from its task role (AWS endpoint, region, the role's credentials). */
  taskRoleEnvironment?: (taskDefinition: RehearsedTaskDefinition) => Record<string, string>;
  /**
   * How a sandbox task without a way to the internet (its security groups have no egress to
   * 0.0.0.0/0) reaches the proxy service named in its egress channel: a connection from the task's
   * private address to `host:port` (the load balancer's name), through the security groups' check.
   * Without it such a task still shares the host's network.
   */
  egressBridge?: (from: string, host: string, port: number) => Promise<Socket>;
  /** Extra environment of a service's tasks (the rehearsal's stand-ins, never the template's). */
  serviceEnvironment?: (service: RehearsedService) => Record<string, string>;
  /** A service task is running (register it with its target groups) or stopping (deregister it first). */
  onServiceTask?: (event: 'running' | 'stopping', service: RehearsedService, task: { id: string; address: string }) => void;
}

/** An image the rehearsal runs as a process: its entrypoint and, by path in the image, the files it copies in. */
export interface RehearsedImage {
  entrypoint: string[];
  files: Record<string, string>;
}

/** An ECS service: the scheduler keeps `desiredCount` tasks of its task definition running. */
export interface RehearsedService {
  name: string;
  clusterArn: string;
  taskDefinitionArn: string;
  desiredCount: number;
  subnets: string[];
  securityGroups: string[];
  loadBalancers: Array<{ targetGroupArn: string; containerName: string; containerPort: number }>;
}

/**
 * An image's ENTRYPOINT and COPYs from its Dockerfile (JSON-form ENTRYPOINT; `COPY [--flags] src dest`),
 * with the copied files found in `dir` (the asset's build context).
 */
export function imageFromDockerfile(dir: string, dockerfile = 'Dockerfile'): RehearsedImage {
  const text = readFileSync(join(dir, dockerfile), 'utf8').replace(/\\\r?\n/g, ' ');
  const files: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const m = line.match(/^\s*COPY\s+(.*)$/);
    if (!m) continue;
    const parts = m[1].trim().split(/\s+/).filter((p) => !p.startsWith('--'));
    if (parts.length === 2) files[parts[1]] = join(dir, parts[0]);
  }
  return { entrypoint: dockerfileEntrypoint(join(dir, dockerfile)), files };
}

interface Task {
  id: string;
  arn: string;
  clusterArn: string;
  taskDefinitionArn: string;
  container: string;
  lastStatus: 'PROVISIONING' | 'PENDING' | 'RUNNING' | 'DEPROVISIONING' | 'STOPPED';
  desiredStatus: 'RUNNING' | 'STOPPED';
  address: string;
  subnet: string;
  startedBy?: string;
  tags: Array<{ key: string; value: string }>;
  createdAt: number;
  startedAt?: number;
  stoppedAt?: number;
  stoppedReason?: string;
  stopCode?: string;
  exitCode?: number;
  /** ECS's counter of the task's changes, sent in its state change events. */
  version: number;
  child?: ChildProcess;
  unexpose?: () => Promise<void>;
  environment: Record<string, string>;
  /** The agent's socket (gone once it has shut down). */
  socket?: string;
  /** Signals the container: the agent's process group when it runs under bubblewrap. */
  signal?: (sig: NodeJS.Signals) => void;
  /** The service that started it (`startedBy: ecs-svc/…`). */
  service?: RehearsedService;
}

const sessionMountProbe: { result?: boolean } = {};
/** The in-namespace end of an isolated sandbox task's egress channel. */
const NETNS_EGRESS = fileURLToPath(new URL('./netns-egress.mjs', import.meta.url));
const IN_TASK_PROXY_PORT = 3128;

/** Whether bubblewrap can give a task its own `/mnt/session` here (probed once). */
export function sessionMountAvailable(): boolean {
  if (sessionMountProbe.result === undefined) {
    const probe = spawnSync('bwrap', [...sessionMountArgs('/'), 'true'], { stdio: 'ignore' });
    sessionMountProbe.result = probe.status === 0;
  }
  return sessionMountProbe.result;
}

/** bubblewrap's arguments that show `sessionDir` at `/mnt/session` and the host as it is elsewhere. */
function sessionMountArgs(sessionDir: string): string[] {
  return ['--dev-bind', '/', '/', '--tmpfs', '/mnt', '--bind', sessionDir, '/mnt/session', '--'];
}

/** `sandbox/Dockerfile`'s ENTRYPOINT (JSON form, continued lines). */
export function dockerfileEntrypoint(dockerfile: string): string[] {
  const text = readFileSync(dockerfile, 'utf8').replace(/\\\r?\n/g, ' ');
  const line = text.split(/\r?\n/).find((l) => /^\s*ENTRYPOINT\s+\[/.test(l));
  if (!line) throw new Error(`${dockerfile} has no ENTRYPOINT in JSON form`);
  return JSON.parse(line.replace(/^\s*ENTRYPOINT\s+/, '')) as string[];
}

/** Builds the sandbox agent bundle the way the image does (esbuild, one ESM file). */
export function buildAgentBundle(repoRoot: string, outFile: string): string {
  const esbuild = join(repoRoot, 'node_modules', '.bin', 'esbuild');
  const r = spawnSync(esbuild, ['sandbox/agent.ts', '--bundle', '--platform=node', '--target=node20', '--format=esm', `--outfile=${outFile}`, '--legal-comments=none', '--log-level=warning'], {
    cwd: repoRoot,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`could not bundle the sandbox agent: ${r.stderr || r.stdout}`);
  return outFile;
}

const epoch = (ms: number) => ms / 1000;

export class EcsEmulator implements Backend {
  readonly tasks = new Map<string, Task>();
  private readonly reserved: string[] = [];
  private readonly services = new Set<RehearsedService>();

  constructor(private readonly opts: EcsEmulatorOptions) {}

  /** The id the next RunTask gives its task (IAM checks `ecs:TagResource` on the task's ARN first). */
  reserveTaskId(): string {
    const id = randomBytes(16).toString('hex');
    this.reserved.push(id);
    return id;
  }

  private cluster(ref: unknown) {
    const r = String(ref ?? 'default');
    return this.opts.clusters.find((c) => c.name === r || c.arn === r);
  }

  private ok(body: unknown) {
    return { status: 200, headers: { 'content-type': 'application/x-amz-json-1.1' }, body: JSON.stringify(body) };
  }

  private invalid(message: string) {
    return jsonError(400, 'InvalidParameterException', message, 'ecs');
  }

  /** The task as ECS describes it. */
  describe(t: Task) {
    return {
      taskArn: t.arn,
      clusterArn: t.clusterArn,
      taskDefinitionArn: t.taskDefinitionArn,
      launchType: 'FARGATE',
      lastStatus: t.lastStatus,
      desiredStatus: t.desiredStatus,
      startedBy: t.startedBy,
      createdAt: epoch(t.createdAt),
      startedAt: t.startedAt ? epoch(t.startedAt) : undefined,
      stoppedAt: t.stoppedAt ? epoch(t.stoppedAt) : undefined,
      stoppedReason: t.stoppedReason,
      stopCode: t.stopCode,
      tags: t.tags,
      attachments: [
        {
          id: `eni-attachment-${t.id.slice(0, 8)}`,
          type: 'ElasticNetworkInterface',
          status: t.lastStatus === 'STOPPED' ? 'DELETED' : 'ATTACHED',
          details: [
            { name: 'subnetId', value: t.subnet },
            { name: 'networkInterfaceId', value: `eni-${t.id.slice(0, 17)}` },
            { name: 'privateIPv4Address', value: t.address },
          ],
        },
      ],
      containers: [
        {
          name: t.container,
          lastStatus: t.lastStatus === 'RUNNING' ? 'RUNNING' : t.lastStatus === 'STOPPED' ? 'STOPPED' : 'PENDING',
          exitCode: t.exitCode,
          networkInterfaces: [{ attachmentId: `eni-attachment-${t.id.slice(0, 8)}`, privateIpv4Address: t.address }],
        },
      ],
    };
  }

  async handle(call: AwsCall) {
    const b = call.json ?? {};
    switch (call.operation) {
      case 'RunTask':
        return this.runTask(b);
      case 'DescribeTasks': {
        const cluster = this.cluster(b.cluster);
        if (!cluster) return jsonError(400, 'ClusterNotFoundException', 'Cluster not found.', 'ecs');
        const tasks = [];
        const failures = [];
        for (const ref of (b.tasks as string[]) ?? []) {
          const t = this.find(ref);
          if (t && t.clusterArn === cluster.arn) tasks.push(this.describe(t));
          else failures.push({ arn: ref, reason: 'MISSING' });
        }
        return this.ok({ tasks, failures });
      }
      case 'StopTask': {
        const cluster = this.cluster(b.cluster);
        if (!cluster) return jsonError(400, 'ClusterNotFoundException', 'Cluster not found.', 'ecs');
        const t = this.find(String(b.task ?? ''));
        if (!t || t.clusterArn !== cluster.arn) return this.invalid('The referenced task was not found.');
        await this.stop(t, String(b.reason ?? 'Task stopped by user'), 'UserInitiated');
        return this.ok({ task: this.describe(t) });
      }
      default:
        return jsonError(400, 'UnknownOperationException', `the rehearsal's ECS has no ${call.operation}`, 'ecs');
    }
  }

  private find(ref: string): Task | undefined {
    return this.tasks.get(ref) ?? [...this.tasks.values()].find((t) => t.arn === ref);
  }

  /** Tasks still running (not stopped), for the scenarios that check a session's tasks are gone. */
  running(): Task[] {
    return [...this.tasks.values()].filter((t) => t.lastStatus !== 'STOPPED');
  }

  private async runTask(b: Record<string, unknown>) {
    const cluster = this.cluster(b.cluster);
    if (!cluster) return jsonError(400, 'ClusterNotFoundException', 'Cluster not found.', 'ecs');
    const def = this.opts.taskDefinitions.find((d) => d.arn === b.taskDefinition || d.family === b.taskDefinition || `${d.family}:1` === b.taskDefinition);
    if (!def) return jsonError(400, 'ClientException', `TaskDefinition not found: ${String(b.taskDefinition)}`, 'ecs');
    if (b.launchType !== 'FARGATE') return this.invalid('the rehearsal runs FARGATE tasks only');
    const vpc = (b.networkConfiguration as { awsvpcConfiguration?: { subnets?: string[]; securityGroups?: string[]; assignPublicIp?: string } })?.awsvpcConfiguration;
    if (!vpc?.subnets?.length) return this.invalid('Network Configuration must be provided when networkMode \'awsvpc\' is specified.');
    for (const s of vpc.subnets) if (!this.opts.subnets.includes(s)) return this.invalid(`Error retrieving subnet information for [${s}]: The subnet ID '${s}' does not exist`);
    const securityGroups = vpc.securityGroups ?? [];
    if (!securityGroups.length) return this.invalid('the rehearsal needs explicit security groups for a task');
    const overrides = ((b.overrides as { containerOverrides?: Array<{ name: string; environment?: Array<{ name: string; value: string }>; command?: string[] }> })?.containerOverrides) ?? [];
    const container = def.containers[0];
    for (const o of overrides) {
      if (!def.containers.some((c) => c.name === o.name)) return this.invalid(`Override for container named ${o.name} is not a container in the TaskDefinition.`);
    }
    // ECS caps the overrides of one RunTask at 8192 characters.
    if (JSON.stringify(b.overrides ?? {}).length > 8192) return this.invalid('Container Overrides length must be at most 8192');
    const override = overrides.find((o) => o.name === container.name);
    const environment = { ...container.environment };
    for (const e of override?.environment ?? []) environment[e.name] = e.value;
    const id = this.reserved.shift() ?? randomBytes(16).toString('hex');
    let address: string;
    try {
      address = this.opts.network.join({ name: `sandbox task ${id.slice(0, 8)}`, securityGroups });
    } catch (err) {
      return this.invalid((err as Error).message);
    }
    const task: Task = {
      id,
      arn: `arn:aws:ecs:${this.opts.region}:${this.opts.account}:task/${cluster.name}/${id}`,
      clusterArn: cluster.arn,
      taskDefinitionArn: def.arn,
      container: container.name,
      lastStatus: 'PROVISIONING',
      desiredStatus: 'RUNNING',
      address,
      subnet: vpc.subnets[0],
      startedBy: b.startedBy as string | undefined,
      tags: ((b.tags as Array<{ key: string; value: string }>) ?? []).map((t) => ({ key: t.key, value: t.value })),
      createdAt: Date.now(),
      environment,
      version: 0,
    };
    this.tasks.set(id, task);
    this.changed(task);
    void this.start(task, override?.command ?? container.command ?? this.opts.imageCommand, container.ports);
    return this.ok({ tasks: [this.describe(task)], failures: [] });
  }

  /** Sends the task's state change event (after each change of its status, as ECS does). */
  private changed(task: Task) {
    if (!this.opts.onTaskStateChange) return;
    task.version += 1;
    this.opts.onTaskStateChange({
      version: '0',
      id: randomBytes(16).toString('hex'),
      'detail-type': 'ECS Task State Change',
      source: 'aws.ecs',
      account: this.opts.account,
      time: new Date().toISOString(),
      region: this.opts.region,
      resources: [task.arn],
      detail: { ...this.describe(task), version: task.version, updatedAt: new Date().toISOString() },
    });
  }

  /** The image's command, translated to this machine (see the file's header). */
  private translate(command: string[], dir: string, ports: number[]): { argv: string[]; port: number; socket: string } {
    const args = [...command];
    if (args[0] === '/usr/bin/tini' && args[1] === '--') args.splice(0, 2);
    const socket = join(dir, 'agent.sock');
    const out: string[] = [];
    let port = ports[0];
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      if (i === 0 && (a === 'node' || a.endsWith('/node'))) out.push(process.execPath);
      else if (a === '/opt/corral/agent.mjs') out.push(this.opts.agentBundle);
      else if (a === '--port') {
        port = Number(args[++i]);
        out.push('--socket', socket);
      } else if (a === '--host') i++;
      else if (a === '--workspace') {
        out.push(a, join(dir, 'workspace'));
        i++;
      } else if (a === '--state-dir') {
        out.push(a, join(dir, 'state'));
        i++;
      }
      else if (a === '--run-as-uid' || a === '--run-as-gid' || a === '--setpriv') i++;
      else if (a === '--install-packages') continue;
      else out.push(a);
    }
    if (!ports.includes(port)) throw new Error(`the image listens on ${port} but the task definition maps ${ports.join(', ') || 'no port'}`);
    return { argv: out, port, socket };
  }

  /**
   * The host side of a sandbox task's egress channel: a Unix socket (in the task's directory,
   * which its namespace sees) whose connections go from the task's address to the proxy service
   * the channel names; the channel is rewritten to the in-namespace end (`netns-egress.mjs`).
   */
  private async bridgeEgress(task: Task, dir: string): Promise<string> {
    const socketPath = join(dir, 'egress-bridge.sock');
    const text = task.environment.CORRAL_EGRESS_CHANNEL;
    const channel = text ? (JSON.parse(text) as { address: string; capability: string }) : undefined;
    const at = channel ? channel.address.lastIndexOf(':') : -1;
    const server = createServer((client) => {
      client.on('error', () => undefined);
      if (!channel) return void client.destroy();
      this.opts
        .egressBridge!(task.address, channel.address.slice(0, at), Number(channel.address.slice(at + 1)))
        .then((upstream) => splice(client, upstream))
        .catch(() => client.destroy());
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    const unexpose = task.unexpose;
    task.unexpose = async () => {
      server.close();
      await unexpose?.();
    };
    if (channel) task.environment = { ...task.environment, CORRAL_EGRESS_CHANNEL: JSON.stringify({ ...channel, address: `127.0.0.1:${IN_TASK_PROXY_PORT}` }) };
    // The git channel (private repositories) names the same proxy service address, under `/git`:
    // in the namespace, the same end of the bridge. One naming another address is left as it is
    // (and cannot connect: the namespace reaches nothing else).
    const git = task.environment.CORRAL_GIT_CHANNEL;
    if (channel && git) {
      const parsed = JSON.parse(git) as { url?: string };
      const url = parsed.url ? new URL(parsed.url) : undefined;
      if (url?.protocol === 'http:' && url.host === channel.address) {
        url.host = `127.0.0.1:${IN_TASK_PROXY_PORT}`;
        task.environment = { ...task.environment, CORRAL_GIT_CHANNEL: JSON.stringify({ ...parsed, url: url.toString() }) };
      }
    }
    return socketPath;
  }

  private async start(task: Task, command: string[], ports: number[]) {
    const dir = join(this.opts.dataDir, 'tasks', task.id);
    mkdirSync(join(dir, 'workspace'), { recursive: true });
    mkdirSync(join(dir, 'state'), { recursive: true });
    // The image's /mnt/session, uploads and outputs (sandbox/Dockerfile).
    const sessionDir = join(dir, 'session');
    mkdirSync(join(sessionDir, 'uploads'), { recursive: true });
    mkdirSync(join(sessionDir, 'outputs'), { recursive: true });
    let plan: ReturnType<EcsEmulator['translate']>;
    try {
      plan = this.translate(command, dir, ports);
    } catch (err) {
      task.exitCode = 1;
      await this.stop(task, `CannotStartContainerError: ${(err as Error).message}`, 'TaskFailedToStart');
      return;
    }
    task.lastStatus = 'PENDING';
    this.changed(task);
    task.socket = plan.socket;
    const mounted = sessionMountAvailable();
    let argv = mounted ? ['bwrap', ...sessionMountArgs(sessionDir), ...plan.argv] : [...plan.argv, '--session-dir', sessionDir];
    const isolated = mounted && this.opts.egressBridge && !this.opts.network.reachesInternet(this.opts.network.memberAt(task.address)?.securityGroups ?? []);
    if (isolated) {
      // No way out but its egress channel: its own network namespace, the channel bridged in.
      const bridge = await this.bridgeEgress(task, dir);
      argv = ['bwrap', '--unshare-net', ...sessionMountArgs(sessionDir), process.execPath, NETNS_EGRESS, String(IN_TASK_PROXY_PORT), bridge, '--', ...plan.argv];
    }
    const child = spawn(argv[0], argv.slice(1), {
      cwd: join(dir, 'workspace'),
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: join(dir, 'workspace'), NODE_ENV: 'production', ...task.environment, ...this.opts.taskEnvironment },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group: bubblewrap does not pass a signal on, so a stop signals the group
      // and the agent gets its SIGTERM as it does from ECS.
      detached: mounted,
    });
    task.child = child;
    if (mounted) {
      task.signal = (sig) => {
        try {
          process.kill(-child.pid!, sig);
        } catch {
          // the group is gone
        }
      };
    }
    const log = createWriteStream(join(dir, 'container.log'));
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    child.once('exit', (code, signal) => {
      task.exitCode = code ?? (signal === 'SIGTERM' ? 143 : signal ? 137 : 0);
      if (task.lastStatus !== 'STOPPED') void this.stop(task, 'Essential container in task exited', 'EssentialContainerExited');
    });
    // RUNNING once the container listens (the agent creates its socket when it does).
    for (let i = 0; i < 300 && task.desiredStatus === 'RUNNING'; i++) {
      if (existsSync(plan.socket)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    if (task.desiredStatus !== 'RUNNING') return;
    try {
      const before = task.unexpose;
      const unexpose = await this.opts.network.expose(task.address, plan.port, { socketPath: plan.socket });
      task.unexpose = async () => {
        await unexpose();
        await before?.();
      };
    } catch (err) {
      await this.stop(task, `CannotStartContainerError: ${(err as Error).message}`, 'TaskFailedToStart');
      return;
    }
    task.startedAt = Date.now();
    task.lastStatus = 'RUNNING';
    this.changed(task);
  }

  /**
   * Creates a service: the scheduler starts `desiredCount` tasks, and starts another whenever one
   * stops, until the rehearsal ends. Resolves once every task is RUNNING.
   */
  async startService(service: RehearsedService): Promise<void> {
    const def = this.opts.taskDefinitions.find((d) => d.arn === service.taskDefinitionArn);
    if (!def) throw new Error(`service ${service.name}: no task definition ${service.taskDefinitionArn}`);
    for (const lb of service.loadBalancers) {
      const c = def.containers.find((x) => x.name === lb.containerName);
      if (!c || !c.ports.includes(lb.containerPort)) throw new Error(`service ${service.name}: the task definition has no container ${lb.containerName} mapping port ${lb.containerPort}`);
    }
    this.services.add(service);
    await Promise.all(Array.from({ length: service.desiredCount }, () => this.launch(service, def)));
  }

  /** The running tasks of a service. */
  serviceTasks(name: string): Task[] {
    return this.running().filter((t) => t.service?.name === name && t.lastStatus === 'RUNNING');
  }

  private async launch(service: RehearsedService, def: RehearsedTaskDefinition): Promise<Task> {
    const container = def.containers[0];
    const image = container.image ? this.opts.images?.get(container.image) : undefined;
    if (!image) throw new Error(`service ${service.name}: the rehearsal cannot run image ${container.image ?? '(none)'} (not an image asset of the cloud assembly)`);
    const id = randomBytes(16).toString('hex');
    const address = this.opts.network.join({ name: `${service.name} task ${id.slice(0, 8)}`, securityGroups: service.securityGroups });
    const cluster = this.opts.clusters.find((c) => c.arn === service.clusterArn);
    const task: Task = {
      id,
      arn: `arn:aws:ecs:${this.opts.region}:${this.opts.account}:task/${cluster?.name ?? 'default'}/${id}`,
      clusterArn: service.clusterArn,
      taskDefinitionArn: def.arn,
      container: container.name,
      lastStatus: 'PROVISIONING',
      desiredStatus: 'RUNNING',
      address,
      subnet: service.subnets[0],
      startedBy: `ecs-svc/${service.name}`,
      tags: [],
      createdAt: Date.now(),
      environment: { ...container.environment },
      version: 0,
      service,
    };
    this.tasks.set(id, task);
    this.changed(task);
    const dir = join(this.opts.dataDir, 'tasks', id);
    mkdirSync(dir, { recursive: true });
    const command = container.command ?? image.entrypoint;
    // The image's `node` is this machine's; the files the image copies in are the asset's.
    const argv = command.map((a, i) => (i === 0 && (a === 'node' || a.endsWith('/node')) ? process.execPath : image.files[a] ?? a));
    if (argv[0] !== process.execPath) throw new Error(`service ${service.name}: the rehearsal runs Node entrypoints only, not ${command.join(' ')}`);
    // Every task listens on the same container ports; here each on sockets of its own, which its
    // private address serves (see vpc-preload.mjs).
    const listens = container.ports.map((p, i) => ({ port: p, socket: join(dir, i === 0 ? 'listen.sock' : `listen-${p}.sock`) }));
    const port = container.ports[0];
    const socket = listens[0].socket;
    task.socket = socket;
    task.lastStatus = 'PENDING';
    this.changed(task);
    const child = spawn(argv[0], [...(this.opts.servicePreload ? ['--import', this.opts.servicePreload] : []), ...argv.slice(1)], {
      cwd: dir,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: dir,
        ...task.environment,
        ...this.opts.taskRoleEnvironment?.(def),
        ...this.opts.serviceEnvironment?.(service),
        CORRAL_REHEARSAL_SOURCE_ADDRESS: address,
        CORRAL_REHEARSAL_PRIVATE_PREFIX: PRIVATE_PREFIX,
        CORRAL_REHEARSAL_LISTEN: listens.map((l) => `${l.port}=${l.socket}`).join(','),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    task.child = child;
    const log = createWriteStream(join(this.opts.dataDir, 'logs', `${service.name}-${id.slice(0, 8)}.log`));
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    child.once('exit', (code, signal) => {
      task.exitCode = code ?? (signal === 'SIGTERM' ? 143 : signal ? 137 : 0);
      if (task.desiredStatus === 'RUNNING') void this.stop(task, 'Essential container in task exited', 'EssentialContainerExited');
    });
    for (let i = 0; i < 300 && task.desiredStatus === 'RUNNING' && !listens.every((l) => existsSync(l.socket)); i++) await new Promise((r) => setTimeout(r, 100));
    if (task.desiredStatus !== 'RUNNING') throw new Error(`service ${service.name}: task ${id} stopped before it listened (${task.stoppedReason}); see its log`);
    const silent = listens.filter((l) => !existsSync(l.socket)).map((l) => l.port);
    if (silent.length) {
      await this.stop(task, `the container did not listen on ${silent.join(', ')} within 30 s`, 'TaskFailedToStart');
      throw new Error(`service ${service.name}: task ${id} did not listen on ${silent.join(', ')}`);
    }
    const unexpose = await Promise.all(listens.map((l) => this.opts.network.expose(address, l.port, { socketPath: l.socket })));
    task.unexpose = async () => {
      await Promise.all(unexpose.map((u) => u()));
    };
    task.startedAt = Date.now();
    task.lastStatus = 'RUNNING';
    this.changed(task);
    this.opts.onServiceTask?.('running', service, task);
    return task;
  }

  /**
   * A service task stops as ECS stops it: out of its target groups first, then SIGTERM (SIGKILL
   * after the stop timeout), and its address goes once the container has exited. The scheduler
   * then starts a replacement.
   */
  private async stopServiceTask(task: Task, reason: string, code: string) {
    task.desiredStatus = 'STOPPED';
    task.lastStatus = 'DEPROVISIONING';
    task.stoppedReason = reason;
    task.stopCode = code;
    this.changed(task);
    this.opts.onServiceTask?.('stopping', task.service!, task);
    const child = task.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    await task.unexpose?.().catch(() => undefined);
    this.opts.network.leave(task.address);
    task.lastStatus = 'STOPPED';
    task.stoppedAt = Date.now();
    this.changed(task);
    const service = task.service!;
    if (this.services.has(service)) {
      const def = this.opts.taskDefinitions.find((d) => d.arn === service.taskDefinitionArn)!;
      void this.launch(service, def).catch(() => undefined);
    }
  }

  async stop(task: Task, reason: string, code: string) {
    if (task.lastStatus === 'STOPPED') return;
    if (task.service) return this.stopServiceTask(task, reason, code);
    task.desiredStatus = 'STOPPED';
    task.lastStatus = 'DEPROVISIONING';
    task.stoppedReason = reason;
    task.stopCode = code;
    this.changed(task);
    await task.unexpose?.().catch(() => undefined);
    const child = task.child;
    const signal = task.signal ?? ((sig: NodeJS.Signals) => child?.kill(sig));
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      signal('SIGTERM');
      const timer = setTimeout(() => signal('SIGKILL'), 2_000);
      await exited;
      clearTimeout(timer);
    }
    if (task.signal) {
      // bubblewrap ends at the signal; the agent, in the same group, once it has shut down (its
      // socket gone), which is the container's exit as ECS reports it: 0, or 137 when killed.
      let i = 0;
      for (; i < 20 && task.socket && existsSync(task.socket); i++) await new Promise((r) => setTimeout(r, 100));
      if (task.exitCode === 143 || task.exitCode === 137) task.exitCode = i < 20 ? 0 : 137;
      task.signal('SIGKILL');
    }
    this.opts.network.leave(task.address);
    task.lastStatus = 'STOPPED';
    task.stoppedAt = Date.now();
    this.changed(task);
  }

  async close() {
    this.services.clear();
    await Promise.all([...this.tasks.values()].map((t) => this.stop(t, 'rehearsal ended', 'ServiceSchedulerInitiated')));
    rmSync(join(this.opts.dataDir, 'tasks'), { recursive: true, force: true });
  }
}
