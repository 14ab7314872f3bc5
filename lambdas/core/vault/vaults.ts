import type { CredentialCreate, CredentialUpdate, VaultCreate, VaultUpdate } from '../api/schemas.js';
import { ConflictError, CorralError, InvalidRequestError, NotFoundError } from '../errors.js';
import { newId } from '../ids.js';
import { assertRecordFits, nowIso, patchMetadata } from '../resources/common.js';
import { collectPage, type ListParams, type ListResult } from '../resources/paging.js';
import type { StateTable } from '../store.js';
import type { CredentialValidation } from './oauth.js';
import { ProxyCallError } from './protocol.js';
import type { SecretSink } from './secret-store.js';
import {
  CREDENTIAL_ID_PREFIX,
  REFRESHED_EXPIRY_FIELD,
  VAULT_ID_PREFIX,
  credentialKey,
  credentialSecretRef,
  normalizeServerUrl,
  vaultKey,
  type Credential,
  type CredentialAuth,
  type SecretFields,
  type Vault,
} from './types.js';

/** No credential proxy is configured, or it failed: secrets cannot be stored right now. */
export class CredentialProxyUnavailableError extends CorralError {
  constructor(message: string) {
    super('api_error', 503, message);
    this.name = 'CredentialProxyUnavailableError';
  }
}

/** The credential proxy's probe of an `mcp_oauth` credential (`CredentialProxyClient` has it). */
export interface CredentialValidator {
  mcpOAuthValidate(req: { tenant: string; vaultId: string; credentialId: string }): Promise<CredentialValidation>;
}

/**
 * Vaults and their credentials: metadata in the state table, secrets handed to the credential
 * proxy (`SecretSink`) and never kept, logged or returned here.
 */
export class VaultService {
  constructor(
    private readonly table: StateTable,
    private readonly secrets: (SecretSink & Partial<CredentialValidator>) | undefined,
  ) {}

  // --- vaults -----------------------------------------------------------------------------------

  async create(tenant: string, params: VaultCreate, now = new Date()): Promise<Vault> {
    const id = newId(VAULT_ID_PREFIX, now.getTime());
    const vault: Vault = {
      id,
      type: 'vault',
      display_name: params.display_name,
      metadata: params.metadata ?? {},
      created_at: nowIso(now),
      updated_at: nowIso(now),
      archived_at: null,
    };
    assertRecordFits('vault', vault);
    await this.table.put({ ...vaultKey(id), tenant, data: vault, gsi1pk: `${tenant}#vaults`, gsi1sk: id }, { ifNotExists: true });
    return vault;
  }

  async get(tenant: string, id: string): Promise<Vault> {
    const item = await this.table.get(vaultKey(id).pk, 'head');
    if (!item || item.tenant !== tenant) throw new NotFoundError(`vault ${id} not found`);
    return item.data as Vault;
  }

  private async save(tenant: string, vault: Vault) {
    await this.table.put({ ...vaultKey(vault.id), tenant, data: vault, gsi1pk: `${tenant}#vaults`, gsi1sk: vault.id });
  }

  async update(tenant: string, id: string, params: VaultUpdate, now = new Date()): Promise<Vault> {
    const current = await this.get(tenant, id);
    if (current.archived_at) throw new InvalidRequestError(`vault ${id} is archived`);
    const next: Vault = {
      ...current,
      display_name: params.display_name ?? current.display_name,
      metadata: patchMetadata(current.metadata, params.metadata),
      updated_at: nowIso(now),
    };
    assertRecordFits('vault', next);
    await this.save(tenant, next);
    return next;
  }

  /** An archived vault grants nothing: the proxy ignores its credentials. */
  async archive(tenant: string, id: string, now = new Date()): Promise<Vault> {
    const current = await this.get(tenant, id);
    if (current.archived_at) return current;
    const next = { ...current, archived_at: nowIso(now), updated_at: nowIso(now) };
    await this.save(tenant, next);
    return next;
  }

  /** Remove the vault, its credentials and their secrets. */
  async delete(tenant: string, id: string): Promise<{ id: string; type: 'vault_deleted' }> {
    await this.get(tenant, id);
    for (;;) {
      const page = await this.table.query(vaultKey(id).pk, { prefix: 'cred#', limit: 100 });
      for (const item of page.items) {
        await this.forgetSecret(String(item.secret_ref));
        await this.table.delete(item.pk, item.sk);
      }
      if (page.last === null || page.items.length === 0) break;
    }
    await this.table.delete(vaultKey(id).pk, 'head');
    return { id, type: 'vault_deleted' };
  }

