/**
 * The proxy service's entry: a long-running Node process in a Fargate task (an autoscaled service
 * in the private subnets: infra/lib/constructs/proxy-service.ts), the credential proxy's
 * long-connection half. Its environment is `CORRAL_STATE_TABLE` plus the names of ./env.ts.
 *
 * Two ports:
 * - 3128, sandbox-facing (the sandbox security group's only egress besides what a task needs to
 *   start): HTTP proxying for the sandboxes' egress (CONNECT and absolute URIs, authenticated by
 *   the sandbox's capability in `Proxy-Authorization`, decided by the core's egress relay with
 *   the grant's policy: ./server.ts), `/healthz` (the load balancer's health check), and the
 *   origin-form routes plugged in below (the git channel, `/git/…`).
 * - 8081, harness-facing (reachable from the harness's security group only): the routes plugged
 *   in below (model forwarding).
 *
 * PLUG-IN POINT: a module that serves requests here exports a `ProxyServiceRoute` (./routes.ts)
 * (or a function that builds one from the service's clients) and adds it to `SANDBOX_ROUTES` or
 * `HARNESS_ROUTES`. A route authenticates its own requests; its prefix must not clash with
 * another's. Nothing else in this file needs to change.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { createDynamoClient } from '../adapters/aws/dynamodb-client.js';
import { DynamoStateTable } from '../adapters/aws/dynamodb-state-table.js';
import { CORRAL_ENV } from '../core/config.js';
import { StateTableEgressGrants } from '../core/sandbox/egress-grant.js';
import { EgressRelay } from '../core/sandbox/egress-relay.js';
import { PROXY_HARNESS_PORT, PROXY_SANDBOX_PORT, PROXY_SERVICE_ENV } from './env.js';
import type { ProxyServiceRoute } from './routes.js';
import { modelRoute } from './model-route.js';
import { systemTrust } from '../core/sandbox/egress-ca.js';
import { setUpEgressCredentials } from './egress-credentials.js';
import { gitChannelRoute } from './git-route.js';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SecretsManagerStore } from '../adapters/aws/secrets-manager-store.js';
import { PROXY_SERVICE_DEFAULTS, startProxyService } from './server.js';

/** What the clients a route may need are (one per process). */
export interface RouteContext {
  readonly logger: Logger;
  readonly stateTable: DynamoStateTable;
}

/** Routes on the sandbox port (origin-form; e.g. the git channel under `/git/`). */
const SANDBOX_ROUTES: Array<(ctx: RouteContext) => ProxyServiceRoute> = [
  // Private repositories: channels the credential proxy function opened (./git-route.ts).
  (ctx) =>
    gitChannelRoute({
      table: ctx.stateTable,
      secrets: new SecretsManagerStore(new SecretsManagerClient({})),
      logger: {
        info: (m, e) => ctx.logger.info(m, e ?? {}),
        warn: (m, e) => ctx.logger.warn(m, e ?? {}),
        error: (m, e) => ctx.logger.error(m, e ?? {}),
      },
    }),
];
/** Routes on the harness port (e.g. model forwarding). */
const HARNESS_ROUTES: Array<(ctx: RouteContext) => ProxyServiceRoute> = [];
// Model forwarding, when the stack gave this service the model key's parameter.
const model = modelRoute();
if (model) HARNESS_ROUTES.push(() => model);

function intEnv(name: string, fallback: number, min = 0): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name}: expected an integer of at least ${min}, got ${JSON.stringify(raw)}`);
  return n;
}

async function main() {
  const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? 'corral-proxy-service' });
  const tableName = process.env[CORRAL_ENV.stateTable];
  if (!tableName) throw new Error(`${CORRAL_ENV.stateTable} is required`);
  const stateTable = new DynamoStateTable(createDynamoClient(), tableName);
  const ctx: RouteContext = { logger, stateTable };
  const log = {
    info: (m: string, e?: Record<string, unknown>) => logger.info(m, e ?? {}),
    warn: (m: string, e?: Record<string, unknown>) => logger.warn(m, e ?? {}),
    error: (m: string, e?: Record<string, unknown>) => logger.error(m, e ?? {}),
  };
  const idleTimeoutMs = intEnv(PROXY_SERVICE_ENV.idleTimeoutMs, PROXY_SERVICE_DEFAULTS.idleTimeoutMs, 1000);
  const allowPrivate = (process.env[PROXY_SERVICE_ENV.allowPrivateAddresses] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (allowPrivate.length) logger.warn('proxy: private addresses are reachable (a rehearsal setting)', { allowPrivate });
  // environment_variable credentials: the egress CA and the vault's secrets, read with this task's role.
  const caSecret = process.env[PROXY_SERVICE_ENV.egressCaSecret];
  const credentials = caSecret ? await setUpEgressCredentials({ stateTable, logger: log, caSecret }) : undefined;
  const upstreamCa = process.env[PROXY_SERVICE_ENV.upstreamCa];
  if (upstreamCa) logger.warn('proxy: an extra upstream CA is trusted (a rehearsal setting)');
  const relay = new EgressRelay({
    logger: log,
    idleTimeoutMs,
    allowPrivateAddresses: allowPrivate,
    ...(credentials ? { ca: credentials.ca, secrets: credentials.secrets } : {}),
    upstreamTrust: [...systemTrust(), ...(upstreamCa ? [upstreamCa] : [])],
  });
  const harnessPort = intEnv(PROXY_SERVICE_ENV.harnessPort, PROXY_HARNESS_PORT);
  const service = await startProxyService({
    grants: new StateTableEgressGrants(stateTable),
    relay,
    routes: { sandbox: [...(credentials ? [credentials.route] : []), ...SANDBOX_ROUTES.map((r) => r(ctx))], harness: HARNESS_ROUTES.map((r) => r(ctx)) },
    logger: log,
    sandboxPort: intEnv(PROXY_SERVICE_ENV.sandboxPort, PROXY_SANDBOX_PORT, 1),
    harnessPort: harnessPort > 0 ? harnessPort : undefined,
    maxConnectionsPerGrant: intEnv(PROXY_SERVICE_ENV.maxConnectionsPerGrant, PROXY_SERVICE_DEFAULTS.maxConnectionsPerGrant, 1),
    maxConnections: intEnv(PROXY_SERVICE_ENV.maxConnections, PROXY_SERVICE_DEFAULTS.maxConnections, 1),
    idleTimeoutMs,
  });
  logger.info('proxy service listening', { sandboxPort: service.sandboxPort, harnessPort: service.harnessPort });
  // Open connections once a minute, on the log (the service scales on CPU and connections).
  const report = setInterval(() => logger.info('proxy service', { openConnections: service.openConnections() }), 60_000);
  // ECS stops a task with SIGTERM after the load balancer drained it: end what is left, then leave.
  process.once('SIGTERM', () => {
    clearInterval(report);
    void service.close().then(() => process.exit(0));
  });
}

main().catch((err) => {
  console.error(JSON.stringify({ level: 'ERROR', message: 'proxy service failed to start', error: String((err as Error)?.message ?? err) }));
  process.exit(1);
});
