import { sleep } from '../../sleep.js';
import { withMemoryPrompt } from '../../memory/session-resource.js';
import { StepDeadlineError } from '../../sandbox/types.js';
import type { EventBody, SessionEvent } from '../../session/events.js';
import { appendAfter, appendLeading } from '../append.js';
import { requestEnd } from '../bodies.js';
import { buildView, withCacheBreakpoints } from '../context.js';
import { watchInterrupt } from '../interrupts.js';
import { ModelError, type ModelResponse } from '../model.js';
import { PreviewPublisher } from '../previews.js';
import type { PreviewChannel } from '../../session/previews.js';
import { modelOptions } from '../model-options.js';
import { DEFAULT_MAX_MODEL_ATTEMPTS } from '../state.js';
import { buildToolbox } from '../tools.js';
import { threadToolSpecs } from '../../threads/multiagent.js';
import { LeaseLostError, type HarnessOptions, type StepContext } from '../step.js';
import { responseEvents } from './model-response.js';
import { withSpan } from '../../telemetry/trace.js';

/**
 * Delay before retry `retry` (1 for the second attempt) of a failed model call: the option's, or
 * exponential from 1 s, capped at 30 s, with jitter (half to all of it) so that sessions failed by
 * the same outage do not retry in step.
 */
export function retryDelayMs(retry: number, opts: Pick<HarnessOptions, 'retryDelayMs'> = {}, random: () => number = Math.random): number {
  return opts.retryDelayMs?.(retry) ?? Math.min(30_000, 1000 * 2 ** (retry - 1)) * (0.5 + random() / 2);
}

export type RetryStatus = 'retrying' | 'exhausted' | 'terminal';

/**
 * What a failed model call writes: the request's end, a `session.error` that says whether it is
 * retried, and idle when it is not (`retries_exhausted` after the last attempt, `end_turn` on an
 * error retrying cannot fix). A call cut by the step's deadline counts as a failed attempt, so a
 * call that never fits in a step cannot loop forever.
 */
export function failedRequest(
  startId: string,
  err: unknown,
  at: { attempt: number; maxAttempts: number; byDeadline: boolean },
): { error: ModelError; retryStatus: RetryStatus; bodies: EventBody[] } {
  const e = at.byDeadline
    ? new ModelError('model_request_failed_error', true, "the model call did not finish before the harness step's deadline; it is tried again in a new step")
    : err instanceof ModelError
      ? err
      : new ModelError('model_request_failed_error', true, String((err as Error)?.message ?? err));
  const exhausted = e.retryable && at.attempt >= at.maxAttempts;
  const retryStatus: RetryStatus = !e.retryable ? 'terminal' : exhausted ? 'exhausted' : 'retrying';
  const bodies: EventBody[] = [
    requestEnd(startId, null, true),
    { type: 'session.error', error: { type: e.errorType, message: e.message, retry_status: { type: retryStatus } } },
  ];
  if (retryStatus !== 'retrying') {
    bodies.push({ type: 'session.status_idle', stop_reason: { type: exhausted ? 'retries_exhausted' : 'end_turn' }, stop_details: null });
  }
  return { error: e, retryStatus, bodies };
}

/**
 * The model's view: the window from the view's start (as the wake holds it, or one read), summary
 * first, and the tools offered.
 */
async function view(ctx: StepContext) {
  const { session, state } = ctx;
  const events = ctx.window ?? (await ctx.deps.events.getEvents(session.id, { from: state.view.start }));
  const view = buildView(events, { start: state.view.start, summary: state.view.summary });
  const { tools: mcpTools, errors } = await ctx.mcpTools.list(session);
  const toolbox = buildToolbox(session.agent.tools, { readLog: view.partial, mcpServers: session.agent.mcp_servers, mcpTools });
  // A coordinator also has the tools that spawn and message its threads (threads/multiagent.ts).
  if (session.thread_roster) {
    for (const spec of threadToolSpecs(session.thread_roster.map((r) => r.name))) if (!toolbox.routes.has(spec.name)) toolbox.specs.push(spec);
  }
  return { events, view, toolbox, errors };
}

/**
 * Call the model (attempt `attempt` of this turn, after the retry delay when it is a retry):
 * open the request span, call with the view, watch for an interrupt meanwhile, and write the
 * answer (or the failure) after the span as one batch. While the model streams, its text is
 * published as previews (harness/previews.ts) when the harness has a channel for them; the last
 * of them goes out before the answer is appended, and the stored events carry the previews' ids.
 */
