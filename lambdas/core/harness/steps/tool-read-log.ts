import { expectEvent, type EventBody, type ToolUseEvent } from '../../session/events.js';
import type { EventLog } from '../../session/log.js';
import { appendAfter } from '../append.js';
import { toolResultBody } from '../bodies.js';
import { toMessages } from '../context.js';
import type { OpenTool } from '../state.js';
import type { StepContext } from '../step.js';

/** Most events one `read_session_log` call returns; the answer says where to ask again. */
export const READ_LOG_PAGE = 50;
/** Longest rendering of one event in the answer. */
const EVENT_CHARS = 20_000;

/** `read_session_log`, answered by the harness from the log. */
export async function runReadLog(ctx: StepContext, tool: OpenTool) {
  const sessionId = ctx.session.id;
  const [stored] = await ctx.deps.events.getEvents(sessionId, { from: tool.position, to: tool.position + 1 });
  await appendAfter(ctx.deps, sessionId, ctx.state.position, [await readLog(ctx.deps.events, sessionId, expectEvent(stored.event, 'agent.tool_use'))]);
}

/** The answer to a `read_session_log` call: events of this session by position, as the model saw them. */
export async function readLog(events: EventLog, sessionId: string, toolUse: ToolUseEvent): Promise<EventBody> {
  const input = toolUse.input ?? {};
  const from = Number(input.from_position);
  const to = input.to_position === undefined ? from : Number(input.to_position);
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 1 || to < from) {
    return toolResultBody(toolUse.id, 'from_position and to_position must be positions (1, 2, ...), from <= to.', true);
  }
  const last = from + READ_LOG_PAGE - 1;
  const found = await events.getEvents(sessionId, { from, to: Math.min(to, last) + 1 });
  const lines = found.map((s) => {
    const rendered = JSON.stringify(toMessages([s])[0]?.content ?? { type: s.event.type });
    return `#${s.position} ${s.event.type}: ${rendered.length > EVENT_CHARS ? `${rendered.slice(0, EVENT_CHARS)} [...]` : rendered}`;
  });
  const more = to > last ? `\n(${to - last} more: ask again from position ${last + 1})` : '';
  return toolResultBody(toolUse.id, (lines.join('\n') || 'No events in that range.') + more, false);
}
