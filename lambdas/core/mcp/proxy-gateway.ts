import { CredentialProxyClient, ProxyCallError } from '../vault/protocol.js';
import { McpError, type McpCallResult, type McpGateway, type McpRequestBase, type McpToolInfo } from './gateway.js';

/**
 * The harness's MCP gateway over the credential proxy: every list and call goes to the proxy
 * (a local process over a Unix socket, or a Lambda), which adds the session's credential and
 * talks to the server. Proxy failures become `McpError`s: a refused credential is
 * `authentication`, everything else (unreachable server, timeouts, a proxy that is down or
 * refused the call) is `connection`.
 */
export class ProxyMcpGateway implements McpGateway {
  constructor(private readonly proxy: CredentialProxyClient) {}

  private fail(err: unknown, server: string): never {
    if (err instanceof ProxyCallError) {
      throw new McpError(err.kind === 'authentication' ? 'authentication' : 'connection', server, err.message);
    }
    throw new McpError('connection', server, `MCP server ${server}: the credential proxy failed`);
  }

  async listTools(req: McpRequestBase): Promise<McpToolInfo[]> {
    try {
      return await this.proxy.mcpListTools({ sessionId: req.sessionId, vaultIds: req.vaultIds, server: req.server });
    } catch (err) {
      this.fail(err, req.server.name);
    }
  }

  async callTool(req: McpRequestBase & { tool: string; input: unknown; idempotencyKey?: string }): Promise<McpCallResult> {
    try {
      return await this.proxy.mcpCallTool({
        sessionId: req.sessionId,
        vaultIds: req.vaultIds,
        server: req.server,
        tool: req.tool,
        input: req.input,
        idempotencyKey: req.idempotencyKey,
      });
    } catch (err) {
      this.fail(err, req.server.name);
    }
  }
}
