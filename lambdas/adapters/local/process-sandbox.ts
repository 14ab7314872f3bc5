/**
 * Local sandboxes: the sandbox agent (`sandbox/agent.ts`) as a child process listening on a Unix
 * socket, isolated with bubblewrap when it is available (no network, read-only system, only the
 * workspace writable, a clean environment).
 *
 * Layout per sandbox: `<dataDir>/sandboxes/<session>/<name>/{workspace,run,state,session}` (`session` is
 * `/mnt/session` inside: the file resources the agent is handed, and the outputs); the socket is
 * `run/agent.sock` (or a short directory under the OS temp dir when that path would be too long
 * for a Unix socket). The capability reaches the agent on its stdin, never through argv or env.
 * A sandbox handed to another session keeps its directory (it is running there); the directory
 * is marked as given away, and the old owner's next sandbox of that name gets a new one
 * (`<name>+<random>`), so the two never share files.
 *
 * Repositories are never cloned on the host. Every `github_repository` resource must be a remote
 * http(s) URL (the API refuses anything else); the credential proxy issues the sandbox a git
 * channel for exactly the repositories it will clone (one per mount path), its git socket
 * directory is bind-mounted read-only into the sandbox, and the agent clones them itself, as the
 * sandbox's user, through its loopback forwarder (`startGitForwarder` in sandbox/agent.ts). The
 * proxy adds the repository token on the way out; the token never enters the sandbox, and
 * `origin` points at the forwarder, so pull and push work the same way later. The channel is
 * closed when the sandbox stops or is handed to another session. Nothing on the host ever
 * follows a path inside a workspace: the sandbox could have made any of it a link.
 *
 * When Corral runs as root, the sandbox's tools run as a uid of their own (derived from the
 * sandbox directory, `SANDBOX_UID_BASE` + 20 bits), never mapped to root; the agent keeps uid 0
 * inside the sandbox with only CAP_SETUID, CAP_SETGID, CAP_KILL (to start and stop the tools) and
 * CAP_DAC_READ_SEARCH (to measure the workspace, whatever its modes).
 * Run as another user, the whole sandbox is that user. Every tool process runs under the
 * sandbox limits (`sandbox/limits.ts`).
 *
 * Egress: a bubblewrapped sandbox has no network; its only way out is the local egress proxy
 * (`egress-proxy.ts`), which gives each sandbox a Unix socket of its own, bind-mounted read-only
 * at /run/corral-egress, and applies the recipe's `networking` (planned in the core) to every
 * connection. The agent's forwarder puts it on 127.0.0.1 inside the sandbox and sets the tools'
 * `HTTP_PROXY`/`HTTPS_PROXY`. See docs/EGRESS.md.
 *
 * Every sandbox starts at a lower CPU and I/O priority than Corral (`sandbox-priority.ts`: a cgroup
 * weight, nice, SCHED_BATCH, best-effort I/O 7), so that sandboxes never starve the harness beside
 * them; the agent and its tools inherit it and cannot undo the CPU part.
 *
 * The recipe is planned and fitted in the core (`lambdas/core/sandbox/recipe.ts`): this provider
 * says what it delivers (`localRecipeSupport`: repositories through the proxy, no packages), and
 * the sandbox manager reports the rest (packages, files) the same way for every provider.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { waitHealthy } from '../../core/sandbox/client.js';
import { POOL_OWNER_PREFIX } from '../../core/sandbox/warm-pool.js';
import {
  SandboxSetupError,
  type ProvisionRequest,
  type ProvisionedSandbox,
  type SandboxEndpoint,
  type SandboxOwner,
  type SandboxProvider,
} from '../../core/sandbox/types.js';
import { assertDeliverable, redactUrls, type PackageManager, type RecipeSupport, type SandboxRecipe } from '../../core/sandbox/recipe.js';
import { wireRecipeOf, type WireRecipe } from '../../../sandbox/recipe.js';
import { formatSandboxLimits, resolveSandboxLimits, type SandboxLimits } from '../../../sandbox/limits.js';
import type { GitChannel } from '../../core/vault/protocol.js';
import { LocalEgressProxy, type EgressChannel, type EgressCredential } from './egress-proxy.js';
import type { EgressCredentialGrant } from '../../core/vault/protocol.js';
import { placeholdersFor } from '../../core/sandbox/egress-placeholders.js';
import {
  prepareSandboxCgroup,
  priorityCommandsAvailable,
  resolveSandboxPriority,
  wrapWithPriority,
  type SandboxPriority,
} from './sandbox-priority.js';

/** The credential proxy's git channels (`git_open`, `git_close`). */
export interface GitChannels {
  open(req: { sessionId: string; sandbox: string; repositories: string[] }): Promise<GitChannel>;
  close(req: { sessionId: string; channel: string }): Promise<void>;
}

/**
 * What a local sandbox delivers of a recipe: repositories, public or not, through the credential
 * proxy's git channel (the sandbox is offline), when the runtime has a proxy; never packages
 * (a local sandbox uses the host's tools).
 */
export function localRecipeSupport(opts: { gitChannels: boolean; packageManagers?: readonly PackageManager[] }): RecipeSupport {
  const repositories = opts.gitChannels
    ? ({ supported: true } as const)
    : ({ supported: false, reason: 'repositories are cloned through the credential proxy, and this runtime runs without one' } as const);
  const managers = opts.packageManagers ?? [];
  return {
    label: 'a local sandbox',
    packages: {
      managers,
      otherwise: managers.length
        ? `a local sandbox installs only ${managers.join(' and ')} packages, into a directory of its own (apt would need root over the host's system; cargo, gem and go are not installed yet); it uses the tools of the host`
        : 'it uses the tools of the host',
    },
    publicRepositories: repositories,
    credentialedRepositories: repositories,
  };
}

/**
 * The package managers a local sandbox installs with (through the egress proxy, into its own
 * packages directory, as the tools' user): pip and npm, each when the host has its tool on the
 * sandbox's PATH and the sandbox has a way out. apt is never: it installs as root into the
 * host's system directories, which a sandbox must not write.
 */
