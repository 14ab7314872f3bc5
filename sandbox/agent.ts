/**
 * The sandbox agent: a small HTTP server that runs the `agent_toolset_20260401` tools (bash, read,
 * write, edit, glob, grep) in a workspace directory. The same program runs as a bubblewrapped
 * process on a laptop (Unix socket, capability on stdin) and inside a Fargate task (TCP, capability
 * in `CORRAL_SANDBOX_CAPABILITY`, removed from the environment before any child starts).
 *
 *   GET  /health      -> 200 {"ok":true, "notes"?: [...]}     (no auth)
 *                        503 {"ok":false, "state":"starting"} while the recipe is applied,
 *                        503 {"ok":false, "state":"failed", "error":{"type","message"}} if it failed
 *   POST /execute     -> 200 {"output": string, "is_error": boolean}
 *        Authorization: Bearer <capability>
 *        {"tool", "input", "idempotency_key"?, "timeout_ms"?}
 *   POST /capability  -> 200 {"ok":true}: replaces the capability; the old one stops working
 *        Authorization: Bearer <current capability>
 *        {"capability": "<new, 32..1024 characters>"}
 *
 * Usage: agent.ts (--socket PATH | --port N [--host H]) [--workspace DIR] [--state-dir DIR]
 *                 [--run-as-uid N --run-as-gid N [--setpriv PATH]] [--install-packages]
 *                 [--git-channel-stdin] [--local-mounts] [--limits processes=N,memory=B,...]
 *
 * With `--limits` (see limits.ts; in a container `CORRAL_SANDBOX_LIMITS` in its environment does
 * the same), every tool process starts under `prlimit(1)` with those rlimits,
 * the workspace's size is checked after every call, and a call that ran into a limit is a tool
 * error that names it.
 *
 * A git channel (`CORRAL_GIT_CHANNEL`, or the second stdin line with `--git-channel-stdin`)
 * starts the git forwarder (see `startGitForwarder`): the session's repositories are cloned,
 * pulled and pushed through the credential proxy, and no credential enters the sandbox.
 *
 * With `--run-as-uid/--run-as-gid`, every tool runs as that user: bash directly, and the file
 * tools (read, write, edit, glob, grep) in a short-lived child process of this program. The agent
 * itself keeps its own uid, so nothing the model runs can read its memory or `/proc/<agent>/environ`
 * (where a container's initial environment, capability included, stays visible). Switching uid
 * needs CAP_SETUID/CAP_SETGID: an agent running as root has them; an agent running as an ordinary
 * user (the image) goes through `--setpriv`, a setpriv(1) that only the agent's group may execute
 * and that carries those two file capabilities. The same helper runs package installation as
 * root when `--install-packages` is given.
 *
 * In a container the recipe comes in `CORRAL_SANDBOX_RECIPE` (see recipe.ts) and is applied after
 * the agent starts listening; `/health` answers 200 only once it is in place.
 *
 * Node built-ins only: this file must run with nothing but Node (and tsx, or after bundling).
 * It does not confine paths itself; the isolation is bubblewrap or the container (and the uid).
 */
import http from 'node:http';
import https from 'node:https';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import os from 'node:os';
import crypto from 'node:crypto';
import { StringDecoder } from 'node:string_decoder';
import { Worker } from 'node:worker_threads';
import { parseArgs } from 'node:util';
import type { FileHandle } from 'node:fs/promises';
import type { SpawnOptions } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { RECIPE_ENV, RecipeError, applyRecipe, decodeRecipe, type RecipeContext, type RunResult, type WireRecipe } from './recipe.js';
import { SANDBOX_LIMITS_ENV, humanBytes, limitHit, parseSandboxLimits, prlimitArgs, resolveSandboxLimits, type SandboxLimits } from './limits.js';

/** Upper bound on the `output` of any tool, in characters (UTF-16 code units). */
export const MAX_OUTPUT_CHARS = 100_000;
export const BODY_LIMIT_BYTES = 8 * 1024 * 1024;
export const DEFAULT_TOOL_TIMEOUT_MS = 120_000;
export const MAX_TOOL_TIMEOUT_MS = 600_000;
export const GLOB_RESULT_LIMIT = 1000;
export const GREP_MATCH_LIMIT = 1000;
export const CAPABILITY_ENV = 'CORRAL_SANDBOX_CAPABILITY';
export const SANDBOX_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const TOOLS = ['bash', 'read', 'write', 'edit', 'glob', 'grep'] as const;
type Tool = (typeof TOOLS)[number];
/** Directory names never descended into by glob (unless named in the pattern) and grep. */
const SKIP_DIRS = new Set(['.git', 'node_modules']);
const WALK_ENTRY_LIMIT = 200_000;
const GREP_MAX_FILE_BYTES = 20 * 1024 * 1024;
const GREP_MAX_LINE_CHARS = 500;
/** After bash exits, how long to wait for output from background processes still holding the pipe. */
const PIPE_GRACE_MS = 250;
const MEMORY_RESULTS = 256;

export interface ToolResult {
  output: string;
  is_error: boolean;
}

export interface ExecuteRequest {
  tool: Tool;
  input: Record<string, unknown>;
  idempotency_key?: string;
  timeout_ms?: number;
}

/** A tool-level failure: reported to the model as `is_error: true`, never a crash. */
class ToolError extends Error {}

// ---------------------------------------------------------------------------------------------
// Output bounding

/** The marker placed where characters were cut out of an output. */
function truncationMarker(count: number): string {
  return `\n[... ${count} characters truncated ...]\n`;
}

/**
 * Joins `head`, (`dropped` characters not retained), and `tail` into at most `limit` characters,
 * keeping the beginning and the end with a marker saying how much was cut.
 */
function joinBounded(head: string, tail: string, dropped: number, limit: number): string {
  const total = head.length + dropped + tail.length;
  if (dropped === 0 && total <= limit) return head + tail;
  const full = dropped === 0 ? head + tail : undefined;
  let marker = truncationMarker(total);
  for (let i = 0; i < 3; i++) {
    const keep = Math.max(0, limit - marker.length);
    const next = truncationMarker(total - keep);
    if (next.length === marker.length) {
      marker = next;
      break;
    }
    marker = next;
  }
  const keep = Math.max(0, limit - marker.length);
  const keepHead = Math.ceil(keep / 2);
  const keepTail = keep - keepHead;
  if (full !== undefined) {
    return full.slice(0, keepHead) + marker + (keepTail > 0 ? full.slice(full.length - keepTail) : '');
  }
  // Streaming case: head and tail each hold at least MAX_OUTPUT_CHARS, so both slices are full.
  return head.slice(0, keepHead) + marker + (keepTail > 0 ? tail.slice(Math.max(0, tail.length - keepTail)) : '');
}

/** Truncates `text` to at most `limit` characters, keeping head and tail. */
export function truncateOutput(text: string, limit = MAX_OUTPUT_CHARS): string {
  return text.length <= limit ? text : joinBounded(text, '', 0, limit);
}

/**
 * Accumulates a stream of text in bounded memory: the first `cap` characters and a ring of
 * (at least) the last `cap` characters; everything in between is only counted.
 */
export class BoundedText {
  private head = '';
  private tail: string[] = [];
  private tailLength = 0;
  total = 0;

  constructor(private readonly cap = MAX_OUTPUT_CHARS) {}

  push(chunk: string): void {
    if (!chunk) return;
    this.total += chunk.length;
    if (this.head.length < this.cap) {
      const take = this.cap - this.head.length;
      this.head += chunk.slice(0, take);
      chunk = chunk.slice(take);
      if (!chunk) return;
    }
    this.tail.push(chunk);
    this.tailLength += chunk.length;
    while (this.tail.length > 1 && this.tailLength - this.tail[0]!.length >= this.cap) {
      this.tailLength -= this.tail.shift()!.length;
    }
    if (this.tail.length === 1 && this.tailLength > 2 * this.cap) {
      // One huge chunk: keep only its end.
      const only = this.tail[0]!.slice(-this.cap);
      this.tail = [only];
      this.tailLength = only.length;
    }
  }

