/**
 * grep: the lines matching a regular expression in a file or below a directory. The search runs
 * in a worker thread, so a pathological regular expression is stopped at the timeout.
 */
import fsp from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { resolveIn, type ToolContext } from './context.js';
import { globToRegExp } from './glob-pattern.js';
import { SKIP_DIRS, ToolError, WALK_ENTRY_LIMIT, clampTimeout, errnoMessage, optBool, optStr, str, type ToolInput, type ToolResult } from './input.js';

export const GREP_MATCH_LIMIT = 1000;
const GREP_MAX_FILE_BYTES = 20 * 1024 * 1024;
const GREP_MAX_LINE_CHARS = 500;

// The worker: plain JS, evaluated in a worker thread so a pathological regex can be stopped.
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

export async function grep(input: ToolInput, ctx: ToolContext): Promise<ToolResult> {
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
  const root = resolveIn(ctx, searchPath ?? '.');
  let rootIsFile: boolean;
  try {
    const st = await fsp.stat(root);
    rootIsFile = !st.isDirectory();
  } catch (err) {
    throw new ToolError(errnoMessage(err, searchPath ?? root));
  }
  const timeoutMs = clampTimeout(ctx.requestTimeoutMs);
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
  ctx.processes.track(worker);
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
  ctx.processes.untrack(worker);
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