export async function callModel(ctx: StepContext, attempt: number, opening: SessionEvent[] = []) {
  const { lost, cut, session, state } = ctx;
  const sessionId = session.id;
  if (attempt > 1) {
    await sleep(retryDelayMs(attempt - 1, ctx.opts), AbortSignal.any([lost, cut]));
    if (cut.aborted && !lost.aborted) throw new StepDeadlineError('the retry delay');
  }
  const { view: v, toolbox, errors } = await view(ctx);
  // The request goes out once the batch's head is in (the request's start is durable from then
  // on: the head carries it); the rest of the batch is written meanwhile, and awaited below,
  // before anything else is appended.
  const opened = await appendLeading(ctx.deps, sessionId, state.position, [...opening, ...errors, { type: 'span.model_request_start' }]);
  const start = opened.events[opened.events.length - 1];
  /** Where the request's start landed (after user events that came in meanwhile, if any). */
  const landed = async () => (await opened.stored).at(-1)!.position;
  const controller = new AbortController();
  // Watched from before the batch: an interrupt that lands among its events is seen too.
  const stopWatching = watchInterrupt(ctx.deps, sessionId, state.position, lost, controller, ctx.opts.interruptPollMs);
  const started = Date.now();
  const preview = ctx.deps.previews && (await watched(ctx.deps.previews, sessionId))
    ? new PreviewPublisher(ctx.deps.previews, sessionId, start.id, {
        onError: (err) => ctx.log.warn('preview publish failed; this request is not previewed further', { sessionId, error: String((err as Error)?.message ?? err) }),
      })
    : undefined;
  let response: ModelResponse;
  try {
    // The request's span, named as the log's `span.model_request_*` events (whose start event's
    // id it carries): the model id, the attempt, the token counts, the time to first token.
    response = await withSpan(
      'model_request',
      { kind: 'client', attributes: { 'corral.session.id': sessionId, 'corral.event.id': start.id, 'gen_ai.request.model': session.agent.model.id, 'corral.model_request.attempt': attempt } },
      async (span) => {
        const r = await ctx.deps.model.complete(
          {
            model: session.agent.model.id,
            system: withMemoryPrompt(session.agent.system, session.resources),
            messages: withCacheBreakpoints(v.messages, state.view.summary !== null) as never,
            tools: toolbox.specs,
            maxTokens: ctx.opts.maxTokens ?? 8192,
            cache: true,
            options: modelOptions(session.agent.model),
          },
          { signal: AbortSignal.any([controller.signal, cut]), onDelta: preview && ((d) => preview.onDelta(d)) },
        );
        span.setAttributes({
          'gen_ai.usage.input_tokens': r.usage.input_tokens,
          'gen_ai.usage.output_tokens': r.usage.output_tokens,
          'gen_ai.usage.cache_read_input_tokens': r.usage.cache_read_input_tokens,
          'gen_ai.usage.cache_creation_input_tokens': r.usage.cache_creation_input_tokens,
          'gen_ai.response.finish_reason': r.stopReason ?? undefined,
          'corral.model_request.time_to_first_token_ms': r.timeToFirstTokenMs ?? undefined,
        });
        return r;
      },
    );
  } catch (err) {
    stopWatching();
    preview?.abandon(); // the request's end (appended below, or by the next decision) closes the preview
    if (controller.signal.aborted) {
      if (lost.aborted) {
        await opened.stored.catch(() => undefined);
        throw new LeaseLostError(sessionId);
      }
      await opened.stored;
      return; // interrupted: the next decision closes the request and the turn
    }
    // Cut by the deadline: the request is closed as a failed attempt, and a new wake retries it.
    const byDeadline = cut.aborted;
    const failed = failedRequest(start.id, err, { attempt, maxAttempts: ctx.opts.maxModelAttempts ?? DEFAULT_MAX_MODEL_ATTEMPTS, byDeadline });
    ctx.opts.observer?.modelCall?.({ sessionId, timeToFirstTokenMs: null, durationMs: Date.now() - started, ok: false });
    ctx.log.warn('model call failed', { sessionId, attempt, errorType: failed.error.errorType, retryStatus: failed.retryStatus });
    await appendAfter(ctx.deps, sessionId, await landed(), failed.bodies);
    if (byDeadline) throw new StepDeadlineError('the model call');
    return;
  }
  stopWatching();
  const position = await landed();
  ctx.opts.observer?.modelCall?.({
    sessionId,
    timeToFirstTokenMs: response.timeToFirstTokenMs,
    durationMs: Date.now() - started,
    ok: true,
  });
  await preview?.finish();
  await appendAfter(ctx.deps, sessionId, position, responseEvents(start.id, response, toolbox, preview?.ids(), new Date(), state.outcome === null));
}

/** Whether a stream watches the session's previews; a channel that cannot tell, or fails to, counts as watched. */
async function watched(channel: PreviewChannel, sessionId: string): Promise<boolean> {
  if (!channel.watched) return true;
  try {
    return await channel.watched(sessionId);
  } catch {
    return true;
  }
}