  /** The accumulated text, bounded to `limit` characters. */
  text(limit = MAX_OUTPUT_CHARS): string {
    const tail = this.tail.join('');
    const dropped = this.total - this.head.length - tail.length;
    return joinBounded(this.head, tail, dropped, limit);
  }
}

/** Appends a status line (e.g. `[exit code 2]`) to bounded output without exceeding the limit. */
function withStatusLine(buffer: BoundedText, status: string): string {
  const body = buffer.text(MAX_OUTPUT_CHARS - status.length - 1);
  if (body === '') return status;
  return body.endsWith('\n') ? body + status : `${body}\n${status}`;
}

// ---------------------------------------------------------------------------------------------
// Glob matching (no dependency): **, *, ?, [...], {a,b}

function escapeRegExp(ch: string): string {
  return /[\\^$.*+?()[\]{}|/]/.test(ch) ? `\\${ch}` : ch;
}

/**
 * Converts a doublestar glob to an anchored regular expression over `/`-separated relative paths.
 * `**` as a whole segment matches zero or more segments; `*` and `?` never match `/`.
 */
export function globToRegExp(pattern: string): RegExp {
  let re = '';
  let braceDepth = 0;
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]!;
    if (ch === '\\' && i + 1 < pattern.length) {
      re += escapeRegExp(pattern[++i]!);
    } else if (ch === '*') {
      if (pattern[i + 1] === '*') {
        const atStart = i === 0 || pattern[i - 1] === '/' || pattern[i - 1] === '{' || pattern[i - 1] === ',';
        let j = i;
        while (pattern[j] === '*') j++;
        const next = pattern[j];
        if (atStart && next === '/') {
          re += '(?:.*/)?';
          i = j; // skip the slash too
          continue;
        }
        if (atStart && (next === undefined || next === '}' || next === ',')) {
          re += '.*';
          i = j - 1;
          continue;
        }
        re += '[^/]*';
        i = j - 1;
      } else {
        re += '[^/]*';
      }
    } else if (ch === '?') {
      re += '[^/]';
    } else if (ch === '[') {
      const close = pattern.indexOf(']', i + 2);
      if (close === -1) {
        re += '\\[';
        continue;
      }
      let body = pattern.slice(i + 1, close);
      let negate = false;
      if (body.startsWith('!') || body.startsWith('^')) {
        negate = true;
        body = body.slice(1);
      }
      body = body.replace(/\\/g, '\\\\').replace(/\]/g, '\\]');
      re += negate ? `(?!/)[^${body}]` : `[${body}]`;
      i = close;
    } else if (ch === '{') {
      // Only treat as a group if it closes.
      let depth = 0;
      let closes = false;
      for (let j = i; j < pattern.length; j++) {
        if (pattern[j] === '\\') j++;
        else if (pattern[j] === '{') depth++;
        else if (pattern[j] === '}' && --depth === 0) {
          closes = true;
          break;
        }
      }
      if (closes) {
        braceDepth++;
        re += '(?:';
      } else {
        re += '\\{';
      }
    } else if (ch === '}' && braceDepth > 0) {
      braceDepth--;
      re += ')';
    } else if (ch === ',' && braceDepth > 0) {
      re += '|';
    } else {
      re += escapeRegExp(ch);
    }
  }
  return new RegExp(`^${re}$`);
}

function hasGlobMeta(segment: string): boolean {
  return /[*?[{\\]/.test(segment);
}

// ---------------------------------------------------------------------------------------------
// Input helpers

function str(input: Record<string, unknown>, key: string, opts: { allowEmpty?: boolean } = {}): string {
  const value = input[key];
  if (typeof value !== 'string') throw new ToolError(`"${key}" must be a string`);
  if (!opts.allowEmpty && value === '') throw new ToolError(`"${key}" must not be empty`);
  if (value.includes('\0')) throw new ToolError(`"${key}" must not contain NUL characters`);
  return value;
}

function optStr(input: Record<string, unknown>, key: string): string | undefined {
  const value = input[key];
  if (value === undefined || value === null || value === '') return undefined;
  return str(input, key);
}

function optBool(input: Record<string, unknown>, key: string): boolean {
  const value = input[key];
  if (value === undefined || value === null) return false;
  if (typeof value !== 'boolean') throw new ToolError(`"${key}" must be a boolean`);
  return value;
}

function errnoMessage(err: unknown, displayPath: string): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return `${displayPath}: no such file or directory`;
    case 'EACCES':
    case 'EPERM':
      return `${displayPath}: permission denied`;
    case 'EISDIR':
      return `${displayPath}: is a directory`;
    case 'ENOTDIR':
      return `${displayPath}: a path component is not a directory`;
    case 'EROFS':
      return `${displayPath}: read-only file system`;
    case 'ENOSPC':
      return `${displayPath}: no space left on device`;
    default:
      return `${displayPath}: ${err instanceof Error ? err.message : String(err)}`;
  }
}

function clampTimeout(...candidates: unknown[]): number {
  let chosen = DEFAULT_TOOL_TIMEOUT_MS;
  let seen = false;
  for (const c of candidates) {
    if (typeof c === 'number' && Number.isFinite(c) && c > 0) {
      chosen = seen ? Math.min(chosen, c) : c;
      seen = true;
    }
  }
  return Math.max(1, Math.min(Math.floor(chosen), MAX_TOOL_TIMEOUT_MS));
}

// ---------------------------------------------------------------------------------------------
// The grep worker (plain JS, evaluated in a worker thread so a pathological regex can be stopped)

const GREP_WORKER_SOURCE = String.raw`
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const path = require('node:path');
const { root, rootIsFile, display, pattern, flags, globSource, globOnBase, maxMatches, maxFileBytes, maxLineChars, skipDirs, entryLimit } = workerData;
const re = new RegExp(pattern, flags);
const globRe = globSource ? new RegExp(globSource) : null;
const skip = new Set(skipDirs);
const lines = [];
let capped = false;
let visited = 0;
let entryCapped = false;
function scanFile(abs, shown, rel) {
  if (globRe && !globRe.test(globOnBase ? path.basename(rel) : rel)) return;
  let st;
  try { st = fs.statSync(abs); } catch { return; }
  if (!st.isFile() || st.size > maxFileBytes) return;
  let buf;
  try { buf = fs.readFileSync(abs); } catch { return; }
  if (buf.subarray(0, 8000).includes(0)) return;
  const text = buf.toString('utf8');
  let start = 0;
  let n = 0;
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end === -1) end = text.length;
    n++;
    let line = text.slice(start, end);
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (!(end === text.length && line === '' && n > 1)) {
      re.lastIndex = 0;
      if (re.test(line)) {
        if (lines.length >= maxMatches) { capped = true; return; }
        lines.push(shown + ':' + n + ':' + (line.length > maxLineChars ? line.slice(0, maxLineChars) + ' [...]' : line));
      }
    }
    start = end + 1;
  }
}
function walk(dir, rel) {
  if (capped || entryCapped) return;
  let entries;
  try { entries = fs.readdirSync(dir, { withFileTypes: true }); } catch { return; }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (capped || entryCapped) return;
    if (++visited > entryLimit) { entryCapped = true; return; }
    const abs = path.join(dir, e.name);
    const r = rel ? rel + '/' + e.name : e.name;
    if (e.isDirectory()) {
      if (!skip.has(e.name)) walk(abs, r);
    } else if (e.isFile() || e.isSymbolicLink()) {
      scanFile(abs, r, r);
    }
  }
}
if (rootIsFile) scanFile(root, display, path.basename(root));
else walk(root, '');
parentPort.postMessage({ lines, capped, entryCapped });
`;

// ---------------------------------------------------------------------------------------------
// The agent

/** The user tools run as (see the header). */
export interface RunAs {
  uid: number;
  gid: number;
  /** A setpriv(1) the agent may use to switch uid when it is not root itself. */
  setpriv?: string;
}

