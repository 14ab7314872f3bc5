/**
 * bash: the command runs in the sandbox's persistent shell (see ../shell.ts): the working
 * directory and the environment carry over between calls, stderr is merged into stdout, stdin is
 * /dev/null, and a timeout kills the command with its shell. `restart: true` starts a fresh shell.
 */
import type { ToolContext } from './context.js';
import { clampTimeout, optBool, str, ToolError, type ToolInput, type ToolResult } from './input.js';

export async function bash(input: ToolInput, ctx: ToolContext): Promise<ToolResult> {
  const restart = optBool(input, 'restart');
  const command = input.command;
  const noCommand = command === undefined || command === null || command === '';
  // Check the input before anything is restarted.
  const cmd = noCommand && restart ? undefined : str(input, 'command');
  const shell = ctx.shell;
  if (!shell) throw new ToolError('internal error: no shell session here');
  const timeoutMs = clampTimeout(input.timeout_ms, ctx.requestTimeoutMs);
  if (restart) await shell.restart();
  if (cmd === undefined) {
    return { output: 'The bash session was restarted: a fresh shell in the workspace; working directory and environment were reset.', is_error: false };
  }
  return shell.run(cmd, timeoutMs);
}
