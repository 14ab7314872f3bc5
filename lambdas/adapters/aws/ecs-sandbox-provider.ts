/**
 * Sandboxes on Fargate: one ECS task per sandbox, running the sandbox image (`sandbox/Dockerfile`),
 * reached over the VPC on its private IPv4 address.
 *
 * provision: `RunTask` (FARGATE, awsvpc, private subnets) with the sandbox's bootstrap capability
 * and recipe (as planned and fitted by the core: `FARGATE_RECIPE_SUPPORT`) in container
 * environment overrides, then waits until the task is RUNNING: on the task's state record, written
 * from ECS's task state change events (`taskStates`, see ecs-task-events.ts), read once a second,
 * with `DescribeTasks` only when no event has moved the record for a while; without `taskStates`,
 * `DescribeTasks` every `pollIntervalMs`. Then the agent's `/health` until it has applied its recipe, then a capability rotation: the
 * capability in the overrides (which `DescribeTasks` shows to anyone allowed to call it) stops
 * working, and only the one returned here (never sent through the ECS API) opens the sandbox.
 *
 * Every way it can fail ends in an `Error` with a message the model can read (the manager turns
 * it into a tool error): capacity and placement failures from `RunTask`, a task that stops on its
 * own (with ECS's stop reason and the container's exit code), a health check that never passes
 * (the task is stopped), a recipe that fails (repository, packages; the task is stopped). No
 * message carries a capability.
 *
 * A provisioning whose `signal` aborts (the harness step's deadline, an interrupt) stops waiting,
 * stops the task it started, and rejects with the signal's reason.
 *
 * release: `StopTask`; a task that is already stopped or unknown is fine.
 */
import { sleep } from '../../core/sleep.js';
import { randomBytes, randomUUID } from 'node:crypto';
import {
  DescribeTasksCommand,
  RunTaskCommand,
  StopTaskCommand,
  type ECSClient,
  type Failure,
  type RunTaskCommandOutput,
  type Task,
} from '@aws-sdk/client-ecs';
import { SandboxClient, waitHealthy } from '../../core/sandbox/client.js';
import {
  SandboxSetupError,
  SandboxUnavailableError,
  type ProvisionRequest,
  type ProvisionedSandbox,
  type SandboxEndpoint,
  type SandboxProvider,
} from '../../core/sandbox/types.js';
import { assertDeliverable, type RecipeSupport } from '../../core/sandbox/recipe.js';
import { RECIPE_ENV, wireRecipeOf } from '../../../sandbox/recipe.js';
import { placeholdersFor, type PlaceholderCredential } from '../../core/sandbox/egress-placeholders.js';
import type { EgressCredentialGrant } from '../../core/vault/protocol.js';
import type { CredentialProxyClient, GitChannel } from '../../core/vault/protocol.js';
import { redactUrls } from '../../core/sandbox/recipe.js';
import { EGRESS_CHANNEL_ENV, egressChannelValue, newEgressCapability, type EgressGrantStore } from '../../core/sandbox/egress-grant.js';

/** The container's environment variable with the bootstrap capability (`sandbox/agent.ts`). */
export const CAPABILITY_ENV = 'CORRAL_SANDBOX_CAPABILITY';
/**
 * The container's environment variable with the variables every tool process gets (the agent
 * reads and removes it): the placeholders of the session's `environment_variable` credentials.
 * Never a secret: the proxy service substitutes it (docs/CREDENTIALS.md).
 */
export const TOOL_ENV = 'CORRAL_TOOL_ENV';
/** ECS limits a task's overrides to 8192 characters; leave room for the rest of them. */
const MAX_RECIPE_CHARS = 6_000;
/** What the placeholders may take of the overrides (about 20 credentials of ordinary names). */
const MAX_TOOL_ENV_CHARS = 1_500;
/** The container's environment variable with the git channel (`sandbox/agent/git-forwarder.ts`). */
export const GIT_CHANNEL_ENV = 'CORRAL_GIT_CHANNEL';
/** The recipe, the git channel and the placeholders together (the rest of the overrides is well under 400). */
const MAX_OVERRIDE_CHARS = 7_800;

