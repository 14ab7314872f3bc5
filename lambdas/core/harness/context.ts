import { isToolResult, toolUseIdOf, type SessionEvent, type StoredEvent, type ToolResultEvent, type SystemMessageEvent, type UserMessageEvent } from '../session/events.js';
import type { UserDefineOutcomeEvent } from '../session/events.js';
import { VIEW_BLOCK_CHARS } from './state.js';
import { outcomeFeedback, outcomeTask } from './outcome.js';
import { mcpToolName } from '../mcp/gateway.js';

/** A Messages API message; `system` is a mid-conversation system message (from `system.message`). */
export type MessageParam = { role: 'user' | 'assistant' | 'system'; content: Array<Record<string, unknown>> };

/**
 * The model's view of the session. The log is never changed to fit the model: for every model
 * call the view is rebuilt from a slice of the log by a pipeline of pure transformations over
 * the events, then turned into Messages API messages:
 *
 *   window (from the view's start) -> elide old verbose tool output -> clip huge blocks
 *   -> messages (with the summary of what came before the window first)
 *   -> cache breakpoints (a stable prefix for prompt caching)
 *
 * Everything left out stays in the log; the stubs say where, and the model can read it back
 * with the `read_session_log` tool. Thinking blocks go back to the model as it gave them (with
 * their signatures), ahead of the answer they belong to, and are never clipped or elided.
 */

/** One step of the view pipeline: events in, events out. Pure. */
export type ViewTransform = (events: StoredEvent[]) => StoredEvent[];

/** Only the events at or after `position`. */
export const windowFrom =
  (position: number): ViewTransform =>
  (events) =>
    events.filter((e) => e.position >= position);

/** The event with `f` applied to the text of its text blocks (events without content are as they were). */
function mapText(event: SessionEvent, f: (text: string) => string): SessionEvent {
  // Read as `unknown`: stored blocks are checked here, whatever their declared type says (each
  // keeps its own type: a text block stays a text block, so the event keeps its type).
  if (!('content' in event)) return event;
  const blocks: unknown = event.content;
  if (!Array.isArray(blocks)) return event;
  const content = blocks.map((b) => (b && b.type === 'text' && typeof b.text === 'string' ? { ...b, text: f(b.text) } : b));
  return { ...event, content };
}

/**
 * Tool output older than the last `keepRecent` model requests, longer than `maxChars`, is shown
 * as a short stub naming the position to re-read it from.
 */
export const elideOldToolResults =
  (opts: { keepRecent: number; maxChars: number }): ViewTransform =>
  (events) => {
    const starts = events.filter((e) => e.event.type === 'span.model_request_start').map((e) => e.position);
    const cutoff = starts.length > opts.keepRecent ? starts[starts.length - opts.keepRecent] : -Infinity;
    return events.map((stored) => {
      const e = stored.event;
      if (stored.position >= cutoff || !isToolResult(e)) return stored;
      return {
        ...stored,
        event: mapText(e, (text) =>
          text.length <= opts.maxChars
            ? text
            : `${text.slice(0, 300)}\n[... ${text.length - 300} more characters of this output are not shown; ` +
              `read_session_log with from_position ${stored.position} shows it whole ...]`,
        ),
      };
    });
  };

/** Text blocks longer than `maxChars` are shown as head and tail, with where the whole is. */
export const clipBlocks =
  (maxChars: number): ViewTransform =>
  (events) =>
    events.map((stored) => ({
      ...stored,
      event: mapText(stored.event, (text) => {
        if (text.length <= maxChars) return text;
        const head = Math.floor(maxChars * 0.8);
        const tail = maxChars - head;
        return (
          `${text.slice(0, head)}\n[... ${text.length - head - tail} characters not shown; ` +
          `the full text is event ${stored.position} of this session's log ...]\n${text.slice(text.length - tail)}`
        );
      }),
    }));

export function pipeline(...steps: ViewTransform[]): ViewTransform {
  return (events) => steps.reduce((acc, step) => step(acc), events);
}

export interface ViewOptions {
  /** Longest text block shown, in characters. Default 50,000. */
  maxBlockChars?: number;
}

