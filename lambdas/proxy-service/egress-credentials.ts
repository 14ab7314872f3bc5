/**
 * `environment_variable` credentials in the proxy service (issue 14, item 2 on AWS). A Fargate
 * sandbox's variable holds a placeholder (the ECS provider made it and put its reference in the
 * sandbox's egress grant); the egress relay terminates TLS towards the credential's hosts with a
 * leaf of the deployment's egress CA and puts the secret in the placeholder's place. Here:
 *
 * - the CA: loaded from Secrets Manager with the service's own role (made there on first use:
 *   lambdas/adapters/aws/secrets-manager-egress-ca.ts); its certificate, which is public, is
 *   served to the sandboxes' agents at `GET /egress-ca.pem` on the sandbox port, and the agent
 *   builds the tools' trust bundle from it (sandbox/agent/egress-trust.ts);
 * - the secrets: read at each substitution by the credential proxy's core running in this process
 *   (`egress_secret`), with this service's role, from the session's own records: its vaults still
 *   grant the credential and the credential's `networking` allows the host, whatever the grant
 *   says. That core is reachable from nothing but this process's relay (no port, no function), so
 *   answering `egress_secret` here keeps the rule that neither the harness nor the API can read a
 *   secret; the AWS credential proxy Lambda, which they invoke, still refuses it.
 */
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type http from 'node:http';
import { openSecretsManagerEgressCa } from '../adapters/aws/secrets-manager-egress-ca.js';
import { SecretsManagerStore } from '../adapters/aws/secrets-manager-store.js';
import type { PemEgressCa } from '../core/sandbox/egress-ca.js';
import type { EgressSecretSource } from '../core/sandbox/egress-relay.js';
import type { StateTable } from '../core/store.js';
import type { Logger } from '../core/logger.js';
import { CredentialProxy } from '../core/vault/proxy.js';
import type { ProxyRequest } from '../core/vault/protocol.js';
import type { ProxyServiceRoute } from './routes.js';

/** Where a sandbox's agent reads the egress CA's certificate (sandbox port; `sandbox/agent/egress-trust.ts` asks for it). */
export const EGRESS_CA_ROUTE = '/egress-ca.pem';

/** The CA's certificate, for the sandboxes' trust bundles. Public; no capability needed. */
export function egressCaRoute(ca: Pick<PemEgressCa, 'certPem'>): ProxyServiceRoute {
  return {
    prefix: EGRESS_CA_ROUTE,
    name: 'egress-ca',
    handle(req: http.IncomingMessage, res: http.ServerResponse) {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/x-pem-file', 'cache-control': 'no-store' }).end(req.method === 'HEAD' ? undefined : ca.certPem);
    },
  };
}

/**
 * Secrets for the relay from a credential proxy core in this process: `egress_secret`, which checks
 * the grant again from the session's records. The error names the credential and why, never a value.
 */
export function coreEgressSecrets(proxy: Pick<CredentialProxy, 'handle'>): EgressSecretSource {
  return {
    async secret(owner, credential, host) {
      const request: ProxyRequest = { op: 'egress_secret', sessionId: owner.sessionId, vaultId: credential.vaultId, credentialId: credential.credentialId, host };
      const answer = await proxy.handle(request);
      if (!answer.ok) throw new Error(answer.error.message);
      const value = (answer.result as { value?: unknown })?.value;
      if (typeof value !== 'string' || !value) throw new Error(`credential ${credential.credentialId} has no stored secret`);
      return value;
    },
  };
}

export interface EgressCredentialSetup {
  readonly ca: PemEgressCa;
  readonly secrets: EgressSecretSource;
  readonly route: ProxyServiceRoute;
}

/**
 * The CA and the secret source of a proxy service task: the CA from `caSecret` (made on first use),
 * the secrets from the vault's Secrets Manager secrets, both read with this task's role.
 */
export async function setUpEgressCredentials(opts: {
  readonly stateTable: StateTable;
  readonly logger: Logger;
  readonly caSecret?: string;
  readonly secretsManager?: SecretsManagerClient;
}): Promise<EgressCredentialSetup> {
  const sm = opts.secretsManager ?? new SecretsManagerClient({});
  const ca = await openSecretsManagerEgressCa(sm, { secretId: opts.caSecret, logger: opts.logger });
  const proxy = new CredentialProxy({
    table: opts.stateTable,
    secrets: new SecretsManagerStore(sm),
    // No git here through this core (the git channel brings its own): nothing is ever signed.
    signingKey: () => Promise.reject(new Error('the egress credentials core signs nothing')),
    gitEndpoint: null,
    logger: opts.logger,
    egressSecrets: true,
  });
  return { ca, secrets: coreEgressSecrets(proxy), route: egressCaRoute(ca) };
}
