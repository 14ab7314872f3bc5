import { randomBytes } from 'node:crypto';
import { Logger } from '@aws-lambda-powertools/logger';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { createDynamoClient } from '../adapters/aws/dynamodb-client.js';
import { DynamoStateTable } from '../adapters/aws/dynamodb-state-table.js';
import { SecretsManagerStore } from '../adapters/aws/secrets-manager-store.js';
import { coreLogger } from '../adapters/aws/services.js';
import { CORRAL_ENV, readCredentialProxyConfig } from '../core/config.js';
import type { Logger as CoreLogger } from '../core/logger.js';
import type { ProxyRequest, ProxyResponse } from '../core/vault/protocol.js';
import { CredentialProxy } from '../core/vault/proxy.js';
import type { SecretStore } from '../core/vault/secret-store.js';
import { GIT_SIGNING_KEY_REF } from '../core/vault/types.js';
import { tableGitChannels } from '../core/vault/git-channels.js';

/**
 * The credential proxy on AWS: a Lambda function whose role is the only principal allowed to
 * read the vault's secrets (`corral/vault/*` in Secrets Manager). The harness and the API invoke
 * it synchronously with a `ProxyRequest` (`lambdas/adapters/aws/credential-proxy-client.ts`) and get a `ProxyResponse`.
 *
 * `git_open` issues git channels whose requests the proxy service serves (its `/git/` route on
 * port 3128, `CORRAL_GIT_PROXY_URL`; lambdas/proxy-service/git-route.ts): this function registers
 * the open channels in the state table (`tableGitChannels`) and signs their capabilities with
 * the key both read from Secrets Manager, and never carries a clone itself.
 *
 * It still understands Lambda Function URL events for git smart HTTP (`/r/<n>/<name>.git/...`
 * with a git capability), answered buffered (a function URL caps bodies at 6 MB, too small for
 * many clones, which is why the stack serves git from the proxy service and creates no such URL).
 */

/**
 * The variables it reads (`readCredentialProxyConfig`, lambdas/core/config.ts).
 * @deprecated use `CORRAL_ENV` from lambdas/core/config.ts
 */
export const PROXY_ENV = {
  stateTable: CORRAL_ENV.stateTable,
  kmsKeyId: CORRAL_ENV.vaultKmsKeyId,
  gitUrl: CORRAL_ENV.gitProxyUrl,
} as const;

interface FunctionUrlEvent {
  rawPath: string;
  rawQueryString?: string;
  headers?: Record<string, string | undefined>;
  body?: string;
  isBase64Encoded?: boolean;
  requestContext: { http: { method: string } };
}

interface FunctionUrlResult {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
  isBase64Encoded: boolean;
}

function isFunctionUrlEvent(e: unknown): e is FunctionUrlEvent {
  return typeof e === 'object' && e !== null && typeof (e as FunctionUrlEvent).rawPath === 'string' && Boolean((e as FunctionUrlEvent).requestContext?.http);
}

/** The git signing key: a secret of the proxy's own, created on first use. */
export async function loadSigningKey(store: SecretStore): Promise<Buffer> {
  const existing = await store.get(GIT_SIGNING_KEY_REF);
  if (existing?.key) return Buffer.from(existing.key, 'base64');
  const key = randomBytes(32).toString('base64');
  await store.put(GIT_SIGNING_KEY_REF, { key });
  // Two cold starts may race: whichever value landed last is the key, read it back.
  const stored = await store.get(GIT_SIGNING_KEY_REF);
  return Buffer.from(stored?.key ?? key, 'base64');
}

/** The handler over a proxy (tests build their own). */
export function createCredentialProxyHandler(proxy: () => Promise<CredentialProxy>, log?: CoreLogger) {
  return async (event: ProxyRequest | FunctionUrlEvent): Promise<ProxyResponse | FunctionUrlResult> => {
    const p = await proxy();
    if (!isFunctionUrlEvent(event)) return p.handle(event);
    const headers = new Headers();
    for (const [k, v] of Object.entries(event.headers ?? {})) if (v !== undefined) headers.set(k, v);
    const method = event.requestContext.http.method;
    const body = event.body ? Buffer.from(event.body, event.isBase64Encoded ? 'base64' : 'utf8') : undefined;
    const url = `https://proxy.invalid${event.rawPath}${event.rawQueryString ? `?${event.rawQueryString}` : ''}`;
    const res = await p.handleGit(new Request(url, { method, headers, body: method === 'GET' || method === 'HEAD' ? undefined : body }));
    const out: Record<string, string> = {};
    res.headers.forEach((v, k) => (out[k] = v));
    const bytes = Buffer.from(await res.arrayBuffer());
    log?.info('git request answered', { status: res.status, bytes: bytes.length });
    return { statusCode: res.status, headers: out, body: bytes.toString('base64'), isBase64Encoded: true };
  };
}

const logger = new Logger();
let built: Promise<CredentialProxy> | undefined;

function init(): Promise<CredentialProxy> {
  built ??= (async () => {
    const config = readCredentialProxyConfig(process.env);
    const secrets = new SecretsManagerStore(new SecretsManagerClient({}), { kmsKeyId: config.kmsKeyId });
    let key: Promise<Buffer> | undefined;
    const gitUrl = config.gitProxyUrl;
    const table = new DynamoStateTable(createDynamoClient(), config.stateTable);
    return new CredentialProxy({
      table,
      // Shared with the proxy service, which serves the channels this function opens.
      gitChannels: tableGitChannels(table),
      secrets,
      signingKey: () => (key ??= loadSigningKey(secrets).catch((err) => {
        key = undefined;
        throw err;
      })),
      // `https` names a URL endpoint; inside the VPC the proxy service's is plain http.
      gitEndpoint: gitUrl ? { kind: 'https', url: gitUrl } : null,
      logger: coreLogger(logger),
    });
  })().catch((err) => {
    built = undefined;
    throw err;
  });
  return built;
}

export const handler = createCredentialProxyHandler(init, coreLogger(logger));
