/**
 * The `agent_toolset_20260401` tools the agent runs, one module each (write and edit together),
 * and the one place a call is dispatched to its tool.
 */
import { MAX_OUTPUT_CHARS, truncateOutput } from '../output.js';
import { bash } from './bash.js';
import type { ToolContext } from './context.js';
import { edit, write } from './files.js';
import { glob } from './glob.js';
import { grep } from './grep.js';
import { ToolError, type ToolInput, type ToolResult } from './input.js';
import { read } from './read.js';

export const TOOLS = ['bash', 'read', 'write', 'edit', 'glob', 'grep'] as const;
export type Tool = (typeof TOOLS)[number];

export interface ExecuteRequest {
  tool: Tool;
  input: ToolInput;
  idempotency_key?: string;
  timeout_ms?: number;
}

const RUN: Record<Tool, (input: ToolInput, ctx: ToolContext) => Promise<ToolResult>> = { bash, read, write, edit, glob, grep };

/** Runs a tool in this process, as this process's user, its output bounded. Never rejects. */
export async function runTool(req: ExecuteRequest, ctx: ToolContext): Promise<ToolResult> {
  let result: ToolResult;
  try {
    result = await RUN[req.tool](req.input, ctx);
  } catch (err) {
    const message = err instanceof ToolError ? err.message : `internal error: ${(err as Error)?.message ?? String(err)}`;
    result = { output: `${req.tool}: ${message}`, is_error: true };
  }
  return { output: truncateOutput(result.output, MAX_OUTPUT_CHARS), is_error: result.is_error };
}

export type { ToolContext } from './context.js';
export type { ToolInput, ToolResult } from './input.js';
export { DEFAULT_TOOL_TIMEOUT_MS, MAX_TOOL_TIMEOUT_MS, clampTimeout } from './input.js';
export { GLOB_RESULT_LIMIT } from './glob.js';
export { GREP_MATCH_LIMIT } from './grep.js';
