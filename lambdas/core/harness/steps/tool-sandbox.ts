import { DEFAULT_SANDBOX } from '../../sandbox/manager.js';
import type { SandboxToolName } from '../../sandbox/types.js';
import { expectEvent, type EventBody } from '../../session/events.js';
import { appendAfter } from '../append.js';
import { toolResultBody } from '../bodies.js';
import { watchInterrupt } from '../interrupts.js';
import { sandboxRecipe } from '../recipe.js';
import type { OpenTool } from '../state.js';
import { LeaseLostError, type StepContext } from '../step.js';

/**
 * A tool of the agent toolset, run in the sandbox the model named (`input.sandbox`, else the
 * default one), provisioned now if the session has none ready. The call is keyed by the tool
 * use's id, so a call repeated after a crash or a deadline gets the first one's result.
 */
export async function runSandboxTool(ctx: StepContext, tool: OpenTool, name: SandboxToolName) {
  const { lost, session } = ctx;
  const sessionId = session.id;
  const tail = ctx.state.position;
  const [stored] = await ctx.deps.events.getEvents(sessionId, { from: tool.position, to: tool.position + 1 });
  const toolUse = expectEvent(stored.event, 'agent.tool_use', 'agent.custom_tool_use');
  const { sandbox = DEFAULT_SANDBOX, ...input } = toolUse.input ?? {};
  const controller = new AbortController();
  const stopWatching = watchInterrupt(ctx.deps, sessionId, tail, lost, controller, ctx.opts.interruptPollMs);
  const started = Date.now();
  try {
    const report = await ctx.deps.sandboxes.execute(sessionId, String(sandbox), await sandboxRecipe(ctx.deps, session), name, input, {
      idempotencyKey: toolUse.id,
      signal: controller.signal,
      // At the deadline the manager stops waiting (or provisioning) and throws StepDeadlineError;
      // the tool goes on in the sandbox, and the next wake's call with this key gets its result.
      ...(ctx.deadline !== undefined ? { deadline: ctx.deadline } : {}),
    });
    ctx.opts.observer?.toolCall?.({
      sessionId,
      tool: tool.name,
      sandbox: report.sandbox,
      durationMs: Date.now() - started,
      provisionMs: report.provisionMs,
      isError: report.isError,
    });
    stopWatching();
    const result: EventBody = {
      ...toolResultBody(toolUse.id, report.output, report.isError),
      sandbox: report.sandbox,
      ...(report.packages ? { sandbox_packages: report.packages } : {}),
    };
    // A recipe that failed (a repository that would not clone) is also a session error of its type.
    const setup: EventBody[] = report.setupError
      ? [{ type: 'session.error', error: { type: report.setupError.type, message: report.setupError.message, retry_status: { type: 'terminal' } } }]
      : [];
    await appendAfter(ctx.deps, sessionId, tail, [result, ...setup]);
  } catch (err) {
    stopWatching();
    if (controller.signal.aborted) {
      if (lost.aborted) throw new LeaseLostError(sessionId);
      return; // interrupted: the next decision records it
    }
    throw err;
  }
}