/**
 * What a Fargate sandbox delivers of a recipe: the packages its image installs, repositories that
 * need no credential (the task clones them itself), and, when the provider is given the credential
 * proxy's git channels (the stack's proxy service serves them), repositories the session holds a
 * credential for: cloned through the channel, the token added by the proxy service. Without the
 * channels the sandbox manager refuses such a recipe before any task starts.
 */
export function fargateRecipeSupport(opts: { gitChannels: boolean }): RecipeSupport {
  return {
    label: 'a Fargate sandbox',
    packages: {
      managers: ['apt', 'pip', 'npm'],
      otherwise: 'the sandbox image installs apt, pip and npm packages only (install other toolchains with apt packages, or use a derived image)',
    },
    publicRepositories: { supported: true },
    credentialedRepositories: opts.gitChannels
      ? { supported: true }
      : { supported: false, reason: 'this deployment gives Fargate sandboxes no git channel (the proxy service\'s URL is not configured)' },
  };
}

/** A Fargate sandbox with the proxy service's git channel (the stack's): private repositories too. */
export const FARGATE_RECIPE_SUPPORT: RecipeSupport = fargateRecipeSupport({ gitChannels: true });

export interface EcsSandboxLogger {
  debug?(message: string, extra?: Record<string, unknown>): void;
  info?(message: string, extra?: Record<string, unknown>): void;
  warn(message: string, extra?: Record<string, unknown>): void;
}

/**
 * Where the provider reads a task's state as ECS's events reported it (the state table's task
 * state record on AWS): the task as DescribeTasks would describe it, as far as the events said,
 * or undefined if no event about it has been recorded yet.
 */
export interface TaskStateSource {
  get(taskArn: string): Promise<Task | undefined>;
}

export interface EcsSandboxProviderOptions {
  readonly ecs: ECSClient;
  /**
   * Cluster name or ARN, or several, comma-separated (CDK context `sandboxClusters`): a session's
   * tasks start in one of them, chosen from its id (`clusterForSession`), so starts spread evenly
   * and each cluster stays under ECS's 500 tasks PROVISIONING at once; a task is described and
   * stopped in the cluster its ARN names.
   */
  readonly cluster: string;
  /** Task definition (family, family:revision or ARN) of the sandbox image. */
  readonly taskDefinition: string;
  /** Private subnets the tasks run in. */
  readonly subnets: string[];
  /** Security groups of the tasks: they must let the harness reach `port` and nothing else in. */
  readonly securityGroups: string[];
  /** The sandbox container's name in the task definition (the overrides go to it). */
  readonly containerName: string;
  /** The port the sandbox agent listens on (the image's 8080). */
  readonly port: number;
  /**
   * Run tasks on Fargate Spot (capacity provider FARGATE_SPOT; the cluster must have it), falling
   * back to on-demand FARGATE when RunTask finds no Spot capacity. A Spot task AWS reclaims stops
   * with a SpotInterruption stop code: the sandbox dies, which the sandbox manager turns into a tool
   * error and a fresh sandbox on the next call. @default false
   */
  readonly spot?: boolean;
  /** Give tasks a public IP (subnets without a NAT gateway). @default false */
  readonly assignPublicIp?: boolean;
  /**
   * How long the agent may take, once the task runs, to answer `/health` (including applying the
   * recipe: cloning repositories, installing packages). @default 300000
   */
  readonly healthTimeoutMs?: number;
  /** Pause between `DescribeTasks` calls and between health checks. @default 2000 */
  readonly pollIntervalMs?: number;
  /**
   * The task state recorded from ECS's events. With it, a starting task is watched on its record
   * (one read every `stateReadIntervalMs`) and `DescribeTasks` is called only when the record has
   * not changed for `describeFallbackMs` (an event lost or late). @default - DescribeTasks polling
   */
  readonly taskStates?: TaskStateSource;
  /** Pause between reads of the task state record. @default 1000 */
  readonly stateReadIntervalMs?: number;
  /** How long the record may stay unchanged before a `DescribeTasks` checks it. @default 20000 */
  readonly describeFallbackMs?: number;
  /** How long a task may take to reach RUNNING (image pull, ENI). @default 300000 */
  readonly startTimeoutMs?: number;
  readonly logger?: EcsSandboxLogger;
  /**
   * The session's `environment_variable` credentials (metadata only: the credential proxy's
   * `egress_credentials`). With it, a sandbox of a session that lists vaults gets a placeholder in
   * each variable, and the sandbox's egress grant the rules the proxy service substitutes by.
   * Only with `egress` (without the proxy service a placeholder would be worthless).
   * @default none: the variables are not set
   */
  readonly environmentCredentials?: { list(sessionId: string): Promise<EgressCredentialGrant[]> };
  /**
   * The credential proxy's git channels (`git_open`, `git_close`): a sandbox whose recipe has
   * repositories the session holds a credential for gets a channel for exactly those, served by
   * the proxy service (the channel's URL is the proxy's `CORRAL_GIT_PROXY_URL`), in its task's
   * environment: a capability, never the token. Released sandboxes' channels are closed.
   * @default none: such recipes are refused (`fargateRecipeSupport`)
   */
  readonly gitChannels?: Pick<CredentialProxyClient, 'gitOpen' | 'gitClose'>;
  /**
   * The proxy service (CDK context `proxyService=fargate`): each task gets an egress grant (its
   * recipe's `networking`) under a capability of its own, and the channel (`address`, the
   * capability) in its environment; its security group lets it reach nothing but the proxy.
   * Released sandboxes' grants are revoked; every grant ends after `grantLifetimeMs` regardless.
   * @default - none: the task's security group decides alone
   */
  readonly egress?: { readonly address: string; readonly grants: EgressGrantStore; readonly grantLifetimeMs?: number };
}