  list(tenant: string, params: ListParams & { include_archived?: boolean }): Promise<ListResult<Vault>> {
    return collectPage(
      (q) => this.table.queryIndex(`${tenant}#vaults`, q),
      params,
      (item) => String(item.gsi1sk),
      (item) => params.include_archived === true || !(item.data as Vault).archived_at,
      (item) => item.data as Vault,
    );
  }

  /**
   * Check the `vault_ids` of a new session: each must be a vault of this tenant that is not
   * archived (400 otherwise, naming the first that is not).
   */
  async assertUsable(tenant: string, vaultIds: string[]): Promise<void> {
    const seen = new Set<string>();
    for (const id of vaultIds) {
      if (seen.has(id)) throw new InvalidRequestError(`vault_ids: ${id} is listed twice`);
      seen.add(id);
      const item = await this.table.get(vaultKey(id).pk, 'head');
      if (!item || item.tenant !== tenant) throw new InvalidRequestError(`vault_ids: vault ${id} not found`);
      if ((item.data as Vault).archived_at) throw new InvalidRequestError(`vault_ids: vault ${id} is archived`);
    }
  }

  // --- credentials ------------------------------------------------------------------------------

  async createCredential(tenant: string, vaultId: string, params: CredentialCreate, now = new Date()): Promise<Credential> {
    const vault = await this.get(tenant, vaultId);
    if (vault.archived_at) throw new InvalidRequestError(`vault ${vaultId} is archived`);
    const { auth, secret } = splitAuth(params.auth);
    // Checked before the secret goes to the proxy: a refused credential leaves no secret behind.
    assertRecordFits('credential', { ...params, auth });
    if ('mcp_server_url' in auth) await this.assertNoOtherFor(vaultId, auth.mcp_server_url, null);
    const id = newId(CREDENTIAL_ID_PREFIX, now.getTime());
    const ref = credentialSecretRef(tenant, vaultId, id);
    // The secret first: a credential record never exists without its secret.
    await this.handOver(ref, secret);
    const credential: Credential = {
      id,
      type: 'vault_credential',
      vault_id: vaultId,
      display_name: params.display_name ?? null,
      auth,
      metadata: params.metadata ?? {},
      created_at: nowIso(now),
      updated_at: nowIso(now),
      archived_at: null,
    };
    try {
      await this.table.put(
        { ...credentialKey(vaultId, id), tenant, data: credential, secret_ref: ref, target: targetOf(auth) },
        { ifNotExists: true },
      );
    } catch (err) {
      await this.forgetSecret(ref).catch(() => {});
      throw err;
    }
    return credential;
  }

  private async credentialItem(tenant: string, vaultId: string, id: string) {
    await this.get(tenant, vaultId);
    const key = credentialKey(vaultId, id);
    const item = await this.table.get(key.pk, key.sk);
    if (!item || item.tenant !== tenant) throw new NotFoundError(`credential ${id} not found in vault ${vaultId}`);
    return item;
  }

  async getCredential(tenant: string, vaultId: string, id: string): Promise<Credential> {
    return (await this.credentialItem(tenant, vaultId, id)).data as Credential;
  }

  async updateCredential(tenant: string, vaultId: string, id: string, params: CredentialUpdate, now = new Date()): Promise<Credential> {
    const item = await this.credentialItem(tenant, vaultId, id);
    const current = item.data as Credential;
    if (current.archived_at) throw new InvalidRequestError(`credential ${id} is archived`);
    let auth = current.auth;
    if (params.auth) {
      if (params.auth.type !== current.auth.type) {
        throw new InvalidRequestError(`auth.type: credential ${id} is ${current.auth.type}; its type cannot change`);
      }
      const patched = patchAuth(current.auth, params.auth);
      auth = patched.auth;
      if (Object.keys(patched.secret).length) await this.handOver(String(item.secret_ref), patched.secret, true);
    }
    const next: Credential = {
      ...current,
      auth,
      display_name: params.display_name === undefined ? current.display_name : params.display_name,
      metadata: patchMetadata(current.metadata, params.metadata),
      updated_at: nowIso(now),
    };
    assertRecordFits('credential', next);
    await this.table.put({ ...item, data: next, target: targetOf(auth) });
    return next;
  }

