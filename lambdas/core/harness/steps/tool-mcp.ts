import { McpError } from '../../mcp/gateway.js';
import { append, appendAfter } from '../append.js';
import { mcpErrorEvent, resultFor } from '../bodies.js';
import type { OpenTool } from '../state.js';
import type { StepContext } from '../step.js';
import { expectEvent } from '../../session/events.js';

/**
 * An MCP tool call, through the credential proxy (which alone holds the server's credentials).
 * A server that fails answers the call with an error result and a `session.error` of its kind.
 */
export async function runMcpTool(ctx: StepContext, tool: OpenTool) {
  const { session } = ctx;
  const sessionId = session.id;
  const tail = ctx.state.position;
  const [stored] = await ctx.deps.events.getEvents(sessionId, { from: tool.position, to: tool.position + 1 });
  const use = expectEvent(stored.event, 'agent.mcp_tool_use');
  const server = session.agent.mcp_servers.find((m) => m.name === use.mcp_server_name);
  if (!server || !ctx.deps.mcp) {
    const why = !server ? `the agent has no MCP server named ${JSON.stringify(use.mcp_server_name)}` : 'no credential proxy is configured on this deployment';
    await append(ctx.deps, sessionId, tail, [resultFor(tool, `MCP tool ${tool.name} cannot be called: ${why}.`, true)]);
    return;
  }
  const started = Date.now();
  try {
    const result = await ctx.deps.mcp.callTool({
      sessionId,
      vaultIds: session.vault_ids,
      server,
      tool: tool.name,
      input: use.input ?? {},
      idempotencyKey: use.id,
    });
    ctx.opts.observer?.toolCall?.({ sessionId, tool: tool.name, sandbox: `mcp:${server.name}`, durationMs: Date.now() - started, provisionMs: 0, isError: result.isError });
    await appendAfter(ctx.deps, sessionId, tail, [
      { type: 'agent.mcp_tool_result', mcp_tool_use_id: use.id, content: result.content.length ? result.content : [{ type: 'text', text: '(no output)' }], is_error: result.isError },
    ]);
  } catch (err) {
    const e = err instanceof McpError ? err : new McpError('connection', server.name, `MCP server ${server.name}: ${(err as Error)?.message ?? err}`);
    ctx.log.warn('MCP tool call failed', { sessionId, server: server.name, kind: e.kind });
    await appendAfter(ctx.deps, sessionId, tail, [resultFor(tool, e.message, true), mcpErrorEvent(e)]);
  }
}
