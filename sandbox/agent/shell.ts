/**
 * The sandbox's persistent bash session: one long-lived shell, started on the first `bash` call
 * and confined as every tool process is (the tools' user, the rlimits, a process group of its
 * own), that runs the calls one after another, so that the working directory, exported (and
 * plain) variables, functions and shell options carry over from one call to the next, as in the
 * hosted service's bash tool. Nothing is spawned per call.
 *
 * The channel: the shell reads its script from its stdin, a pipe only the agent writes. Each call
 * is one line of that script,
 *
 *   eval '<command, single-quoted>' </dev/null {fd}>&-; printf '\n%s%s_%d__\n' __CORRAL_DONE_ <nonce> "$?" >&"$fd"
 *
 * so that the command's own syntax errors stay inside `eval`, its stdin is /dev/null (a command
 * that reads stdin cannot eat the next calls), and the end of its output is a sentinel carrying a
 * nonce of this call and the exit status. The sentinel goes to a copy of the output pipe made when
 * the shell starts (`fd`, closed for the command), so it arrives after everything the command
 * wrote to that pipe, also when the command redirected the shell's stdout. stderr is merged into
 * stdout (one pipe keeps the order).
 *
 * A call that times out kills the shell's whole process group (the command, what it started in
 * the background, and the shell): the next call runs in a fresh shell. When the shell dies
 * (`exit`, `exec`, `kill -9 $$`, a limit), the call in flight says so, and so does the next one,
 * which starts a fresh shell in the workspace: the model is told plainly that its working
 * directory and environment were reset. Output that background jobs write between calls is kept
 * (bounded) and shows at the beginning of the next call's output.
 */
