/**
 * A sandbox's view of its session's `environment_variable` credentials, on any provider: for each,
 * a placeholder of its own (`corral-placeholder-<48 hex digits>`: random, per sandbox and
 * credential, so it cannot be guessed or reused by another sandbox) that the tools' variable holds,
 * and the rule the egress proxy applies (where the placeholder becomes the secret). No secret.
 */
import crypto from 'node:crypto';
import type { EgressCredentialGrant } from '../vault/protocol.js';
import { parseHostPattern, type HostPattern } from './egress.js';

/** One credential as the egress proxy applies it (structurally the egress proxy's `EgressCredential`). */
export interface PlaceholderCredential {
  readonly credentialId: string;
  readonly vaultId: string;
  readonly placeholder: string;
  /** The hosts the secret is substituted on; null: any host. */
  readonly allowedHosts: readonly HostPattern[] | null;
  readonly header: boolean;
  readonly body: boolean;
}

/** The tools' variables (`secret_name` → placeholder) and the proxy's rules, for one sandbox. */
export function placeholdersFor(grants: readonly EgressCredentialGrant[]): { env: Record<string, string>; credentials: PlaceholderCredential[] } {
  const env: Record<string, string> = {};
  const credentials: PlaceholderCredential[] = [];
  for (const g of grants) {
    const placeholder = `corral-placeholder-${crypto.randomBytes(24).toString('hex')}`;
    env[g.secret_name] = placeholder;
    const allowedHosts = g.allowed_hosts === null ? null : g.allowed_hosts.map(parseHostPattern).filter((p): p is HostPattern => !('error' in p));
    credentials.push({ credentialId: g.credential_id, vaultId: g.vault_id, placeholder, allowedHosts, header: g.injection_location.header, body: g.injection_location.body });
  }
  return { env, credentials };
}
