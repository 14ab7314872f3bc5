/**
 * The agent itself: who may call it (the capability), whether its recipe is in place, and how a
 * tool call runs: once per idempotency key, as the tools' user, under the limits, with the disk
 * limit checked after every call.
 */
import type { ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { RecipeError, applyRecipe, type PackagesReport, type RecipeContext, type RunResult, type WireRecipe } from '../recipe.js';
import type { SandboxLimits } from '../limits.js';
import { Confinement, SANDBOX_PATH, type Principal, type RunAs } from './confinement.js';
import { ResultCache } from './idempotency.js';
import type { Log } from './log.js';
import { Processes } from './process.js';
import { ShellSession } from './shell.js';
import { ToolServer } from './tool-server.js';
import { HttpError } from './server.js';
import { SESSION_MOUNT, SessionFiles } from './session-files.js';
import { MEMORY_MOUNT, MemoryMounts } from './memory-mounts.js';
import { clampTimeout, runTool, type ExecuteRequest, type ToolResult } from './tools/index.js';
import { ArchiveRefused, packWorkspace, unpackWorkspace, type ArchiveLimits, type ArchiveSummary } from './workspace-archive.js';

/** The longest a snapshot or a restore may take. */
const ARCHIVE_TIMEOUT_MS = 15 * 60_000;

export interface AgentOptions {
  workspace: string;
  capability: string;
  /** Directory for persisted idempotency records; null keeps them in memory only. */
  stateDir: string | null;
  /** Run every tool as this user instead of the agent's own. */
  runAs?: RunAs;
  /**
   * The agent program (its entry file: `sandbox/agent.ts` under tsx, the bundle in the image),
   * run again with `--tool-server` to serve the file tools as the tools' user. Needed with `runAs`.
   */
  program?: string;
  log?: Log;
  /**
   * How the recipe places mount paths: `image` (absolute paths are real paths; the default) or
   * `local` (every mount path inside the workspace, as the local provider does on the host).
   */
  recipeMode?: 'image' | 'local';
  /** The git forwarder's remote for a repository URL (see git-forwarder.ts). */
  gitRemote?: (url: string) => string | undefined;
  /** Resource limits of the tools (see limits.ts); none when absent. */
  limits?: SandboxLimits;
  /** Variables every tool process gets on top of its own (the egress proxy's, egress-forwarder.ts). */
  toolEnv?: Record<string, string>;
  /** Where `/mnt/session` (uploads and outputs, session-files.ts) really is. @default '/mnt/session' */
  sessionDir?: string;
  /** Where `/mnt/memory` really is. @default '/mnt/memory' */
  memoryDir?: string;
  /**
   * The packages directory (pip's and npm's packages, recipe.ts), which `/packages/snapshot` and
   * `/packages/restore` pack and fill for the environment's package cache. @default - none
   */
  packagesDir?: string;
}

/** Where the agent is in applying its recipe; tools run only once it is `ready`. */
export type SetupState =
  | { state: 'ready'; notes: string[]; packages?: PackagesReport }
  | { state: 'starting' }
  | { state: 'failed'; error: { type: string; message: string } };

export const MIN_CAPABILITY_CHARS = 32;
const MAX_CAPABILITY_CHARS = 1024;
/** How much of a recipe command's output is kept. */
const COMMAND_OUTPUT_CHARS = 20_000;

export class SandboxAgent {
  readonly workspace: string;
  readonly runAs: RunAs | undefined;
  readonly limits: SandboxLimits | undefined;
  private capabilityDigest: Buffer;
  private setup: SetupState = { state: 'ready', notes: [] };
  private readonly results: ResultCache;
  private readonly processes: Processes;
  /** The persistent bash session (its shell starts on the first bash call). */
  private readonly shell: ShellSession;
  /** The file tools' process as the tools' user (with `runAs`; started on the first file-tool call). */
  private readonly tools: ToolServer | undefined;
  private readonly log: Log;
  private readonly recipeMode: 'image' | 'local';
  private readonly gitRemote: AgentOptions['gitRemote'];
  /** The session's file resources and outputs under `/mnt/session`. */
  readonly sessionFiles: SessionFiles;
  /** The session's memory stores under `/mnt/memory` (memory-mounts.ts). */
  readonly memory: MemoryMounts;
  private readonly program: string | undefined;
  readonly packagesDir: string | undefined;
  /** A snapshot or a restore in progress (one at a time). */
  private archiving = false;

  constructor(opts: AgentOptions) {
    this.limits = opts.limits;
    this.recipeMode = opts.recipeMode ?? 'image';
    this.gitRemote = opts.gitRemote;
    this.workspace = path.resolve(opts.workspace);
    this.capabilityDigest = crypto.createHash('sha256').update(opts.capability).digest();
    this.runAs = opts.runAs;
    this.log = opts.log ?? (() => {});
    this.results = new ResultCache(opts.stateDir, this.log);
    this.processes = new Processes(new Confinement(opts.runAs, opts.limits, opts.toolEnv));
    this.shell = new ShellSession(this.processes, this.workspace);
    this.sessionFiles = new SessionFiles(opts.sessionDir ?? SESSION_MOUNT, this.processes.confinement);
    this.memory = new MemoryMounts(opts.memoryDir ?? MEMORY_MOUNT, this.processes.confinement);
    this.program = opts.program;
    this.packagesDir = opts.packagesDir;
    this.tools = opts.program ? new ToolServer(this.processes, opts.program, this.workspace, opts.limits) : undefined;
  }

  /** Replace the capability: from now on only `next` opens this sandbox (used at handoff). */
  setCapability(next: string): void {
    if (typeof next !== 'string' || next.length < MIN_CAPABILITY_CHARS || next.length > MAX_CAPABILITY_CHARS || /\s/.test(next)) {
      throw new HttpError(400, `"capability" must be ${MIN_CAPABILITY_CHARS} to ${MAX_CAPABILITY_CHARS} characters without whitespace`);
    }
    this.capabilityDigest = crypto.createHash('sha256').update(next).digest();
    this.log('info', 'capability replaced');
  }

  /** Constant-time check of an `Authorization` header value. */
  authorized(header: string | undefined): boolean {
    if (typeof header !== 'string') return false;
    const match = /^Bearer\s+(.+)$/i.exec(header.trim());
    if (!match) return false;
    const digest = crypto.createHash('sha256').update(match[1]!).digest();
    return crypto.timingSafeEqual(digest, this.capabilityDigest);
  }

  setupState(): SetupState {
    return this.setup;
  }

  /** Apply a recipe in the background; `/health` reports `starting` until it is done. */
  beginSetup(recipe: WireRecipe, opts: { installPackages: boolean }): Promise<void> {
    this.setup = { state: 'starting' };
    const started = Date.now();
    return applyRecipe(recipe, this.recipeContext(opts.installPackages)).then(
      ({ notes, packages }) => {
        this.setup = packages ? { state: 'ready', notes, packages } : { state: 'ready', notes };
        this.log('info', 'recipe applied', { ms: Date.now() - started, notes, packages });
      },
      (err: unknown) => {
        const error =
          err instanceof RecipeError
            ? { type: err.type, message: err.message }
            : { type: 'invalid_recipe', message: `applying the recipe failed: ${(err as Error)?.message ?? String(err)}` };
        this.setup = { state: 'failed', error };
        this.log('error', 'recipe failed', error);
      },
    );
  }

  /** How the recipe runs commands here: as the tools' user, or as root through the helper. */
  private recipeContext(installPackages: boolean): RecipeContext {
    return {
      workspace: this.workspace,
      mode: this.recipeMode,
      installPackages,
      ...(this.packagesDir ? { packagesDir: this.packagesDir } : {}),
      run: (argv, opts) => this.runCommand(argv, opts),
      gitRemote: this.gitRemote,
      makeWritableDir: async (dir) => {
        if (!this.runAs) {
          await fsp.mkdir(dir, { recursive: true });
          return;
        }
        const r = await this.runCommand(['install', '-d', '-o', String(this.runAs.uid), '-g', String(this.runAs.gid), '-m', '0755', dir], {
          as: 'root',
          timeoutMs: 30_000,
        });
        if (r.code !== 0) throw new RecipeError('repository_clone_error', `cannot create ${dir}: ${r.output.trim() || `exit code ${r.code}`}`);
      },
    };
  }

  /** Runs a command to completion (no shell), collecting bounded combined output. */
  async runCommand(argv: string[], opts: { as: Principal; cwd?: string; env?: Record<string, string>; timeoutMs: number }): Promise<RunResult> {
    if (opts.as === 'root' && !this.processes.confinement.canBecomeRoot()) {
      return { code: null, output: `cannot run ${argv[0]} as root: the agent is not root and has no --setpriv helper` };
    }
    const run = await this.processes.run({
      argv,
      as: opts.as,
      cwd: opts.cwd ?? this.workspace,
      env: { PATH: SANDBOX_PATH, HOME: this.workspace, LANG: 'C.UTF-8', ...opts.env },
      stderr: 'merge',
      outputChars: COMMAND_OUTPUT_CHARS,
      timeoutMs: opts.timeoutMs,
      timeoutNote: `\n[${argv[0]} timed out after ${opts.timeoutMs} ms]`,
    });
    if (!run.started) return { code: null, output: `could not start ${argv[0]}: ${run.error.message}` };
    if (run.error) run.output.push(`could not start ${argv[0]}: ${run.error.message}`);
    return { code: run.code, output: run.output.text(COMMAND_OUTPUT_CHARS) };
  }

  /** Runs a tool, honouring the idempotency key. Never rejects. */
  execute(req: ExecuteRequest): Promise<ToolResult> {
    const key = req.idempotency_key;
    if (key === undefined) return this.runLimited(req);
    return this.results.once(key, req.tool, () => this.runLimited(req));
  }

  /**
   * Streams the workspace as a gzipped tar (workspace-archive.ts) into what `start` returns,
   * packed as the tools' user (in a child process of this program when that is another user). Throws `ArchiveRefused` before `start` is called when the
   * workspace is over `limits`; an error after it means the stream is incomplete.
   */
  async snapshot(limits: ArchiveLimits, start: () => Writable, dir: string = this.workspace): Promise<void> {
    await this.exclusive(async () => {
      if (!this.program || !this.runAs) {
        // The tools run as the agent's own user: packing here reads what a child would (and
        // spares a Node start-up).
        const out = new PassThrough();
        let started: Writable | undefined;
        const packed = packWorkspace(dir, out, limits);
        out.once('readable', () => {
          started = start();
          out.pipe(started);
        });
        const summary = await packed;
        this.log('info', 'workspace packed', { ...summary, skippedExamples: undefined });
        if (!started) start().end();
        return;
      }
      const child = this.archiveChild('pack', limits, dir);
      const errText = collect(child.stderr!);
      let target: Writable | undefined;
      const first = new Promise<void>((resolve) => child.stdout!.once('readable', () => resolve()));
      const exited = exitOf(child);
      await Promise.race([first, exited]);
      if (child.stdout!.readableLength > 0) {
        target = start();
        child.stdout!.pipe(target, { end: false });
      }
      const code = await exited;
      const last = lastJson(await errText);
      if (code !== 0 || !target) {
        target?.destroy(new Error('the snapshot was cut'));
        if (code === 3 && !target) throw new ArchiveRefused(String(last?.error ?? 'the workspace could not be packed'));
        throw new Error(`packing the workspace failed: ${String(last?.error ?? `exit code ${code}`)}`);
      }
      await new Promise<void>((resolve) => {
        if (child.stdout!.readableEnded) resolve();
        else child.stdout!.once('end', () => resolve());
      });
      target.end();
      this.log('info', 'workspace packed', { ...(last?.summary as object) });
    });
  }

  /** Replaces the workspace's contents with the gzipped tar `input`, unpacked as the tools' user. */
  async restore(limits: ArchiveLimits, input: Readable, dir: string = this.workspace): Promise<ArchiveSummary> {
    return this.exclusive(async () => {
      // The tools run as the agent's own user: unpacking here writes what a child would.
      if (!this.program || !this.runAs) return unpackWorkspace(dir, input, limits);
      const child = this.archiveChild('unpack', limits, dir);
      const outText = collect(child.stdout!);
      const errText = collect(child.stderr!);
      child.stdin!.on('error', () => {});
      input.on('error', () => child.stdin!.destroy());
      input.pipe(child.stdin!);
      const code = await exitOf(child);
      input.unpipe(child.stdin!);
      input.resume();
      const result = lastJson(await outText);
      if (code === 0 && result?.summary) {
        const summary = result.summary as ArchiveSummary;
        this.log('info', 'workspace restored', { ...summary, skippedExamples: undefined });
        return summary;
      }
      if (code === 3) throw new ArchiveRefused(String(result?.error ?? 'the snapshot was refused'));
      throw new Error(`unpacking the workspace failed: ${String(result?.error ?? (await errText).trim().slice(-500)) || `exit code ${code}`}`);
    });
  }

  private async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.archiving) throw new HttpError(409, 'a snapshot or restore of this workspace is already in progress');
    this.archiving = true;
    try {
      return await fn();
    } finally {
      this.archiving = false;
    }
  }

  /** The agent program run again as the tools' user, to pack or unpack the workspace. */
  private archiveChild(mode: 'pack' | 'unpack', limits: ArchiveLimits, dir: string): ChildProcess {
    const child = this.processes.confinement.spawn(
      process.execPath,
      [...process.execArgv, this.program!, `--${mode}-workspace`, '--workspace', dir, '--max-bytes', String(limits.maxBytes), '--max-entries', String(limits.maxEntries)],
      { cwd: this.workspace, env: { PATH: SANDBOX_PATH, HOME: this.workspace, LANG: 'C.UTF-8' }, stdio: [mode === 'unpack' ? 'pipe' : 'ignore', 'pipe', 'pipe'], detached: true },
    );
    this.processes.adopt(child);
    const timer = setTimeout(() => this.processes.killGroup(child), ARCHIVE_TIMEOUT_MS);
    child.once('close', () => {
      clearTimeout(timer);
      this.processes.forget(child);
    });
    return child;
  }

  /** Kills every running command's process group and grep worker, the shell and the tools' process. */
  shutdown(): void {
    this.tools?.shutdown();
    this.processes.shutdown();
  }

  /** Runs a tool, then reports an exceeded disk limit as the call's error. */
  private async runLimited(req: ExecuteRequest): Promise<ToolResult> {
    const result = await this.runAsToolsUser(req);
    const over = await this.processes.confinement.overDiskLimit(this.workspace);
    return over ? { output: `${result.output}\n[corral] ${over}`, is_error: true } : result;
  }

  private async runAsToolsUser(req: ExecuteRequest): Promise<ToolResult> {
    if (this.runAs && req.tool !== 'bash') {
      // File tools act with the permissions of the tools' user, not the agent's.
      const started = Date.now();
      const result = await this.runInChild(req);
      this.log('info', 'tool', { tool: req.tool, ms: Date.now() - started, is_error: result.is_error, child: true });
      return result;
    }
    return this.runToolInProcess(req);
  }

  /** Runs a file tool in the tools' process (see tool-server.ts), as the tools' user. */
  private async runInChild(req: ExecuteRequest): Promise<ToolResult> {
    if (!this.tools) return { output: `${req.tool}: internal error: the agent program is not known`, is_error: true };
    return this.tools.run(req, clampTimeout(req.timeout_ms) + 10_000);
  }

  /** Runs a tool in this process, as this process's user. Never rejects. */
  async runToolInProcess(req: ExecuteRequest): Promise<ToolResult> {
    const started = Date.now();
    const result = await runTool(req, { workspace: this.workspace, requestTimeoutMs: req.timeout_ms, processes: this.processes, shell: this.shell });
    this.log('info', 'tool', { tool: req.tool, ms: Date.now() - started, is_error: result.is_error });
    return result;
  }
}

/** A child's exit code (null when killed), once it has closed. */
function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    child.once('error', () => resolve(null));
    child.once('close', (code) => resolve(code));
  });
}

/** A stream's text (its last 64 KiB). */
function collect(stream: Readable): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      text = (text + chunk).slice(-65536);
    });
    stream.on('error', () => resolve(text));
    stream.on('close', () => resolve(text));
  });
}

/** The last line of `text` that is a JSON object. */
function lastJson(text: string): Record<string, unknown> | undefined {
  const lines = text.trim().split('\n').reverse();
  for (const line of lines) {
    try {
      const v = JSON.parse(line) as unknown;
      if (v && typeof v === 'object') return v as Record<string, unknown>;
    } catch {
      // not this one
    }
  }
  return undefined;
}
