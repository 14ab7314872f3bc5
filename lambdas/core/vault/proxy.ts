import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Logger } from '../logger.js';
import { silentLogger } from '../logger.js';
import type { McpServerRef } from '../mcp/gateway.js';
import type { Session } from '../resources/sessions.js';
import type { StateTable } from '../store.js';
import { CredentialRecords, HeadRecords, type HeadItem, type SessionHeadFields } from '../storage/items.js';
import { systemPrincipal, tenantPrincipal } from '../storage/principal.js';
import { hostMatches, normalizeHost, parseHostPattern } from '../sandbox/egress.js';
import { memoryGitChannels, type GitChannelRegistry } from './git-channels.js';
import { McpCallFailure, McpConnector, type McpConnectorOptions } from './mcp-connector.js';
import { OAuthRefreshError, OAuthTokens, isOAuth, validateMcpOAuth, type CredentialValidation } from './oauth.js';
import {
  GIT_CAPABILITY_HEADER,
  type EgressCredentialGrant,
  type GitChannel,
  type GitEndpoint,
  type ProxyErrorKind,
  type ProxyRequest,
  type ProxyResponse,
} from './protocol.js';
import { redactSecrets, type SecretStore } from './secret-store.js';
import {
  SECRET_PREFIX,
  normalizeRepositoryUrl,
  normalizeServerUrl,
  type Credential,
  type SecretFields,
  type Vault,
} from './types.js';

/**
 * The credential proxy: the only code that reads secrets. It takes `(session, target, request)`,
 * checks in the state table that the session's vaults grant the target (a credential for that
 * MCP server URL; a repository resource of that session), fetches the secret, performs the call
 * and returns only the result. It never trusts what the caller says a session may do: grants are
 * read from the session's own record.
 *
 * Two faces: `handle` (JSON calls from the API and the harness) and `handleGit` (git smart HTTP
 * from a sandbox's forwarder, authorized by a capability that `git_open` issued to that sandbox).
 *
 * A git capability works only while its channel is open: `git_open` registers the channel,
 * `git_close` (the sandbox stopped, was handed to another session, or its session was deleted)
 * forgets it, and a capability of a forgotten channel is refused even though its signature is
 * good. Where open channels are kept is `CredentialProxyDeps.gitChannels`: locally in this
 * process, like the signing key the local proxy makes at start (a restarted proxy knows neither,
 * so every earlier capability is dead with it); on AWS in the state table, since the Lambda that
 * issues a capability is not the proxy service that serves its requests.
 */


/**
 * The proxy reads the session a call names whatever its tenant (the caller is the harness or a
 * sandbox of that session, not a tenant), then reads vaults and credentials as that session's
 * tenant: a vault of another tenant grants nothing, whatever the session lists.
 */
const PROXY = systemPrincipal('credential-proxy');
const sessions = new HeadRecords<Session, SessionHeadFields>('session');
const vaults = new HeadRecords<Vault>('vault');
const credentials = new CredentialRecords<Credential>();
type SessionHead = HeadItem<Session, SessionHeadFields>;

export interface CredentialProxyDeps {
  table: StateTable;
  secrets: SecretStore;
  /** The key git capabilities are signed with (at least 32 bytes). */
  signingKey: () => Promise<Buffer>;
  /** Where sandboxes reach `handleGit`; null when this deployment has no git path. */
  gitEndpoint?: GitEndpoint | null;
  logger?: Logger;
  mcp?: McpConnectorOptions;
  /** Outbound fetch for git (tests). */
  fetch?: typeof fetch;
  /** How long a git capability is valid. @default 7 days */
  gitCapabilityTtlMs?: number;
  /**
   * Where open git channels are kept: shared (the state table) when one process issues
   * capabilities and another serves them. @default in this process's memory
   */
  gitChannels?: GitChannelRegistry;
  /** The longest a git request (one clone's or push's exchange) may take upstream. @default 15 minutes */
  gitRequestTimeoutMs?: number;
  /** How long a secret read from the store is reused. @default 30000 */
  secretCacheMs?: number;
  /** `mcp_oauth` refreshes: how long before the expiry, the token endpoint's timeout, its fetch (tests). */
  oauth?: { marginMs?: number; timeoutMs?: number; fetch?: typeof fetch };
  now?: () => number;
  /**
   * Whether `egress_secret` is answered: only where the one caller is an egress proxy: the local
   * proxy process (the local runtime's egress proxy) and the core inside the proxy service's
   * process on AWS (its relay; lambdas/proxy-service/egress-credentials.ts). The credential proxy
   * function refuses it (the harness and the API may call it, and neither may read a secret).
   * @default false
   */
  egressSecrets?: boolean;
}

