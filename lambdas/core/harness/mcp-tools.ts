import type { Session } from '../resources/sessions.js';
import type { EventBody } from '../session/events.js';
import { McpError, type McpGateway, type McpToolInfo } from '../mcp/gateway.js';
import { mcpErrorEvent } from './bodies.js';

/** How long a server's tool list is kept before it is listed again. */
export const MCP_TOOLS_TTL_MS = 60_000;

/**
 * The tools of a session's MCP servers, listed through the gateway and kept a minute per
 * (vaults, server), so that not every model call lists them again. One cache lives as long as
 * its harness; the key holds the vaults because the credentials they give may change the list.
 */
export class McpToolCache {
  private readonly lists = new Map<string, { at: number; tools: McpToolInfo[] }>();

  constructor(
    private readonly mcp: McpGateway | undefined,
    private readonly log: { warn(msg: string, fields?: Record<string, unknown>): void },
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The tools of the agent's MCP servers that its toolsets use. A server that cannot be listed
   * is reported (`session.error`) and left out of this request; the turn goes on without it.
   */
  async list(session: Session): Promise<{ tools: Map<string, McpToolInfo[]>; errors: EventBody[] }> {
    const tools = new Map<string, McpToolInfo[]>();
    const errors: EventBody[] = [];
    const wanted = new Set(session.agent.tools.filter((t) => t.type === 'mcp_toolset').map((t) => (t as { mcp_server_name: string }).mcp_server_name));
    for (const server of session.agent.mcp_servers.filter((m) => wanted.has(m.name))) {
      if (!this.mcp) {
        errors.push(mcpErrorEvent(new McpError('connection', server.name, `MCP server ${server.name}: no credential proxy is configured on this deployment`)));
        continue;
      }
      const key = `${[...session.vault_ids].sort().join(',')}|${server.name}|${server.url}`;
      const cached = this.lists.get(key);
      if (cached && this.now() - cached.at < MCP_TOOLS_TTL_MS) {
        tools.set(server.name, cached.tools);
        continue;
      }
      try {
        const listed = await this.mcp.listTools({ sessionId: session.id, vaultIds: session.vault_ids, server });
        this.lists.set(key, { at: this.now(), tools: listed });
        tools.set(server.name, listed);
      } catch (err) {
        const e = err instanceof McpError ? err : new McpError('connection', server.name, `MCP server ${server.name}: ${(err as Error)?.message ?? err}`);
        this.log.warn('MCP server could not be listed', { sessionId: session.id, server: server.name, kind: e.kind });
        errors.push(mcpErrorEvent(e));
      }
    }
    return { tools, errors };
  }
}
