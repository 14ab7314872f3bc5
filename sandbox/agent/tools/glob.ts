/** glob: the paths below a directory that match a pattern, sorted, walked without following links. */
import type fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { resolveIn, type ToolContext } from './context.js';
import { globToRegExp, hasGlobMeta } from './glob-pattern.js';
import { SKIP_DIRS, ToolError, WALK_ENTRY_LIMIT, clampTimeout, errnoMessage, optStr, str, type ToolInput, type ToolResult } from './input.js';

export const GLOB_RESULT_LIMIT = 1000;

export async function glob(input: ToolInput, ctx: ToolContext): Promise<ToolResult> {
  let pattern = str(input, 'pattern');
  const searchPath = optStr(input, 'path');
  let root = resolveIn(ctx, searchPath ?? '.');
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
  const deadline = Date.now() + clampTimeout(ctx.requestTimeoutMs);
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