/** How long an egress grant lasts at most (a sandbox released or reaped earlier has its grant revoked or left to expire). */
export const EGRESS_GRANT_LIFETIME_MS = 24 * 3600_000;

const STOPPING = new Set(['DEACTIVATING', 'STOPPING', 'DEPROVISIONING', 'STOPPED', 'DELETED']);

/** The clusters of a `cluster` option: one name or ARN, or several, comma-separated. */
export function clusterList(cluster: string): string[] {
  const list = cluster.split(',').map((c) => c.trim()).filter(Boolean);
  if (!list.length) throw new Error('the sandbox cluster is empty');
  return list;
}

/**
 * The cluster a session's tasks start in: the same one for every task of the session (FNV-1a of
 * its id), so sessions spread evenly over the clusters whatever their ids look like.
 */
export function clusterForSession(clusters: readonly string[], sessionId: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < sessionId.length; i++) h = Math.imul(h ^ sessionId.charCodeAt(i), 0x01000193) >>> 0;
  return clusters[h % clusters.length];
}

/**
 * The configured cluster a task belongs to, from its ARN (`…:task/<cluster name>/<id>`); the
 * first cluster for an ARN of the old format, which names none.
 */
export function clusterOfTask(clusters: readonly string[], taskArn: string): string {
  const parts = taskArn.split(':task/')[1]?.split('/');
  const name = parts && parts.length === 2 ? parts[0] : undefined;
  return (name && clusters.find((c) => c === name || c.endsWith(`:cluster/${name}`))) || clusters[0];
}

/** "arn:aws:ecs:…:task/cluster/abc123" -> "abc123" (for messages). */
export function shortTaskId(arn: string): string {
  return arn.split('/').pop() ?? arn;
}

/** Tag values allow letters, digits, spaces and `_ . : / = + - @`, up to 256 characters. */
function tagValue(v: string): string {
  return v.replace(/[^\p{L}\p{N}\s_.:/=+\-@]/gu, '_').slice(0, 256);
}

function describeFailures(failures: Failure[]): string {
  return failures.map((f) => [f.reason, f.detail].filter(Boolean).join(': ') || 'unknown failure').join('; ');
}

/** RunTask failure reasons that mean "no room right now" rather than "misconfigured". */
function isCapacityFailure(failures: Failure[]): boolean {
  return failures.some((f) => /^RESOURCE:|capacity|AGENT|insufficient|unavailable|limit/i.test(`${f.reason ?? ''} ${f.detail ?? ''}`));
}

