import path from 'node:path';
import type { Processes } from '../process.js';
import type { ShellSession } from '../shell.js';

/** What a tool runs with. */
export interface ToolContext {
  /** Relative paths in the input are relative to it. */
  workspace: string;
  /** The request's `timeout_ms`, if any (clamped by each tool). */
  requestTimeoutMs: number | undefined;
  /** Starts and tracks child processes and workers, confined (limits, the tools' user). */
  processes: Processes;
  /** The sandbox's persistent bash session (absent in the file-tool child, which never runs bash). */
  shell?: ShellSession;
}

/** A path from the input, absolute (relative ones are in the workspace). */
export function resolveIn(ctx: ToolContext, p: string): string {
  return path.resolve(ctx.workspace, p);
}