/**
 * The log turned into Messages API messages.
 *
 * - `user.message` content goes in as user content; `agent.message` text as assistant text.
 * - `system.message` is a `role: "system"` message of its own where it stands (after the user
 *   turn it accompanies), as the Messages API takes mid-conversation system messages.
 * - `agent.tool_use` / `agent.custom_tool_use` become assistant `tool_use` blocks whose id is the
 *   event id, and `agent.tool_result` / `user.custom_tool_result` the matching `tool_result`.
 * - Consecutive content of one role is merged; a user message that carries tool results puts
 *   them first, as the Messages API requires; user messages that arrived while the model was
 *   answering follow that answer.
 * - `agent.thinking` gives its thinking blocks back, unchanged, at the head of the answer.
 * - A server tool's call and result (web_search, web_fetch: the provider ran them) are the
 *   provider's blocks, kept in the events (`model_block`) and sent back unchanged in the answer.
 * - `user.define_outcome` is the worker's task: its description and the rubric it is graded by,
 *   as user text; a `span.outcome_evaluation_end` that sends the worker back (`needs_revision`,
 *   or `max_iterations_reached` for a last answer) is the grader's explanation, as user text.
 * - Status, span, error and Corral's own events are bookkeeping, not conversation.
 */
export function buildMessages(events: StoredEvent[], opts: ViewOptions = {}): MessageParam[] {
  return toMessages(clipBlocks(opts.maxBlockChars ?? VIEW_BLOCK_CHARS)(events));
}

export function toMessages(events: StoredEvent[]): MessageParam[] {
  const messages: MessageParam[] = [];
  const push = (role: 'user' | 'assistant', blocks: Array<Record<string, unknown>>) => {
    if (blocks.length === 0) return;
    const last = messages[messages.length - 1];
    if (last && last.role === role) last.content.push(...blocks);
    else messages.push({ role, content: [...blocks] });
  };
  let openRequest = false;
  let deferred: Array<UserMessageEvent | SystemMessageEvent | UserDefineOutcomeEvent> = [];
  const pushUser = (e: UserMessageEvent | SystemMessageEvent | UserDefineOutcomeEvent) =>
    // A system message is a message of its own, after the user turn it came with; never merged.
    // An outcome is the worker's task (as a user message), with the rubric it is graded by.
    e.type === 'system.message'
      ? messages.push({ role: 'system', content: eventBlocks(e).map((b) => ({ ...b })) })
      : e.type === 'user.define_outcome'
        ? push('user', [{ type: 'text', text: outcomeTask(e) }])
        : push('user', eventBlocks(e));
  for (const { event } of events) {
    switch (event.type) {
      case 'span.model_request_start':
        openRequest = true;
        break;
      case 'span.model_request_end':
        openRequest = false;
        for (const d of deferred) pushUser(d);
        deferred = [];
        break;
      case 'user.message':
      case 'system.message':
      case 'user.define_outcome':
        if (openRequest) deferred.push(event);
        else pushUser(event);
        break;
      case 'agent.thinking':
        // Written before the text and tool calls of the same answer, so they open its message.
        push('assistant', (event.blocks ?? []).map((b) => ({ ...b })));
        break;
      case 'agent.message':
        push('assistant', eventBlocks(event).filter((b) => b.type === 'text' && String(b.text).length > 0));
        break;
      case 'agent.tool_use':
        // A server tool's call and result are the provider's blocks, sent back as they came.
        if (event.model_block) push('assistant', [{ ...event.model_block }]);
        else push('assistant', [{ type: 'tool_use', id: event.id, name: event.name, input: event.input ?? {} }]);
        break;
      case 'agent.custom_tool_use':
        push('assistant', [{ type: 'tool_use', id: event.id, name: event.name, input: event.input ?? {} }]);
        break;
      case 'agent.mcp_tool_use':
        push('assistant', [{ type: 'tool_use', id: event.id, name: mcpToolName(event.mcp_server_name, event.name), input: event.input ?? {} }]);
        break;
      case 'agent.tool_result':
        if (event.model_block) push('assistant', [{ ...event.model_block }]);
        else push('user', [resultBlock(event)]);
        break;
      case 'agent.mcp_tool_result':
      case 'user.custom_tool_result':
        push('user', [resultBlock(event)]);
        break;
      case 'span.outcome_evaluation_end': {
        // The grader's verdict, when the worker has to act on it: revise, or (at the limit) answer
        // once more knowing the outcome was not met. Not the grader's context: only its verdict.
        const feedback = outcomeFeedback(event);
        if (feedback) push('user', [{ type: 'text', text: feedback }]);
        break;
      }
      case 'agent.thread_message_received':
        // A thread's answer is input for the coordinator, marked with who sent it.
        push('user', [
          { type: 'text', text: `[Message from thread ${event.from_session_thread_id} (agent ${event.from_agent_name ?? 'unknown'})]` },
          ...eventBlocks(event),
        ]);
        break;
      case 'corral.sandbox_handoff_received':
        push('user', [
          {
            type: 'text',
            text: `[Corral: the sandbox "${event.from_sandbox}" of session ${event.from_session_id} was handed to this session; its workspace is yours now, as the sandbox "${event.sandbox}".]`,
          },
        ]);
        break;
      case 'corral.sandbox_handoff_sent':
        push('user', [
          {
            type: 'text',
            text: `[Corral: the sandbox "${event.sandbox}" was handed to session ${event.to_session_id}; this session cannot reach it any more, and a call to "${event.sandbox}" starts a fresh one.]`,
          },
        ]);
        break;
      default:
        break;
    }
  }
  for (const d of deferred) pushUser(d);
  for (const m of messages) {
    if (m.role === 'user') {
      // tool_result blocks must open the user message that follows the assistant's tool_use.
      m.content.sort((a, b) => Number(b.type === 'tool_result') - Number(a.type === 'tool_result'));
    }
  }
  // The Messages API wants the conversation to start with the user.
  while (messages.length && messages[0].role !== 'user') messages.shift();
  return messages;
}