export interface AgentOptions {
  workspace: string;
  capability: string;
  /** Directory for persisted idempotency records; null keeps them in memory only. */
  stateDir: string | null;
  /** Run every tool as this user instead of the agent's own. */
  runAs?: RunAs;
  log?: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /**
   * How the recipe places mount paths: `image` (absolute paths are real paths; the default) or
   * `local` (every mount path inside the workspace, as the local provider does on the host).
   */
  recipeMode?: 'image' | 'local';
  /** The git forwarder's remote for a repository URL (see `startGitForwarder`). */
  gitRemote?: (url: string) => string | undefined;
  /** Resource limits of the tools (see limits.ts); none when absent. */
  limits?: SandboxLimits;
}

/** Where the agent is in applying its recipe; tools run only once it is `ready`. */
export type SetupState =
  | { state: 'ready'; notes: string[] }
  | { state: 'starting' }
  | { state: 'failed'; error: { type: string; message: string } };

export const MIN_CAPABILITY_CHARS = 32;
const MAX_CAPABILITY_CHARS = 1024;
/** This file, for the file-tool child process (the .ts under tsx, the bundle in the image). */
const AGENT_FILE = fileURLToPath(import.meta.url);
/** Largest answer read from a file-tool child process. */
const CHILD_OUTPUT_LIMIT = 4 * 1024 * 1024;

export class SandboxAgent {
  readonly workspace: string;
  readonly runAs: RunAs | undefined;
  private capabilityDigest: Buffer;
  private setup: SetupState = { state: 'ready', notes: [] };
  private readonly stateDir: string | null;
  private readonly inflight = new Map<string, Promise<ToolResult>>();
  private readonly recent = new Map<string, ToolResult>();
  private readonly running = new Set<ChildProcess>();
  private readonly workers = new Set<Worker>();
  private readonly log: NonNullable<AgentOptions['log']>;
  private readonly recipeMode: 'image' | 'local';
  private readonly gitRemote: AgentOptions['gitRemote'];
  readonly limits: SandboxLimits | undefined;

  constructor(opts: AgentOptions) {
    this.limits = opts.limits;
    this.recipeMode = opts.recipeMode ?? 'image';
    this.gitRemote = opts.gitRemote;
    this.workspace = path.resolve(opts.workspace);
    this.capabilityDigest = crypto.createHash('sha256').update(opts.capability).digest();
    this.stateDir = opts.stateDir;
    this.runAs = opts.runAs;
    this.log = opts.log ?? (() => {});
  }