/** Why a task stopped, from ECS's own words and the sandbox container's exit. */
function stopDescription(task: Task, containerName: string): string {
  const parts: string[] = [];
  if (task.stoppedReason) parts.push(task.stoppedReason);
  if (task.stopCode) parts.push(`stop code ${task.stopCode}`);
  const container = task.containers?.find((c) => c.name === containerName) ?? task.containers?.[0];
  if (container?.exitCode !== undefined && container.exitCode !== null) parts.push(`container exit code ${container.exitCode}`);
  if (container?.reason) parts.push(container.reason);
  return parts.length ? parts.join('; ') : 'no reason given';
}

/** The task's private IPv4 address, from its ENI attachment (or the container's interface). */
export function taskPrivateIp(task: Task): string | undefined {
  for (const a of task.attachments ?? []) {
    if (a.type !== 'ElasticNetworkInterface' && a.type !== 'eni') continue;
    const ip = a.details?.find((d) => d.name === 'privateIPv4Address')?.value;
    if (ip) return ip;
  }
  for (const c of task.containers ?? []) {
    const ip = c.networkInterfaces?.find((n) => n.privateIpv4Address)?.privateIpv4Address;
    if (ip) return ip;
  }
  return undefined;
}

const duration = (ms: number) => (ms >= 10_000 ? `${Math.round(ms / 1000)} s` : `${ms} ms`);

export class EcsSandboxProvider implements SandboxProvider {
  readonly recipeSupport: RecipeSupport;
  private readonly healthTimeoutMs: number;
  private readonly pollIntervalMs: number;
  private readonly startTimeoutMs: number;
  private readonly stateReadIntervalMs: number;
  private readonly describeFallbackMs: number;
  private readonly logger: EcsSandboxLogger;

  private readonly clusters: string[];

  constructor(private readonly opts: EcsSandboxProviderOptions) {
    this.clusters = clusterList(opts.cluster);
    this.recipeSupport = fargateRecipeSupport({ gitChannels: Boolean(opts.gitChannels) });
    this.healthTimeoutMs = opts.healthTimeoutMs ?? 300_000;
    this.pollIntervalMs = opts.pollIntervalMs ?? 2_000;
    this.startTimeoutMs = opts.startTimeoutMs ?? 300_000;
    this.stateReadIntervalMs = Math.max(1, opts.stateReadIntervalMs ?? 1_000);
    this.describeFallbackMs = opts.describeFallbackMs ?? 20_000;
    this.logger = opts.logger ?? { warn: () => {} };
  }

  async provision(req: ProvisionRequest): Promise<ProvisionedSandbox> {
    const cluster = clusterForSession(this.clusters, req.sessionId);
    assertDeliverable(req.recipe, this.recipeSupport);
    const recipe = JSON.stringify(wireRecipeOf(req.recipe));
    if (recipe.length > MAX_RECIPE_CHARS) {
      throw new Error(
        `the sandbox recipe (environment packages and session resources) is ${recipe.length} characters once encoded; ` +
          `Fargate task overrides allow about ${MAX_RECIPE_CHARS}`,
      );
    }
    const { signal } = req;
    if (signal?.aborted) throw signal.reason;
    // environment_variable credentials: placeholders in the tools' variables, the rules to the grant.
    const placeholders = await this.placeholders(req);
    const toolEnvText = Object.keys(placeholders.env).length ? JSON.stringify(placeholders.env) : '';
    const channel = await this.openGitChannel(req);
    const channelText = channel ? JSON.stringify(channel.agent) : '';
    const total = recipe.length + channelText.length + toolEnvText.length;
    if (total > MAX_OVERRIDE_CHARS) {
      if (channel) await this.closeGitChannel(req.sessionId, req.name);
      throw new Error(
        `the sandbox recipe, its git channel and its credentials' placeholders are ${total} characters once encoded; ` +
          `Fargate task overrides allow about ${MAX_OVERRIDE_CHARS} (name fewer repositories, or shorter URLs)`,
      );
    }
    try {
      return await this.start(req, cluster, recipe, channelText, placeholders, toolEnvText);
    } catch (err) {
      if (channel) await this.closeGitChannel(req.sessionId, req.name);
      throw err;
    }
  }

