/**
 * bash: each command runs in a fresh shell in the workspace, its stderr merged into stdout, in a
 * process group of its own that the timeout kills.
 */
import { limitHit } from '../../limits.js';
import { SANDBOX_PATH } from '../confinement.js';
import { MAX_OUTPUT_CHARS, withStatusLine } from '../output.js';
import type { ToolContext } from './context.js';
import { clampTimeout, optBool, str, type ToolInput, type ToolResult } from './input.js';

/** After bash exits, how long to wait for output from background processes still holding the pipe. */
const PIPE_GRACE_MS = 250;

export async function bash(input: ToolInput, ctx: ToolContext): Promise<ToolResult> {
  const restart = optBool(input, 'restart');
  const command = input.command;
  if (restart && (command === undefined || command === null || command === '')) {
    return {
      output: 'bash restarted. (Each command runs in a fresh shell; no shell state carries over between calls.)',
      is_error: false,
    };
  }
  const cmd = str(input, 'command');
  const timeoutMs = clampTimeout(input.timeout_ms, ctx.requestTimeoutMs);
  const run = await ctx.processes.run({
    // The outer bash merges stderr into stdout (one pipe keeps the order), then becomes the
    // user's shell.
    argv: ['/bin/bash', '-c', 'exec 2>&1; exec -a bash /bin/bash -c "$1"', 'bash', cmd],
    cwd: ctx.workspace,
    env: { PATH: SANDBOX_PATH, HOME: ctx.workspace, LANG: 'C.UTF-8', TERM: 'dumb' },
    stderr: 'ignore',
    outputChars: MAX_OUTPUT_CHARS,
    timeoutMs,
    pipeGraceMs: PIPE_GRACE_MS,
  });
  if (!run.started) return { output: `bash: could not start: ${run.error.message}`, is_error: true };
  const { output: out, code, signal } = run;
  const limits = ctx.processes.confinement.limits;
  if (run.error) {
    return { output: withStatusLine(out, `[bash could not start: ${run.error.message}]`), is_error: true };
  }
  if (run.timedOut) {
    return { output: withStatusLine(out, `[command timed out after ${timeoutMs} ms; its process group was killed]`), is_error: true };
  }
  const hit = code !== 0 && limits ? limitHit(limits, { code, signal }, out.text()) : null;
  if (hit) {
    const status = code !== null ? `exit code ${code}` : `killed by signal ${signal ?? 'unknown'}`;
    return { output: withStatusLine(out, `[${status}; ${hit}]`), is_error: true };
  }
  if (code === 0) return { output: out.text(), is_error: false };
  if (code !== null) return { output: withStatusLine(out, `[exit code ${code}]`), is_error: true };
  return { output: withStatusLine(out, `[killed by signal ${signal ?? 'unknown'}]`), is_error: true };
}