export interface SessionView {
  messages: MessageParam[];
  /** Whether anything of the log is out of the view (a summary stands for it, or stubs). */
  partial: boolean;
}

/**
 * The view for the next model call: the summary of what came before `start` (if any), then the
 * window from `start`, elided and clipped, with cache breakpoints on the stable prefix.
 */
export function buildView(
  events: StoredEvent[],
  opts: { start: number; summary: { text: string; upTo: number } | null; maxBlockChars?: number; keepRecentResults?: number; elideAboveChars?: number },
): SessionView {
  const transform = pipeline(
    windowFrom(opts.start),
    elideOldToolResults({ keepRecent: opts.keepRecentResults ?? 3, maxChars: opts.elideAboveChars ?? 4_000 }),
    clipBlocks(opts.maxBlockChars ?? VIEW_BLOCK_CHARS),
  );
  const window = windowFrom(opts.start)(events);
  const shown = transform(events);
  const partial = opts.summary !== null || JSON.stringify(shown) !== JSON.stringify(window);
  const messages = toMessages(shown);
  if (opts.summary) {
    const note: Record<string, unknown> = {
      type: 'text',
      text:
        `[Summary of events 1 to ${opts.summary.upTo} of this session, which are no longer shown. ` +
        `They are all still in the session log: read_session_log shows any of them.]\n\n${opts.summary.text}`,
    };
    if (messages[0]?.role === 'user') messages[0].content.unshift(note);
    else messages.unshift({ role: 'user', content: [note] });
  }
  return { messages, partial };
}

/**
 * Prompt-cache breakpoints: the summary (stable until the next compaction) and the end of the
 * conversation (the prefix of the next call). The system prompt and tools get theirs from the
 * model request.
 */
export function withCacheBreakpoints(messages: MessageParam[], hasSummary: boolean): MessageParam[] {
  const out = messages.map((m) => ({ ...m, content: m.content.map((b) => ({ ...b })) }));
  const mark = (m: MessageParam | undefined, index: number) => {
    if (!m || !m.content[index]) return;
    m.content[index] = { ...m.content[index], cache_control: { type: 'ephemeral' } };
  };
  if (hasSummary) mark(out[0], 0);
  const last = out[out.length - 1];
  // Thinking blocks take no cache_control: the breakpoint goes on the last block that does.
  if (last) mark(last, last.content.findLastIndex((b) => b.type !== 'thinking' && b.type !== 'redacted_thinking'));
  return out;
}

/** The content blocks of a conversation event as Messages API blocks (redacted ones left out). */
function eventBlocks(event: Extract<SessionEvent, { content?: unknown }>): Array<Record<string, unknown>> {
  const content: unknown = event.content;
  if (!Array.isArray(content)) return [];
  return content.filter((b) => b && typeof b === 'object' && b.type !== 'redacted');
}

function resultBlock(event: ToolResultEvent): Record<string, unknown> {
  const content = eventBlocks(event);
  return {
    type: 'tool_result',
    tool_use_id: toolUseIdOf(event),
    content: content.length ? content : [{ type: 'text', text: '(no output)' }],
    ...(event.is_error ? { is_error: true } : {}),
  };
}