export function localPackageManagers(egress: boolean): PackageManager[] {
  if (!egress) return [];
  const onPath = (tool: string) => SANDBOX_PATH.split(':').some((dir) => exists(path.join(dir, tool)));
  const managers: PackageManager[] = [];
  if (onPath('python3')) managers.push('pip');
  if (onPath('npm')) managers.push('npm');
  return managers;
}

/** First uid (and gid) of the range sandbox tools run as when Corral runs as root. */
export const SANDBOX_UID_BASE = 0x4000_0000;
const SANDBOX_UID_SPAN = 1 << 20;

/** Where the proxy's git socket directory appears inside a bubblewrapped sandbox. */
const SANDBOX_GIT_DIR = '/run/corral-git';
/** Where the egress CA's trust bundle (system CAs + the egress CA) appears inside a bubblewrapped sandbox. */
const SANDBOX_CA_DIR = '/run/corral-ca';

/** The variables that make the usual clients trust a CA bundle (OpenSSL, Node, Python requests, curl, git). */
export const CA_BUNDLE_VARIABLES = ['SSL_CERT_FILE', 'NODE_EXTRA_CA_CERTS', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE', 'GIT_SSL_CAINFO'] as const;

/** The session's `environment_variable` credentials (metadata only; the credential proxy's `egress_credentials`). */
export interface EnvironmentCredentials {
  list(sessionId: string): Promise<EgressCredentialGrant[]>;
}

/** Placeholders and the proxy's rules: the core's, shared with the Fargate provider. */
export { placeholdersFor } from '../../core/sandbox/egress-placeholders.js';

/** Where the sandbox's egress socket directory appears inside a bubblewrapped sandbox. */
const SANDBOX_EGRESS_DIR = '/run/corral-egress';

export type IsolationMode = 'auto' | 'bwrap' | 'none';

/** Structural logger (Powertools' `Logger` and `console` both fit). */
export interface ProcessSandboxLogger {
  debug?(message: string, extra?: Record<string, unknown>): void;
  info?(message: string, extra?: Record<string, unknown>): void;
  warn(message: string, extra?: Record<string, unknown>): void;
}

export interface ProcessSandboxProviderOptions {
  /** Root for sandbox directories (`<dataDir>/sandboxes/...`). */
  readonly dataDir: string;
  /** `auto` uses bubblewrap when it works and otherwise warns once and runs unisolated. @default 'auto' */
  readonly isolation?: IsolationMode;
  readonly logger?: ProcessSandboxLogger;
  /** How long provision waits for the agent's health check. @default 15000 */
  readonly healthTimeoutMs?: number;
  /** The bubblewrap executable. @default 'bwrap' (looked up on PATH) */
  readonly bwrapPath?: string;
  /**
   * The credential proxy's git channels: repositories are cloned, pulled and pushed through the
   * proxy (see the header). @default - none: a session with repositories cannot get a sandbox
   */
  readonly gitChannels?: GitChannels;
  /** Resource limits of every sandbox's tools. @default DEFAULT_SANDBOX_LIMITS */
  readonly limits?: Partial<SandboxLimits>;
  /**
   * The egress proxy every sandbox's connections go through (see the header). `false`: none, and a
   * bubblewrapped sandbox has no way out at all. @default a proxy of this provider's own, closed with it
   */
  readonly egress?: LocalEgressProxy | false;
  /**
   * The sessions' `environment_variable` credentials: each sandbox of a session with vaults gets
   * a placeholder in each variable, and its egress proxy substitutes the secret (see the header).
   * @default none: the variables are not set
   */
  readonly environmentCredentials?: EnvironmentCredentials;
  /**
   * CPU and I/O priority of every sandbox (cgroup weight, nice, scheduling class, I/O class), so
   * that sandboxes never starve the harness beside them (`sandbox-priority.ts`).
   * @default DEFAULT_SANDBOX_PRIORITY
   */
  readonly priority?: Partial<SandboxPriority>;
  /**
   * Where pip and npm fetch packages instead of their public registries (a mirror the
   * environment's networking allows, or a registry stand-in in tests). @default - the public ones
   */
  readonly packageIndexes?: PackageIndexes;
}

/** Package indexes other than the public ones: pip's index URL (PyPI's simple API) and npm's registry. */
export interface PackageIndexes {
  readonly pip?: string;
  readonly npm?: string;
}

/** The local runtime's setting for `packageIndexes`: `pip=<index url>,npm=<registry url>` (either). */
export const PACKAGE_INDEXES_ENV = 'CORRAL_PACKAGE_INDEXES';

/**
 * `CORRAL_PACKAGE_INDEXES`: `pip=<url>,npm=<url>`, each an http(s) URL without credentials (the
 * URL reaches the tools' environment; a registry needing a token is not supported this way).
 */
export function parsePackageIndexes(text: string | undefined): PackageIndexes {
  const out: { pip?: string; npm?: string } = {};
  for (const part of (text ?? '').split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    const manager = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (eq < 0 || (manager !== 'pip' && manager !== 'npm')) throw new Error(`expected pip=<url> or npm=<url>, got ${JSON.stringify(part.slice(0, 80))}`);
    if (out[manager]) throw new Error(`${manager} is given twice`);
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw new Error(`${manager}: ${JSON.stringify(value.slice(0, 200))} is not a URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`${manager}: the URL must be http or https`);
    if (url.username || url.password) throw new Error(`${manager}: the URL must not hold credentials (they would be in every sandbox)`);
    out[manager] = value;
  }
  return out;
}

/** The variables that point pip and npm at `indexes` (an http index is trusted by pip only when named). */
export function packageIndexEnvironment(indexes: PackageIndexes): Record<string, string> {
  const env: Record<string, string> = {};
  if (indexes.pip) {
    env.PIP_INDEX_URL = indexes.pip;
    if (indexes.pip.startsWith('http://')) env.PIP_TRUSTED_HOST = new URL(indexes.pip).hostname;
  }
  if (indexes.npm) env.npm_config_registry = indexes.npm;
  return env;
}

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** Repository root, found from this file (lambdas/adapters/local/), never from the cwd. */
export const REPO_ROOT = path.resolve(HERE, '..', '..', '..');
export const AGENT_SCRIPT = path.join(REPO_ROOT, 'sandbox', 'agent.ts');
const SANDBOX_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const KILL_GRACE_MS = 2_000;
/** sockaddr_un.sun_path is 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 100;
const STDERR_TAIL_BYTES = 8 * 1024;

const BWRAP_FLAGS = ['--unshare-all', '--die-with-parent', '--new-session', '--cap-drop', 'ALL'];
const BWRAP_FLAGS_NO_USERNS = [
  ...['--unshare-ipc', '--unshare-pid', '--unshare-net', '--unshare-uts', '--unshare-cgroup-try'],
  ...BWRAP_FLAGS.slice(1),
];
/** Written into a sandbox directory given to another session: its old owner never reuses it. */
const HANDED_OFF_MARKER = '.handed-off';
const GIT_TIMEOUT_MS = 10 * 60_000;
/** What the agent needs besides dropped privileges: switching to the tools' uid, and stopping them. */
const AGENT_CAPS = ['CAP_SETUID', 'CAP_SETGID', 'CAP_KILL', 'CAP_DAC_READ_SEARCH'];

// --- process-wide bookkeeping: kill every agent we started when this process exits ---------------

const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  liveChildren.add(child);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of liveChildren) {
        try {
          c.kill('SIGKILL');
        } catch {
          // already gone
        }
      }
    });
  }
}

const bwrapProbes = new Map<string, Promise<boolean>>();

/** Whether bubblewrap runs here with the flags the provider uses (probed once per executable). */
export function bwrapAvailable(bwrapPath = 'bwrap'): Promise<boolean> {
  let probe = bwrapProbes.get(bwrapPath);
  if (!probe) {
    probe = new Promise<boolean>((resolve) => {
      try {
        const child = spawn(bwrapPath, [...BWRAP_FLAGS, '--ro-bind', '/', '/', 'true'], {
          stdio: 'ignore',
          env: { PATH: SANDBOX_PATH },
        });
        child.on('error', () => resolve(false));
        child.on('exit', (code) => resolve(code === 0));
      } catch {
        resolve(false);
      }
    });
    bwrapProbes.set(bwrapPath, probe);
  }
  return probe;
}

/** A path segment made from an id: safe characters only, never `.`/`..`, bounded, collision-free. */
export function safeSegment(id: string): string {
  let safe = id.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_');
  if (safe.length > 64) safe = safe.slice(0, 64);
  if (safe !== id || safe === '') {
    safe = `${safe}-${crypto.createHash('sha256').update(id).digest('hex').slice(0, 10)}`;
  }
  return safe;
}

function tsxLoaderPath(): string {
  return createRequire(import.meta.url).resolve('tsx');
}

function exists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** The priority a provider applies, once probed. */
export interface AppliedPriority {
  priority: SandboxPriority;
  /** The sandboxes' cgroup (`cgroup.procs`), or null when the host has none to give. */
  cgroupProcs: string | null;
  /** Whether the priority commands run here. */
  commands: boolean;
}

interface Sandbox {
  /** The session and name that own it (changes at handoff). */
  owner: SandboxOwner;
  /** Its directory (`workspace`, `run`, `state`). */
  dir: string;
  pid: number;
  child: ChildProcess;
  socketPath: string;
  /** A run directory outside the sandbox directory (short socket path), removed on stop. */
  tempRunDir?: string;
  /** The credential proxy's git channel of this sandbox, closed when it stops or changes hands. */
  gitChannel?: { sessionId: string; id: string };
  /** Its socket on the egress proxy, closed when it stops. */
  egress?: EgressChannel;
  exited: Promise<void>;
  hasExited: () => boolean;
}

export class ProcessSandboxProvider implements SandboxProvider {
  private readonly dataDir: string;
  private readonly isolation: IsolationMode;
  private readonly logger: ProcessSandboxLogger;
  private readonly healthTimeoutMs: number;
  private readonly bwrapPath: string;
  private readonly gitChannels: GitChannels | undefined;
  private readonly environmentCredentials: EnvironmentCredentials | undefined;
  readonly limits: SandboxLimits;
  readonly priority: SandboxPriority;
  readonly recipeSupport: RecipeSupport;
  /** The egress proxy (none with `egress: false`); `ownsEgress` when this provider made it. */
  private readonly egress: LocalEgressProxy | undefined;
  private readonly ownsEgress: boolean;
  private readonly packageIndexes: PackageIndexes;
  /** Running sandboxes by ref (the agent's pid). */
  private readonly sandboxes = new Map<string, Sandbox>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private resolvedMode: Promise<'bwrap' | 'none'> | undefined;
  private resolvedPriority: Promise<AppliedPriority> | undefined;

  constructor(opts: ProcessSandboxProviderOptions) {
    this.dataDir = path.resolve(opts.dataDir);
    this.isolation = opts.isolation ?? 'auto';
    this.logger = opts.logger ?? { warn: (message, extra) => console.warn(message, extra ?? '') };
    this.healthTimeoutMs = opts.healthTimeoutMs ?? 15_000;
    this.bwrapPath = opts.bwrapPath ?? 'bwrap';
    this.gitChannels = opts.gitChannels;
    this.environmentCredentials = opts.environmentCredentials;
    this.recipeSupport = localRecipeSupport({ gitChannels: Boolean(opts.gitChannels), packageManagers: localPackageManagers(opts.egress !== false) });
    this.packageIndexes = opts.packageIndexes ?? {};
    this.limits = resolveSandboxLimits(opts.limits);
    this.ownsEgress = opts.egress === undefined;
    this.egress = opts.egress === false ? undefined : (opts.egress ?? new LocalEgressProxy({ logger: this.logger }));
    this.priority = resolveSandboxPriority(opts.priority);
  }

  /**
   * What of the priority this host can apply: the commands (util-linux, coreutils) when they run,
   * the cgroup when there is a writable v1 `cpu` hierarchy (root). Decided once; what cannot be
   * applied is said once, in a warning.
   */
  appliedPriority(): Promise<AppliedPriority> {
    this.resolvedPriority ??= (async () => {
      const p = this.priority;
      let cgroupProcs: string | null = null;
      if (p.cpu_shares > 0) {
        try {
          cgroupProcs = prepareSandboxCgroup(p.cpu_shares);
        } catch (err) {
          this.logger.warn('local sandboxes run without their own cgroup: their CPU weight is not lowered', { error: (err as Error).message });
        }
      }
      const commands = await priorityCommandsAvailable(p, { PATH: SANDBOX_PATH });
      if (!commands) this.logger.warn('prlimit, nice, ionice or chrt did not run: local sandboxes keep the nice value and I/O priority of this process', {});
      return { priority: p, cgroupProcs, commands };
    })();
    return this.resolvedPriority;
  }

  /** The isolation actually used: probes bubblewrap on first use. */
  isolationMode(): Promise<'bwrap' | 'none'> {
    this.resolvedMode ??= (async () => {
      if (this.isolation === 'none') return 'none';
      if (await bwrapAvailable(this.bwrapPath)) return 'bwrap';
      if (this.isolation === 'bwrap') {
        throw new Error(
          `bubblewrap isolation was requested but '${this.bwrapPath}' is not available or cannot create namespaces here; ` +
            `install bubblewrap (apt-get install bubblewrap) or use isolation 'auto' or 'none'`,
        );
      }
      this.logger.warn('bubblewrap (bwrap) is unavailable: local sandboxes run WITHOUT isolation (same network and filesystem as Corral)', {
        bwrapPath: this.bwrapPath,
      });
      return 'none';
    })();
    // A failed probe in 'bwrap' mode stays failed: every provision reports it.
    return this.resolvedMode;
  }

  /**
   * Without bubblewrap nothing is bound at `/mnt/session`: the agent keeps the session's files in
   * the sandbox's directory on the host, where the model's `/mnt/session/...` paths do not lead
   * (and `/mnt/session` on the host is shared by everything on it). File resources are refused.
   */
  async sessionFilesRefusal(): Promise<string | undefined> {
    const mode = await this.isolationMode().catch(() => 'bwrap' as const);
    if (mode === 'bwrap') return undefined;
    return 'this runtime\'s local sandboxes run without bubblewrap, so they have no /mnt/session to mount files at; install bubblewrap (apt-get install bubblewrap) to use file resources';
  }

  /** Directory holding a sandbox's workspace, run and state directories. */
  sandboxDir(sessionId: string, name: string): string {
    return path.join(this.dataDir, 'sandboxes', safeSegment(sessionId), safeSegment(name));
  }

  /**
   * The workspace of a session's sandbox: the running one's, else where the next one would start.
   * A stopped sandbox's files stay there untouched until the next sandbox of that name starts
   * (which empties it: it gets its files back only from the core's snapshot, as on Fargate) or
   * the session is deleted.
   */
  workspaceDir(sessionId: string, name: string): string {
    const live = this.owned(sessionId, name);
    return path.join(live ? live.dir : this.sandboxDir(sessionId, name), 'workspace');
  }

  private owned(sessionId: string, name: string): Sandbox | undefined {
    for (const s of this.sandboxes.values()) if (s.owner.sessionId === sessionId && s.owner.name === name) return s;
    return undefined;
  }

  provision(req: ProvisionRequest): Promise<ProvisionedSandbox> {
    assertDeliverable(req.recipe, this.recipeSupport);
    const key = `${req.sessionId}\0${req.name}`;
    return this.withLock(key, async () => {
      if (req.signal?.aborted) throw req.signal.reason;
      const previous = this.owned(req.sessionId, req.name);
      if (previous) await this.stop(previous);
      return this.start(req);
    });
  }

  release(sessionId: string, name: string, ref: string): Promise<void> {
    const key = `${sessionId}\0${name}`;
    return this.withLock(key, async () => {
      const sandbox = this.sandboxes.get(String(ref));
      // A ref from an earlier incarnation, or of a sandbox handed to another session, is not ours.
      if (!sandbox || sandbox.owner.sessionId !== sessionId || sandbox.owner.name !== name) return;
      await this.stop(sandbox);
      // A warm pool's sandbox never claimed: its directory serves no one again (a pooled name is
      // never reused), and holds nothing of a session to keep.
      if (sessionId.startsWith(POOL_OWNER_PREFIX)) await fsp.rm(sandbox.dir, { recursive: true, force: true }).catch(() => undefined);
    });
  }

  async releaseAll(sessionId: string): Promise<void> {
    const mine = [...this.sandboxes.values()].filter((s) => s.owner.sessionId === sessionId);
    await Promise.all(mine.map((s) => this.release(s.owner.sessionId, s.owner.name, String(s.pid))));
    await this.removeFiles(sessionId, mine.map((s) => s.dir));
  }

  /**
   * A deleted session's files: the directories of the sandboxes it had (including ones it
   * received, which live under their first owner's directory) and everything under its own
   * directory that no running sandbox uses (one it handed to another session keeps running
   * there). Its sandboxes are stopped first, so nothing inside can change a path while it is
   * removed; `rm` never follows a link.
   */
  private async removeFiles(sessionId: string, dirs: string[]): Promise<void> {
    const inUse = new Set([...this.sandboxes.values()].map((s) => s.dir));
    const own = path.dirname(this.sandboxDir(sessionId, 'x'));
    const entries = await fsp.readdir(own).catch(() => [] as string[]);
    const targets = new Set([...dirs, ...entries.map((e) => path.join(own, e))]);
    for (const dir of targets) {
      if (inUse.has(dir)) continue;
      await fsp.rm(dir, { recursive: true, force: true });
    }
    if (![...inUse].some((d) => d.startsWith(own + path.sep))) await fsp.rm(own, { recursive: true, force: true });
  }

  /** Handoff: the sandbox `ref` now belongs to `to`; `from`'s next sandbox gets another directory. */
  async transfer(from: SandboxOwner, to: SandboxOwner, ref: string): Promise<void> {
    const sandbox = this.sandboxes.get(String(ref));
    if (!sandbox || sandbox.owner.sessionId !== from.sessionId || sandbox.owner.name !== from.name) {
      throw new Error(`sandbox ${ref} is not a running sandbox of session ${from.sessionId} (${from.name})`);
    }
    // The target's earlier sandbox of that name, if one still runs, gives way.
    const displaced = this.owned(to.sessionId, to.name);
    if (displaced) await this.stop(displaced);
    await fsp.writeFile(path.join(sandbox.dir, HANDED_OFF_MARKER), `${JSON.stringify({ from, to, at: new Date().toISOString() })}\n`);
    // The source session's repositories (and tokens) stay with the source: the channel closes.
    await this.closeGitChannel(sandbox);
    sandbox.owner = { ...to };
    // The egress socket (and the policy it was opened with) stays the sandbox's; its log names the new owner.
    if (sandbox.egress) sandbox.egress.owner = { sessionId: to.sessionId, sandbox: to.name };
    this.logger.info?.('sandbox handed off', { from, to, pid: sandbox.pid });
  }

  /** Stops every sandbox this provider started (for shutdown). */
  async close(): Promise<void> {
    await Promise.all([...this.sandboxes.values()].map((s) => this.release(s.owner.sessionId, s.owner.name, String(s.pid))));
    if (this.ownsEgress) await this.egress?.close();
  }

  /** The local runtime calls this when it closes. */
  shutdown(): Promise<void> {
    return this.close();
  }

  /** The directory for a new sandbox of this session and name: its own, unless it was given away. */
  private async chooseDir(sessionId: string, name: string): Promise<string> {
    const own = this.sandboxDir(sessionId, name);
    const taken = (dir: string) => exists(path.join(dir, HANDED_OFF_MARKER)) || [...this.sandboxes.values()].some((s) => s.dir === dir);
    if (!taken(own)) return own;
    for (;;) {
      const dir = `${own}+${crypto.randomBytes(4).toString('hex')}`;
      if (!exists(dir)) return dir;
    }
  }

  /**
   * The recipe's repositories go to the agent, which clones them through a git channel of the
   * credential proxy (issued for exactly those repositories); the proxy adds the credential of
   * those that have one. Nothing else of a recipe reaches a local sandbox (`localRecipeSupport`).
   */
  private async gitChannelFor(req: ProvisionRequest): Promise<{ agent: WireRecipe; channel: GitChannel } | null> {
    const recipe: SandboxRecipe = req.recipe;
    if (!recipe.repositories.length) return null;
    // Without a proxy `recipeSupport` delivers no repository (`provision` checked it): unreachable.
    const gitChannels = this.gitChannels;
    if (!gitChannels) throw new Error('a local sandbox without a credential proxy was handed repositories');
    for (const r of recipe.repositories) {
      // The proxy's channel carries remote http(s) repositories only; nothing is cloned on the host.
      if (!/^https?:\/\/[^\s/?#@\\]+([/?#]\S*)?$/i.test(r.url)) {
        throw new SandboxSetupError('repository_clone_error', `repository_clone_error: ${JSON.stringify(redactUrls(r.url).slice(0, 200))} is not a remote http(s) repository; only those can be cloned`);
      }
    }
    let channel: GitChannel;
    try {
      channel = await gitChannels.open({ sessionId: req.sessionId, sandbox: req.name, repositories: recipe.repositories.map((r) => r.url) });
    } catch (err) {
      throw new SandboxSetupError('repository_clone_error', `repository_clone_error: the credential proxy gave no git channel: ${(err as Error)?.message ?? err}`);
    }
    if (channel.endpoint?.kind !== 'unix') {
      await gitChannels.close({ sessionId: req.sessionId, channel: channel.id }).catch(() => {});
      throw new SandboxSetupError('repository_clone_error', 'repository_clone_error: the credential proxy has no local git socket');
    }
    return { agent: wireRecipeOf(recipe), channel };
  }

  /** Close a sandbox's git channel (stopped, handed off); a proxy that is gone has closed it. */
  private async closeGitChannel(sandbox: Sandbox): Promise<void> {
    const channel = sandbox.gitChannel;
    if (!channel || !this.gitChannels) return;
    sandbox.gitChannel = undefined;
    await this.gitChannels.close({ sessionId: channel.sessionId, channel: channel.id }).catch((err: unknown) => {
      this.logger.warn('could not close a git channel', { sessionId: channel.sessionId, error: (err as Error)?.message });
    });
  }

  /**
   * The uid and gid the sandbox's tools run as: when Corral is root, one of their own, stable for
   * the sandbox directory (so a workspace kept from an earlier sandbox stays theirs); otherwise
   * none (the whole sandbox is Corral's unprivileged user already).
   */
  toolsUser(dir: string): { uid: number; gid: number } | null {
    if (process.getuid?.() !== 0) return null;
    const n = crypto.createHash('sha256').update(dir).digest().readUInt32BE(0) % SANDBOX_UID_SPAN;
    return { uid: SANDBOX_UID_BASE + n, gid: SANDBOX_UID_BASE + n };
  }

  private async withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const before = this.locks.get(key) ?? Promise.resolve();
    const run = before.then(fn, fn);
    const tail = run.catch(() => {});
    this.locks.set(key, tail);
    try {
      return await run;
    } finally {
      if (this.locks.get(key) === tail) this.locks.delete(key);
    }
  }

  private async start(req: ProvisionRequest): Promise<ProvisionedSandbox> {
    const mode = await this.isolationMode();
    let base = await this.chooseDir(req.sessionId, req.name);
    // Every sandbox starts with an empty workspace, as a Fargate task does: what an earlier one
    // left comes back only through the core's snapshot and restore (docs/WORKSPACES.md). `rm`
    // never follows a link; a tree this user cannot remove (modes the sandbox set) is left, and
    // the sandbox starts in a directory of its own.
    if (!(await fsp.rm(path.join(base, 'workspace'), { recursive: true, force: true }).then(() => true, () => false))) {
      base = `${this.sandboxDir(req.sessionId, req.name)}+${crypto.randomBytes(4).toString('hex')}`;
    }
    await fsp.mkdir(path.join(base, 'workspace'), { recursive: true });
    await fsp.mkdir(path.join(base, 'state'), { recursive: true, mode: 0o700 });
    const realBase = await fsp.realpath(base);
    const workspace = path.join(realBase, 'workspace');
    const tools = mode === 'bwrap' ? this.toolsUser(realBase) : null;
    // Only the directory itself, never what is in it (the sandbox owns that, links and all).
    if (tools) await fsp.lchown(workspace, tools.uid, tools.gid);
    // `/mnt/session`: `uploads` is the agent's (the file resources it is handed, read-only for the
    // tools), emptied at every start (rm never follows a link); `outputs` is the tools'.
    const sessionDir = path.join(realBase, 'session');
    await fsp.mkdir(sessionDir, { recursive: true, mode: 0o755 });
    await fsp.rm(path.join(sessionDir, 'uploads'), { recursive: true, force: true });
    await fsp.mkdir(path.join(sessionDir, 'uploads'), { mode: 0o755 });
    await fsp.mkdir(path.join(sessionDir, 'outputs'), { recursive: true, mode: 0o755 });
    if (tools) await fsp.lchown(path.join(sessionDir, 'outputs'), tools.uid, tools.gid);
    // `/mnt/memory`: the session's memory stores, kept in line with them by the core (memory-mounts.ts).
    const memoryDir = path.join(realBase, 'memory');
    await fsp.mkdir(memoryDir, { recursive: true, mode: 0o755 });
    // The packages directory: pip's and npm's packages, installed by the agent or restored from the
    // environment's package cache by the sandbox manager; empty at every start, the tools' own.
    const installing = this.recipeSupport.packages.managers.some((pm) => req.recipe.packages[pm]?.length);
    const packagesDir = installing ? path.join(realBase, 'packages') : undefined;
    if (packagesDir) {
      await fsp.rm(packagesDir, { recursive: true, force: true });
      await fsp.mkdir(packagesDir, { mode: 0o755 });
      if (tools) await fsp.lchown(packagesDir, tools.uid, tools.gid);
    }
    const split = await this.gitChannelFor(req);
    const notes: string[] = [];
    const stateDir = path.join(realBase, 'state');
    let runDir = path.join(realBase, 'run');
    let tempRunDir: string | undefined;
    if (Buffer.byteLength(path.join(runDir, 'agent.sock')) > MAX_SOCKET_PATH_BYTES) {
      const short = crypto.createHash('sha256').update(realBase).digest('hex').slice(0, 16);
      runDir = tempRunDir = path.join(os.tmpdir(), `corral-run-${short}`);
    }
    await fsp.mkdir(runDir, { recursive: true, mode: 0o700 });
    const socketPath = path.join(runDir, 'agent.sock');
    await fsp.rm(socketPath, { force: true });

    const capability = crypto.randomBytes(32).toString('base64url');
    const env: Record<string, string> = { PATH: SANDBOX_PATH, HOME: workspace, LANG: 'C.UTF-8', TMPDIR: '/tmp' };
    // environment_variable credentials: placeholders in the tools' variables, the rules to the egress proxy.
    let placeholders: ReturnType<typeof placeholdersFor> = { env: {}, credentials: [] };
    if (this.egress && this.environmentCredentials && req.recipe.vaults) {
      placeholders = placeholdersFor(await this.environmentCredentials.list(req.sessionId));
    }
    const egress = await this.egress?.open({ sessionId: req.sessionId, sandbox: req.name }, req.recipe.networking ?? { type: 'unrestricted' }, placeholders.credentials);
    const toolEnv: Record<string, string> = { ...placeholders.env, ...(installing ? packageIndexEnvironment(this.packageIndexes) : {}) };
    if (egress?.caBundlePath) {
      const bundle = mode === 'bwrap' ? `${SANDBOX_CA_DIR}/${path.basename(egress.caBundlePath)}` : egress.caBundlePath;
      for (const name of CA_BUNDLE_VARIABLES) toolEnv[name] = bundle;
    }
    // No secret: placeholders and a path. The agent hands them to every tool process.
    if (Object.keys(toolEnv).length) env.CORRAL_TOOL_ENV = JSON.stringify(toolEnv);
    let gitLine: string | null = null;
    let gitSocketDir: string | null = null;
    if (split?.channel.endpoint?.kind === 'unix') {
      // The recipe has no secrets (it travels in the environment); the channel's capability goes on stdin.
      env.CORRAL_SANDBOX_RECIPE = JSON.stringify(split.agent);
      gitSocketDir = path.dirname(split.channel.endpoint.socketPath);
      const socket = mode === 'bwrap' ? `${SANDBOX_GIT_DIR}/${path.basename(split.channel.endpoint.socketPath)}` : split.channel.endpoint.socketPath;
      gitLine = JSON.stringify({ capability: split.channel.capability, socket, repositories: split.channel.repositories });
    } else if (installing) {
      env.CORRAL_SANDBOX_RECIPE = JSON.stringify(wireRecipeOf(req.recipe));
    }
    const nodeBinary = fs.realpathSync(process.execPath);
    const loader = tsxLoaderPath();
    const agentArgs = [
      '--import',
      pathToFileURL(loader).href,
      AGENT_SCRIPT,
      '--socket',
      socketPath,
      '--workspace',
      workspace,
      '--state-dir',
      stateDir,
      ...(gitLine ? ['--git-channel-stdin', '--local-mounts'] : installing ? ['--local-mounts'] : []),
      ...(packagesDir ? ['--install-packages', '--packages-dir', packagesDir] : []),
      ...(tools ? ['--run-as-uid', String(tools.uid), '--run-as-gid', String(tools.gid)] : []),
      ...(egress ? ['--egress-socket', mode === 'bwrap' ? `${SANDBOX_EGRESS_DIR}/${path.basename(egress.socketPath)}` : egress.socketPath] : []),
      '--limits',
      formatSandboxLimits(this.limits),
      // Under bubblewrap the directory is at /mnt/session; without isolation the agent uses it where it is.
      ...(mode === 'bwrap' ? [] : ['--session-dir', sessionDir]),
    ];
    let command: string;
    let args: string[];
    if (mode === 'bwrap') {
      command = this.bwrapPath;
      args = [...bwrapArgs({ env, nodeBinary, loader, workspace, runDir, stateDir, sessionDir, memoryDir, packagesDir, gitSocketDir, egressSocketDir: egress?.socketDir, caDir: egress?.caBundlePath ? path.dirname(egress.caBundlePath) : undefined, keepCaps: tools ? AGENT_CAPS : [] }), '--', nodeBinary, ...agentArgs];
    } else {
      command = nodeBinary;
      args = agentArgs;
    }
    // Lower CPU and I/O priority for the whole sandbox, set before its first instruction runs.
    const applied = await this.appliedPriority();
    ({ command, args } = wrapWithPriority(applied.commands ? applied.priority : { ...applied.priority, nice: 0, sched: 'other', io_class: 'none' }, applied.cgroupProcs, command, args));

    const child = spawn(command, args, { cwd: runDir, env, stdio: ['pipe', 'ignore', 'pipe'] });
    track(child);
    let exitedFlag = false;
    let exitInfo = '';
    const exited = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        exitedFlag = true;
        exitInfo = signal ? `signal ${signal}` : `code ${code}`;
        liveChildren.delete(child);
        resolve();
      });
      child.once('error', (err) => {
        exitedFlag = true;
        exitInfo = `spawn failed: ${err.message}`;
        liveChildren.delete(child);
        resolve();
      });
    });
    let stderrTail = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      stderrTail = (stderrTail + chunk).slice(-STDERR_TAIL_BYTES);
      for (const line of chunk.split('\n')) {
        if (line.trim()) this.logger.debug?.('sandbox agent', { sessionId: req.sessionId, sandbox: req.name, line });
      }
    });
    child.stderr!.on('error', () => {});
    child.stdin!.on('error', () => {});
    // The first stdin line is the capability; stdin stays open (its closing tells the agent we died).
    child.stdin!.write(`${capability}\n${gitLine ? `${gitLine}\n` : ''}`);

    const sandbox: Sandbox = {
      owner: { sessionId: req.sessionId, name: req.name },
      dir: base,
      pid: child.pid ?? -1,
      child,
      socketPath,
      tempRunDir,
      ...(split ? { gitChannel: { sessionId: req.sessionId, id: split.channel.id } } : {}),
      ...(egress ? { egress } : {}),
      exited,
      hasExited: () => exitedFlag,
    };
    if (child.pid !== undefined) this.sandboxes.set(String(child.pid), sandbox);
    if (child.pid !== undefined) await Promise.resolve(req.onStarted?.(String(child.pid))).catch(() => undefined);

    const endpoint: SandboxEndpoint = { kind: 'unix', socketPath, capability };
    const died = new AbortController();
    void exited.then(() => died.abort());
    try {
      // Cloning and installing through the proxy happen in the agent, before it reports healthy: allow for them.
      const health = await waitHealthy(endpoint, {
        timeoutMs: gitLine || installing ? Math.max(this.healthTimeoutMs, GIT_TIMEOUT_MS) : this.healthTimeoutMs,
        intervalMs: 50,
        signal: req.signal ? AbortSignal.any([died.signal, req.signal]) : died.signal,
      });
      notes.push(...health.notes);
    } catch (err) {
      // Cut by the caller (the harness step's deadline, an interrupt): stopped, nothing left running.
      const cut = req.signal?.aborted === true && !died.signal.aborted;
      await this.stop(sandbox);
      if (cut) throw req.signal!.reason;
      if (err instanceof SandboxSetupError) throw new SandboxSetupError(err.type, `${err.type}: ${err.message}`);
      const detail = stderrTail.trim() ? `; agent stderr: ${stderrTail.trim().slice(-2000)}` : '';
      if (died.signal.aborted) {
        throw new Error(`sandbox agent for session ${req.sessionId} (${req.name}) exited during startup (${exitInfo})${detail}`);
      }
      throw new Error(`sandbox agent for session ${req.sessionId} (${req.name}) did not become healthy: ${(err as Error).message}${detail}`);
    }
    this.logger.info?.('sandbox provisioned', { sessionId: req.sessionId, sandbox: req.name, pid: child.pid, isolation: mode });
    return notes.length ? { endpoint, ref: String(child.pid), notes } : { endpoint, ref: String(child.pid) };
  }

  private async stop(sandbox: Sandbox): Promise<void> {
    if (!sandbox.hasExited()) {
      try {
        sandbox.child.kill('SIGTERM');
      } catch {
        // already gone
      }
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([sandbox.exited, new Promise<void>((r) => (timer = setTimeout(r, KILL_GRACE_MS)))]);
      clearTimeout(timer);
      if (!sandbox.hasExited()) {
        try {
          sandbox.child.kill('SIGKILL');
        } catch {
          // already gone
        }
        await sandbox.exited;
      }
    }
    await this.closeGitChannel(sandbox);
    await sandbox.egress?.close();
    sandbox.child.stdin?.destroy();
    sandbox.child.stderr?.destroy();
    await fsp.rm(sandbox.socketPath, { force: true }).catch(() => {});
    if (sandbox.tempRunDir) await fsp.rm(sandbox.tempRunDir, { recursive: true, force: true }).catch(() => {});
    if (this.sandboxes.get(String(sandbox.pid)) === sandbox) this.sandboxes.delete(String(sandbox.pid));
    this.logger.info?.('sandbox released', { sessionId: sandbox.owner.sessionId, sandbox: sandbox.owner.name, pid: sandbox.pid });
  }
}

/**
 * Privileged bwrap makes the directories above a mount point 0700: the tools' uid could not reach
 * the workspace, /etc or node. Each one is made 0755 first (it holds only other mount points).
 */
function withReadableParents(args: string[]): void {
  const made = new Set<string>(['/']);
  for (let i = 0; i < args.length; i++) {
    const op = args[i];
    const dest = op === '--ro-bind' || op === '--bind' || op === '--symlink' ? args[i + 2] : op === '--tmpfs' || op === '--proc' || op === '--dev' ? args[i + 1] : undefined;
    if (!dest) continue;
    const parents: string[] = [];
    for (let d = path.dirname(dest); !made.has(d); d = path.dirname(d)) parents.unshift(d);
    if (!parents.length) continue;
    const dirs = parents.flatMap((d) => ['--perms', '0755', '--dir', d]);
    // A directory under /tmp can only be made once /tmp is mounted: before its own mount point.
    args.splice(i, 0, ...dirs);
    i += dirs.length;
    for (const d of parents) made.add(d);
  }
}

/** The bubblewrap arguments for one sandbox (everything before `--`). */
function bwrapArgs(p: {
  env: Record<string, string>;
  nodeBinary: string;
  loader: string;
  workspace: string;
  runDir: string;
  stateDir: string;
  /** Bound at /mnt/session (file resources in `uploads`, outputs in `outputs`). */
  sessionDir: string;
  /** Bound at /mnt/memory (the session's memory stores). */
  memoryDir?: string;
  /** The packages directory, bound where it is (the agent and the tools see the host's path). */
  packagesDir?: string | undefined;
  /** The credential proxy's git socket directory: read-only, so no sandbox can replace the socket. */
  gitSocketDir?: string | null;
  /** The sandbox's egress socket directory: read-only too. */
  egressSocketDir?: string;
  /** The egress CA's trust bundle's directory, read-only at /run/corral-ca. */
  caDir?: string;
  /** Capabilities the agent keeps (it starts the tools as their own uid); none by default. */
  keepCaps?: string[];
}): string[] {
  // Tools as a uid of their own: no user namespace (its map would hold uid 0 only), every other one.
  const args = p.keepCaps?.length ? [...BWRAP_FLAGS_NO_USERNS, '--clearenv'] : [...BWRAP_FLAGS, '--clearenv'];
  for (const cap of p.keepCaps ?? []) args.push('--cap-add', cap);
  for (const [k, v] of Object.entries(p.env)) args.push('--setenv', k, v);
  // Top-level system directories; merged-/usr systems have /bin, /lib... as symlinks into /usr.
  args.push('--ro-bind', '/usr', '/usr');
  for (const dir of ['/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32']) {
    if (!exists(dir)) continue;
    const st = fs.lstatSync(dir);
    if (st.isSymbolicLink()) args.push('--symlink', fs.readlinkSync(dir), dir);
    else if (st.isDirectory()) args.push('--ro-bind', dir, dir);
  }
  for (const file of ['/etc/alternatives', '/etc/ssl', '/etc/passwd', '/etc/group', '/etc/hosts', '/etc/resolv.conf', '/etc/ld.so.cache']) {
    if (exists(file)) args.push('--ro-bind', file, file);
  }
  // /tmp is the tools' too (they run as another uid than the agent): world-writable and sticky.
  args.push('--proc', '/proc', '--dev', '/dev', '--perms', '1777', '--tmpfs', '/tmp');
  // Node itself, when it lives outside /usr (nvm, volta...).
  const nodeDir = path.dirname(p.nodeBinary);
  if (!nodeDir.startsWith('/usr/') && !['/bin', '/sbin'].includes(nodeDir)) args.push('--ro-bind', nodeDir, nodeDir);
  // Only what the agent needs from the repository: the agent, the package manifest (module type)
  // and the node_modules holding tsx. Not the whole tree (.git, .env, other sandboxes' data).
  const nodeModules = p.loader.slice(0, p.loader.lastIndexOf(`${path.sep}node_modules${path.sep}`) + '/node_modules'.length);
  args.push('--ro-bind', path.join(REPO_ROOT, 'package.json'), path.join(REPO_ROOT, 'package.json'));
  args.push('--ro-bind', path.join(REPO_ROOT, 'sandbox'), path.join(REPO_ROOT, 'sandbox'));
  args.push('--ro-bind', nodeModules, nodeModules);
  args.push('--bind', p.workspace, p.workspace);
  args.push('--bind', p.runDir, p.runDir);
  args.push('--bind', p.stateDir, p.stateDir);
  args.push('--bind', p.sessionDir, '/mnt/session');
  if (p.memoryDir) args.push('--bind', p.memoryDir, '/mnt/memory');
  if (p.packagesDir) args.push('--bind', p.packagesDir, p.packagesDir);
  if (p.gitSocketDir) args.push('--ro-bind', p.gitSocketDir, SANDBOX_GIT_DIR);
  if (p.egressSocketDir) args.push('--ro-bind', p.egressSocketDir, SANDBOX_EGRESS_DIR);
  if (p.caDir) args.push('--ro-bind', p.caDir, SANDBOX_CA_DIR);
  // Everything else (the root bwrap builds) is read-only: writes outside the workspace and /tmp fail.
  if (p.keepCaps?.length) withReadableParents(args);
  args.push('--remount-ro', '/');
  args.push('--chdir', p.runDir);
  return args;
}
