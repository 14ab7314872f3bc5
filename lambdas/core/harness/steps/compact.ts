import { StepDeadlineError } from '../../sandbox/types.js';
import type { StoredEvent } from '../../session/events.js';
import { append } from '../append.js';
import { buildView } from '../context.js';
import { modelOptions } from '../model-options.js';
import { viewChars } from '../state.js';
import { viewBudgetChars, viewBudgetEvents, type StepContext } from '../step.js';

const SUMMARY_PROMPT =
  'The conversation above is the beginning of a long agent session. Write a summary of it that ' +
  'lets you carry on the work without it: the task, what was done and found (files, commands, ' +
  'results), decisions, and what remains. Be specific and brief; use plain prose and lists.';

/**
 * Where to cut the view (`events`, read from the view's start) for compaction: the index of the
 * first event kept. Pure.
 */
export function compactionBoundary(events: StoredEvent[], budget: { chars: number; events: number }): number {
  // Cut right before a model request: every earlier tool call has its result by then, so the
  // part that stays starts cleanly. Keep as much as fits half of each budget.
  let boundary = -1;
  let keptChars = 0;
  for (let i = events.length - 1; i >= 0; i--) {
    keptChars += viewChars(events[i].event);
    const keptEvents = events.length - i;
    if (keptChars > budget.chars / 2 || keptEvents > budget.events / 2) break;
    if (events[i].event.type === 'span.model_request_start' && i > 0) boundary = i;
  }
  if (boundary < 0) {
    // Nothing fits half the budget: keep only from the last model request.
    for (let i = events.length - 1; i > 0 && boundary < 0; i--) if (events[i].event.type === 'span.model_request_start') boundary = i;
  }
  if (boundary <= 0) boundary = events.length; // no clean cut: summarise all of it
  return boundary;
}

/**
 * Compaction: summarise the older part of the view with the model and append the summary as
 * `agent.thread_context_compacted`. The view then starts after it; the summarised events stay
 * in the log, readable with `getEvents` and, for the model, `read_session_log`.
 */
export async function compact(ctx: StepContext) {
  const { session, state, cut } = ctx;
  const sessionId = session.id;
  const events = await ctx.deps.events.getEvents(sessionId, { from: state.view.start });
  const budgetChars = viewBudgetChars(ctx.opts);
  const boundary = compactionBoundary(events, { chars: budgetChars, events: viewBudgetEvents(ctx.opts) });
  const older = events.slice(0, boundary);
  const kept = events.slice(boundary);
  const upTo = older.length ? older[older.length - 1].position : state.view.start - 1;
  let summary: string;
  try {
    const view = buildView(older, { start: state.view.start, summary: state.view.summary });
    const messages = [...view.messages];
    const instruction = { type: 'text', text: SUMMARY_PROMPT };
    if (messages.length && messages[messages.length - 1].role === 'user') messages[messages.length - 1].content.push(instruction);
    else messages.push({ role: 'user', content: [instruction] });
    const response = await ctx.deps.model.complete(
      {
        model: session.agent.model.id,
        system: session.agent.system ?? undefined,
        messages: messages as never,
        tools: [],
        maxTokens: 4096,
        // The agent's effort, speed and inference geography hold for the summary too; a summary
        // needs no thinking of its own.
        options: modelOptions(session.agent.model, { thinking: false }),
      },
      { signal: cut },
    );
    summary = response.content
      .filter((b) => b.type === 'text')
      .map((b) => String((b as { text?: unknown }).text ?? ''))
      .join('\n')
      .trim();
    if (!summary) throw new Error('empty summary');
    // A summary must leave room for the conversation that follows it.
    if (summary.length > budgetChars / 4) summary = `${summary.slice(0, budgetChars / 4)}\n[summary cut short]`;
  } catch (err) {
    // Cut by the deadline: nothing written; the next wake compacts afresh.
    if (cut.aborted) throw new StepDeadlineError('the summary');
    ctx.log.warn('summary failed; compacting with a plain note', { sessionId, error: String((err as Error)?.message ?? err) });
    summary =
      `(No summary could be written. Events ${state.view.start} to ${upTo} are out of view; ` +
      `${state.view.summary ? `before them: ${state.view.summary.text}` : ''})`;
  }
  await append(ctx.deps, sessionId, state.position, [
    {
      type: 'agent.thread_context_compacted',
      summary,
      from_position: state.view.start,
      up_to_position: upTo,
      retained_chars: kept.reduce((n, e) => n + viewChars(e.event), 0),
      retained_events: kept.length,
    },
  ]);
}