  /** Replace the capability: from now on only `next` opens this sandbox (used at handoff). */
  setCapability(next: string): void {
    if (typeof next !== 'string' || next.length < MIN_CAPABILITY_CHARS || next.length > MAX_CAPABILITY_CHARS || /\s/.test(next)) {
      throw new HttpError(400, `"capability" must be ${MIN_CAPABILITY_CHARS} to ${MAX_CAPABILITY_CHARS} characters without whitespace`);
    }
    this.capabilityDigest = crypto.createHash('sha256').update(next).digest();
    this.log('info', 'capability replaced');
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

  /** Whether this process can start commands as root (for package installation). */
  private canBecomeRoot(): boolean {
    return Boolean(this.runAs?.setpriv) || process.getuid?.() === 0;
  }

  /**
   * Spawns a command as the tools' user (or as root, for the recipe's package installation).
   * Without `runAs` it runs as the agent's own user.
   */
  spawnAs(command: string, args: string[], options: SpawnOptions, as: 'sandbox' | 'root' = 'sandbox'): ChildProcess {
    const ra = this.runAs;
    if (as === 'sandbox' && this.limits) {
      // The limits go on first, so everything the command starts inherits them.
      args = [...prlimitArgs(this.limits), '--', command, ...args];
      command = 'prlimit';
    }
    if (as === 'root') {
      if (ra?.setpriv && process.getuid?.() !== 0) return spawn(ra.setpriv, ['--reuid=0', '--regid=0', '--clear-groups', '--', command, ...args], options);
      return spawn(command, args, options);
    }
    if (!ra) return spawn(command, args, options);
    if (ra.setpriv) {
      return spawn(
        ra.setpriv,
        [`--reuid=${ra.uid}`, `--regid=${ra.gid}`, '--clear-groups', '--inh-caps=-all', '--no-new-privs', '--', command, ...args],
        options,
      );
    }
    return spawn(command, args, { ...options, uid: ra.uid, gid: ra.gid });
  }

  /** Runs a command to completion (no shell), collecting bounded combined output. */
  runCommand(argv: string[], opts: { as: 'sandbox' | 'root'; cwd?: string; env?: Record<string, string>; timeoutMs: number }): Promise<RunResult> {
    if (opts.as === 'root' && !this.canBecomeRoot()) {
      return Promise.resolve({ code: null, output: `cannot run ${argv[0]} as root: the agent is not root and has no --setpriv helper` });
    }
    return new Promise<RunResult>((resolve) => {
      const out = new BoundedText(20_000);
      const decoder = new StringDecoder('utf8');
      let child: ChildProcess;
      try {
        child = this.spawnAs(argv[0]!, argv.slice(1), {
          cwd: opts.cwd ?? this.workspace,
          env: { PATH: SANDBOX_PATH, HOME: this.workspace, LANG: 'C.UTF-8', ...opts.env },
          stdio: ['ignore', 'pipe', 'pipe'],
          detached: true,
        }, opts.as);
      } catch (err) {
        resolve({ code: null, output: `could not start ${argv[0]}: ${(err as Error).message}` });
        return;
      }
      this.running.add(child);
      const timer = setTimeout(() => {
        out.push(`\n[${argv[0]} timed out after ${opts.timeoutMs} ms]`);
        this.killGroup(child);
      }, opts.timeoutMs);
      child.stdout!.on('data', (c: Buffer) => out.push(decoder.write(c)));
      child.stderr!.on('data', (c: Buffer) => out.push(decoder.write(c)));
      child.on('error', (err) => out.push(`could not start ${argv[0]}: ${err.message}`));
      child.on('close', (code) => {
        clearTimeout(timer);
        this.running.delete(child);
        out.push(decoder.end());
        resolve({ code, output: out.text(20_000) });
      });
    });
  }

  /** Kills a command's process group, also when it runs as another user. */
  killGroup(child: ChildProcess): void {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, 'SIGKILL');
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return;
    }
    if (this.runAs) {
      // Not allowed to signal the tools' user: let that user do it.
      try {
        const killer = this.spawnAs('/bin/bash', ['-c', 'kill -s KILL -- "-$1" 2>/dev/null || kill -s KILL -- "$1"', 'bash', String(child.pid)], {
          stdio: 'ignore',
          env: { PATH: SANDBOX_PATH },
        });
        killer.on('error', () => {});
        return;
      } catch {
        // fall through
      }
    }
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }

  /** Constant-time check of an `Authorization` header value. */
  authorized(header: string | undefined): boolean {
    if (typeof header !== 'string') return false;
    const match = /^Bearer\s+(.+)$/i.exec(header.trim());
    if (!match) return false;
    const digest = crypto.createHash('sha256').update(match[1]!).digest();
    return crypto.timingSafeEqual(digest, this.capabilityDigest);
  }

  /** Runs a tool, honouring the idempotency key. Never rejects. */
  async execute(req: ExecuteRequest): Promise<ToolResult> {
    const key = req.idempotency_key;
    if (key === undefined) return this.runTool(req);
    const remembered = this.recent.get(key);
    if (remembered) return remembered;
    const pending = this.inflight.get(key);
    if (pending) return pending;
    const promise = (async () => {
      const stored = await this.loadResult(key);
      if (stored) return stored;
      const result = await this.runTool(req);
      await this.saveResult(key, req.tool, result);
      return result;
    })();
    this.inflight.set(key, promise);
    try {
      const result = await promise;
      this.recent.set(key, result);
      if (this.recent.size > MEMORY_RESULTS) this.recent.delete(this.recent.keys().next().value!);
      return result;
    } finally {
      this.inflight.delete(key);
    }
  }

  /** Kills every running command's process group and grep worker. */
  shutdown(): void {
    for (const child of this.running) this.killGroup(child);
    for (const worker of this.workers) void worker.terminate();
  }

  private recordPath(key: string): string | null {
    if (!this.stateDir) return null;
    const name = crypto.createHash('sha256').update(key).digest('hex');
    return path.join(this.stateDir, 'idempotency', `${name}.json`);
  }

  private async loadResult(key: string): Promise<ToolResult | undefined> {
    const file = this.recordPath(key);
    if (!file) return undefined;
    try {
      const record = JSON.parse(await fsp.readFile(file, 'utf8')) as { key?: unknown; result?: ToolResult };
      const r = record.result;
      if (record.key === key && r && typeof r.output === 'string' && typeof r.is_error === 'boolean') {
        return { output: r.output, is_error: r.is_error };
      }
    } catch {
      // missing or unreadable: not remembered
    }
    return undefined;
  }

  private async saveResult(key: string, tool: string, result: ToolResult): Promise<void> {
    const file = this.recordPath(key);
    if (!file) return;
    try {
      await fsp.mkdir(path.dirname(file), { recursive: true });
      const tmp = `${file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
      await fsp.writeFile(tmp, JSON.stringify({ key, tool, at: new Date().toISOString(), result }));
      await fsp.rename(tmp, file);
    } catch (err) {
      this.log('warn', 'could not persist idempotency record', { error: (err as Error).message });
    }
  }

  private async runTool(req: ExecuteRequest): Promise<ToolResult> {
    const result = await this.runToolAs(req);
    const over = await this.overDiskLimit();
    return over ? { output: `${result.output}\n[corral] ${over}`, is_error: true } : result;
  }

  /**
   * Whether the workspace is over its disk limit: a walk that never follows links (the agent
   * may read every directory, so nothing is hidden from it by permissions), stopped as soon as
   * the limit is passed.
   */
  async overDiskLimit(): Promise<string | null> {
    const limit = this.limits?.disk;
    if (!limit) return null;
    let used = 0;
    const stack = [this.workspace];
    while (stack.length && used <= limit) {
      const dir = stack.pop()!;
      let entries: fs.Dirent[];
      try {
        entries = await fsp.readdir(dir, { withFileTypes: true });
      } catch {
        continue;
      }
      for (const e of entries) {
        const p = path.join(dir, e.name);
        try {
          const st = await fsp.lstat(p);
          used += st.blocks * 512;
          if (st.isDirectory()) stack.push(p);
        } catch {
          // gone meanwhile
        }
      }
    }
    return used > limit ? `the sandbox's disk limit (${humanBytes(limit)} in the workspace) is exceeded: remove files before going on` : null;
  }

  private async runToolAs(req: ExecuteRequest): Promise<ToolResult> {
    if (this.runAs && req.tool !== 'bash') {
      // File tools act with the permissions of the tools' user, not the agent's.
      const started = Date.now();
      const result = await this.runInChild(req);
      this.log('info', 'tool', { tool: req.tool, ms: Date.now() - started, is_error: result.is_error, child: true });
      return result;
    }
    return this.runToolInProcess(req);
  }

  /** Runs a file tool in a child process of this program as the tools' user (see the header). */
  private runInChild(req: ExecuteRequest): Promise<ToolResult> {
    const limitMs = clampTimeout(req.timeout_ms) + 10_000;
    return new Promise<ToolResult>((resolve) => {
      let child: ChildProcess;
      try {
        child = this.spawnAs(process.execPath, [...process.execArgv, AGENT_FILE, '--tool-child', '--workspace', this.workspace], {
          cwd: this.workspace,
          env: { PATH: SANDBOX_PATH, HOME: this.workspace, LANG: 'C.UTF-8' },
          stdio: ['pipe', 'pipe', 'pipe'],
          detached: true,
        });
      } catch (err) {
        resolve({ output: `${req.tool}: could not start the tool process: ${(err as Error).message}`, is_error: true });
        return;
      }
      this.running.add(child);
      const chunks: Buffer[] = [];
      let size = 0;
      let stderr = '';
      let timedOut = false;
      let startError: Error | undefined;
      const timer = setTimeout(() => {
        timedOut = true;
        this.killGroup(child);
      }, limitMs);
      child.stdout!.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= CHILD_OUTPUT_LIMIT) chunks.push(c);
        else this.killGroup(child);
      });
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (c: string) => {
        stderr = (stderr + c).slice(-2000);
      });
      child.stdin!.on('error', () => {});
      child.on('error', (err) => {
        startError = err;
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        this.running.delete(child);
        if (timedOut) {
          resolve({ output: `${req.tool}: timed out after ${limitMs} ms`, is_error: true });
          return;
        }
        try {
          const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Partial<ToolResult>;
          if (typeof parsed.output === 'string' && typeof parsed.is_error === 'boolean') {
            resolve({ output: truncateOutput(parsed.output), is_error: parsed.is_error });
            return;
          }
        } catch {
          // reported below
        }
        const why = startError ? startError.message : signal ? `killed by signal ${signal}` : `exit code ${code}`;
        const hit = this.limits ? limitHit(this.limits, { code, signal }, `${stderr}\n${startError?.message ?? ''}`) : null;
        if (hit) {
          resolve({ output: `${req.tool}: ${hit} (${why})`, is_error: true });
          return;
        }
        resolve({ output: `${req.tool}: internal error: the tool process failed (${why})${stderr.trim() ? `: ${stderr.trim()}` : ''}`, is_error: true });
      });
      child.stdin!.end(JSON.stringify({ tool: req.tool, input: req.input, timeout_ms: req.timeout_ms }));
    });
  }

  /** Runs a tool in this process, as this process's user. Never rejects. */
  async runToolInProcess(req: ExecuteRequest): Promise<ToolResult> {
    const started = Date.now();
    let result: ToolResult;
    try {
      switch (req.tool) {
        case 'bash':
          result = await this.bash(req.input, req.timeout_ms);
          break;
        case 'read':
          result = await this.read(req.input);
          break;
        case 'write':
          result = await this.write(req.input);
          break;
        case 'edit':
          result = await this.edit(req.input);
          break;
        case 'glob':
          result = await this.glob(req.input, req.timeout_ms);
          break;
        case 'grep':
          result = await this.grep(req.input, req.timeout_ms);
          break;
      }
    } catch (err) {
      const message = err instanceof ToolError ? err.message : `internal error: ${(err as Error)?.message ?? String(err)}`;
      result = { output: `${req.tool}: ${message}`, is_error: true };
    }
    result = { output: truncateOutput(result.output), is_error: result.is_error };
    this.log('info', 'tool', { tool: req.tool, ms: Date.now() - started, is_error: result.is_error });
    return result;
  }

  private resolve(p: string): string {
    return path.resolve(this.workspace, p);
  }

  // -- bash -------------------------------------------------------------------------------------

  private bash(input: Record<string, unknown>, requestTimeout: number | undefined): Promise<ToolResult> {
    const restart = optBool(input, 'restart');
    const command = input.command;
    if (restart && (command === undefined || command === null || command === '')) {
      return Promise.resolve({
        output: 'bash restarted. (Each command runs in a fresh shell; no shell state carries over between calls.)',
        is_error: false,
      });
    }
    const cmd = str(input, 'command');
    const timeoutMs = clampTimeout(input.timeout_ms, requestTimeout);
    return new Promise<ToolResult>((resolve) => {
      const out = new BoundedText();
      const decoder = new StringDecoder('utf8');
      let child: ChildProcess;
      try {
        // The outer bash merges stderr into stdout (one pipe keeps the order), then becomes the
        // user's shell. detached => setsid, so the command has its own process group to kill.
        child = this.spawnAs('/bin/bash', ['-c', 'exec 2>&1; exec -a bash /bin/bash -c "$1"', 'bash', cmd], {
          cwd: this.workspace,
          env: { PATH: SANDBOX_PATH, HOME: this.workspace, LANG: 'C.UTF-8', TERM: 'dumb' },
          stdio: ['ignore', 'pipe', 'ignore'],
          detached: true,
        });
      } catch (err) {
        resolve({ output: `bash: could not start: ${(err as Error).message}`, is_error: true });
        return;
      }
      this.running.add(child);
      let timedOut = false;
      let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
      let spawnError: Error | undefined;
      let done = false;
      let grace: NodeJS.Timeout | undefined;
      const timer = setTimeout(() => {
        timedOut = true;
        this.killGroup(child);
      }, timeoutMs);

      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (grace) clearTimeout(grace);
        this.running.delete(child);
        out.push(decoder.end());
        if (!child.stdout?.destroyed) child.stdout?.destroy();
        if (spawnError) {
          resolve({ output: withStatusLine(out, `[bash could not start: ${spawnError.message}]`), is_error: true });
        } else if (timedOut) {
          resolve({
            output: withStatusLine(out, `[command timed out after ${timeoutMs} ms; its process group was killed]`),
            is_error: true,
          });
        } else if (exit && exit.code !== 0 && this.limits && limitHit(this.limits, exit, out.text())) {
          const status = exit.code !== null ? `exit code ${exit.code}` : `killed by signal ${exit.signal ?? 'unknown'}`;
          resolve({ output: withStatusLine(out, `[${status}; ${limitHit(this.limits, exit, out.text())}]`), is_error: true });
        } else if (exit && exit.code === 0) {
          resolve({ output: out.text(), is_error: false });
        } else if (exit && exit.code !== null) {
          resolve({ output: withStatusLine(out, `[exit code ${exit.code}]`), is_error: true });
        } else {
          resolve({ output: withStatusLine(out, `[killed by signal ${exit?.signal ?? 'unknown'}]`), is_error: true });
        }
      };

      child.stdout!.on('data', (chunk: Buffer) => out.push(decoder.write(chunk)));
      child.stdout!.on('error', () => {});
      child.on('error', (err) => {
        spawnError = err;
        finish();
      });
      child.on('exit', (code, signal) => {
        exit = { code, signal };
        // Background processes may still hold the pipe open; don't wait for them forever.
        grace = setTimeout(finish, PIPE_GRACE_MS);
      });
      child.on('close', (code, signal) => {
        exit ??= { code, signal };
        finish();
      });
    });
  }

  // -- read -------------------------------------------------------------------------------------

  private async read(input: Record<string, unknown>): Promise<ToolResult> {
    const display = str(input, 'file_path');
    const abs = this.resolve(display);
    let start = 1;
    let end = Infinity;
    const range = input.view_range;
    if (range !== undefined && range !== null) {
      if (!Array.isArray(range) || range.length < 1 || range.length > 2 || !range.every((n) => Number.isInteger(n))) {
        throw new ToolError('"view_range" must be [start_line, end_line] with integer line numbers');
      }
      start = range[0] as number;
      const last = range.length === 2 ? (range[1] as number) : -1;
      if (start < 1) throw new ToolError('"view_range" start_line must be >= 1');
      end = last <= 0 ? Infinity : last;
      if (end < start) throw new ToolError('"view_range" end_line must be >= start_line (or -1 for end of file)');
    }
    let handle: FileHandle;
    try {
      const st = await fsp.stat(abs);
      if (st.isDirectory()) throw new ToolError(`${display}: is a directory (list it with glob or bash)`);
      if (!st.isFile()) throw new ToolError(`${display}: not a regular file`);
      handle = await fsp.open(abs, 'r');
    } catch (err) {
      if (err instanceof ToolError) throw err;
      throw new ToolError(errnoMessage(err, display));
    }
    const out = new BoundedText();
    const decoder = new StringDecoder('utf8');
    const chunk = Buffer.allocUnsafe(64 * 1024);
    let partial = '';
    let partialDropped = 0;
    let lineNo = 0;
    let finished = false;
    const emit = (line: string, dropped: number) => {
      lineNo++;
      if (lineNo < start || lineNo > end) return;
      if (line.endsWith('\r')) line = line.slice(0, -1);
      const suffix = dropped > 0 ? ` [... ${dropped} characters of this line truncated ...]` : '';
      out.push(`${String(lineNo).padStart(6)}\t${line}${suffix}\n`);
    };
    try {
      for (;;) {
        const { bytesRead } = await handle.read(chunk, 0, chunk.length, null);
        const text = bytesRead === 0 ? decoder.end() : decoder.write(chunk.subarray(0, bytesRead));
        let from = 0;
        for (;;) {
          const nl = text.indexOf('\n', from);
          if (nl === -1) break;
          emit(partial + text.slice(from, nl), partialDropped);
          partial = '';
          partialDropped = 0;
          from = nl + 1;
          if (lineNo >= end) {
            finished = true;
            break;
          }
        }
        if (finished) break;
        partial += text.slice(from);
        if (partial.length > 2 * MAX_OUTPUT_CHARS) {
          partialDropped += partial.length - 2 * MAX_OUTPUT_CHARS;
          partial = partial.slice(0, 2 * MAX_OUTPUT_CHARS);
        }
        if (bytesRead === 0) {
          if (partial !== '' || partialDropped > 0) emit(partial, partialDropped);
          break;
        }
      }
    } catch (err) {
      throw new ToolError(errnoMessage(err, display));
    } finally {
      await handle.close().catch(() => {});
    }
    if (lineNo === 0) return { output: '(file is empty)', is_error: false };
    if (start > lineNo) {
      throw new ToolError(`view_range start_line ${start} is beyond the end of ${display} (${lineNo} lines)`);
    }
    const text = out.text();
    return { output: text.endsWith('\n') ? text.slice(0, -1) : text, is_error: false };
  }

  // -- write / edit -----------------------------------------------------------------------------

  private async write(input: Record<string, unknown>): Promise<ToolResult> {
    const display = str(input, 'file_path');
    const content = str(input, 'content', { allowEmpty: true });
    const abs = this.resolve(display);
    try {
      await fsp.mkdir(path.dirname(abs), { recursive: true });
      await fsp.writeFile(abs, content);
    } catch (err) {
      throw new ToolError(errnoMessage(err, display));
    }
    return { output: `Wrote ${Buffer.byteLength(content)} bytes to ${display}`, is_error: false };
  }

  private async edit(input: Record<string, unknown>): Promise<ToolResult> {
    const display = str(input, 'file_path');
    const oldString = str(input, 'old_string');
    const newString = str(input, 'new_string', { allowEmpty: true });
    const replaceAll = optBool(input, 'replace_all');
    if (oldString === newString) throw new ToolError('old_string and new_string are identical; nothing to change');
    const abs = this.resolve(display);
    let content: string;
    try {
      const st = await fsp.stat(abs);
      if (st.isDirectory()) throw new ToolError(`${display}: is a directory`);
      content = await fsp.readFile(abs, 'utf8');
    } catch (err) {
      if (err instanceof ToolError) throw err;
      throw new ToolError(errnoMessage(err, display));
    }
    let count = 0;
    for (let i = content.indexOf(oldString); i !== -1; i = content.indexOf(oldString, i + oldString.length)) count++;
    if (count === 0) throw new ToolError(`old_string not found in ${display}`);
    if (count > 1 && !replaceAll) {
      throw new ToolError(
        `old_string occurs ${count} times in ${display}; add surrounding context to make it unique, or set replace_all`,
      );
    }
    let updated: string;
    if (replaceAll) {
      updated = content.split(oldString).join(newString);
    } else {
      const at = content.indexOf(oldString);
      updated = content.slice(0, at) + newString + content.slice(at + oldString.length);
    }
    try {
      await fsp.writeFile(abs, updated);
    } catch (err) {
      throw new ToolError(errnoMessage(err, display));
    }
    return { output: `Replaced ${count} occurrence${count === 1 ? '' : 's'} in ${display}`, is_error: false };
  }

  // -- glob -------------------------------------------------------------------------------------

  private async glob(input: Record<string, unknown>, requestTimeout: number | undefined): Promise<ToolResult> {
    let pattern = str(input, 'pattern');
    const searchPath = optStr(input, 'path');
    let root = this.resolve(searchPath ?? '.');
    let absolute = false;
    if (pattern.startsWith('/')) {
      absolute = true;
      root = '/';
      pattern = pattern.replace(/^\/+/, '');
    }
    pattern = pattern.replace(/^(\.\/)+/, '');
    if (pattern === '') throw new ToolError('"pattern" must name something below the search root');
    const matcher = globToRegExp(pattern);
    const segments = pattern.split('/');
    const base: string[] = [];
    while (segments.length > 1 && !hasGlobMeta(segments[0]!)) base.push(segments.shift()!);
    const maxDepth = /\*\*|\{/.test(pattern) ? Infinity : base.length + segments.length;
    const allowSkipped = new Set([...SKIP_DIRS].filter((d) => pattern.includes(d)));
    try {
      const st = await fsp.stat(root);
      if (!st.isDirectory()) throw new ToolError(`${searchPath ?? root}: not a directory`);
    } catch (err) {
      if (err instanceof ToolError) throw err;
      throw new ToolError(errnoMessage(err, searchPath ?? root));
    }
    const deadline = Date.now() + clampTimeout(requestTimeout);
    const matches: string[] = [];
    let visited = 0;
    let stopped: string | undefined;
    const walk = async (dir: string, rel: string, depth: number): Promise<void> => {
      if (stopped) return;
      let entries: fs.Dirent[];
      try {
        entries = await fsp.readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        if (stopped) return;
        if (++visited > WALK_ENTRY_LIMIT) {
          stopped = `stopped after visiting ${WALK_ENTRY_LIMIT} entries`;
          return;
        }
        if (Date.now() > deadline) {
          stopped = 'stopped at the time limit';
          return;
        }
        const r = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) {
          if (SKIP_DIRS.has(e.name) && !allowSkipped.has(e.name)) continue;
          if (depth + 1 < maxDepth) await walk(path.join(dir, e.name), r, depth + 1);
        } else if (matcher.test(r)) {
          matches.push(r);
        }
      }
    };
    const baseRel = base.join('/');
    await walk(path.join(root, ...base), baseRel, base.length);
    const display = (m: string) => (absolute ? `/${m}` : m);
    matches.sort();
    if (matches.length === 0) {
      return { output: `No files matched ${absolute ? '/' : ''}${pattern}${stopped ? ` (search ${stopped})` : ''}`, is_error: false };
    }
    const lines = matches.slice(0, GLOB_RESULT_LIMIT).map(display);
    if (matches.length > GLOB_RESULT_LIMIT) {
      lines.push(`[... showing the first ${GLOB_RESULT_LIMIT} of ${matches.length} matching paths; narrow the pattern ...]`);
    }
    if (stopped) lines.push(`[search incomplete: ${stopped}]`);
    return { output: lines.join('\n'), is_error: false };
  }

  // -- grep -------------------------------------------------------------------------------------

  private async grep(input: Record<string, unknown>, requestTimeout: number | undefined): Promise<ToolResult> {
    const pattern = str(input, 'pattern');
    const searchPath = optStr(input, 'path');
    const fileGlob = optStr(input, 'glob') ?? optStr(input, 'include');
    const insensitive = optBool(input, 'case_insensitive') || input['-i'] === true;
    const flags = insensitive ? 'i' : '';
    try {
      new RegExp(pattern, flags);
    } catch (err) {
      throw new ToolError(`invalid regular expression: ${(err as Error).message}`);
    }
    const root = this.resolve(searchPath ?? '.');
    let rootIsFile: boolean;
    try {
      const st = await fsp.stat(root);
      rootIsFile = !st.isDirectory();
    } catch (err) {
      throw new ToolError(errnoMessage(err, searchPath ?? root));
    }
    const timeoutMs = clampTimeout(requestTimeout);
    const worker = new Worker(GREP_WORKER_SOURCE, {
      eval: true,
      execArgv: [],
      env: {},
      workerData: {
        root,
        rootIsFile,
        display: searchPath ?? root,
        pattern,
        flags,
        globSource: fileGlob ? globToRegExp(fileGlob).source : null,
        globOnBase: fileGlob ? !fileGlob.includes('/') : false,
        maxMatches: GREP_MATCH_LIMIT,
        maxFileBytes: GREP_MAX_FILE_BYTES,
        maxLineChars: GREP_MAX_LINE_CHARS,
        skipDirs: [...SKIP_DIRS],
        entryLimit: WALK_ENTRY_LIMIT,
      },
    });
    this.workers.add(worker);
    type GrepMessage = { lines: string[]; capped: boolean; entryCapped: boolean };
    const outcome = await new Promise<GrepMessage | { error: string }>((resolve) => {
      const timer = setTimeout(() => {
        resolve({ error: `grep timed out after ${timeoutMs} ms (simplify the pattern or narrow the path)` });
        void worker.terminate();
      }, timeoutMs);
      worker.once('message', (m: GrepMessage) => {
        clearTimeout(timer);
        resolve(m);
      });
      worker.once('error', (err) => {
        clearTimeout(timer);
        resolve({ error: `grep failed: ${err.message}` });
      });
      worker.once('exit', () => {
        clearTimeout(timer);
        resolve({ error: 'grep worker exited unexpectedly' });
      });
    });
    this.workers.delete(worker);
    void worker.terminate();
    if ('error' in outcome) return { output: outcome.error, is_error: true };
    if (outcome.lines.length === 0) {
      return { output: `No matches for /${pattern}/${outcome.entryCapped ? ' (search stopped early: too many files)' : ''}`, is_error: false };
    }
    const lines = outcome.lines;
    if (outcome.capped) lines.push(`[... results capped at ${GREP_MATCH_LIMIT} matching lines; narrow the pattern or path ...]`);
    if (outcome.entryCapped) lines.push(`[search incomplete: stopped after visiting ${WALK_ENTRY_LIMIT} entries]`);
    return { output: lines.join('\n'), is_error: false };
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * Reads a request body up to `limit` bytes. A larger body is drained (up to 8x the limit, so the
 * client can read the 413 instead of failing on a reset) and then refused.
 */
function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const tooLarge = () => new HttpError(413, `request body larger than ${limit} bytes`);
    req.on('data', (chunk: Buffer) => {
      if (settled) return;
      size += chunk.length;
      if (size > 8 * limit) {
        settled = true;
        reject(tooLarge());
        req.destroy();
      } else if (size <= limit) {
        chunks.push(chunk);
      } else if (chunks.length > 0) {
        chunks.length = 0; // over the limit: keep counting, stop keeping
      }
    });
    req.on('end', () => {
      if (settled) return;
      settled = true;
      if (size > limit) reject(tooLarge());
      else resolve(Buffer.concat(chunks));
    });
    req.on('error', (err) => {
      if (settled) return;
      settled = true;
      reject(err);
    });
  });
}

