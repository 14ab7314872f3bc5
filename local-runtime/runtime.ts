import { randomBytes } from 'node:crypto';
import { FileSecretStore } from '../lambdas/adapters/local/file-secret-store.js';
import { WebhookDeliverer } from '../lambdas/core/webhooks/deliver.js';
import type { BackoffPolicy } from '../lambdas/core/webhooks/backoff.js';
import { readWebhookConfig } from '../lambdas/core/config.js';
import { EventEmitter } from 'node:events';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import { getConnInfo } from '@hono/node-server/conninfo';
import { DynamoEventLog } from '../lambdas/adapters/aws/dynamodb-event-log.js';
import { DynamoStateTable } from '../lambdas/adapters/aws/dynamodb-state-table.js';
import { ensureTables } from '../lambdas/adapters/aws/tables.js';
import { startDynalite, type EmbeddedDynamo } from '../lambdas/adapters/local/dynalite.js';
import { MemoryQueue } from '../lambdas/adapters/local/memory-queue.js';
import { ProcessSandboxProvider, type PackageIndexes } from '../lambdas/adapters/local/process-sandbox.js';
import type { SandboxLimits } from '../sandbox/limits.js';
import type { SandboxPriority } from '../lambdas/adapters/local/sandbox-priority.js';
import { createApp } from '../lambdas/api/app.js';
import type { LogNotifier } from '../lambdas/api/stream.js';
import type { HarnessDeps, HarnessOptions } from '../lambdas/core/harness/harness.js';
import { AnthropicModel, type ModelClient } from '../lambdas/core/harness/model.js';
import { DEFAULT_MODEL_PROVIDER, type ModelProvider } from '../lambdas/core/harness/model-ids.js';
import { BedrockModel, type BedrockModelOptions } from '../lambdas/adapters/aws/bedrock-model.js';
import { MemoryPreviewChannel } from '../lambdas/core/session/previews.js';
import type { StoredEvent } from '../lambdas/core/session/events.js';
import { generateApiKey } from '../lambdas/core/resources/tenants.js';
import { createServices, type CorralServices } from '../lambdas/core/services.js';
import { LocalDeploymentScheduler } from './deployment-scheduler.js';
import { FileBlobStore, localBlobDir } from '../lambdas/adapters/local/file-blob-store.js';
import { systemPrincipal } from '../lambdas/core/storage/principal.js';
import { jsonLogger, silentLogger, type Logger } from '../lambdas/core/logger.js';
import type { SandboxProvider } from '../lambdas/core/sandbox/types.js';
import type { AuthFailureLimits, RateLimits } from '../lambdas/core/resources/rate-limits.js';
import type { McpGateway } from '../lambdas/core/mcp/gateway.js';
import { reapIdleSandboxes, sandboxIdleMsFromEnv, startSandboxReaper } from '../lambdas/core/sandbox/reaper.js';
import type { WorkspaceLimits } from '../lambdas/core/sandbox/client.js';
import { readOidcIssuers, readWarmPool, readWorkspaceLimits, type WarmPoolSettings } from '../lambdas/core/config.js';
import { OidcVerifier, type OidcIssuer } from '../lambdas/core/auth/oidc.js';
import { CredentialProxyClient } from '../lambdas/core/vault/protocol.js';
import { LocalCredentialProxy } from '../lambdas/adapters/local/credential-proxy-client.js';
import { FileEgressCa } from '../lambdas/adapters/local/egress-ca.js';
import { readTelemetryConfig } from '../lambdas/core/telemetry/config.js';
import type { OtlpTraceConfig } from '../lambdas/core/telemetry/otlp.js';
import { startTelemetry, type Telemetry } from '../lambdas/core/telemetry/setup.js';

/** How often a local event stream reads the log with no announcement (see createApp below). */
export const LOCAL_STREAM_POLL_MS = 30_000;
import { LocalEgressProxy, type LocalEgressProxyOptions } from '../lambdas/adapters/local/egress-proxy.js';

export const LOCAL_TENANT = 'local';
/** How often the local runtime deletes the bytes of expired files (`FileService.sweepExpired`). */
const FILE_SWEEP_INTERVAL_MS = 60_000;

