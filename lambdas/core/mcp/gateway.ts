/**
 * How the harness reaches an agent's MCP servers: never directly, always through the credential
 * proxy, which alone holds the credentials the session's vaults grant. The harness only sees
 * tool lists and tool results.
 */

export interface McpServerRef {
  name: string;
  url: string;
}

export interface McpToolInfo {
  name: string;
  description?: string;
  input_schema: Record<string, unknown>;
}

export type McpContent = Array<{ type: 'text'; text: string } | { type: string; [k: string]: unknown }>;

export interface McpCallResult {
  content: McpContent;
  isError: boolean;
}

export interface McpRequestBase {
  sessionId: string;
  /** The session's vaults: the proxy uses only credentials these grant for the server's URL. */
  vaultIds: string[];
  server: McpServerRef;
}

export interface McpGateway {
  listTools(req: McpRequestBase): Promise<McpToolInfo[]>;
  callTool(req: McpRequestBase & { tool: string; input: unknown; idempotencyKey?: string }): Promise<McpCallResult>;
}

/**
 * The server could not be reached (`connection`) or refused the credentials (`authentication`).
 * The harness reports it as `session.error` (`mcp_connection_failed_error` /
 * `mcp_authentication_failed_error`) and, for a call, as an error tool result.
 */
export class McpError extends Error {
  constructor(
    readonly kind: 'connection' | 'authentication',
    readonly serverName: string,
    message: string,
  ) {
    super(message);
    this.name = 'McpError';
  }
}

/** The model-facing name of an MCP tool: unique across servers and the agent's own tools. */
export function mcpToolName(server: string, tool: string): string {
  return `mcp__${server}__${tool}`.slice(0, 128);
}
