import type { McpCallResult, McpServerRef, McpToolInfo } from '../mcp/gateway.js';
import type { CredentialValidation } from './oauth.js';
import type { SecretSink } from './secret-store.js';
import type { SecretFields } from './types.js';
import { withSpan } from '../telemetry/trace.js';

/**
 * The credential proxy's calls, as they travel: JSON over HTTP on a Unix socket locally, the
 * payload of a Lambda Invoke on AWS. The same `CredentialProxy.handle` answers both.
 *
 * Only `store_secret` carries a secret, inbound; no answer ever does, with one exception:
 * `egress_secret`, which only the local proxy process answers (`CredentialProxyDeps.egressSecrets`),
 * to the local egress proxy, for one substitution into a request to a host the credential allows.
 */
export type ProxyRequest =
  | { op: 'store_secret'; ref: string; value: SecretFields; merge?: boolean }
  | { op: 'delete_secret'; ref: string }
  | { op: 'copy_secret'; from: string; to: string }
  | { op: 'mcp_list_tools'; sessionId: string; vaultIds: string[]; server: McpServerRef }
  | {
      op: 'mcp_call_tool';
      sessionId: string;
      vaultIds: string[];
      server: McpServerRef;
      tool: string;
      input: unknown;
      idempotencyKey?: string;
    }
  | { op: 'git_open'; sessionId: string; sandbox: string; repositories: string[] }
  | { op: 'mcp_oauth_validate'; tenant: string; vaultId: string; credentialId: string }
  /** Close one channel (`channel`), or every channel of one sandbox (`sandbox`). */
  | { op: 'git_close'; sessionId: string; channel?: string; sandbox?: string }
  | { op: 'egress_credentials'; sessionId: string }
  | { op: 'egress_secret'; sessionId: string; vaultId: string; credentialId: string; host: string };

/**
 * An `environment_variable` credential a session's vaults hold, as a sandbox provider needs it to
 * give the sandbox a placeholder and its egress proxy the substitution rule. No secret.
 */
export interface EgressCredentialGrant {
  credential_id: string;
  vault_id: string;
  secret_name: string;
  /** The credential's `networking`: `allowed_hosts` when limited, null when unrestricted. */
  allowed_hosts: string[] | null;
  injection_location: { header: boolean; body: boolean };
}

export type ProxyErrorKind = 'connection' | 'authentication' | 'invalid' | 'forbidden' | 'internal';

export type ProxyResponse =
  | { ok: true; result: unknown }
  | { ok: false; error: { kind: ProxyErrorKind; message: string; serverName?: string } };

/** Where a sandbox reaches the git side of the proxy. */
export type GitEndpoint = { kind: 'unix'; socketPath: string } | { kind: 'https'; url: string };

/**
 * A sandbox's git channel: `capability` opens exactly `repositories` of one session's sandbox,
 * each under `path` on the channel (`/r/<n>/<name>.git`), until `expires_at`.
 */
export interface GitChannel {
  /** Names the channel for `git_close` (not a secret: it opens nothing by itself). */
  id: string;
  endpoint: GitEndpoint | null;
  capability: string;
  expires_at: string;
  repositories: Array<{ url: string; path: string }>;
}

/** The header that carries a git capability to the proxy (added by the sandbox's forwarder). */
export const GIT_CAPABILITY_HEADER = 'x-corral-git-capability';

/** How a caller reaches the proxy. */
export interface ProxyTransport {
  call(request: ProxyRequest): Promise<ProxyResponse>;
  close?(): Promise<void>;
}

export class ProxyCallError extends Error {
  constructor(
    readonly kind: ProxyErrorKind,
    message: string,
    readonly serverName?: string,
  ) {
    super(message);
    this.name = 'ProxyCallError';
  }
}

/** The typed face of the proxy for the API, the harness and the sandbox providers. */
export class CredentialProxyClient implements SecretSink {
  constructor(readonly transport: ProxyTransport) {}

  /** Each call is a span naming its operation (never its arguments: they may carry a secret). */
  private call<T>(request: ProxyRequest): Promise<T> {
    return withSpan('credential_proxy.call', { kind: 'client', attributes: { 'corral.proxy.op': request.op } }, () => this.callUntraced<T>(request));
  }

  private async callUntraced<T>(request: ProxyRequest): Promise<T> {
    let answer: ProxyResponse;
    try {
      answer = await this.transport.call(request);
    } catch (err) {
      throw new ProxyCallError('internal', `the credential proxy could not be reached: ${(err as Error)?.message ?? 'error'}`);
    }
    if (!answer || typeof answer !== 'object') throw new ProxyCallError('internal', 'the credential proxy gave no answer');
    if (answer.ok) return answer.result as T;
    throw new ProxyCallError(answer.error.kind, answer.error.message, answer.error.serverName);
  }

  async storeSecret(ref: string, value: SecretFields, opts: { merge?: boolean } = {}): Promise<void> {
    await this.call({ op: 'store_secret', ref, value, merge: opts.merge });
  }

  async deleteSecret(ref: string): Promise<void> {
    await this.call({ op: 'delete_secret', ref });
  }

  async copySecret(from: string, to: string): Promise<void> {
    await this.call({ op: 'copy_secret', from, to });
  }

  mcpListTools(req: { sessionId: string; vaultIds: string[]; server: McpServerRef }): Promise<McpToolInfo[]> {
    return this.call({ op: 'mcp_list_tools', ...req });
  }

  mcpCallTool(req: {
    sessionId: string;
    vaultIds: string[];
    server: McpServerRef;
    tool: string;
    input: unknown;
    idempotencyKey?: string;
  }): Promise<McpCallResult> {
    return this.call({ op: 'mcp_call_tool', ...req });
  }

  gitOpen(req: { sessionId: string; sandbox: string; repositories: string[] }): Promise<GitChannel> {
    return this.call({ op: 'git_open', ...req });
  }

  /** Probe an `mcp_oauth` credential against its MCP server, refreshing it on a 401. */
  mcpOAuthValidate(req: { tenant: string; vaultId: string; credentialId: string }): Promise<CredentialValidation> {
    return this.call({ op: 'mcp_oauth_validate', ...req });
  }

  /** Close a channel: its capability stops working at once (sandbox stopped, handed off, deleted). */
  async gitClose(req: { sessionId: string; channel: string } | { sessionId: string; sandbox: string }): Promise<void> {
    await this.call({ op: 'git_close', ...req });
  }

  /** The session's `environment_variable` credentials (metadata), one per variable name. */
  egressCredentials(req: { sessionId: string }): Promise<EgressCredentialGrant[]> {
    return this.call({ op: 'egress_credentials', ...req });
  }

  /** A credential's secret for one substitution (the local proxy only; see `ProxyRequest`). */
  async egressSecret(req: { sessionId: string; vaultId: string; credentialId: string; host: string }): Promise<string> {
    return (await this.call<{ value: string }>({ op: 'egress_secret', ...req })).value;
  }

  close(): Promise<void> {
    return this.transport.close?.() ?? Promise.resolve();
  }
}