  /** An archived credential is never used again; its secret is removed at once. */
  async archiveCredential(tenant: string, vaultId: string, id: string, now = new Date()): Promise<Credential> {
    const item = await this.credentialItem(tenant, vaultId, id);
    const current = item.data as Credential;
    if (current.archived_at) return current;
    const next = { ...current, archived_at: nowIso(now), updated_at: nowIso(now) };
    await this.table.put({ ...item, data: next });
    await this.forgetSecret(String(item.secret_ref));
    return next;
  }

  async deleteCredential(tenant: string, vaultId: string, id: string): Promise<{ id: string; type: 'vault_credential_deleted' }> {
    const item = await this.credentialItem(tenant, vaultId, id);
    await this.forgetSecret(String(item.secret_ref));
    await this.table.delete(item.pk, item.sk);
    return { id, type: 'vault_credential_deleted' };
  }

  /**
   * `mcp_oauth_validate`: the credential proxy probes the credential's MCP server with its access
   * token, refreshing it on a 401 (`BetaManagedAgentsCredentialValidation`). Only unarchived
   * `mcp_oauth` credentials of unarchived vaults can be validated (400 otherwise).
   */
  async validateMcpOAuth(tenant: string, vaultId: string, id: string): Promise<CredentialValidation> {
    const vault = await this.get(tenant, vaultId);
    const current = await this.getCredential(tenant, vaultId, id);
    if (vault.archived_at) throw new InvalidRequestError(`vault ${vaultId} is archived`);
    if (current.archived_at) throw new InvalidRequestError(`credential ${id} is archived`);
    if (current.auth.type !== 'mcp_oauth') {
      throw new InvalidRequestError(`credential ${id} is a ${current.auth.type} credential; only mcp_oauth credentials can be validated`);
    }
    if (!this.secrets?.mcpOAuthValidate) {
      throw new CredentialProxyUnavailableError('no credential proxy is configured on this deployment: credentials cannot be validated');
    }
    try {
      return await this.secrets.mcpOAuthValidate({ tenant, vaultId, credentialId: id });
    } catch (err) {
      if (err instanceof ProxyCallError && err.kind === 'invalid') throw new InvalidRequestError(err.message);
      if (err instanceof ProxyCallError && err.kind === 'forbidden') throw new NotFoundError(`credential ${id} not found in vault ${vaultId}`);
      if (err instanceof CorralError) throw err;
      // The proxy's own messages never carry a secret.
      throw new CredentialProxyUnavailableError(`the credential proxy could not validate the credential: ${(err as Error)?.message ?? 'error'}`);
    }
  }

  async listCredentials(
    tenant: string,
    vaultId: string,
    params: ListParams & { include_archived?: boolean },
  ): Promise<ListResult<Credential>> {
    await this.get(tenant, vaultId);
    return collectPage(
      (q) => this.table.query(vaultKey(vaultId).pk, { ...q, prefix: 'cred#' }),
      params,
      (item) => item.sk,
      (item) => item.tenant === tenant && (params.include_archived === true || !(item.data as Credential).archived_at),
      (item) => item.data as Credential,
    );
  }

  /** One usable credential per MCP server URL and vault: which one to use is never ambiguous. */
  private async assertNoOtherFor(vaultId: string, url: string, except: string | null) {
    const target = normalizeServerUrl(url);
    let after: string | undefined;
    for (;;) {
      const page = await this.table.query(vaultKey(vaultId).pk, { prefix: 'cred#', after, limit: 100 });
      for (const item of page.items) {
        const c = item.data as Credential;
        if (c.id !== except && !c.archived_at && item.target === target) {
          throw new ConflictError(`vault ${vaultId} already has credential ${c.id} for ${target}; update or archive it instead`);
        }
      }
      if (page.last === null) return;
      after = page.last;
    }
  }

  private async handOver(ref: string, secret: SecretFields, merge = false): Promise<void> {
    if (!this.secrets) {
      throw new CredentialProxyUnavailableError('no credential proxy is configured on this deployment: secrets cannot be stored');
    }
    try {
      await this.secrets.storeSecret(ref, secret, { merge });
    } catch (err) {
      if (err instanceof CorralError) throw err;
      // The proxy's own messages never carry a secret; this one names only what failed.
      throw new CredentialProxyUnavailableError(`the credential proxy could not store the secret: ${(err as Error)?.message ?? 'error'}`);
    }
  }

