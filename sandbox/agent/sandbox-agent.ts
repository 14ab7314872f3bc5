/**
 * The agent itself: who may call it (the capability), whether its recipe is in place, and how a
 * tool call runs: once per idempotency key, as the tools' user, under the limits, with the disk
 * limit checked after every call.
 */
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { RecipeError, applyRecipe, type RecipeContext, type RunResult, type WireRecipe } from '../recipe.js';
import type { SandboxLimits } from '../limits.js';
import { Confinement, SANDBOX_PATH, type Principal, type RunAs } from './confinement.js';
import { ResultCache } from './idempotency.js';
import type { Log } from './log.js';
import { Processes } from './process.js';
import { ShellSession } from './shell.js';
import { ToolServer } from './tool-server.js';
import { HttpError } from './server.js';
import { SESSION_MOUNT, SessionFiles } from './session-files.js';
import { clampTimeout, runTool, type ExecuteRequest, type ToolResult } from './tools/index.js';

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
}

/** Where the agent is in applying its recipe; tools run only once it is `ready`. */
export type SetupState =
  | { state: 'ready'; notes: string[] }
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
      ({ notes }) => {
        this.setup = { state: 'ready', notes };
        this.log('info', 'recipe applied', { ms: Date.now() - started, notes });
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