/** Validates a parsed `/execute` body; throws HttpError(400) on anything malformed. */
export function parseExecuteRequest(body: unknown): ExecuteRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'body must be a JSON object');
  const b = body as Record<string, unknown>;
  if (typeof b.tool !== 'string') throw new HttpError(400, '"tool" must be a string');
  if (!(TOOLS as readonly string[]).includes(b.tool)) {
    throw new HttpError(400, `unknown tool "${b.tool.slice(0, 100)}"; expected one of ${TOOLS.join(', ')}`);
  }
  const input = b.input ?? {};
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new HttpError(400, '"input" must be a JSON object');
  const key = b.idempotency_key;
  if (key !== undefined && key !== null && (typeof key !== 'string' || key === '' || key.length > 1024)) {
    throw new HttpError(400, '"idempotency_key" must be a non-empty string of at most 1024 characters');
  }
  const timeout = b.timeout_ms;
  if (timeout !== undefined && timeout !== null && (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout <= 0)) {
    throw new HttpError(400, '"timeout_ms" must be a positive number');
  }
  return {
    tool: b.tool as Tool,
    input: input as Record<string, unknown>,
    idempotency_key: typeof key === 'string' ? key : undefined,
    timeout_ms: typeof timeout === 'number' ? timeout : undefined,
  };
}