export interface LocalRuntimeOptions {
  port?: number;
  host?: string;
  /** Where dynalite, sandbox workspaces and the generated API key live. Default `./.corral`. */
  dataDir?: string;
  /** Keep the DynamoDB data in memory instead of on disk (tests). */
  inMemory?: boolean;
  /** The local tenant's API key; generated (and kept in the data dir) when absent. */
  apiKey?: string;
  anthropicApiKey?: string;
  anthropicBaseUrl?: string;
  /**
   * Who serves model calls (`CORRAL_MODEL_PROVIDER`): `anthropic` (default; `anthropicApiKey`,
   * `anthropicBaseUrl`), `gateway` (a Messages-compatible endpoint at `anthropicBaseUrl`, with
   * `anthropicApiKey`), or `bedrock` (signed with the AWS credentials of the environment).
   */
  modelProvider?: ModelProvider;
  /** Claude ids the deployment serves (`CORRAL_MODELS`); agents with others are refused. @default - any (bedrock: any in the table) */
  models?: string[];
  /** The bedrock provider's settings (`CORRAL_BEDROCK_REGION`, `CORRAL_BEDROCK_PROFILE`, `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`). */
  bedrock?: Pick<BedrockModelOptions, 'region' | 'profile' | 'endpoint' | 'credentials'>;
  model?: ModelClient;
  sandboxProvider?: SandboxProvider;
  sandboxIsolation?: 'auto' | 'bwrap' | 'none';
  /**
   * For tests only (no configuration reaches it): the egress proxy's hooks for servers on
   * loopback (`LocalEgressProxyOptions`: private addresses it may reach, stand-in names, and the
   * test servers' CA for upstream TLS). Ignored with `sandboxProvider`.
   */
  egressTestHooks?: Pick<LocalEgressProxyOptions, 'allowPrivateAddresses' | 'resolve' | 'upstreamCa'>;
  harness?: HarnessOptions;
  /** How many sessions the worker runs at once. */
  concurrency?: number;
  leaseTtlMs?: number;
  /** How the harness reaches MCP servers (default: through the credential proxy). */
  mcp?: McpGateway;
  /**
   * Run the credential proxy (vault secrets, MCP credentials, git tokens) as a separate process,
   * started on first use, so this process never holds a secret. @default true
   */
  credentialProxy?: boolean;
  /** Stop sandboxes no tool call used for this long (default `CORRAL_SANDBOX_IDLE_MS`, or 15 minutes). */
  sandboxIdleMs?: number;
  /** Bounds of a workspace snapshot (default `CORRAL_WORKSPACE_SNAPSHOT_MAX_BYTES` / `..._MAX_ENTRIES`, or 1 GiB / 200,000). */
  workspaceLimits?: Partial<WorkspaceLimits>;
  /** Sandboxes started ahead per environment (default `CORRAL_WARM_POOL`, or none; docs/SANDBOXES.md). */
  warmPool?: WarmPoolSettings;
  /**
   * On `close`, snapshot the workspace of every running sandbox and mark it stopped, so the next
   * start restores it at the session's next tool call (as after an idle stop). `npm start` sets
   * it. @default false
   */
  keepWorkspacesOnClose?: boolean;
  /** Per-tenant requests per minute (`create`, `write`, `read`); 0 turns one off. */
  rateLimits?: RateLimits;
  /** The rate limits' window in ms (tests; the API's limits are per minute). */
  rateLimitWindowMs?: number;
  /**
   * Repository origins accepted besides public https ones (`CORRAL_REPOSITORY_URL_ALLOW`), e.g.
   * `['http://127.0.0.1']` for test git servers. @default [] (https to public hosts only)
   */
  repositoryUrlAllow?: string[];
  /**
   * Webhook origins accepted besides public https ones (`CORRAL_WEBHOOK_URL_ALLOW`), e.g.
   * `['http://127.0.0.1']` for a receiver on loopback. @default the variable, else none
   */
  webhookUrlAllow?: string[];
  /** Webhook retry schedule (core/webhooks/backoff.ts); tests scale it down. @default DEFAULT_BACKOFF */
  webhookBackoff?: Partial<BackoffPolicy>;
  /** How often the webhook deliverer sweeps for due deliveries, ms. @default 1000 */
  webhookSweepMs?: number;
  /** Where local sandboxes' pip and npm fetch packages (`CORRAL_PACKAGE_INDEXES`). @default the public registries */
  packageIndexes?: PackageIndexes;
  /** Resource limits of every local sandbox (`CORRAL_SANDBOX_LIMITS`). @default DEFAULT_SANDBOX_LIMITS */
  sandboxLimits?: Partial<SandboxLimits>;
  /**
   * CPU and I/O priority of every local sandbox (`CORRAL_SANDBOX_PRIORITY`), so that sandboxes never
   * starve the harness. @default DEFAULT_SANDBOX_PRIORITY
   */
  sandboxPriority?: Partial<SandboxPriority>;
  /**
   * Wrap the local sandbox provider this runtime builds (with its git channels and limits), e.g.
   * to time it or delay it; ignored with `sandboxProvider`.
   */
  wrapSandboxProvider?: (local: ProcessSandboxProvider) => SandboxProvider;
  /** Wrap what the harness is built with (the benchmark's eager provisioning); see `createServices`. */
  wrapHarnessDeps?: (deps: HarnessDeps) => HarnessDeps;
  /** Failed authentications per minute, per client address and in all (default 30 and 600). */
  authFailureLimits?: AuthFailureLimits;
  /** OIDC issuers whose tokens the API accepts (docs/SIGN-IN.md). Default: `CORRAL_OIDC_ISSUERS`, else none. */
  oidcIssuers?: OidcIssuer[];
  /**
   * Where this process's spans go (OTLP/HTTP JSON; docs/TELEMETRY.md); null turns export off.
   * @default the standard OTEL_EXPORTER_OTLP_* variables of the environment (off when none is set)
   */
  telemetry?: OtlpTraceConfig | null;
  logger?: Logger;
  /**
   * Scheduled milliseconds per real one for deployments' schedules (tests: 60 makes a one-minute
   * schedule tick every second; see deployment-scheduler.ts). @default 1
   */
  deploymentTimeScale?: number;
}

