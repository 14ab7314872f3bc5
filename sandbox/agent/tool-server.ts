/**
 * The file tools' process: with a `RunAs`, read, write, edit, glob and grep act with the
 * permissions of the tools' user, so they run in a child process of the agent program started
 * as that user under the limits (`--tool-server`). One such process serves every call of the
 * sandbox (started on the first file-tool call, kept while it lives), so that a call costs a
 * line written to a pipe, not a Node start-up.
 *
 * The protocol: one JSON request per line on the child's stdin (`{"id", "tool", "input",
 * "timeout_ms"}`), one JSON answer per line on its stdout (`{"id", "output", "is_error"}`), in
 * any order: calls run concurrently in the child, as they did in separate processes.
 *
 * A call that has no answer by its time limit kills the process (its whole process group):
 * whatever it was stuck on is gone with it, and so are the other calls in flight, which are
 * told so. A process that dies (a limit, a crash) fails the calls in flight; the next call
 * starts a fresh one.
 */
import type { ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import { limitHit, type SandboxLimits } from '../limits.js';
import { SANDBOX_PATH } from './confinement.js';
import { truncateOutput } from './output.js';
import type { Processes } from './process.js';
import { runTool, type ExecuteRequest, type ToolContext, type ToolResult } from './tools/index.js';

/** How much of the child's stderr is kept (its end), to explain a death. */
const STDERR_TAIL_CHARS = 2000;
/** The longest answer line accepted from the child. */
const MAX_LINE_CHARS = 8 * 1024 * 1024;

interface Pending {
  tool: string;
  resolve: (r: ToolResult) => void;
  timer: NodeJS.Timeout;
}

interface Server {
  child: ChildProcess;
  pending: Map<number, Pending>;
  stderr: string;
  dead: boolean;
}

export class ToolServer {
  private server: Server | undefined;
  private nextId = 1;

  constructor(
    private readonly processes: Processes,
    private readonly program: string,
    private readonly workspace: string,
    private readonly limits: SandboxLimits | undefined,
  ) {}

  /** Runs one file tool in the tools' process. Never rejects. */
  run(req: ExecuteRequest, limitMs: number): Promise<ToolResult> {
    let server = this.server;
    // Exited, its 'close' still to come: as good as dead.
    if (server && !server.dead && (server.child.exitCode !== null || server.child.signalCode !== null)) this.died(server, { code: server.child.exitCode, signal: server.child.signalCode });
    if (!server || server.dead) {
      const started = this.start();
      if ('error' in started) return Promise.resolve({ output: `${req.tool}: could not start the tool process: ${started.error}`, is_error: true });
      server = started;
    }
    const s = server;
    const id = this.nextId++;
    return new Promise<ToolResult>((resolve) => {
      const timer = setTimeout(() => {
        if (!s.pending.has(id)) return;
        s.pending.delete(id);
        resolve({ output: `${req.tool}: timed out after ${limitMs} ms`, is_error: true });
        this.kill(s, 'another file-tool call timed out and the tool process was restarted');
      }, limitMs);
      s.pending.set(id, { tool: req.tool, resolve, timer });
      s.child.stdin!.write(`${JSON.stringify({ id, tool: req.tool, input: req.input, timeout_ms: req.timeout_ms })}\n`);
    });
  }

  /** Kills the tool process, if one runs. */
  shutdown(): void {
    if (this.server) this.kill(this.server, 'the sandbox is shutting down');
  }

  private start(): Server | { error: string } {
    let child: ChildProcess;
    try {
      child = this.processes.confinement.spawn(process.execPath, [...process.execArgv, this.program, '--tool-server', '--workspace', this.workspace], {
        cwd: this.workspace,
        env: { PATH: SANDBOX_PATH, HOME: this.workspace, LANG: 'C.UTF-8' },
        stdio: ['pipe', 'pipe', 'pipe'],
        detached: true,
      });
    } catch (err) {
      return { error: (err as Error).message };
    }
    const s: Server = { child, pending: new Map(), stderr: '', dead: false };
    this.server = s;
    this.processes.adopt(child);
    child.stdin!.on('error', () => {});
    child.stdout!.on('error', () => {});
    child.stderr!.on('error', () => {});
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (text: string) => {
      s.stderr = (s.stderr + text).slice(-STDERR_TAIL_CHARS);
    });
    let partial = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (text: string) => {
      const lines = (partial + text).split('\n');
      partial = lines.pop()!;
      for (const line of lines) this.answer(s, line);
      // A line this long is not an answer of ours.
      if (partial.length > MAX_LINE_CHARS) this.kill(s, 'the tool process answered out of protocol');
    });
    let error: Error | undefined;
    child.on('error', (err) => {
      error ??= err;
      this.died(s, { code: null, signal: null, error });
    });
    // 'close': exited, and every answer it wrote has been read.
    child.on('close', (code, signal) => this.died(s, { code, signal, error }));
    return s;
  }

  private answer(s: Server, line: string): void {
    let parsed: { id?: unknown; output?: unknown; is_error?: unknown };
    try {
      parsed = JSON.parse(line) as typeof parsed;
    } catch {
      return; // not an answer (nothing else writes to stdout in the child)
    }
    const p = typeof parsed.id === 'number' ? s.pending.get(parsed.id) : undefined;
    if (!p) return;
    s.pending.delete(parsed.id as number);
    clearTimeout(p.timer);
    if (typeof parsed.output === 'string' && typeof parsed.is_error === 'boolean') {
      p.resolve({ output: truncateOutput(parsed.output), is_error: parsed.is_error });
    } else {
      p.resolve({ output: `${p.tool}: internal error: the tool process answered out of protocol`, is_error: true });
    }
  }

  private kill(s: Server, why: string): void {
    if (s.dead) return;
    s.dead = true;
    if (this.server === s) this.server = undefined;
    this.processes.killGroup(s.child);
    this.processes.forget(s.child);
    for (const [, p] of s.pending) {
      clearTimeout(p.timer);
      p.resolve({ output: `${p.tool}: ${why}; this call did not finish: try it again`, is_error: true });
    }
    s.pending.clear();
  }

  private died(s: Server, exit: { code: number | null; signal: NodeJS.Signals | null; error?: Error }): void {
    if (s.dead) return;
    s.dead = true;
    if (this.server === s) this.server = undefined;
    this.processes.forget(s.child);
    const why = exit.error ? exit.error.message : exit.signal ? `killed by signal ${exit.signal}` : `exit code ${exit.code}`;
    const hit = this.limits ? limitHit(this.limits, exit, `${s.stderr}\n${exit.error?.message ?? ''}`) : null;
    for (const [, p] of s.pending) {
      clearTimeout(p.timer);
      const stderr = s.stderr.trim();
      p.resolve({
        output: hit ? `${p.tool}: ${hit} (${why})` : `${p.tool}: internal error: the tool process failed (${why})${stderr ? `: ${stderr}` : ''}`,
        is_error: true,
      });
    }
    s.pending.clear();
  }
}

/**
 * `--tool-server`: serve file-tool requests, one JSON line each on stdin, as this process's user;
 * answer each on stdout as it finishes. Ends when stdin closes.
 */
export async function toolServerMain(ctx: ToolContext): Promise<void> {
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  const inflight = new Set<Promise<void>>();
  for await (const line of lines) {
    if (!line.trim()) continue;
    const job = (async () => {
      let id: unknown;
      let result: ToolResult;
      try {
        const req = JSON.parse(line) as ExecuteRequest & { id?: unknown };
        id = req.id;
        result = await runTool(req, { ...ctx, requestTimeoutMs: req.timeout_ms });
      } catch (err) {
        result = { output: `internal error: ${(err as Error)?.message ?? String(err)}`, is_error: true };
      }
      process.stdout.write(`${JSON.stringify({ id, output: result.output, is_error: result.is_error })}\n`);
    })();
    inflight.add(job);
    void job.finally(() => inflight.delete(job));
  }
  await Promise.all(inflight);
}