export function createAgentServer(agent: SandboxAgent): http.Server {
  const server = http.createServer((req, res) => {
    handle(agent, req, res).catch((err: unknown) => {
      if (err instanceof HttpError) {
        sendJson(res, err.status, { error: err.message });
      } else {
        sendJson(res, 500, { error: 'internal error' });
      }
    });
  });
  // Commands may legitimately run for up to MAX_TOOL_TIMEOUT_MS.
  server.requestTimeout = 0;
  server.timeout = 0;
  server.headersTimeout = 60_000;
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });
  return server;
}

async function handle(agent: SandboxAgent, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = (req.url ?? '/').split('?')[0];
  if (url === '/health') {
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'method not allowed');
    req.resume();
    const setup = agent.setupState();
    if (setup.state === 'ready') sendJson(res, 200, setup.notes.length ? { ok: true, notes: setup.notes } : { ok: true });
    else sendJson(res, 503, { ok: false, ...setup });
    return;
  }
  if (url !== '/execute' && url !== '/capability') {
    req.resume();
    throw new HttpError(404, 'not found');
  }
  if (req.method !== 'POST') {
    req.resume();
    throw new HttpError(405, 'method not allowed');
  }
  if (!agent.authorized(req.headers.authorization)) {
    req.resume();
    throw new HttpError(401, 'missing or invalid capability');
  }
  const raw = await readBody(req, url === '/capability' ? 4096 : BODY_LIMIT_BYTES);
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new HttpError(400, 'body is not valid JSON');
  }
  if (url === '/capability') {
    const next = (parsed as { capability?: unknown } | null)?.capability;
    if (typeof next !== 'string') throw new HttpError(400, '"capability" must be a string');
    agent.setCapability(next);
    sendJson(res, 200, { ok: true });
    return;
  }
  const setup = agent.setupState();
  if (setup.state !== 'ready') {
    throw new HttpError(503, setup.state === 'starting' ? 'sandbox is still starting' : `sandbox setup failed: ${setup.error.message}`);
  }
  const request = parseExecuteRequest(parsed);
  const result = await agent.execute(request);
  sendJson(res, 200, { output: result.output, is_error: result.is_error });
}