import type { ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import { StringDecoder } from 'node:string_decoder';
import { limitHit } from '../limits.js';
import { SANDBOX_PATH } from './confinement.js';
import { BoundedText, MAX_OUTPUT_CHARS, withStatusLine } from './output.js';
import type { Processes } from './process.js';

/** After the shell exits, how long to wait for output from background processes still holding the pipe. */
const PIPE_GRACE_MS = 250;
/** The sentinel's fixed part; the nonce and the status follow. */
const SENTINEL = '__CORRAL_DONE_';

/** What one call of the shell produced. */
export interface ShellResult {
  output: string;
  is_error: boolean;
}

/** Why the previous shell is gone, told to the model by the next call. */
type Gone = { why: string };

interface Running {
  nonce: string;
  /** `\n__CORRAL_DONE_<nonce>_` */
  marker: string;
  output: BoundedText;
  /** Text not yet in `output`: it may be the beginning of the sentinel. */
  pending: string;
  resolve: (r: ShellResult) => void;
  timer: NodeJS.Timeout;
  timeoutMs: number;
}

interface Live {
  child: ChildProcess;
  decoder: StringDecoder;
  /** Output written while no call was running (background jobs), shown by the next call. */
  idle: BoundedText;
  running?: Running;
  dead: boolean;
}

/** Quotes `s` for bash: single quotes, each `'` as `'\''` (any character but NUL is safe). */
export function shellQuote(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

export class ShellSession {
  private live: Live | undefined;
  /** Set when a shell died; the next call's output begins with it. */
  private gone: Gone | undefined;
  /** Calls run one after another (the chain of the calls so far). */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly processes: Processes,
    private readonly workspace: string,
  ) {}

  /** Runs `command` in the session, after the calls before it. Never rejects. */
  run(command: string, timeoutMs: number): Promise<ShellResult> {
    const next = this.queue.then(() => this.runNow(command, timeoutMs));
    this.queue = next.catch(() => {});
    return next;
  }

  /**
   * Kills the shell (its whole process group, background jobs included); the next call starts a
   * fresh one and, since this was asked for, does not report it as a restart.
   */
  restart(): Promise<void> {
    const next = this.queue.then(() => {
      this.kill();
      this.gone = undefined;
    });
    this.queue = next.catch(() => {});
    return next;
  }

  /** Kills the shell's process group, if a shell is running. */
  kill(): void {
    const live = this.live;
    if (!live) return;
    this.live = undefined;
    live.dead = true;
    this.processes.killGroup(live.child);
    this.processes.forget(live.child);
    live.child.stdout?.destroy();
    live.child.stdin?.destroy();
  }

  private async runNow(command: string, timeoutMs: number): Promise<ShellResult> {
    const notice = this.gone ? `[the shell was restarted (${this.gone.why}); working directory and environment were reset]\n` : '';
    this.gone = undefined;
    let live = this.live;
    if (!live || live.dead) {
      const started = this.start();
      if ('error' in started) {
        return { output: `${notice}bash: could not start the shell: ${started.error}`, is_error: true };
      }
      live = started;
    }
    const result = await this.send(live, command, timeoutMs);
    return notice ? { output: notice + result.output, is_error: result.is_error } : result;
  }

  /** Starts a shell, confined as every tool process; nothing is written to it yet but its setup. */
  private start(): Live | { error: string } {
    let child: ChildProcess;
    try {
      child = this.processes.confinement.spawn('/bin/bash', ['--noprofile', '--norc', '-s'], {
        cwd: this.workspace,
        env: { PATH: SANDBOX_PATH, HOME: this.workspace, LANG: 'C.UTF-8', TERM: 'dumb' },
        // The shell's stdin is the channel; stderr is merged into stdout by its first line.
        stdio: ['pipe', 'pipe', 'ignore'],
        // setsid: the shell and everything it starts form a process group of their own.
        detached: true,
      });
    } catch (err) {
      return { error: (err as Error).message };
    }
    const live: Live = { child, decoder: new StringDecoder('utf8'), idle: new BoundedText(MAX_OUTPUT_CHARS), dead: false };
    this.live = live;
    this.processes.adopt(child);
    child.stdin!.on('error', () => {});
    child.stdout!.on('error', () => {});
    child.stdout!.on('data', (chunk: Buffer) => {
      if (!live.dead) this.receive(live, live.decoder.write(chunk));
    });
    let exit: { code: number | null; signal: NodeJS.Signals | null; error?: Error } | undefined;
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      this.processes.forget(child);
      const wasCurrent = !live.dead;
      live.dead = true;
      if (this.live === live) this.live = undefined;
      if (!wasCurrent) return; // killed on purpose (timeout, restart): already reported
      const why = exit?.error
        ? `the previous one could not start: ${exit.error.message}`
        : exit?.code !== null && exit?.code !== undefined
          ? `the previous one exited with code ${exit.code}`
          : `the previous one was killed by signal ${exit?.signal ?? 'unknown'}`;
      this.gone = { why };
      const r = live.running;
      if (!r) return;
      live.running = undefined;
      clearTimeout(r.timer);
      r.output.push(r.pending + live.decoder.end());
      r.resolve(this.deathResult(r.output, exit ?? { code: null, signal: null }));
    };
    child.on('error', (err) => {
      exit ??= { code: null, signal: null, error: err };
      end();
    });
    child.on('exit', (code, signal) => {
      exit ??= { code, signal };
      // A call in flight still gets what its last moments wrote; an idle shell is gone now.
      if (live.running) setTimeout(end, PIPE_GRACE_MS);
      else end();
    });
    child.stdout!.on('close', () => {
      if (exit) end();
    });
    // Merge stderr into stdout, and keep a copy of stdout (fd >= 10) for the sentinels.
    child.stdin!.write('exec 2>&1 {__corral_fd}>&1\n');
    return live;
  }

  /** Writes one call to the shell and waits for its sentinel, its timeout, or the shell's death. */
  private send(live: Live, command: string, timeoutMs: number): Promise<ShellResult> {
    return new Promise<ShellResult>((resolve) => {
      const nonce = crypto.randomBytes(12).toString('hex');
      const output = new BoundedText(MAX_OUTPUT_CHARS);
      if (live.idle.total > 0) {
        output.push(live.idle.text());
        live.idle = new BoundedText(MAX_OUTPUT_CHARS);
      }
      const timer = setTimeout(() => {
        if (live.running !== r) return;
        live.running = undefined;
        output.push(r.pending);
        this.kill();
        this.gone = { why: 'the previous command timed out and was killed with its shell' };
        resolve({
          output: withStatusLine(output, `[command timed out after ${timeoutMs} ms; it was killed with its shell and its process group: the next command runs in a fresh shell]`),
          is_error: true,
        });
      }, timeoutMs);
      const r: Running = { nonce, marker: `\n${SENTINEL}${nonce}_`, output, pending: '', resolve, timer, timeoutMs };
      live.running = r;
      const line = `eval ${shellQuote(command)} </dev/null {__corral_fd}>&-; printf '\\n%s%s_%d__\\n' ${SENTINEL} ${nonce} "$?" >&"$__corral_fd"\n`;
      live.child.stdin!.write(line);
    });
  }

  /** Output from the shell: the running call's (up to its sentinel), or kept for the next call. */
  private receive(live: Live, text: string): void {
    const r = live.running;
    if (!r) {
      live.idle.push(text);
      return;
    }
    const buf = r.pending + text;
    const at = buf.indexOf(r.marker);
    if (at >= 0) {
      const m = /^(\d+)__\n/.exec(buf.slice(at + r.marker.length));
      if (m) {
        live.running = undefined;
        clearTimeout(r.timer);
        r.output.push(buf.slice(0, at));
        const rest = buf.slice(at + r.marker.length + m[0].length);
        if (rest) live.idle.push(rest);
        r.resolve(this.commandResult(r.output, Number(m[1])));
        return;
      }
      // The sentinel has begun but not ended: keep it pending.
      r.output.push(buf.slice(0, at));
      r.pending = buf.slice(at);
      return;
    }
    // Keep back what could be the beginning of the sentinel.
    const keep = r.marker.length - 1;
    r.output.push(buf.slice(0, Math.max(0, buf.length - keep)));
    r.pending = buf.slice(Math.max(0, buf.length - keep));
  }

  private commandResult(out: BoundedText, code: number): ShellResult {
    const limits = this.processes.confinement.limits;
    const hit = code !== 0 && limits ? limitHit(limits, { code, signal: null }, out.text()) : null;
    if (hit) return { output: withStatusLine(out, `[exit code ${code}; ${hit}]`), is_error: true };
    if (code === 0) return { output: out.text(), is_error: false };
    return { output: withStatusLine(out, `[exit code ${code}]`), is_error: true };
  }

  private deathResult(out: BoundedText, exit: { code: number | null; signal: NodeJS.Signals | null; error?: Error }): ShellResult {
    if (exit.error) return { output: withStatusLine(out, `[bash could not start: ${exit.error.message}]`), is_error: true };
    const limits = this.processes.confinement.limits;
    const status = exit.code !== null ? `exit code ${exit.code}` : `killed by signal ${exit.signal ?? 'unknown'}`;
    const hit = limits ? limitHit(limits, exit, out.text()) : null;
    const reset = 'the shell exited: the next command runs in a fresh shell';
    return { output: withStatusLine(out, `[${status}; ${hit ? `${hit}; ` : ''}${reset}]`), is_error: exit.code !== 0 || hit !== null };
  }
}