  private async forgetSecret(ref: string): Promise<void> {
    if (!this.secrets) return;
    await this.secrets.deleteSecret(ref);
  }
}

/** What the proxy matches a credential by: the normalized MCP server URL (none for env vars). */
function targetOf(auth: CredentialAuth): string | undefined {
  return 'mcp_server_url' in auth ? normalizeServerUrl(auth.mcp_server_url) : undefined;
}

/** Split a create request's `auth` into what is shown and what only the proxy keeps. */
function splitAuth(a: CredentialCreate['auth']): { auth: CredentialAuth; secret: SecretFields } {
  switch (a.type) {
    case 'static_bearer':
      return { auth: { type: 'static_bearer', mcp_server_url: a.mcp_server_url }, secret: { token: a.token } };
    case 'mcp_oauth': {
      const secret: SecretFields = { access_token: a.access_token };
      if (a.refresh) {
        secret.refresh_token = a.refresh.refresh_token;
        if (a.refresh.token_endpoint_auth.type !== 'none') secret.client_secret = a.refresh.token_endpoint_auth.client_secret;
      }
      return {
        auth: {
          type: 'mcp_oauth',
          mcp_server_url: a.mcp_server_url,
          expires_at: a.expires_at ?? null,
          refresh: a.refresh
            ? {
                client_id: a.refresh.client_id,
                token_endpoint: a.refresh.token_endpoint,
                token_endpoint_auth: { type: a.refresh.token_endpoint_auth.type },
                resource: a.refresh.resource ?? null,
                scope: a.refresh.scope ?? null,
              }
            : null,
        },
        secret,
      };
    }
    case 'environment_variable':
      return {
        auth: {
          type: 'environment_variable',
          secret_name: a.secret_name,
          injection_location: { body: a.injection_location?.body ?? false, header: a.injection_location?.header ?? true },
          networking: a.networking.type === 'limited' ? { type: 'limited', allowed_hosts: a.networking.allowed_hosts } : { type: 'unrestricted' },
        },
        secret: { secret_value: a.secret_value },
      };
  }
}

/** Apply an update's `auth` to the shown part; the secret fields it sets go to the proxy as a patch. */
function patchAuth(current: CredentialAuth, u: NonNullable<CredentialUpdate['auth']>): { auth: CredentialAuth; secret: SecretFields } {
  const secret: SecretFields = {};
  if (u.type === 'static_bearer' && current.type === 'static_bearer') {
    if (u.token) secret.token = u.token;
    return { auth: current, secret };
  }
  if (u.type === 'mcp_oauth' && current.type === 'mcp_oauth') {
    if (u.access_token) secret.access_token = u.access_token;
    // The expiry the proxy kept for a token it refreshed no longer applies: the record's does.
    if (u.access_token || u.expires_at !== undefined) secret[REFRESHED_EXPIRY_FIELD] = '';
    const auth = { ...current, expires_at: u.expires_at === undefined ? current.expires_at : u.expires_at };
    if (u.refresh === null) {
      auth.refresh = null;
      secret.refresh_token = '';
      secret.client_secret = '';
    } else if (u.refresh) {
      if (!current.refresh) throw new InvalidRequestError('auth.refresh: this credential has no refresh settings to update');
      if (u.refresh.refresh_token) secret.refresh_token = u.refresh.refresh_token;
      const tea = u.refresh.token_endpoint_auth;
      if (tea) {
        if (tea.client_secret) secret.client_secret = tea.client_secret;
      }
      auth.refresh = {
        ...current.refresh,
        scope: u.refresh.scope === undefined ? current.refresh.scope : u.refresh.scope,
        token_endpoint_auth: tea ? { type: tea.type } : current.refresh.token_endpoint_auth,
      };
    }
    return { auth, secret };
  }
  if (u.type === 'environment_variable' && current.type === 'environment_variable') {
    if (u.secret_value) secret.secret_value = u.secret_value;
    const auth = {
      ...current,
      networking: u.networking
        ? u.networking.type === 'limited'
          ? { type: 'limited' as const, allowed_hosts: u.networking.allowed_hosts }
          : { type: 'unrestricted' as const }
        : current.networking,
      injection_location: {
        body: u.injection_location?.body ?? current.injection_location.body,
        header: u.injection_location?.header ?? current.injection_location.header,
      },
    };
    return { auth, secret };
  }
  throw new InvalidRequestError(`auth.type: must be ${current.type}`);
}