// ---------------------------------------------------------------------------------------------
// Git forwarder

/**
 * The sandbox's way to its session's repositories. The sandbox has no network; the credential
 * proxy's git side is reachable over a Unix socket bind-mounted (read-only) into it, or, on
 * Fargate, over HTTPS. The forwarder listens on 127.0.0.1 inside the sandbox's own network
 * namespace and passes git smart-HTTP requests for the channel's repositories on, adding the
 * channel's capability. The repositories' `origin` points at the forwarder, so no credential is
 * ever in the sandbox: not in `.git/config`, the environment or any file. The capability is not
 * a credential for the repository: it opens only this session's repositories, through the proxy.
 */
export interface GitChannelConfig {
  capability: string;
  /** The proxy's git socket, as seen from inside the sandbox. */
  socket?: string;
  /** Or its HTTPS base URL. */
  url?: string;
  repositories: Array<{ url: string; path: string }>;
}

export const GIT_CHANNEL_ENV = 'CORRAL_GIT_CHANNEL';
const GIT_CAPABILITY_HEADER = 'x-corral-git-capability';
const GIT_FORWARDED_HEADERS = ['content-type', 'accept', 'content-encoding', 'git-protocol', 'content-length', 'accept-language'];

export function parseGitChannel(text: string): GitChannelConfig {
  const c = JSON.parse(text) as GitChannelConfig;
  if (
    typeof c !== 'object' || c === null || typeof c.capability !== 'string' || (typeof c.socket !== 'string' && typeof c.url !== 'string') ||
    !Array.isArray(c.repositories) || !c.repositories.every((r) => typeof r?.url === 'string' && typeof r?.path === 'string' && r.path.startsWith('/r/'))
  ) {
    throw new Error('the git channel is not {capability, socket|url, repositories: [{url, path}]}');
  }
  return c;
}

export interface GitForwarder {
  port: number;
  server: http.Server;
  /** `http://127.0.0.1:<port>/r/<n>/<name>.git` for a repository URL of the channel. */
  remoteFor(url: string): string | undefined;
}

