import type { EventBody } from '../../session/events.js';
import { requestEnd } from '../bodies.js';
import type { ModelResponse } from '../model.js';
import type { Toolbox } from '../tools.js';

/**
 * The events a model's answer becomes: thinking and text, then one tool use per `tool_use`
 * block, routed by the toolbox the request offered (a custom tool waits for the client, an MCP
 * tool goes to its server, anything else to the sandbox or the log reader), then the request's
 * end, and idle when the model called no tool. Pure: written as one batch by the caller.
 */
export function responseEvents(startId: string, response: ModelResponse, toolbox: Toolbox): EventBody[] {
  const bodies: EventBody[] = [];
  if (response.content.some((b) => b.type === 'thinking' || b.type === 'redacted_thinking')) {
    bodies.push({ type: 'agent.thinking' });
  }
  const text = response.content
    .filter((b) => b.type === 'text')
    .map((b) => String((b as { text?: unknown }).text ?? ''))
    .filter((t) => t.length > 0);
  if (text.length) bodies.push({ type: 'agent.message', content: text.map((t) => ({ type: 'text', text: t })) });
  let calledTools = false;
  for (const block of response.content) {
    if (block.type !== 'tool_use') continue;
    calledTools = true;
    const { name: rawName, input = {} } = block as { name?: unknown; input?: Record<string, unknown> };
    const name = String(rawName);
    const route = toolbox.routes.get(name);
    if (route?.kind === 'custom') {
      bodies.push({ type: 'agent.custom_tool_use', name, input });
    } else if (route?.kind === 'mcp') {
      const policy = route.policy.type;
      bodies.push({
        type: 'agent.mcp_tool_use',
        name: route.tool,
        mcp_server_name: route.server.name,
        input,
        evaluated_permission: policy === 'always_ask' ? 'ask' : 'allow',
        evaluation: { type: policy },
      });
    } else {
      const policy = route?.policy.type ?? 'always_allow';
      bodies.push({
        type: 'agent.tool_use',
        name,
        input,
        evaluated_permission: policy === 'always_ask' ? 'ask' : 'allow',
        evaluation: { type: policy },
      });
    }
  }
  bodies.push(requestEnd(startId, response, false));
  if (!calledTools) bodies.push({ type: 'session.status_idle', stop_reason: { type: 'end_turn' }, stop_details: null });
  return bodies;
}