class ProxyFailure extends Error {
  constructor(
    readonly kind: ProxyErrorKind,
    message: string,
    readonly serverName?: string,
  ) {
    super(message);
  }
}

const GIT_SUFFIX = /^\/r\/(\d{1,3})\/[A-Za-z0-9._-]{1,100}(\/info\/refs|\/git-upload-pack|\/git-receive-pack)$/;
const GIT_SERVICES = new Set(['git-upload-pack', 'git-receive-pack']);
/** Request headers a git client may send upstream; everything else (cookies, auth) is dropped. */
const GIT_REQUEST_HEADERS = ['content-type', 'accept', 'content-encoding', 'git-protocol', 'accept-language'];
const GIT_RESPONSE_HEADERS = ['content-type', 'cache-control', 'expires', 'pragma'];

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export class CredentialProxy {
  private readonly log: Logger;
  private readonly connector: McpConnector;
  private readonly fetchImpl: typeof fetch;
  private readonly now: () => number;
  private readonly secretCache = new Map<string, { at: number; value: SecretFields | undefined }>();
  private readonly secretCacheMs: number;
  private readonly oauth: OAuthTokens;
  /** Open git channels: the session and sandbox each was issued to. */
  private readonly gitChannels: GitChannelRegistry;

  constructor(private readonly deps: CredentialProxyDeps) {
    this.log = deps.logger ?? silentLogger;
    this.connector = new McpConnector(deps.mcp);
    this.fetchImpl = deps.fetch ?? fetch;
    this.now = deps.now ?? Date.now;
    this.secretCacheMs = deps.secretCacheMs ?? 30_000;
    this.gitChannels = deps.gitChannels ?? memoryGitChannels(this.now);
    this.oauth = new OAuthTokens({
      secrets: {
        read: (ref, fresh) => this.secret(ref, fresh),
        write: async (ref, value) => {
          await this.deps.secrets.put(ref, value);
          this.secretCache.set(ref, { at: this.now(), value });
        },
      },
      fetch: deps.oauth?.fetch,
      timeoutMs: deps.oauth?.timeoutMs,
      marginMs: deps.oauth?.marginMs,
      now: this.now,
      logger: this.log,
    });
  }

  /** Answer one call. Never throws; never puts a secret in the answer. */
  async handle(request: ProxyRequest): Promise<ProxyResponse> {
    const op = isObject(request) ? String(request.op) : 'unknown';
    try {
      const result = await this.dispatch(request);
      return { ok: true, result: result ?? null };
    } catch (err) {
      if (err instanceof ProxyFailure) {
        this.log.warn('credential proxy call refused or failed', { op, kind: err.kind, error: err.message });
        return { ok: false, error: { kind: err.kind, message: err.message, ...(err.serverName ? { serverName: err.serverName } : {}) } };
      }
      // Unexpected errors are described by their class only: their message could quote anything.
      this.log.error('credential proxy call failed', { op, error: (err as Error)?.name ?? 'Error' });
      return { ok: false, error: { kind: 'internal', message: `the credential proxy failed (${(err as Error)?.name ?? 'Error'})` } };
    }
  }

  private async dispatch(r: ProxyRequest): Promise<unknown> {
    if (!isObject(r)) throw new ProxyFailure('invalid', 'a call must be a JSON object');
    switch (r.op) {
      case 'store_secret': {
        const ref = this.checkRef(r.ref);
        if (!isObject(r.value) || !Object.values(r.value).every((v) => typeof v === 'string')) {
          throw new ProxyFailure('invalid', 'value: must be an object of strings');
        }
        let value: SecretFields = { ...r.value };
        if (r.merge) value = { ...((await this.deps.secrets.get(ref)) ?? {}), ...value };
        for (const [k, v] of Object.entries(value)) if (v === '') delete value[k];
        await this.deps.secrets.put(ref, value);
        this.secretCache.delete(ref);
        this.log.info('secret stored', { ref, fields: Object.keys(value).sort() });
        return null;
      }
      case 'delete_secret': {
        const ref = this.checkRef(r.ref);
        await this.deps.secrets.delete(ref);
        this.secretCache.delete(ref);
        this.log.info('secret deleted', { ref });
        return null;
      }
      case 'copy_secret': {
        const from = this.checkRef(r.from);
        const to = this.checkRef(r.to);
        const value = await this.deps.secrets.get(from);
        if (!value) throw new ProxyFailure('invalid', `from: no secret ${from}`);
        await this.deps.secrets.put(to, value);
        this.secretCache.delete(to);
        this.log.info('secret copied', { from, to });
        return null;
      }
      case 'mcp_list_tools':
      case 'mcp_call_tool':
        return this.mcp(r);
      case 'git_open':
        return this.gitOpen(r);
      case 'mcp_oauth_validate':
        return this.validate(r);
      case 'git_close': {
        if (typeof r.sessionId !== 'string' || !r.sessionId) throw new ProxyFailure('invalid', 'sessionId: required');
        // Every channel of one sandbox (a provider that keeps no channel id: Fargate's).
        if (typeof r.sandbox === 'string' && r.sandbox && r.channel === undefined) {
          const closed = await this.gitChannels.closeSandbox(r.sessionId, r.sandbox);
          if (closed) this.log.info('git channel closed', { sessionId: r.sessionId, sandbox: r.sandbox, channels: closed });
          return null;
        }
        const id = typeof r.channel === 'string' ? r.channel : '';
        if (!id) throw new ProxyFailure('invalid', 'channel or sandbox: required');
        const sandbox = await this.gitChannels.sandboxOf(r.sessionId, id);
        await this.gitChannels.close(r.sessionId, id);
        if (sandbox !== undefined) this.log.info('git channel closed', { sessionId: r.sessionId, sandbox });
        return null;
      }
      case 'egress_credentials':
        return this.egressCredentials(await this.sessionHead(r.sessionId));
      case 'egress_secret':
        return this.egressSecret(r);
      default:
        throw new ProxyFailure('invalid', `unknown op ${JSON.stringify((r as { op?: unknown }).op)}`);
    }
  }

  private checkRef(ref: unknown): string {
    if (typeof ref !== 'string' || !ref.startsWith(SECRET_PREFIX) || ref.length > 512 || /[^A-Za-z0-9/_+=.@-]/.test(ref)) {
      throw new ProxyFailure('invalid', `ref: must name a secret under ${SECRET_PREFIX}`);
    }
    if (ref.startsWith(`${SECRET_PREFIX}_proxy/`)) throw new ProxyFailure('forbidden', 'ref: reserved for the proxy');
    return ref;
  }

  private async secret(ref: string, fresh = false): Promise<SecretFields | undefined> {
    const hit = this.secretCache.get(ref);
    if (!fresh && hit && this.now() - hit.at < this.secretCacheMs) return hit.value;
    const value = await this.deps.secrets.get(ref);
    this.secretCache.set(ref, { at: this.now(), value });
    return value;
  }

  private async sessionHead(sessionId: unknown): Promise<SessionHead> {
    if (typeof sessionId !== 'string' || !sessionId) throw new ProxyFailure('invalid', 'sessionId: required');
    const head = await sessions.get(this.deps.table, PROXY, sessionId);
    if (!head) throw new ProxyFailure('forbidden', `session ${sessionId} does not exist`);
    return head;
  }

  // --- environment_variable credentials --------------------------------------------------------------

  /**
   * The credential items of the session's vaults, vault by vault in the session's order, skipping
   * vaults that are gone or archived (a caller that stops early reads no further page).
   */
  private async *sessionCredentials(head: SessionHead) {
    const owner = tenantPrincipal(head.tenant);
    for (const vaultId of head.data.vault_ids ?? []) {
      const vault = await vaults.get(this.deps.table, owner, vaultId);
      if (!vault || vault.data.archived_at) continue;
      for (let after: string | undefined; ; ) {
        const page = await credentials.page(this.deps.table, owner, vaultId, { after, limit: 100 });
        for (const item of page.items) yield { vaultId, item };
        if (page.last === null) break;
        after = page.last;
      }
    }
  }

  /**
   * The usable `environment_variable` credentials of the session's vaults (its tenant's, not
   * archived, in the session's vault order; for two of one variable name the first wins), with the
   * secret's ref. Only metadata leaves the proxy.
   */
  private async envGrants(head: SessionHead): Promise<Array<{ grant: EgressCredentialGrant; ref: string }>> {
    const out: Array<{ grant: EgressCredentialGrant; ref: string }> = [];
    const names = new Set<string>();
    for await (const { vaultId, item } of this.sessionCredentials(head)) {
      const c = item.data;
      if (c.archived_at || c.auth.type !== 'environment_variable' || names.has(c.auth.secret_name)) continue;
      names.add(c.auth.secret_name);
      out.push({
        ref: item.secret_ref,
        grant: {
          credential_id: c.id,
          vault_id: vaultId,
          secret_name: c.auth.secret_name,
          allowed_hosts: c.auth.networking.type === 'limited' ? [...c.auth.networking.allowed_hosts] : null,
          injection_location: { header: c.auth.injection_location.header, body: c.auth.injection_location.body },
        },
      });
    }
    return out;
  }

  private async egressCredentials(head: SessionHead): Promise<EgressCredentialGrant[]> {
    return (await this.envGrants(head)).map((g) => g.grant);
  }

  /**
   * The secret of one of the session's `environment_variable` credentials, for a request to
   * `host`: checked again here (the session's vaults still grant it, and its `networking` allows
   * the host), whatever the caller decided.
   */
  private async egressSecret(r: Extract<ProxyRequest, { op: 'egress_secret' }>): Promise<{ value: string }> {
    if (!this.deps.egressSecrets) throw new ProxyFailure('forbidden', 'egress_secret is not answered here');
    const head = await this.sessionHead(r.sessionId);
    const host = typeof r.host === 'string' ? normalizeHost(r.host) : null;
    if (!host) throw new ProxyFailure('invalid', 'host: required');
    const found = (await this.envGrants(head)).find((g) => g.grant.credential_id === r.credentialId && g.grant.vault_id === r.vaultId);
    if (!found) throw new ProxyFailure('forbidden', `credential ${String(r.credentialId)} is not an environment_variable credential of session ${head.data.id}`);
    const allowed = found.grant.allowed_hosts;
    if (allowed !== null && !allowed.some((entry) => { const p = parseHostPattern(entry); return !('error' in p) && hostMatches(p, host, 0); })) {
      throw new ProxyFailure('forbidden', `credential ${found.grant.credential_id} does not allow ${host}`);
    }
    const value = (await this.secret(found.ref))?.secret_value;
    if (!value) throw new ProxyFailure('invalid', `credential ${found.grant.credential_id} has no stored secret`);
    return { value };
  }

  // --- MCP ----------------------------------------------------------------------------------------

  /**
   * The credential for `server` that the session's vaults grant: the first of its vaults (in the
   * order the session lists them) that is the session's tenant's, not archived, and holds an
   * unarchived credential for the server's URL. None is not an error: the call goes out without
   * credentials, and a server that wants some answers 401.
   */
  private async grantFor(head: SessionHead, url: string): Promise<{ credential: Credential; ref: string } | null> {
    const target = normalizeServerUrl(url);
    for await (const { item } of this.sessionCredentials(head)) {
      const c = item.data;
      if (!c.archived_at && item.target === target && c.auth.type !== 'environment_variable') {
        return { credential: c, ref: item.secret_ref };
      }
    }
    return null;
  }

  private async mcp(r: Extract<ProxyRequest, { op: 'mcp_list_tools' | 'mcp_call_tool' }>): Promise<unknown> {
    const head = await this.sessionHead(r.sessionId);
    const server = r.server as McpServerRef | undefined;
    if (!isObject(server) || typeof server.name !== 'string' || typeof server.url !== 'string') {
      throw new ProxyFailure('invalid', 'server: {name, url} required');
    }
    // The target must be one of the session's own MCP servers, whatever the caller says.
    const own = (head.data.agent?.mcp_servers ?? []).find(
      (m) => m.name === server.name && normalizeServerUrl(m.url) === normalizeServerUrl(server.url),
    );
    if (!own) throw new ProxyFailure('forbidden', `MCP server ${server.name} is not a server of session ${r.sessionId}'s agent`, server.name);
    const callerVaults = Array.isArray(r.vaultIds) ? r.vaultIds : [];
    if (callerVaults.some((v) => !(head.data.vault_ids ?? []).includes(v))) {
      throw new ProxyFailure('forbidden', `vaults not attached to session ${r.sessionId} were named`, server.name);
    }
    const grant = await this.grantFor(head, own.url);
    if (grant && isOAuth(grant.credential)) return this.mcpOAuth(r, own, grant.credential, grant.ref);
    const run = async (fresh: boolean) => {
      const secret = grant ? await this.secret(grant.ref, fresh) : undefined;
      const token = grant ? secret?.token : undefined;
      if (grant && !token) throw new ProxyFailure('authentication', `MCP server ${own.name}: the credential ${grant.credential.id} has no secret`, own.name);
      try {
        return await this.mcpCall(r, own, token);
      } catch (err) {
        if (err instanceof McpCallFailure) throw new ProxyFailure(err.kind, err.message, own.name);
        throw err;
      }
    };
    try {
      const result = await run(false);
      this.log.info('mcp call', { op: r.op, sessionId: r.sessionId, server: own.name, credential: grant?.credential.id ?? null });
      return result;
    } catch (err) {
      // A refused credential may be a cached one that was rotated since: read it again, once.
      if (err instanceof ProxyFailure && err.kind === 'authentication' && grant && this.secretCache.has(grant.ref)) {
        this.secretCache.delete(grant.ref);
        return run(true);
      }
      throw err;
    }
  }

  /** One MCP request with `token` (if any); the answer never carries the token back. */
  private async mcpCall(r: Extract<ProxyRequest, { op: 'mcp_list_tools' | 'mcp_call_tool' }>, own: McpServerRef, token: string | undefined) {
    const result =
      r.op === 'mcp_list_tools'
        ? await this.connector.listTools(r.sessionId, own, token)
        : await this.connector.callTool(r.sessionId, own, token, String(r.tool), r.input);
    // A server could echo what it was sent; the token never leaves, even then.
    return token ? JSON.parse(redactSecrets(JSON.stringify(result), [token])) : result;
  }

  /**
   * An MCP request with an `mcp_oauth` credential: its access token is refreshed first when it
   * expires within the margin, and once more (then the request retried once) when the server
   * answers 401. A refresh that fails is an `authentication` failure naming no secret.
   */
  private async mcpOAuth(
    r: Extract<ProxyRequest, { op: 'mcp_list_tools' | 'mcp_call_tool' }>,
    own: McpServerRef,
    credential: Credential & { auth: { type: 'mcp_oauth' } },
    ref: string,
  ): Promise<unknown> {
    const refreshFailed = (err: OAuthRefreshError) => new ProxyFailure('authentication', `MCP server ${own.name}: ${err.message}`, own.name);
    let token: string | undefined;
    let refreshed: boolean;
    let tried: boolean;
    try {
      ({ token, refreshed, tried } = await this.oauth.current(credential, ref));
    } catch (err) {
      if (err instanceof OAuthRefreshError) throw refreshFailed(err);
      throw err;
    }
    if (!token) throw new ProxyFailure('authentication', `MCP server ${own.name}: the credential ${credential.id} has no secret`, own.name);
    const log = (retried: boolean) =>
      this.log.info('mcp call', { op: r.op, sessionId: r.sessionId, server: own.name, credential: credential.id, refreshed, retried });
    try {
      const result = await this.mcpCall(r, own, token);
      log(false);
      return result;
    } catch (err) {
      if (!(err instanceof McpCallFailure)) throw err;
      // Only a 401 says the token itself is no good; and a call refreshes (or tries to) only once.
      if (err.kind !== 'authentication' || err.status !== 401 || tried) throw new ProxyFailure(err.kind, err.message, own.name);
    }
    try {
      token = await this.oauth.replace(credential, ref, token);
      refreshed = true;
    } catch (err) {
      if (err instanceof OAuthRefreshError) throw refreshFailed(err);
      throw err;
    }
    try {
      const result = await this.mcpCall(r, own, token);
      log(true);
      return result;
    } catch (err) {
      if (err instanceof McpCallFailure) throw new ProxyFailure(err.kind, err.message, own.name);
      throw err;
    }
  }

  /**
   * `mcp_oauth_validate`: the credential is read from the state table (the caller's tenant must
   * own it, and it must be an unarchived `mcp_oauth` credential of an unarchived vault), then
   * probed (`validateMcpOAuth`). Tokens a refresh yields are stored as any refresh's are.
   */
  private async validate(r: Extract<ProxyRequest, { op: 'mcp_oauth_validate' }>): Promise<CredentialValidation> {
    for (const [name, v] of [['tenant', r.tenant], ['vaultId', r.vaultId], ['credentialId', r.credentialId]] as const) {
      if (typeof v !== 'string' || !v) throw new ProxyFailure('invalid', `${name}: required`);
    }
    const caller = tenantPrincipal(r.tenant);
    const vault = await vaults.get(this.deps.table, caller, r.vaultId);
    const item = await credentials.get(this.deps.table, caller, r.vaultId, r.credentialId);
    if (!vault || !item) {
      throw new ProxyFailure('forbidden', `credential ${r.credentialId} is not a credential of vault ${r.vaultId} of this tenant`);
    }
    const credential = item.data;
    if (vault.data.archived_at || credential.archived_at) throw new ProxyFailure('invalid', `credential ${r.credentialId} is archived`);
    if (!isOAuth(credential)) throw new ProxyFailure('invalid', `credential ${r.credentialId} is ${credential.auth.type}, not mcp_oauth`);
    const result = await validateMcpOAuth(credential, item.secret_ref, {
      tokens: this.oauth,
      secrets: { read: (ref, fresh) => this.secret(ref, fresh) },
      fetch: this.deps.mcp?.fetch,
      now: this.now,
    });
    this.log.info('mcp_oauth credential validated', {
      credential: credential.id,
      status: result.status,
      refresh: result.refresh?.status ?? null,
      probe_failed: result.mcp_probe?.method ?? null,
    });
    return result;
  }

  // --- git ----------------------------------------------------------------------------------------

  /**
   * A capability for one sandbox of a session: it opens the given repositories (which must be
   * http(s) repository resources of the session) through `handleGit`, and nothing else.
   */
  private async gitOpen(r: Extract<ProxyRequest, { op: 'git_open' }>): Promise<GitChannel> {
    const head = await this.sessionHead(r.sessionId);
    if (typeof r.sandbox !== 'string' || !r.sandbox) throw new ProxyFailure('invalid', 'sandbox: required');
    if (!Array.isArray(r.repositories) || r.repositories.length === 0 || r.repositories.length > 20) {
      throw new ProxyFailure('invalid', 'repositories: 1 to 20 URLs');
    }
    const own = new Set(
      (head.data.resources ?? [])
        .filter((x): x is { type: string; url: string } => isObject(x) && x.type === 'github_repository' && typeof x.url === 'string')
        .map((x) => normalizeRepositoryUrl(x.url)),
    );
    const urls: string[] = [];
    for (const url of r.repositories) {
      if (typeof url !== 'string' || !/^https?:\/\//i.test(url)) throw new ProxyFailure('invalid', 'repositories: http(s) URLs only');
      if (!own.has(normalizeRepositoryUrl(url))) throw new ProxyFailure('forbidden', `a repository that is not a resource of session ${r.sessionId} was named`);
      urls.push(url);
    }
    const expires = this.now() + (this.deps.gitCapabilityTtlMs ?? 7 * 24 * 3600_000);
    const id = randomBytes(16).toString('base64url');
    const payload = Buffer.from(JSON.stringify({ c: id, s: r.sessionId, n: r.sandbox, r: urls, e: expires }), 'utf8').toString('base64url');
    const mac = createHmac('sha256', await this.deps.signingKey()).update(`v1.${payload}`).digest('base64url');
    await this.gitChannels.open({ id, sessionId: r.sessionId, sandbox: r.sandbox, expiresAtMs: expires });
    this.log.info('git channel opened', { sessionId: r.sessionId, sandbox: r.sandbox, repositories: urls.length });
    return {
      id,
      endpoint: this.deps.gitEndpoint ?? null,
      capability: `v1.${payload}.${mac}`,
      expires_at: new Date(expires).toISOString(),
      repositories: urls.map((url, i) => ({ url, path: `/r/${i}/${repoSlug(url)}.git` })),
    };
  }

  private async verifyCapability(cap: string | null): Promise<{ c: string; s: string; n: string; r: string[]; e: number } | null> {
    if (!cap) return null;
    const m = /^v1\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(cap.trim());
    if (!m) return null;
    const want = createHmac('sha256', await this.deps.signingKey()).update(`v1.${m[1]}`).digest();
    const got = Buffer.from(m[2], 'base64url');
    if (got.length !== want.length || !timingSafeEqual(got, want)) return null;
    let p;
    try {
      p = JSON.parse(Buffer.from(m[1], 'base64url').toString('utf8'));
    } catch {
      return null;
    }
    if (typeof p.s !== 'string' || !Array.isArray(p.r) || typeof p.e !== 'number' || p.e < this.now()) return null;
    // A closed channel's capability opens nothing, however well signed. (A store that cannot be
    // read is a failure of the proxy, answered 502, not a refusal of the capability.)
    if (typeof p.c !== 'string' || typeof p.n !== 'string' || !(await this.gitChannels.isOpen(p.s, p.c, p.n))) return null;
    return p;
  }

  /**
   * Git smart HTTP for a sandbox: `/r/<n>/<name>.git/{info/refs,git-upload-pack,git-receive-pack}`
   * with the channel's capability in `x-corral-git-capability`. The repository must still be a
   * resource of the (still existing) session; its token, if the session has one, is added as
   * HTTP basic auth (`x-access-token:<token>`, as GitHub takes it) on the way out. Bodies stream.
   */
  async handleGit(req: Request): Promise<Response> {
    const deny = (status: number, text: string) =>
      new Response(`${text}\n`, { status, headers: { 'content-type': 'text/plain; charset=utf-8' } });
    let token: string | undefined;
    try {
      const url = new URL(req.url);
      const m = GIT_SUFFIX.exec(url.pathname);
      if (!m) return deny(404, 'not a git smart-HTTP path of this channel');
      const suffix = m[2];
      if (suffix === '/info/refs') {
        if (req.method !== 'GET' || !GIT_SERVICES.has(url.searchParams.get('service') ?? '')) return deny(400, 'only smart HTTP is proxied');
      } else if (req.method !== 'POST') {
        return deny(405, 'method not allowed');
      }
      const cap = await this.verifyCapability(req.headers.get(GIT_CAPABILITY_HEADER));
      if (!cap) return deny(403, 'missing, invalid, expired or closed git capability');
      const repo = cap.r[Number(m[1])];
      if (!repo) return deny(404, 'no such repository on this channel');
      const head = await sessions.get(this.deps.table, PROXY, cap.s);
      if (!head) return deny(403, 'the session of this channel no longer exists');
      const session = head.data;
      const wanted = normalizeRepositoryUrl(repo);
      const still = (session.resources ?? []).some(
        (x) => isObject(x) && x.type === 'github_repository' && typeof x.url === 'string' && normalizeRepositoryUrl(x.url) === wanted,
      );
      if (!still) return deny(403, 'this repository is no longer a resource of the session');
      const ref = (head.git_credentials ?? []).find((c) => c.url === wanted)?.secret_ref;
      if (ref) token = (await this.secret(ref))?.token;

      const headers = new Headers();
      for (const name of GIT_REQUEST_HEADERS) {
        const v = req.headers.get(name);
        if (v !== null) headers.set(name, v);
      }
      headers.set('user-agent', 'git/corral-credential-proxy');
      if (token) headers.set('authorization', `Basic ${Buffer.from(`x-access-token:${token}`, 'utf8').toString('base64')}`);
      // Only the repository's own smart-HTTP endpoints, and no query but the service.
      const search = suffix === '/info/refs' ? `?service=${url.searchParams.get('service')}` : '';
      const upstream = `${repo.replace(/\/+$/, '')}${suffix}${search}`;
      // Bounded in time: the caller's signal (its client went away) or the longest a request may take.
      const timeout = AbortSignal.timeout(this.deps.gitRequestTimeoutMs ?? 15 * 60_000);
      const init: RequestInit & { duplex?: 'half' } = { method: req.method, headers, redirect: 'manual', signal: AbortSignal.any([req.signal, timeout]) };
      if (req.method === 'POST') {
        init.body = req.body;
        init.duplex = 'half';
      }
      const res = await this.fetchImpl(upstream, init);
      this.log.info('git request', { sessionId: cap.s, sandbox: cap.n, service: suffix, status: res.status, authorized: Boolean(token) });
      if (res.status === 401 || res.status === 403) {
        await res.body?.cancel().catch(() => {});
        return deny(res.status, token ? 'the repository refused the stored credentials' : 'the repository needs credentials and the session has none for it');
      }
      if (res.status >= 300 && res.status < 400) {
        await res.body?.cancel().catch(() => {});
        return deny(502, 'the repository answered with a redirect; redirects are not followed');
      }
      const out = new Headers();
      for (const name of GIT_RESPONSE_HEADERS) {
        const v = res.headers.get(name);
        if (v !== null) out.set(name, v);
      }
      return new Response(res.body, { status: res.status, headers: out });
    } catch (err) {
      const message = token ? redactSecrets(String((err as Error)?.message ?? err), [token]) : String((err as Error)?.message ?? err);
      this.log.warn('git request failed', { error: (err as Error)?.name ?? 'Error', message: message.slice(0, 300) });
      return deny(502, 'the repository could not be reached through the credential proxy');
    }
  }

  async close(): Promise<void> {
    await this.connector.close();
  }
}

/** `https://host/org/name(.git)` -> `name` (for readable paths on the channel). */
export function repoSlug(url: string): string {
  const last = url.replace(/[?#].*$/, '').replace(/\/+$/, '').split('/').pop() ?? '';
  const name = last.replace(/\.git$/, '').replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 100);
  return name && name !== '.' && name !== '..' ? name : 'repository';
}
