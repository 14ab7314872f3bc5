import type { SessionEvent, StoredEvent } from '../session/events.js';

export type MessageParam = { role: 'user' | 'assistant'; content: Array<Record<string, unknown>> };

/**
 * The model's view of the session: the log turned into Messages API messages. The log is never
 * changed to fit the view; the view is rebuilt for every model call.
 *
 * - `user.message` content goes in as user content; `agent.message` text as assistant text.
 * - `agent.tool_use` / `agent.custom_tool_use` become assistant `tool_use` blocks whose id is the
 *   event id, and `agent.tool_result` / `user.custom_tool_result` the matching `tool_result`.
 * - Consecutive content of one role is merged, and a user message that carries tool results puts
 *   them first, as the Messages API requires.
 * - Status, span, error and thinking events are bookkeeping, not conversation.
 */
export interface ViewOptions {
  /**
   * Longest text block the model is shown, in characters. Longer ones (a huge tool output or
   * message) are shown as their head and tail with a note of what was left out and where the
   * whole text is in the log. Default 50,000.
   */
  maxBlockChars?: number;
}

export function buildMessages(events: StoredEvent[], opts: ViewOptions = {}): MessageParam[] {
  const maxBlock = opts.maxBlockChars ?? 50_000;
  const messages: MessageParam[] = [];
  let position = 0;
  const contentBlocks = (event: SessionEvent) => eventBlocks(event).map((b) => clip(b, maxBlock, position));
  const toolResult = (toolUseId: string, event: SessionEvent) => resultBlock(toolUseId, event, contentBlocks(event));
  const push = (role: 'user' | 'assistant', blocks: Array<Record<string, unknown>>) => {
    if (blocks.length === 0) return;
    const last = messages[messages.length - 1];
    if (last && last.role === role) last.content.push(...blocks);
    else messages.push({ role, content: [...blocks] });
  };
  // User messages that arrive while the model is answering are shown after that answer: the
  // model answered without them.
  let openRequest = false;
  let deferred: SessionEvent[] = [];
  for (const stored of events) {
    const { event } = stored;
    position = stored.position;
    switch (event.type) {
      case 'span.model_request_start':
        openRequest = true;
        break;
      case 'span.model_request_end':
        openRequest = false;
        for (const d of deferred) push('user', contentBlocks(d));
        deferred = [];
        break;
      case 'user.message':
        if (openRequest) deferred.push(event);
        else push('user', contentBlocks(event));
        break;
      case 'agent.message':
        push('assistant', contentBlocks(event).filter((b) => b.type === 'text' && String(b.text).length > 0));
        break;
      case 'agent.tool_use':
      case 'agent.custom_tool_use':
        push('assistant', [{ type: 'tool_use', id: event.id, name: event.name, input: event.input ?? {} }]);
        break;
      case 'agent.tool_result':
        push('user', [toolResult(String(event.tool_use_id), event)]);
        break;
      case 'user.custom_tool_result':
        push('user', [toolResult(String(event.custom_tool_use_id), event)]);
        break;
      default:
        break;
    }
  }
  for (const d of deferred) push('user', contentBlocks(d));
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

function clip(block: Record<string, unknown>, max: number, position: number): Record<string, unknown> {
  if (block.type !== 'text' || typeof block.text !== 'string' || block.text.length <= max) return block;
  const text = block.text;
  const head = Math.floor(max * 0.8);
  const tail = max - head;
  const left = text.length - head - tail;
  return {
    ...block,
    text: `${text.slice(0, head)}\n[... ${left} characters not shown; the full text is event ${position} of this session's log ...]\n${text.slice(text.length - tail)}`,
  };
}

function eventBlocks(event: SessionEvent): Array<Record<string, unknown>> {
  const content = event.content;
  if (!Array.isArray(content)) return [];
  return content.filter((b) => b && typeof b === 'object' && (b as { type?: string }).type !== 'redacted') as Array<
    Record<string, unknown>
  >;
}

function resultBlock(toolUseId: string, event: SessionEvent, content: Array<Record<string, unknown>>): Record<string, unknown> {
  return {
    type: 'tool_result',
    tool_use_id: toolUseId,
    content: content.length ? content : [{ type: 'text', text: '(no output)' }],
    ...(event.is_error ? { is_error: true } : {}),
  };
}
