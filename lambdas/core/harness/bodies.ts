import type { McpError } from '../mcp/gateway.js';
import type { BodyOf, EventBody, StopReason } from '../session/events.js';
import type { ModelResponse } from './model.js';
import type { OpenTool } from './state.js';

/** The event bodies the harness's steps write, built in one place. */

export function requestEnd(startId: string, response: ModelResponse | null, isError: boolean): EventBody {
  return {
    type: 'span.model_request_end',
    model_request_start_id: startId,
    is_error: isError,
    // Corral extension: when the first token of the answer came (the console's latency strip).
    ...(response?.timeToFirstTokenMs != null ? { time_to_first_token_ms: response.timeToFirstTokenMs } : {}),
    model_usage: {
      input_tokens: response?.usage.input_tokens ?? 0,
      output_tokens: response?.usage.output_tokens ?? 0,
      cache_read_input_tokens: response?.usage.cache_read_input_tokens ?? 0,
      cache_creation_input_tokens: response?.usage.cache_creation_input_tokens ?? 0,
    },
  };
}

/** The result event that closes an open tool call of any kind. */
export function resultFor(tool: OpenTool, text: string, isError: boolean): EventBody {
  if (tool.type === 'agent.mcp_tool_use') {
    return { type: 'agent.mcp_tool_result', mcp_tool_use_id: tool.id, content: [{ type: 'text', text }], is_error: isError };
  }
  return toolResultBody(tool.id, text, isError);
}

export function mcpErrorEvent(e: McpError): EventBody {
  return {
    type: 'session.error',
    error: {
      type: e.kind === 'authentication' ? 'mcp_authentication_failed_error' : 'mcp_connection_failed_error',
      mcp_server_name: e.serverName,
      message: e.message,
      retry_status: { type: 'terminal' },
    },
  };
}

export function toolResultBody(toolUseId: string, text: string, isError: boolean): BodyOf<'agent.tool_result'> {
  return { type: 'agent.tool_result', tool_use_id: toolUseId, content: [{ type: 'text', text }], is_error: isError };
}

export const idle = (stop_reason: StopReason): EventBody => ({ type: 'session.status_idle', stop_reason, stop_details: null });