  /**
   * The git channel for the recipe's repositories that the session holds a credential for (the
   * others the task clones itself): issued by the credential proxy for exactly those, for this
   * sandbox. Null when there are none.
   */
  private async openGitChannel(req: ProvisionRequest): Promise<{ channel: GitChannel; agent: { capability: string; url: string; repositories: GitChannel['repositories'] } } | null> {
    const urls = req.recipe.repositories.filter((r) => r.channel === 'credential_proxy').map((r) => r.url);
    if (!urls.length) return null;
    // `recipeSupport` refused these without channels (`assertDeliverable` above): unreachable.
    if (!this.opts.gitChannels) throw new Error('a Fargate sandbox without git channels was handed a private repository');
    let channel: GitChannel;
    try {
      channel = await this.opts.gitChannels.gitOpen({ sessionId: req.sessionId, sandbox: req.name, repositories: urls });
    } catch (err) {
      throw new SandboxSetupError('repository_clone_error', `repository_clone_error: the credential proxy gave no git channel for ${urls.map((u) => redactUrls(u)).join(', ')}: ${(err as Error)?.message ?? err}`);
    }
    if (channel.endpoint?.kind !== 'https') {
      await this.closeGitChannel(req.sessionId, req.name);
      throw new SandboxSetupError('repository_clone_error', 'repository_clone_error: the credential proxy has no git URL for Fargate sandboxes (its CORRAL_GIT_PROXY_URL is not set)');
    }
    return { channel, agent: { capability: channel.capability, url: channel.endpoint.url, repositories: channel.repositories } };
  }

  /** Close a sandbox's git channels; a failure is logged (the channel expires with its capability). */
  private async closeGitChannel(sessionId: string, sandbox: string): Promise<void> {
    if (!this.opts.gitChannels) return;
    await this.opts.gitChannels.gitClose({ sessionId, sandbox }).catch((err: unknown) => {
      this.logger.warn('could not close a git channel', { sessionId, sandbox, error: (err as Error)?.message });
    });
  }

