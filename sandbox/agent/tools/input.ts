/**
 * What every tool shares: its result, the tool-level error, and the checks of its input (a bad
 * input is a tool error the model can correct, never a crash).
 */

export const DEFAULT_TOOL_TIMEOUT_MS = 120_000;
export const MAX_TOOL_TIMEOUT_MS = 600_000;
/** Directory names never descended into by glob (unless named in the pattern) and grep. */
export const SKIP_DIRS = new Set(['.git', 'node_modules']);
/** Most directory entries a glob or grep walk visits. */
export const WALK_ENTRY_LIMIT = 200_000;

export interface ToolResult {
  output: string;
  is_error: boolean;
}

/** A tool's input, as the model sent it (checked field by field by the tool). */
export type ToolInput = Record<string, unknown>;

/** A tool-level failure: reported to the model as `is_error: true`, never a crash. */
export class ToolError extends Error {}

/** A required string field (non-empty unless `allowEmpty`), without NUL characters. */
export function str(input: ToolInput, key: string, opts: { allowEmpty?: boolean } = {}): string {
  const value = input[key];
  if (typeof value !== 'string') throw new ToolError(`"${key}" must be a string`);
  if (!opts.allowEmpty && value === '') throw new ToolError(`"${key}" must not be empty`);
  if (value.includes('\0')) throw new ToolError(`"${key}" must not contain NUL characters`);
  return value;
}

/** An optional string field: absent, null and empty are all `undefined`. */
export function optStr(input: ToolInput, key: string): string | undefined {
  const value = input[key];
  if (value === undefined || value === null || value === '') return undefined;
  return str(input, key);
}

/** An optional boolean field, false when absent. */
export function optBool(input: ToolInput, key: string): boolean {
  const value = input[key];
  if (value === undefined || value === null) return false;
  if (typeof value !== 'boolean') throw new ToolError(`"${key}" must be a boolean`);
  return value;
}

/** A file system error as the model should read it, naming the path it was given. */
export function errnoMessage(err: unknown, displayPath: string): string {
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

/** The smallest positive candidate (else the default), clamped to 1 ms..MAX_TOOL_TIMEOUT_MS. */
export function clampTimeout(...candidates: unknown[]): number {
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