export interface LocalRuntime {
  url: string;
  apiKey: string;
  /** True when the API key was generated by this start (or an earlier one) rather than given. */
  apiKeyGenerated: boolean;
  /** True only on the start that generated the key: the one time it is shown. */
  apiKeyNew: boolean;
  services: CorralServices;
  queue: MemoryQueue;
  dataDir: string;
  /** The credential proxy process's handle (absent with `credentialProxy: false`). */
  credentialProxy?: LocalCredentialProxy;
  /** The sandbox provider in use (tests stop sandboxes through it, as the idle reaper would). */
  sandboxProvider: SandboxProvider;
  /** The in-process scheduler of deployments (tests read its clock and what it has armed). */
  deploymentScheduler: LocalDeploymentScheduler;
  close(): Promise<void>;
}

class EmitterNotifier implements LogNotifier {
  readonly emitter = new EventEmitter().setMaxListeners(0);
  subscribe(sessionId: string, onAppend: (stored?: StoredEvent) => void) {
    this.emitter.on(sessionId, onAppend);
    return () => void this.emitter.off(sessionId, onAppend);
  }
}

function loadOrCreateKey(dataDir: string): { key: string; created: boolean } {
  const file = join(dataDir, 'api-key');
  if (existsSync(file)) return { key: readFileSync(file, 'utf8').trim(), created: false };
  const key = generateApiKey();
  writeFileSync(file, key + '\n', { mode: 0o600 });
  chmodSync(file, 0o600);
  return { key, created: true };
}

/**
 * The data dir holds every tenant's data, the API key and the store's socket, so only this user
 * may enter it: it is made 0700, an existing one that others may enter is tightened to 0700, and
 * one that belongs to another user is refused.
 */
export function prepareDataDir(dataDir: string, log: Logger = silentLogger): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const st = statSync(dataDir);
  if (!st.isDirectory()) throw new Error(`data dir ${dataDir} is not a directory`);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new Error(`data dir ${dataDir} belongs to uid ${st.uid}, not to this user (uid ${uid}): refusing to keep Corral's data there`);
  }
  if (st.mode & 0o077) {
    chmodSync(dataDir, 0o700);
    log.warn('the data dir was open to other users; its mode is now 0700', { dataDir, was: (st.mode & 0o777).toString(8) });
  }
}

/** sockaddr_un.sun_path holds 108 bytes with its NUL; longer paths go to a private temp dir. */
const MAX_SOCKET_PATH_BYTES = 100;