  private async start(
    req: ProvisionRequest,
    cluster: string,
    recipe: string,
    gitChannel: string,
    placeholders: { env: Record<string, string>; credentials: PlaceholderCredential[] },
    toolEnvText: string,
  ): Promise<ProvisionedSandbox> {
    const { ecs, containerName, port } = this.opts;
    const { signal } = req;
    const toolEnv = toolEnvText ? [{ name: TOOL_ENV, value: toolEnvText }] : [];
    const bootstrap = randomBytes(32).toString('base64url');
    // The sandbox's egress grant exists before its task does: the agent may connect at once.
    const egress = this.opts.egress;
    const egressCapability = egress ? newEgressCapability() : undefined;
    const grantExpiresAt = Date.now() + (egress?.grantLifetimeMs ?? EGRESS_GRANT_LIFETIME_MS);
    if (egress && egressCapability) {
      await egress.grants.put(egressCapability, {
        sessionId: req.sessionId,
        sandbox: req.name,
        policy: req.recipe.networking ?? { type: 'unrestricted' },
        // The credentials by reference (placeholder, ids, hosts, injection): the proxy service reads their secrets itself.
        credentials: placeholders.credentials,
        expiresAt: grantExpiresAt,
      });
    }
    const revokeEgress = async () => {
      if (egress && egressCapability) await egress.grants.revoke(egressCapability).catch(() => undefined);
    };
    const run = (capacity: 'spot' | 'on-demand') =>
      ecs.send(
        new RunTaskCommand({
          cluster,
          taskDefinition: this.opts.taskDefinition,
          ...(capacity === 'spot' ? { capacityProviderStrategy: [{ capacityProvider: 'FARGATE_SPOT', weight: 1 }] } : { launchType: 'FARGATE' as const }),
          count: 1,
          clientToken: randomUUID(),
          networkConfiguration: {
            awsvpcConfiguration: {
              subnets: this.opts.subnets,
              securityGroups: this.opts.securityGroups,
              assignPublicIp: this.opts.assignPublicIp ? 'ENABLED' : 'DISABLED',
            },
          },
          overrides: {
            containerOverrides: [
              {
                name: containerName,
                environment: [
                  { name: CAPABILITY_ENV, value: bootstrap },
                  { name: RECIPE_ENV, value: recipe },
                  ...toolEnv,
                  // A capability for the session's private repositories, never their tokens.
                  ...(gitChannel ? [{ name: GIT_CHANNEL_ENV, value: gitChannel }] : []),
                  // About 130 characters (the load balancer's name and the capability).
                  ...(egress && egressCapability ? [{ name: EGRESS_CHANNEL_ENV, value: egressChannelValue(egress.address, egressCapability) }] : []),
                ],
              },
            ],
          },
          startedBy: `corral/${req.sessionId}/${req.name}`.replace(/[^A-Za-z0-9/_-]/g, '_').slice(0, 128),
          tags: [
            { key: 'corral:session', value: tagValue(req.sessionId) },
            { key: 'corral:sandbox', value: tagValue(req.name) },
            { key: 'corral:environment', value: tagValue(req.recipe.environmentId) },
          ],
          enableExecuteCommand: false,
        }),
      );
    let out: RunTaskCommandOutput;
    try {
      out = await run(this.opts.spot ? 'spot' : 'on-demand');
      // No Spot capacity right now: the same task on demand (a sandbox costs more, but starts).
      if (this.opts.spot && !out.tasks?.[0]?.taskArn && isCapacityFailure(out.failures ?? [])) {
        this.logger.info?.('no Fargate Spot capacity; starting the sandbox on demand', { sessionId: req.sessionId, failures: describeFailures(out.failures ?? []) });
        out = await run('on-demand');
      }
    } catch (err) {
      await revokeEgress();
      const e = err as Error;
      const capacity = /capacity|limit|throttl|insufficient/i.test(`${e.name} ${e.message}`);
      throw new Error(
        `${capacity ? 'Fargate has no capacity for a sandbox right now' : 'Fargate could not start a sandbox task'} ` +
          `(RunTask failed: ${e.name ?? 'Error'}: ${e.message})${capacity ? '; try again in a minute' : ''}`,
      );
    }
    const taskArn = out.tasks?.[0]?.taskArn;
    if (out.failures?.length || !taskArn) {
      await revokeEgress();
      const failures = out.failures ?? [];
      const what = failures.length ? describeFailures(failures) : 'RunTask returned no task';
      throw new Error(
        isCapacityFailure(failures)
          ? `Fargate has no capacity for a sandbox right now (${what}); try again in a minute`
          : `Fargate could not start a sandbox task (${what})`,
      );
    }
    const id = shortTaskId(taskArn);
    if (egress && egressCapability) {
      // A release names the task: it finds the grant to revoke through this.
      await egress.grants.bind(taskArn, egressCapability, grantExpiresAt).catch((err: unknown) => this.logger.warn('could not bind a sandbox\'s egress grant to its task; it expires on its own', { taskArn, error: (err as Error)?.message }));
    }
    this.logger.info?.('sandbox task started', { sessionId: req.sessionId, sandbox: req.name, taskArn });
    await Promise.resolve(req.onStarted?.(taskArn)).catch((err: unknown) => this.logger.warn('could not record a starting sandbox task', { taskArn, error: (err as Error)?.message }));

    // Cut (deadline or interrupt) from here on: stop the task we started, then give up.
    const cut = async () => {
      await this.stop(taskArn, 'corral: provisioning cut short (harness step deadline or interrupt)');
      return signal!.reason;
    };
    let ip: string;
    try {
      ip = await this.waitRunning(taskArn, signal);
    } catch (err) {
      if (signal?.aborted) throw await cut();
      await this.stop(taskArn, 'corral: sandbox did not start');
      throw err;
    }

    // Until the task stops on its own (then fail at once), wait for the agent and its recipe.
    const endpoint: SandboxEndpoint = { kind: 'tcp', host: ip, port, capability: bootstrap };
    const stopped = new AbortController();
    let stopReason = '';
    const watching = this.watchStopped(taskArn, stopped.signal, (why) => {
      stopReason = why;
      stopped.abort();
    });
    let notes: string[];
    try {
      ({ notes } = await waitHealthy(endpoint, {
        timeoutMs: this.healthTimeoutMs,
        intervalMs: this.pollIntervalMs,
        signal: signal ? AbortSignal.any([stopped.signal, signal]) : stopped.signal,
      }));
    } catch (err) {
      const abort = stopped.signal.aborted;
      stopped.abort();
      await watching;
      if (signal?.aborted) throw await cut();
      if (abort && stopReason) throw new Error(`sandbox task ${id} stopped while starting: ${stopReason}`);
      await this.stop(taskArn, 'corral: sandbox did not become healthy');
      if (err instanceof SandboxSetupError) throw new SandboxSetupError(err.type, `${err.type}: ${err.message}`);
      throw new Error(
        `sandbox task ${id} is running but its agent at ${ip}:${port} did not pass its health check within ` +
          `${duration(this.healthTimeoutMs)}, so it was stopped (${(err as Error).message.replace(/^sandbox at \S+ /, '')})`,
      );
    }
    stopped.abort();
    await watching;

    // Retire the bootstrap capability (visible in DescribeTasks) for one only we know.
    let secret: SandboxEndpoint;
    try {
      secret = await new SandboxClient(endpoint).rotateCapability(randomBytes(32).toString('base64url'), { signal });
    } catch (err) {
      if (signal?.aborted) throw await cut();
      await this.stop(taskArn, 'corral: capability rotation failed');
      throw new Error(`sandbox task ${id} started but did not accept its capability: ${(err as Error).message}`);
    }
    this.logger.info?.('sandbox ready', { sessionId: req.sessionId, sandbox: req.name, taskArn, ip });
    return notes.length ? { endpoint: secret, ref: taskArn, notes } : { endpoint: secret, ref: taskArn };
  }

