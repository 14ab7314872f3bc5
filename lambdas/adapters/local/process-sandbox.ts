/**
 * Local sandboxes: the sandbox agent (`sandbox/agent.ts`) as a child process listening on a Unix
 * socket, isolated with bubblewrap when it is available (no network, read-only system, only the
 * workspace writable, a clean environment).
 *
 * Layout per sandbox: `<dataDir>/sandboxes/<session>/<name>/{workspace,run,state}`; the socket is
 * `run/agent.sock` (or a short directory under the OS temp dir when that path would be too long
 * for a Unix socket). The capability reaches the agent on its stdin, never through argv or env.
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
import type { ProvisionRequest, ProvisionedSandbox, SandboxEndpoint, SandboxProvider } from '../../core/sandbox/types.js';

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

interface Sandbox {
  key: string;
  sessionId: string;
  name: string;
  pid: number;
  child: ChildProcess;
  socketPath: string;
  /** A run directory outside the sandbox directory (short socket path), removed on stop. */
  tempRunDir?: string;
  exited: Promise<void>;
  hasExited: () => boolean;
}

export class ProcessSandboxProvider implements SandboxProvider {
  private readonly dataDir: string;
  private readonly isolation: IsolationMode;
  private readonly logger: ProcessSandboxLogger;
  private readonly healthTimeoutMs: number;
  private readonly bwrapPath: string;
  private readonly sandboxes = new Map<string, Sandbox>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private resolvedMode: Promise<'bwrap' | 'none'> | undefined;

  constructor(opts: ProcessSandboxProviderOptions) {
    this.dataDir = path.resolve(opts.dataDir);
    this.isolation = opts.isolation ?? 'auto';
    this.logger = opts.logger ?? { warn: (message, extra) => console.warn(message, extra ?? '') };
    this.healthTimeoutMs = opts.healthTimeoutMs ?? 15_000;
    this.bwrapPath = opts.bwrapPath ?? 'bwrap';
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

  /** Directory holding a sandbox's workspace, run and state directories. */
  sandboxDir(sessionId: string, name: string): string {
    return path.join(this.dataDir, 'sandboxes', safeSegment(sessionId), safeSegment(name));
  }

  /** The workspace of a sandbox (kept after release). */
  workspaceDir(sessionId: string, name: string): string {
    return path.join(this.sandboxDir(sessionId, name), 'workspace');
  }

  provision(req: ProvisionRequest): Promise<ProvisionedSandbox> {
    const key = `${req.sessionId}\0${req.name}`;
    return this.withLock(key, async () => {
      const previous = this.sandboxes.get(key);
      if (previous) await this.stop(previous);
      return this.start(key, req);
    });
  }

  release(sessionId: string, name: string, ref: string): Promise<void> {
    const key = `${sessionId}\0${name}`;
    return this.withLock(key, async () => {
      const sandbox = this.sandboxes.get(key);
      // A ref from an earlier incarnation must not stop the current one.
      if (!sandbox || String(sandbox.pid) !== String(ref)) return;
      await this.stop(sandbox);
    });
  }

  async releaseAll(sessionId: string): Promise<void> {
    const mine = [...this.sandboxes.values()].filter((s) => s.sessionId === sessionId);
    await Promise.all(mine.map((s) => this.release(s.sessionId, s.name, String(s.pid))));
  }

  /** Stops every sandbox this provider started (for shutdown). */
  async close(): Promise<void> {
    await Promise.all([...this.sandboxes.values()].map((s) => this.release(s.sessionId, s.name, String(s.pid))));
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

  private async start(key: string, req: ProvisionRequest): Promise<ProvisionedSandbox> {
    const mode = await this.isolationMode();
    const base = this.sandboxDir(req.sessionId, req.name);
    await fsp.mkdir(path.join(base, 'workspace'), { recursive: true });
    await fsp.mkdir(path.join(base, 'state'), { recursive: true, mode: 0o700 });
    const realBase = await fsp.realpath(base);
    const workspace = path.join(realBase, 'workspace');
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
    ];
    let command: string;
    let args: string[];
    if (mode === 'bwrap') {
      command = this.bwrapPath;
      args = [...bwrapArgs({ env, nodeBinary, loader, workspace, runDir, stateDir }), '--', nodeBinary, ...agentArgs];
    } else {
      command = nodeBinary;
      args = agentArgs;
    }

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
    child.stdin!.write(`${capability}\n`);

    const sandbox: Sandbox = {
      key,
      sessionId: req.sessionId,
      name: req.name,
      pid: child.pid ?? -1,
      child,
      socketPath,
      tempRunDir,
      exited,
      hasExited: () => exitedFlag,
    };
    if (child.pid !== undefined) this.sandboxes.set(key, sandbox);

    const endpoint: SandboxEndpoint = { kind: 'unix', socketPath, capability };
    const died = new AbortController();
    void exited.then(() => died.abort());
    try {
      await waitHealthy(endpoint, { timeoutMs: this.healthTimeoutMs, intervalMs: 50, signal: died.signal });
    } catch (err) {
      await this.stop(sandbox);
      const detail = stderrTail.trim() ? `; agent stderr: ${stderrTail.trim().slice(-2000)}` : '';
      if (died.signal.aborted) {
        throw new Error(`sandbox agent for session ${req.sessionId} (${req.name}) exited during startup (${exitInfo})${detail}`);
      }
      throw new Error(`sandbox agent for session ${req.sessionId} (${req.name}) did not become healthy: ${(err as Error).message}${detail}`);
    }
    this.logger.info?.('sandbox provisioned', { sessionId: req.sessionId, sandbox: req.name, pid: child.pid, isolation: mode });
    return { endpoint, ref: String(child.pid) };
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
    sandbox.child.stdin?.destroy();
    sandbox.child.stderr?.destroy();
    await fsp.rm(sandbox.socketPath, { force: true }).catch(() => {});
    if (sandbox.tempRunDir) await fsp.rm(sandbox.tempRunDir, { recursive: true, force: true }).catch(() => {});
    if (this.sandboxes.get(sandbox.key) === sandbox) this.sandboxes.delete(sandbox.key);
    this.logger.info?.('sandbox released', { sessionId: sandbox.sessionId, sandbox: sandbox.name, pid: sandbox.pid });
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
}): string[] {
  const args = [...BWRAP_FLAGS, '--clearenv'];
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
  args.push('--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp');
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
  // Everything else (the root bwrap builds) is read-only: writes outside the workspace and /tmp fail.
  args.push('--remount-ro', '/');
  args.push('--chdir', p.runDir);
  return args;
}