export function startGitForwarder(cfg: GitChannelConfig, log: NonNullable<AgentOptions['log']> = () => {}): Promise<GitForwarder> {
  const server = http.createServer((req, res) => {
    const target = req.url ?? '/';
    const pathname = target.split('?')[0];
    if (!cfg.repositories.some((r) => pathname.startsWith(`${r.path}/`))) {
      req.resume();
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not a repository of this sandbox\n');
      return;
    }
    const headers: Record<string, string> = { host: 'corral-git-proxy', [GIT_CAPABILITY_HEADER]: cfg.capability };
    for (const name of GIT_FORWARDED_HEADERS) {
      const v = req.headers[name];
      if (typeof v === 'string') headers[name] = v;
    }
    if (!headers['content-length'] && req.method === 'POST') headers['transfer-encoding'] = 'chunked';
    const onResponse = (up: http.IncomingMessage) => {
      const out: Record<string, string> = {};
      for (const name of ['content-type', 'cache-control', 'expires', 'pragma']) {
        const v = up.headers[name];
        if (typeof v === 'string') out[name] = v;
      }
      res.writeHead(up.statusCode ?? 502, out);
      up.pipe(res);
    };
    let upstream: http.ClientRequest;
    if (cfg.socket) {
      upstream = http.request({ socketPath: cfg.socket, path: target, method: req.method, headers }, onResponse);
    } else {
      const base = new URL(cfg.url!);
      const u = new URL(target, base);
      upstream = (u.protocol === 'https:' ? https : http).request(u, { method: req.method, headers }, onResponse);
    }
    upstream.on('error', (err) => {
      log('warn', 'git forwarder: the credential proxy could not be reached', { error: err.message });
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end('the credential proxy could not be reached\n');
    });
    req.pipe(upstream);
  });
  server.requestTimeout = 0;
  server.timeout = 0;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      resolve({
        port,
        server,
        remoteFor: (url) => {
          const r = cfg.repositories.find((x) => x.url === url);
          return r ? `http://127.0.0.1:${port}${r.path}` : undefined;
        },
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Process entry

function logLine(level: string, msg: string, fields?: Record<string, unknown>): void {
  try {
    process.stderr.write(`${JSON.stringify({ level, msg, ...fields, time: new Date().toISOString() })}\n`);
  } catch {
    // stderr gone (parent died): nothing to do
  }
}

/**
 * Reads the first `count` lines of stdin (the capability, then the git channel when there is
 * one); `onEnd` fires when stdin later closes (the parent went away).
 */
function readFirstLines(stream: NodeJS.ReadableStream, count: number, onEnd: () => void): Promise<string[]> {
  return new Promise((resolve) => {
    let buffered = '';
    let resolved = false;
    const lines: string[] = [];
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      if (resolved) return;
      buffered += chunk;
      let nl: number;
      while (!resolved && (nl = buffered.indexOf('\n')) !== -1) {
        lines.push(buffered.slice(0, nl).trim());
        buffered = buffered.slice(nl + 1);
        if (lines.length === count) {
          resolved = true;
          resolve(lines);
          buffered = '';
        }
      }
      if (!resolved && buffered.length > 65536) {
        resolved = true;
        resolve(lines);
      }
    });
    const end = () => {
      if (!resolved) {
        resolved = true;
        if (buffered.trim()) lines.push(buffered.trim());
        resolve(lines);
      }
      onEnd();
    };
    stream.on('end', end);
    stream.on('error', end);
  });
}

function chooseStateDir(workspace: string, requested: string | undefined): string | null {
  const candidates = requested
    ? [path.resolve(requested)]
    : [
        path.resolve(workspace, '..', '.sandbox-state'),
        path.join(os.tmpdir(), `corral-sandbox-state-${crypto.createHash('sha256').update(workspace).digest('hex').slice(0, 16)}`),
      ];
  for (const dir of candidates) {
    try {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      fs.accessSync(dir, fs.constants.W_OK);
      return dir;
    } catch {
      // try the next one
    }
  }
  return null;
}

export async function main(argv: string[]): Promise<void> {
  process.stderr.on('error', () => {});
  const { values } = parseArgs({
    args: argv,
    options: {
      socket: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      workspace: { type: 'string' },
      'state-dir': { type: 'string' },
      'run-as-uid': { type: 'string' },
      'run-as-gid': { type: 'string' },
      setpriv: { type: 'string' },
      'install-packages': { type: 'boolean' },
      'tool-child': { type: 'boolean' },
      'git-channel-stdin': { type: 'boolean' },
      'local-mounts': { type: 'boolean' },
      limits: { type: 'string' },
    },
    strict: true,
  });
  if (values['tool-child']) {
    await toolChildMain(path.resolve(values.workspace ?? process.cwd()));
    return;
  }
  if (!values.socket && values.port === undefined) throw new Error('one of --socket PATH or --port N is required');
  const runAs = parseRunAs(values['run-as-uid'], values['run-as-gid'], values.setpriv);
  // `--limits` (the local provider), else `CORRAL_SANDBOX_LIMITS` (the Fargate task definition's
  // environment, a stack setting); the tools do not inherit the variable.
  const limitsText = values.limits ?? process.env[SANDBOX_LIMITS_ENV];
  delete process.env[SANDBOX_LIMITS_ENV];
  const limits = limitsText === undefined ? undefined : resolveSandboxLimits(parseSandboxLimits(limitsText));
  const port = values.port === undefined ? undefined : Number(values.port);
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) throw new Error('--port must be 0..65535');

  let shuttingDown = false;
  let shutdown: (code: number) => void = (code) => process.exit(code);
  let capability = process.env[CAPABILITY_ENV] ?? '';
  delete process.env[CAPABILITY_ENV];
  let gitChannelText = process.env[GIT_CHANNEL_ENV] ?? '';
  delete process.env[GIT_CHANNEL_ENV];
  if (!capability) {
    // Local provider: the capability is the first line of stdin (the git channel the second,
    // with --git-channel-stdin), and stdin closing means the parent went away, so the agent goes too.
    const lines = await readFirstLines(process.stdin, values['git-channel-stdin'] ? 2 : 1, () => {
      if (!shuttingDown) shutdown(0);
    });
    capability = lines[0] ?? '';
    if (values['git-channel-stdin']) gitChannelText = lines[1] ?? '';
  }
  if (!capability) throw new Error(`no capability: pass it on the first line of stdin or in ${CAPABILITY_ENV}`);
  const recipeText = process.env[RECIPE_ENV];
  delete process.env[RECIPE_ENV];
  const recipe = recipeText ? decodeRecipe(recipeText) : undefined;
  let forwarder: GitForwarder | undefined;
  if (gitChannelText) {
    forwarder = await startGitForwarder(parseGitChannel(gitChannelText), logLine);
    gitChannelText = '';
  }

  const workspace = path.resolve(values.workspace ?? process.cwd());
  fs.mkdirSync(workspace, { recursive: true });
  const stateDir = chooseStateDir(workspace, values['state-dir']);
  const agent = new SandboxAgent({
    workspace,
    capability,
    stateDir,
    runAs,
    log: logLine,
    recipeMode: values['local-mounts'] ? 'local' : 'image',
    gitRemote: forwarder?.remoteFor,
    limits,
  });
  capability = '';
  if (runAs) await checkRunAs(agent, runAs);
  const server = createAgentServer(agent);

  process.on('uncaughtException', (err) => logLine('error', 'uncaught exception', { error: err?.message }));
  process.on('unhandledRejection', (err) => logLine('error', 'unhandled rejection', { error: (err as Error)?.message }));

  const socketPath = values.socket ? path.resolve(values.socket) : undefined;
  shutdown = (code: number) => {
    if (shuttingDown) return;
    shuttingDown = true;
    agent.shutdown();
    server.close();
    forwarder?.server.close();
    if (socketPath) {
      try {
        fs.unlinkSync(socketPath);
      } catch {
        // already gone
      }
    }
    setTimeout(() => process.exit(code), 50).unref();
  };
  process.on('SIGTERM', () => shutdown(0));
  process.on('SIGINT', () => shutdown(0));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (socketPath) {
      fs.mkdirSync(path.dirname(socketPath), { recursive: true });
      try {
        if (fs.lstatSync(socketPath).isSocket()) fs.unlinkSync(socketPath);
      } catch {
        // nothing there
      }
      server.listen(socketPath, () => {
        try {
          fs.chmodSync(socketPath, 0o600);
        } catch {
          // best effort
        }
        resolve();
      });
    } else {
      server.listen(port, values.host ?? '0.0.0.0', () => resolve());
    }
  });
  if (recipe) void agent.beginSetup(recipe, { installPackages: values['install-packages'] === true });
  const address = server.address();
  logLine('info', 'listening', {
    ...(socketPath ? { socket: socketPath } : { host: values.host ?? '0.0.0.0', port: typeof address === 'object' && address ? address.port : port }),
    workspace,
    stateDir,
  });
}

function parseRunAs(uid: string | undefined, gid: string | undefined, setpriv: string | undefined): RunAs | undefined {
  if (uid === undefined && gid === undefined) {
    if (setpriv !== undefined) throw new Error('--setpriv needs --run-as-uid and --run-as-gid');
    return undefined;
  }
  const u = Number(uid);
  const g = Number(gid);
  if (!Number.isInteger(u) || u <= 0 || !Number.isInteger(g) || g <= 0) {
    throw new Error('--run-as-uid and --run-as-gid must both be given, as positive integers (never root)');
  }
  return { uid: u, gid: g, setpriv: setpriv ? path.resolve(setpriv) : undefined };
}

/** Refuse to start unless tools really run as the configured user (a broken image fails fast). */
async function checkRunAs(agent: SandboxAgent, runAs: RunAs): Promise<void> {
  const probe = await agent.runCommand(['/bin/sh', '-c', 'id -u; id -g'], { as: 'sandbox', cwd: '/', timeoutMs: 15_000 });
  const ids = probe.output.trim().split(/\s+/);
  if (probe.code !== 0 || ids[0] !== String(runAs.uid) || ids[1] !== String(runAs.gid)) {
    throw new Error(
      `cannot run tools as uid ${runAs.uid} gid ${runAs.gid}` +
        `${runAs.setpriv ? ` through ${runAs.setpriv}` : ' (the agent needs to be root, or pass --setpriv)'}: ` +
        `${probe.output.trim().slice(0, 500) || `exit code ${probe.code}`}`,
    );
  }
}

/** `--tool-child`: run one file tool (request on stdin) as this process's user, answer on stdout. */
async function toolChildMain(workspace: string): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  let result: ToolResult;
  try {
    const req = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ExecuteRequest;
    const agent = new SandboxAgent({ workspace, capability: crypto.randomBytes(32).toString('hex'), stateDir: null });
    result = await agent.runToolInProcess(req);
  } catch (err) {
    result = { output: `internal error: ${(err as Error)?.message ?? String(err)}`, is_error: true };
  }
  await new Promise<void>((resolve) => process.stdout.write(JSON.stringify(result), () => resolve()));
  process.exit(0);
}

function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return fs.realpathSync(entry) === fs.realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    logLine('error', 'sandbox agent failed to start', { error: (err as Error)?.message ?? String(err) });
    process.exit(2);
  });
}
