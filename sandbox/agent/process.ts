/**
 * The one way the agent runs a child process: spawned confined (see confinement.ts) in a process
 * group of its own, its output collected in bounded memory, its group killed at the timeout,
 * and every process and grep worker still running killed when the agent shuts down.
 */
import type { ChildProcess } from 'node:child_process';
import { StringDecoder } from 'node:string_decoder';
import type { Worker } from 'node:worker_threads';
import { BoundedText } from './output.js';
import type { Confinement, Principal } from './confinement.js';

/** How much of a separately collected stderr is kept (its end). */
const STDERR_TAIL_CHARS = 2000;

export interface ProcessSpec {
  /** The command and its arguments (no shell). */
  argv: string[];
  /** Default `sandbox`, the tools' user. */
  as?: Principal;
  cwd: string;
  env: Record<string, string>;
  /** Written to the process's stdin, which is then closed; without it stdin is not connected. */
  stdin?: string;
  /**
   * stderr goes into `output` with stdout (`merge`), is kept apart as its last 2,000 characters
   * (`tail`), or is not connected (`ignore`).
   */
  stderr: 'merge' | 'tail' | 'ignore';
  /** Characters of output kept in memory (the beginning and the end; see BoundedText). */
  outputChars: number;
  /** Kill the process group once stdout passes this many bytes (`overflowed` then says so). */
  maxStdoutBytes?: number;
  timeoutMs: number;
  /** Put into the output at the moment the timeout kills the process group. */
  timeoutNote?: string;
  /**
   * After the process exits, how long to wait for output from background processes still holding
   * its pipes. Without it the result waits for the pipes to close.
   */
  pipeGraceMs?: number;
}

export type ProcessOutcome =
  /** The spawn itself threw (nothing ran). */
  | { started: false; error: Error }
  | {
      started: true;
      code: number | null;
      signal: NodeJS.Signals | null;
      output: BoundedText;
      /** The end of stderr, with `stderr: 'tail'`. */
      stderr: string;
      timedOut: boolean;
      overflowed: boolean;
      /** The process could not be started (Node reports it, then closes). */
      error?: Error;
    };

export class Processes {
  private readonly running = new Set<ChildProcess>();
  private readonly workers = new Set<Worker>();

  constructor(readonly confinement: Confinement) {}

  /** Runs a command to completion. Never rejects. */
  run(spec: ProcessSpec): Promise<ProcessOutcome> {
    return new Promise<ProcessOutcome>((resolve) => {
      let child: ChildProcess;
      try {
        // detached => setsid, so the command has its own process group to kill.
        child = this.confinement.spawn(spec.argv[0]!, spec.argv.slice(1), {
          cwd: spec.cwd,
          env: spec.env,
          stdio: [spec.stdin === undefined ? 'ignore' : 'pipe', 'pipe', spec.stderr === 'ignore' ? 'ignore' : 'pipe'],
          detached: true,
        }, spec.as ?? 'sandbox');
      } catch (err) {
        resolve({ started: false, error: err as Error });
        return;
      }
      this.running.add(child);
      const output = new BoundedText(spec.outputChars);
      const stdoutText = new StringDecoder('utf8');
      const stderrText = new StringDecoder('utf8');
      let stderr = '';
      let stdoutBytes = 0;
      let timedOut = false;
      let overflowed = false;
      let error: Error | undefined;
      let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
      let grace: NodeJS.Timeout | undefined;
      let done = false;
      const timer = setTimeout(() => {
        timedOut = true;
        if (spec.timeoutNote) output.push(spec.timeoutNote);
        this.killGroup(child);
      }, spec.timeoutMs);

      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (grace) clearTimeout(grace);
        this.running.delete(child);
        output.push(stdoutText.end());
        if (spec.stderr === 'merge') output.push(stderrText.end());
        if (!child.stdout?.destroyed) child.stdout?.destroy();
        if (!child.stderr?.destroyed) child.stderr?.destroy();
        resolve({ started: true, code: exit?.code ?? null, signal: exit?.signal ?? null, output, stderr, timedOut, overflowed, error });
      };

      child.stdout!.on('data', (chunk: Buffer) => {
        if (spec.maxStdoutBytes !== undefined) {
          stdoutBytes += chunk.length;
          if (stdoutBytes > spec.maxStdoutBytes) {
            overflowed = true;
            this.killGroup(child);
            return;
          }
        }
        output.push(stdoutText.write(chunk));
      });
      child.stdout!.on('error', () => {});
      if (child.stderr) {
        child.stderr.on('data', (chunk: Buffer) => {
          if (spec.stderr === 'merge') output.push(stderrText.write(chunk));
          else stderr = (stderr + stderrText.write(chunk)).slice(-STDERR_TAIL_CHARS);
        });
        child.stderr.on('error', () => {});
      }
      if (spec.stdin !== undefined) {
        child.stdin!.on('error', () => {});
        child.stdin!.end(spec.stdin);
      }
      // A process that cannot start reports 'error' and then 'close' (never 'exit').
      child.on('error', (err) => {
        error ??= err;
      });
      child.on('exit', (code, signal) => {
        exit = { code, signal };
        if (spec.pipeGraceMs !== undefined) grace = setTimeout(finish, spec.pipeGraceMs);
      });
      child.on('close', (code, signal) => {
        exit ??= { code, signal };
        finish();
      });
    });
  }

  /** Kills a command's process group (see Confinement.killGroup). */
  killGroup(child: ChildProcess): void {
    this.confinement.killGroup(child);
  }

  /** Tracks a long-lived child (the bash session) until `forget`, so that `shutdown` kills its group. */
  adopt(child: ChildProcess): void {
    this.running.add(child);
  }

  forget(child: ChildProcess): void {
    this.running.delete(child);
  }

  /** Tracks a worker thread until `untrack`, so that `shutdown` stops it. */
  track(worker: Worker): void {
    this.workers.add(worker);
  }

  untrack(worker: Worker): void {
    this.workers.delete(worker);
  }

  /** Kills every running command's process group and grep worker. */
  shutdown(): void {
    for (const child of this.running) this.killGroup(child);
    for (const worker of this.workers) void worker.terminate();
  }
}