  /** The session's credentials as this sandbox sees them (fresh placeholders), or none. */
  private async placeholders(req: ProvisionRequest): Promise<{ env: Record<string, string>; credentials: PlaceholderCredential[] }> {
    if (!this.opts.environmentCredentials || !this.opts.egress || !req.recipe.vaults) return { env: {}, credentials: [] };
    let grants: EgressCredentialGrant[];
    try {
      grants = await this.opts.environmentCredentials.list(req.sessionId);
    } catch (err) {
      throw new Error(`the session's environment_variable credentials could not be read (${(err as Error).message}); the sandbox was not started`);
    }
    const made = placeholdersFor(grants);
    if (JSON.stringify(made.env).length > MAX_TOOL_ENV_CHARS) {
      throw new Error(`the session's environment_variable credentials (${grants.length}) do not fit in a Fargate task's overrides; use fewer`);
    }
    return made;
  }

  async release(sessionId: string, name: string, ref: string): Promise<void> {
    await this.stop(ref, `corral: released sandbox ${name} of session ${sessionId}`.slice(0, 255), { rethrow: true });
    await this.closeGitChannel(sessionId, name);
  }

  /**
   * The task until RUNNING with an address; throws if it stops, vanishes or takes too long. With
   * `taskStates`, from its record (DescribeTasks only when the record has not moved for
   * `describeFallbackMs`); without, from DescribeTasks every `pollIntervalMs`.
   */
  private async waitRunning(taskArn: string, signal?: AbortSignal): Promise<string> {
    const id = shortTaskId(taskArn);
    const deadline = Date.now() + this.startTimeoutMs;
    const interval = this.opts.taskStates ? this.stateReadIntervalMs : this.pollIntervalMs;
    let last = 'PROVISIONING';
    const observe = this.observer(taskArn);
    for (;;) {
      if (signal?.aborted) throw signal.reason;
      const task = await observe();
      if (task === null) throw new Error(`sandbox task ${id} disappeared while starting (DescribeTasks does not know it)`);
      if (task) {
        last = task.lastStatus ?? last;
        if (STOPPING.has(last) || task.desiredStatus === 'STOPPED') {
          throw new Error(`sandbox task ${id} stopped while starting: ${stopDescription(task, this.opts.containerName)}`);
        }
        if (last === 'RUNNING') {
          const ip = taskPrivateIp(task);
          if (ip) return ip;
        }
      }
      if (Date.now() + interval > deadline) {
        throw new Error(`sandbox task ${id} did not reach RUNNING within ${duration(this.startTimeoutMs)} (last status ${last}); it was stopped`);
      }
      await sleep(interval, signal);
    }
  }

