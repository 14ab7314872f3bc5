import { makeEvent, type BodyOf, type EventBody, type SessionEvent, type ServerToolBlock, type ThinkingBlock } from '../../session/events.js';
import { requestEnd } from '../bodies.js';
import type { ModelBlock, ModelResponse } from '../model.js';
import type { Toolbox } from '../tools.js';

/**
 * The events a model's answer becomes, in the order of its content blocks (the view rebuilds the
 * answer from them in that order, which the Messages API checks where thinking is involved):
 * consecutive thinking blocks as one `agent.thinking`, consecutive text as one `agent.message`,
 * each server tool call the provider ran (web_search, web_fetch) as an `agent.tool_use` and its
 * result as an `agent.tool_result` (both keeping the provider's block), and one tool use per
 * `tool_use` block, routed by the toolbox the request offered (a custom tool waits for the client,
 * an MCP tool goes to its server, anything else to the sandbox or the log reader); then the
 * request's end, and idle when the model called no tool the harness or the client must answer
 * (unless `endsTurn` is false: an outcome is then evaluated first, steps/evaluate-outcome.ts).
 * Pure: written as one batch by the caller (server tool calls carry their ids already, so that
 * their results can name them).
 *
 * `ids` are the ids previews announced for the message and the thinking (harness/previews.ts):
 * the answer's first `agent.message` and first `agent.thinking` carry them, which is how a stream
 * reconciles a preview with its event.
 */
export function responseEvents(
  startId: string,
  response: ModelResponse,
  toolbox: Toolbox,
  ids: { message?: string; thinking?: string } = {},
  now = new Date(),
  /** Whether an answer that calls no tool ends the turn (not while an outcome waits for its grader). */
  endsTurn = true,
): Array<EventBody | SessionEvent> {
  const bodies: Array<EventBody | SessionEvent> = [];
  let thinking: ThinkingBlock[] = [];
  let text: string[] = [];
  let messageId = ids.message;
  let thinkingId = ids.thinking;
  const withId = (body: EventBody, id: string | undefined) => (id ? makeEvent(body, now, id) : body);
  const flush = () => {
    if (thinking.length) {
      bodies.push(withId({ type: 'agent.thinking', blocks: thinking }, thinkingId));
      thinkingId = undefined;
    }
    if (text.length) {
      bodies.push(withId({ type: 'agent.message', content: text.map((t) => ({ type: 'text', text: t })) }, messageId));
      messageId = undefined;
    }
    thinking = [];
    text = [];
  };
  /** Server tool calls of this answer by the provider's id: the event that stands for each. */
  const serverCalls = new Map<string, SessionEvent>();
  let calledTools = false;
  for (const block of response.content) {
    const thought = thinkingBlock(block);
    if (thought) {
      if (text.length) flush();
      thinking.push(thought);
      continue;
    }
    if (block.type === 'text') {
      const t = String((block as { text?: unknown }).text ?? '');
      if (t.length) {
        if (thinking.length) flush();
        text.push(t);
      }
      continue;
    }
    flush();
    if (block.type === 'server_tool_use') {
      const { id, name, input } = block as { id?: unknown; name?: unknown; input?: unknown };
      const use = makeEvent(
        {
          type: 'agent.tool_use',
          name: String(name),
          input: (input && typeof input === 'object' ? input : {}) as Record<string, unknown>,
          evaluated_permission: 'allow',
          evaluation: { type: 'always_allow' },
          model_block: { ...block },
        },
        now,
      );
      serverCalls.set(String(id), use);
      bodies.push(use);
    } else if (block.type.endsWith('_tool_result')) {
      const use = serverCalls.get(String((block as { tool_use_id?: unknown }).tool_use_id));
      if (use) bodies.push(serverToolResult(use.id, block));
    } else if (block.type === 'tool_use') {
      calledTools = true;
      bodies.push(toolUseBody(block, toolbox));
    }
  }
  flush();
  bodies.push(requestEnd(startId, response, false));
  if (!calledTools && endsTurn) bodies.push({ type: 'session.status_idle', stop_reason: { type: 'end_turn' }, stop_details: null });
  return bodies;
}

function toolUseBody(block: ModelBlock, toolbox: Toolbox): EventBody {
  const { name: rawName, input = {} } = block as { name?: unknown; input?: Record<string, unknown> };
  const name = String(rawName);
  const route = toolbox.routes.get(name);
  if (route?.kind === 'custom') return { type: 'agent.custom_tool_use', name, input };
  const policy = route?.policy.type ?? 'always_allow';
  const permission = {
    evaluated_permission: policy === 'always_ask' ? ('ask' as const) : ('allow' as const),
    evaluation: { type: policy },
  };
  if (route?.kind === 'mcp') return { type: 'agent.mcp_tool_use', name: route.tool, mcp_server_name: route.server.name, input, ...permission };
  return { type: 'agent.tool_use', name, input, ...permission };
}

/** A thinking block with exactly the fields the Messages API takes back, or null. */
function thinkingBlock(b: ModelBlock): ThinkingBlock | null {
  if (b.type === 'thinking' && typeof b.thinking === 'string') {
    return { type: 'thinking', thinking: b.thinking, signature: typeof b.signature === 'string' ? b.signature : '' };
  }
  if (b.type === 'redacted_thinking' && typeof b.data === 'string') return { type: 'redacted_thinking', data: b.data };
  return null;
}

/** What a transcript shows of a server tool's result: the search results, or the fetched address. */
type TranscriptBlock = NonNullable<BodyOf<'agent.tool_result'>['content']>[number];

/**
 * The result event of a server tool call: the provider's block kept whole (`model_block`), and a
 * transcript of it in the SDK's blocks: a `search_result` per web search hit (its address, title
 * and age; the page text is encrypted for the model), the fetched document by its address (the
 * text stays in the block the model gets back, not twice in the log), or the error.
 */
export function serverToolResult(toolUseId: string, block: ModelBlock): BodyOf<'agent.tool_result'> {
  const content = (block as { content?: unknown }).content;
  const transcript: TranscriptBlock[] = [];
  let isError = false;
  if (Array.isArray(content)) {
    for (const r of content as Array<Record<string, unknown>>) {
      if (r?.type !== 'web_search_result') continue;
      const url = String(r.url ?? '');
      transcript.push({
        type: 'search_result',
        source: url,
        title: String(r.title ?? url),
        content: [{ type: 'text', text: r.page_age ? `${url} (${String(r.page_age)})` : url }],
        citations: { enabled: false },
      });
    }
  } else if (content && typeof content === 'object') {
    const c = content as Record<string, unknown>;
    if (typeof c.error_code === 'string') {
      isError = true;
      transcript.push({ type: 'text', text: `${block.type.replace(/_tool_result$/, '')} failed: ${c.error_code}` });
    } else if (c.type === 'web_fetch_result' && typeof c.url === 'string') {
      const doc = (c.content ?? {}) as { title?: unknown };
      transcript.push({
        type: 'document',
        source: { type: 'url', url: c.url },
        ...(typeof doc.title === 'string' ? { title: doc.title } : {}),
      } as TranscriptBlock);
    }
  }
  if (!transcript.length) transcript.push({ type: 'text', text: `(${block.type})` });
  return { type: 'agent.tool_result', tool_use_id: toolUseId, content: transcript, is_error: isError, model_block: { ...block } as ServerToolBlock };
}