/** Where dynalite listens: a unix socket in the data dir (or in a fresh 0700 temp dir if that path is too long). */
function storeSocketPath(dataDir: string): { path: string; cleanup(): void } {
  const inDataDir = join(dataDir, 'dynamodb.sock');
  if (Buffer.byteLength(inDataDir) <= MAX_SOCKET_PATH_BYTES) return { path: inDataDir, cleanup: () => {} };
  const dir = mkdtempSync(join(tmpdir(), 'corral-db-')); // mkdtemp makes it 0700
  return { path: join(dir, 'dynamodb.sock'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * The whole of Corral in one process: dynalite (on disk), the API, the harness worker on an
 * in-process queue, and sandboxes as local processes. Sessions that were running when the
 * process died are woken again at start.
 */
export async function startLocalRuntime(opts: LocalRuntimeOptions = {}): Promise<LocalRuntime> {
  const log = opts.logger ?? silentLogger;
  const dataDir = resolve(opts.dataDir ?? './.corral');
  prepareDataDir(dataDir, log);
  const socket = storeSocketPath(dataDir);
  let dynamo: EmbeddedDynamo | null = null;
  let server: ServerType | null = null;
  let queue: MemoryQueue | null = null;
  let sandboxProvider: SandboxProvider | null = null;
  let proxyProcess: LocalCredentialProxy | null = null;
  let egress: LocalEgressProxy | undefined;
  let telemetry: Telemetry | null = null;
  try {
    telemetry = startTelemetry(opts.telemetry === undefined ? readTelemetryConfig(process.env, 'corral') : opts.telemetry, {
      onError: (message) => log.warn('trace export failed', { message }),
    });
    dynamo = await startDynalite({ path: opts.inMemory ? undefined : join(dataDir, 'dynamodb'), socketPath: socket.path });
    const tables = { events: 'corral-events', state: 'corral-state' };
    await ensureTables(dynamo.client, tables);
    const notifier = new EmitterNotifier();
    const events = new DynamoEventLog(dynamo.client, tables.events, (sessionId, stored) => notifier.emitter.emit(sessionId, stored));
    const table = new DynamoStateTable(dynamo.client, tables.state);
    queue = new MemoryQueue({
      concurrency: opts.concurrency ?? 32,
      onError: (sessionId, err) => log.error('harness step failed; will retry', { sessionId, error: String((err as Error)?.stack ?? err) }),
    });
    // The credential proxy: a separate process (spawned on first use) that alone reads secrets.
    const modelProvider = opts.modelProvider ?? DEFAULT_MODEL_PROVIDER;
    if (modelProvider === 'gateway' && !opts.anthropicBaseUrl) throw new Error('the gateway model provider needs the gateway URL (ANTHROPIC_BASE_URL)');
    // The model key goes to the credential proxy process, which alone calls the model with it;
    // this process's model client talks to the proxy without a key. (Bedrock has no key.)
    const modelKey = opts.anthropicApiKey ?? process.env.ANTHROPIC_API_KEY;
    const modelThroughProxy = opts.credentialProxy !== false && !opts.model && modelProvider !== 'bedrock' && Boolean(modelKey);
    if (opts.credentialProxy !== false) {
      proxyProcess = new LocalCredentialProxy({
        dataDir,
        dynamoEndpoint: dynamo.endpoint,
        stateTable: tables.state,
        logger: log,
        ...(modelThroughProxy ? { model: { apiKey: modelKey!, baseUrl: opts.anthropicBaseUrl } } : {}),
      });
      // Every turn needs it then: started now, so that the first turn's time to first token
      // does not include the process's start (a failure here is retried by the first call).
      if (modelThroughProxy) proxyProcess.start().catch((err: unknown) => log.warn('credential proxy did not start', { error: String((err as Error)?.message ?? err) }));
    }
    const credentialProxy = proxyProcess ? new CredentialProxyClient(proxyProcess) : undefined;
    // The sandboxes' egress proxy, with the deployment's CA (key 0600 in the data dir, never in a
    // sandbox) and the credential proxy as the source of environment_variable secrets.
    const egressProxy = (): LocalEgressProxy =>
      (egress ??= new LocalEgressProxy({
        logger: log,
        ca: FileEgressCa.open(join(dataDir, 'egress-ca')),
        ...(credentialProxy
          ? {
              secrets: {
                secret: (owner, c, host) => credentialProxy.egressSecret({ sessionId: owner.sessionId, vaultId: c.vaultId, credentialId: c.credentialId, host }),
              },
            }
          : {}),
        ...opts.egressTestHooks,
      }));
    const local = () =>
      new ProcessSandboxProvider({
        egress: egressProxy(),
        ...(credentialProxy ? { environmentCredentials: { list: (sessionId: string) => credentialProxy.egressCredentials({ sessionId }) } } : {}),
        dataDir,
        isolation: opts.sandboxIsolation ?? 'auto',
        logger: log,
        gitChannels: credentialProxy
          ? { open: (r) => credentialProxy.gitOpen(r), close: (r) => credentialProxy.gitClose(r) }
          : undefined,
        limits: opts.sandboxLimits,
        priority: opts.sandboxPriority,
        ...(opts.packageIndexes ? { packageIndexes: opts.packageIndexes } : {}),
      });
    sandboxProvider = opts.sandboxProvider ?? (opts.wrapSandboxProvider ? opts.wrapSandboxProvider(local()) : local());
    const model =
      opts.model ??
      (modelProvider === 'bedrock'
        ? new BedrockModel({ ...opts.bedrock, allowed: opts.models })
        : modelThroughProxy && proxyProcess
          ? new AnthropicModel({ apiKey: 'held-by-the-credential-proxy', baseURL: 'http://credential-proxy.invalid', fetch: proxyProcess.modelFetch() })
          : new AnthropicModel({ apiKey: opts.anthropicApiKey, baseURL: opts.anthropicBaseUrl }));
    const deploymentScheduler = new LocalDeploymentScheduler({ timeScale: opts.deploymentTimeScale, logger: log });
    // Webhook signing secrets: their own encrypted store in the data dir, which only this
    // process's deliverer reads (the API only writes new ones).
    const webhookSecrets = new FileSecretStore(join(dataDir, 'webhooks'));
    const webhookConfig = readWebhookConfig();
    const webhookUrlAllow = opts.webhookUrlAllow ?? webhookConfig.urlAllow;
    const deliverer = new WebhookDeliverer({ table, secrets: webhookSecrets, urlRule: { allow: webhookUrlAllow }, backoff: opts.webhookBackoff ?? webhookConfig.backoff, logger: log });
    const services = createServices({
      deploymentClock: deploymentScheduler.clock,
      table,
      events,
      queue,
      sandboxProvider,
      model,
      harness: { logger: log, ...opts.harness },
      wrapHarnessDeps: opts.wrapHarnessDeps,
      leaseTtlMs: opts.leaseTtlMs,
      rateLimits: opts.rateLimits,
      rateLimitWindowMs: opts.rateLimitWindowMs,
      mcp: opts.mcp,
      credentialProxy,
      notifier,
      repositoryUrlAllow: opts.repositoryUrlAllow,
      models: { provider: modelProvider, allowed: opts.models },
      // Local sandboxes live as long as this process: so does the key their capabilities are sealed with.
      sandboxCapabilityKey: randomBytes(32),
      blobs: new FileBlobStore(localBlobDir(dataDir)),
      // Previews of the model's answers (`event_deltas`) go from the harness to the streams in memory.
      previews: new MemoryPreviewChannel(),
      workspaceLimits: opts.workspaceLimits ?? readWorkspaceLimits(),
      warmPool: opts.warmPool ?? readWarmPool(),
      webhooks: { secrets: webhookSecrets, urlAllow: webhookUrlAllow, kick: () => deliverer.kick() },
    });
    deliverer.start(opts.webhookSweepMs ?? 1000);

    const apiKeyGenerated = !opts.apiKey;
    const { key: apiKey, created: apiKeyNew } = opts.apiKey ? { key: opts.apiKey, created: false } : loadOrCreateKey(dataDir);
    await services.tenants.addKey(LOCAL_TENANT, apiKey);

    const reaper = startSandboxReaper({
      table,
      provider: sandboxProvider,
      idleMs: opts.sandboxIdleMs ?? sandboxIdleMsFromEnv(),
      logger: log,
      // The same snapshot-on-stop, restore-on-start path as on Fargate (docs/WORKSPACES.md).
      workspaces: services.sandboxes.workspaces,
      // Pooled sandboxes never claimed are stopped by the same runs.
      ...(services.sandboxes.warmPool ? { warmPool: services.sandboxes.warmPool } : {}),
    });
    // Pools whose environment a session has used before fill now, in the background.
    void services.sandboxes.warmPool?.prewarm();

    // The bytes of expired files are deleted within a minute of their expiry (docs/FILES.md).
    const fileSweeper = setInterval(() => {
      services.files.sweepExpired().catch((err: unknown) => log.warn('file sweep failed', { error: (err as Error)?.message ?? String(err) }));
    }, FILE_SWEEP_INTERVAL_MS);
    fileSweeper.unref();

    queue.start(async (sessionId, { traceparent }) => {
      const result = await services.harness.wake(sessionId, { traceparent });
      if (result.status === 'busy') return { retryAfterMs: result.retryAfterMs };
    });

    let ready = false;
    const app = createApp(services, {
      notifier,
      // Every append of this process is announced (the event log's onAppend above) and no other
      // process writes the log, so a stream reads it on announcements and polls only as a safety
      // net, as the stream tier does: a poll a second by each of many open streams would cost more
      // than the sessions' own work.
      stream: { pollMs: LOCAL_STREAM_POLL_MS },
      ready: () => ready,
      logger: log,
      clientAddress: (c) => getConnInfo(c).remote.address,
      authFailureLimits: opts.authFailureLimits,
      oidc: oidcVerifier(opts.oidcIssuers ?? readOidcIssuers()),
    });
    const s = serve({ fetch: app.fetch, port: opts.port ?? 4000, hostname: opts.host ?? '127.0.0.1' });
    server = s;
    await new Promise<void>((res, rej) => {
      if (s.listening) return res();
      s.once('listening', () => res());
      s.once('error', rej);
    });
    const { port } = s.address() as AddressInfo;
    const host = opts.host && opts.host !== '0.0.0.0' ? opts.host : '127.0.0.1';

    // Recovery: anything that was running (or had a message waiting) when the process died.
    // This process owns the data dir (LevelDB locks it), so any lease found is a dead process's.
    // Recovery acts for every tenant: it holds the system principal.
    const active = await services.sessions.activeSessionIds(systemPrincipal('recovery'));
    for (const id of active) {
      await services.leases.expire(id);
      await queue.wake(id);
    }
    if (active.length) log.info('woke sessions after start', { count: active.length });
    // Deployments' schedules: armed from storage, so a restart resumes them (a tick missed while
    // down is skipped; deployment-scheduler.ts).
    services.deployments.schedules = deploymentScheduler;
    deploymentScheduler.fire = (id, at) => services.deployments.fire(id, at);
    await deploymentScheduler.start(await services.deployments.all());
    ready = true;

    const q = queue;
    const provider = sandboxProvider;
    const db = dynamo;
    const proxy = proxyProcess;
    return {
      url: `http://${host}:${port}`,
      apiKey,
      apiKeyGenerated,
      apiKeyNew,
      services,
      queue: q,
      dataDir,
      sandboxProvider: provider,
      deploymentScheduler,
      ...(proxy ? { credentialProxy: proxy } : {}),
      async close() {
        deploymentScheduler.close();
        // Open event streams would hold `close` forever: end them first.
        const closed = new Promise<void>((r) => s.close(() => r()));
        if ('closeAllConnections' in s) (s as { closeAllConnections(): void }).closeAllConnections();
        await closed;
        await q.stop();
        await reaper.stop();
        await deliverer.stop();
        await services.sandboxes.warmPool?.settled();
        clearInterval(fileSweeper);
        if (opts.keepWorkspacesOnClose) {
          // Every sandbox counts as idle now (the harness is stopped): snapshot, mark stopped.
          await reapIdleSandboxes({ table, provider, idleMs: 1, now: new Date(Date.now() + 1000), logger: log, workspaces: services.sandboxes.workspaces, reason: 'the local runtime stopped' }).catch(
            (err: unknown) => log.warn('could not keep the workspaces of running sandboxes', { error: (err as Error)?.message }),
          );
        }
        await (provider as { close?: () => Promise<void> }).close?.();
        await egress?.close();
        await proxy?.close();
        await db.close();
        socket.cleanup();
        await telemetry?.stop();
      },
    };
  } catch (err) {
    server?.close();
    await queue?.stop();
    await egress?.close();
    await proxyProcess?.close();
    await dynamo?.close();
    socket.cleanup();
    await telemetry?.stop();
    throw err;
  }
}

export { jsonLogger };

/** A verifier of the issuers' tokens, or none when no issuer is configured (API keys only). */
function oidcVerifier(issuers: OidcIssuer[]): OidcVerifier | undefined {
  return issuers.length ? new OidcVerifier(issuers) : undefined;
}