  /**
   * One look at the task per call: its state record when there is one that moved within
   * `describeFallbackMs`, else DescribeTasks (then the fallback waits another `describeFallbackMs`).
   * Undefined: nothing known yet (no record, no DescribeTasks due); null: ECS does not know it.
   */
  private observer(taskArn: string): () => Promise<Task | null | undefined> {
    const states = this.opts.taskStates;
    if (!states) return async () => (await this.describe(taskArn)) ?? null;
    let changedAt = Date.now();
    let seen = '';
    return async () => {
      let recorded: Task | undefined;
      try {
        recorded = await states.get(taskArn);
      } catch (err) {
        this.logger.warn('could not read a sandbox task\'s state record', { taskArn, error: (err as Error).message });
      }
      const key = recorded ? JSON.stringify([recorded.lastStatus, recorded.desiredStatus, taskPrivateIp(recorded)]) : '';
      if (key !== seen) {
        seen = key;
        changedAt = Date.now();
      }
      if (recorded && (STOPPING.has(recorded.lastStatus ?? '') || recorded.desiredStatus === 'STOPPED' || recorded.lastStatus === 'RUNNING')) return recorded;
      if (Date.now() - changedAt < this.describeFallbackMs) return recorded;
      // No event has moved the record for a while: ask ECS once, and wait as long again.
      changedAt = Date.now();
      this.logger.info?.('no task state change recorded lately; asking DescribeTasks', { taskArn });
      return (await this.describe(taskArn)) ?? null;
    };
  }

  private async describe(taskArn: string): Promise<Task | undefined> {
    let out;
    try {
      out = await this.opts.ecs.send(new DescribeTasksCommand({ cluster: clusterOfTask(this.clusters, taskArn), tasks: [taskArn] }));
    } catch (err) {
      const e = err as Error;
      throw new Error(`DescribeTasks failed for sandbox task ${shortTaskId(taskArn)}: ${e.name}: ${e.message}`);
    }
    return out.tasks?.find((t) => t.taskArn === taskArn) ?? out.tasks?.[0];
  }

  /** Watches the task while health checks run (its record, or DescribeTasks); calls `onStopped` if ECS stops it. */
  private async watchStopped(taskArn: string, signal: AbortSignal, onStopped: (why: string) => void): Promise<void> {
    // With events, a task recorded RUNNING is not described again: its stop arrives as an event
    // within a second or so. DescribeTasks only if no record exists for `describeFallbackMs`.
    const observe = this.observer(taskArn);
    const interval = this.opts.taskStates ? this.stateReadIntervalMs : Math.max(this.pollIntervalMs, 1_000);
    while (!signal.aborted) {
      await sleep(interval, signal);
      if (signal.aborted) return;
      try {
        const task = await observe();
        if (task === null) {
          onStopped('the task disappeared');
          return;
        }
        if (task && (STOPPING.has(task.lastStatus ?? '') || task.desiredStatus === 'STOPPED')) {
          onStopped(stopDescription(task, this.opts.containerName));
          return;
        }
      } catch (err) {
        this.logger.warn('could not check a starting sandbox task', { taskArn, error: (err as Error).message });
      }
    }
  }

  private async stop(taskArn: string, reason: string, opts: { rethrow?: boolean } = {}): Promise<void> {
    // A stopped sandbox's capability opens nothing any more (it is still in the task's overrides).
    await this.opts.egress?.grants.revokeRef(taskArn).catch((err: unknown) => this.logger.warn('could not revoke a sandbox\'s egress grant; it expires on its own', { taskArn, error: (err as Error)?.message }));
    try {
      await this.opts.ecs.send(new StopTaskCommand({ cluster: clusterOfTask(this.clusters, taskArn), task: taskArn, reason }));
      this.logger.info?.('sandbox task stopped', { taskArn, reason });
    } catch (err) {
      const e = err as Error;
      // Already gone (stopped long ago and forgotten, or never existed): nothing to stop.
      if (e.name === 'InvalidParameterException' && /not found|does not exist|stopped/i.test(e.message)) return;
      if (/task .*not found|referenced task was not found/i.test(e.message)) return;
      if (opts.rethrow) throw new SandboxUnavailableError(`StopTask failed for sandbox task ${shortTaskId(taskArn)}: ${e.name}: ${e.message}`, err);
      this.logger.warn('could not stop a sandbox task', { taskArn, error: `${e.name}: ${e.message}` });
    }
  }
}
