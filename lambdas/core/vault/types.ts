/**
 * Vaults and credentials as the API returns them (`BetaManagedAgentsVault`,
 * `BetaManagedAgentsCredential`), and how their secrets are named in the secret store.
 *
 * A credential's metadata (its type, the MCP server it is for, names, timestamps) lives in the
 * state table; its secret fields live only in the secret store, which only the credential proxy
 * reads. Nothing in this file ever holds a secret value.
 */

export const VAULT_ID_PREFIX = 'vlt';
export const CREDENTIAL_ID_PREFIX = 'vcrd';
export const RESOURCE_ID_PREFIX = 'sesrsc';

export interface Vault {
  id: string;
  type: 'vault';
  display_name: string;
  metadata: Record<string, string>;
  created_at: string;
  updated_at: string;
  archived_at: string | null;
}

export type TokenEndpointAuthType = 'none' | 'client_secret_basic' | 'client_secret_post';

/** The non-secret part of a credential's `auth`, as responses show it. */
export type CredentialAuth =
  | { type: 'static_bearer'; mcp_server_url: string }
  | {
      type: 'mcp_oauth';
      mcp_server_url: string;
      expires_at: string | null;
      refresh: {
        client_id: string;
        token_endpoint: string;
        token_endpoint_auth: { type: TokenEndpointAuthType };
        resource: string | null;
        scope: string | null;
      } | null;
    }
  | {
      type: 'environment_variable';
      secret_name: string;
      injection_location: { body: boolean; header: boolean };
      networking: { type: 'unrestricted' } | { type: 'limited'; allowed_hosts: string[] };
    };

export interface Credential {
  id: string;
  type: 'vault_credential';
  vault_id: string;
  display_name: string | null;
  auth: CredentialAuth;
  metadata: Record<string, string>;
  created_at: string;
  updated_at: string;
  archived_at: string | null;
}

/**
 * What the secret store keeps for one credential: the secret fields of its `auth`, by name
 * (`token`; `access_token`, `refresh_token`, `client_secret`; `secret_value`; a repository's
 * `token`). Only the credential proxy ever reads one.
 */
export type SecretFields = Record<string, string>;

/**
 * The secret field in which the proxy keeps the expiry of an `mcp_oauth` access token it obtained
 * by a refresh (RFC 3339, or `unknown`); see `oauth.ts`. The API removes it when a client sets a
 * new `access_token` or `expires_at`.
 */
export const REFRESHED_EXPIRY_FIELD = 'access_token_expires_at';

/** Every secret Corral keeps is named under this prefix (the proxy's IAM policy is scoped to it). */
export const SECRET_PREFIX = 'corral/vault/';

/** Characters Secrets Manager allows in a name are `A-Za-z0-9/_+=.@-`; anything else becomes `_`. */
function segment(s: string): string {
  return s.replace(/[^A-Za-z0-9_+=.@-]/g, '_') || '_';
}

/** Where a vault credential's secret is kept. */
export function credentialSecretRef(tenant: string, vaultId: string, credentialId: string): string {
  return `${SECRET_PREFIX}${segment(tenant)}/${segment(vaultId)}/${segment(credentialId)}`;
}

/** Where the token of a session's repository resource is kept. */
export function repositorySecretRef(tenant: string, sessionId: string, resourceId: string): string {
  return `${SECRET_PREFIX}${segment(tenant)}/sessions/${segment(sessionId)}/${segment(resourceId)}`;
}

/** The key that signs git capabilities (AWS: a secret; locally a fresh key per proxy start). */
export const GIT_SIGNING_KEY_REF = `${SECRET_PREFIX}_proxy/git-signing-key`;

/**
 * The form in which two MCP server URLs are compared: parsed and re-serialized (lower-case host,
 * default port dropped), without a fragment and without a trailing slash on the path.
 */
export function normalizeServerUrl(url: string): string {
  try {
    const u = new URL(url);
    u.hash = '';
    let s = u.href;
    if (s.endsWith('/') && u.search === '') s = s.slice(0, -1);
    return s;
  } catch {
    return url;
  }
}

/** Repository URLs compare like server URLs, and `x` equals `x.git`. */
export function normalizeRepositoryUrl(url: string): string {
  return normalizeServerUrl(url).replace(/\.git$/, '');
}

/** State-table keys of vault records. */
export const vaultKey = (id: string) => ({ pk: `vault#${id}`, sk: 'head' });
export const credentialKey = (vaultId: string, id: string) => ({ pk: `vault#${vaultId}`, sk: `cred#${id}` });
