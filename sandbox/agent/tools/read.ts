/** read: a file's lines, numbered, optionally a range of them; streamed, so any size is fine. */
import fsp, { type FileHandle } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';
import { BoundedText, MAX_OUTPUT_CHARS } from '../output.js';
import { resolveIn, type ToolContext } from './context.js';
import { ToolError, errnoMessage, str, type ToolInput, type ToolResult } from './input.js';

export async function read(input: ToolInput, ctx: ToolContext): Promise<ToolResult> {
  const display = str(input, 'file_path');
  const abs = resolveIn(ctx, display);
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
