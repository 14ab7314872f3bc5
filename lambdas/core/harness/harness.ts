import { FoldCache } from './fold-cache.js';
import { McpToolCache } from './mcp-tools.js';
import { silentLogger, type HarnessDeps, type HarnessOptions, type HarnessParts } from './step.js';
import { wakeSession, type WakeResult } from './wake.js';
import { withSpan } from '../telemetry/trace.js';

export type { HarnessDeps, HarnessLogger, HarnessObserver, HarnessOptions } from './step.js';
export type { WakeResult } from './wake.js';

/**
 * The harness: stateless between wakes. `wake(sessionId)` takes the session's lease, folds the
 * events after its cursor into the turn state, decides the next action from that state alone
 * (`decide`), performs it (a model call, a tool call, a status change), appends what it produced
 * right after the last position it read, and repeats until there is nothing to do. A step reads
 * the new events and the model's view, never the whole log, so its cost does not grow with the
 * session.
 *
 * The pieces: the wake loop (lease, fencing, cursor, deadline, handing on) is wake.ts; each
 * decision is performed by its module in steps/ (start-turn, call-model, run-tool and its
 * tool-* routes, compact, finish, complete-batch), given a `StepContext` (step.ts). Interrupt
 * watching is interrupts.ts, the MCP tool lists mcp-tools.ts, the session record's status,
 * usage and budget record.ts. What a harness keeps between wakes is that cache and the folds of
 * the logs it last woke (fold-cache.ts), which spare a later wake the cursor's read: nothing that
 * a fresh harness could not rebuild from the log.
 */
export class Harness {
  private readonly parts: HarnessParts;

  constructor(deps: HarnessDeps, opts: HarnessOptions = {}) {
    const log = opts.logger ?? silentLogger;
    this.parts = { deps, opts, log, mcpTools: new McpToolCache(deps.mcp, log), folds: new FoldCache() };
  }

  /**
   * Run the session until there is nothing to do, or until `deadline` (epoch ms). The deadline
   * reaches every long call: a model call is aborted at it, a sandbox tool call stops waiting
   * (the tool goes on in the sandbox and the next wake picks its result up by idempotency key),
   * a provisioning is stopped. A wake cut that way saves its cursor, queues its continuation and
   * returns `yielded`, as one that reaches the deadline between actions does. `traceparent`: the
   * wake message's trace context, continued by the step's span.
   */
  wake(sessionId: string, opts: { deadline?: number; owner?: string; traceparent?: string } = {}): Promise<WakeResult> {
    const { traceparent, ...rest } = opts;
    // The step's span continues the trace of the wake that asked for it (the message's
    // `traceparent`), or starts one: never the span the queue's delivery happened to run in.
    return withSpan('harness.step', { kind: 'consumer', parent: traceparent ?? null, attributes: { 'corral.session.id': sessionId } }, async (span) => {
      const result = await wakeSession(this.parts, sessionId, rest);
      span.setAttributes({ 'corral.wake.status': result.status });
      return result;
    });
  }
}
