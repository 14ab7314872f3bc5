/** write and edit: replace a file's content, or one (or every) occurrence of a string in it. */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { resolveIn, type ToolContext } from './context.js';
import { ToolError, errnoMessage, optBool, str, type ToolInput, type ToolResult } from './input.js';

export async function write(input: ToolInput, ctx: ToolContext): Promise<ToolResult> {
  const display = str(input, 'file_path');
  const content = str(input, 'content', { allowEmpty: true });
  const abs = resolveIn(ctx, display);
  try {
    await fsp.mkdir(path.dirname(abs), { recursive: true });
    await fsp.writeFile(abs, content);
  } catch (err) {
    throw new ToolError(errnoMessage(err, display));
  }
  return { output: `Wrote ${Buffer.byteLength(content)} bytes to ${display}`, is_error: false };
}

export async function edit(input: ToolInput, ctx: ToolContext): Promise<ToolResult> {
  const display = str(input, 'file_path');
  const oldString = str(input, 'old_string');
  const newString = str(input, 'new_string', { allowEmpty: true });
  const replaceAll = optBool(input, 'replace_all');
  if (oldString === newString) throw new ToolError('old_string and new_string are identical; nothing to change');
  const abs = resolveIn(ctx, display);
  let content: string;
  try {
    const st = await fsp.stat(abs);
    if (st.isDirectory()) throw new ToolError(`${display}: is a directory`);
    content = await fsp.readFile(abs, 'utf8');
  } catch (err) {
    if (err instanceof ToolError) throw err;
    throw new ToolError(errnoMessage(err, display));
  }
  let count = 0;
  for (let i = content.indexOf(oldString); i !== -1; i = content.indexOf(oldString, i + oldString.length)) count++;
  if (count === 0) throw new ToolError(`old_string not found in ${display}`);
  if (count > 1 && !replaceAll) {
    throw new ToolError(
      `old_string occurs ${count} times in ${display}; add surrounding context to make it unique, or set replace_all`,
    );
  }
  let updated: string;
  if (replaceAll) {
    updated = content.split(oldString).join(newString);
  } else {
    const at = content.indexOf(oldString);
    updated = content.slice(0, at) + newString + content.slice(at + oldString.length);
  }
  try {
    await fsp.writeFile(abs, updated);
  } catch (err) {
    throw new ToolError(errnoMessage(err, display));
  }
  return { output: `Replaced ${count} occurrence${count === 1 ? '' : 's'} in ${display}`, is_error: false };
}
