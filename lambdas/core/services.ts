import type { WarmPoolSettings } from './config.js';
import { CorralError } from './errors.js';
import { Harness, type HarnessDeps, type HarnessOptions } from './harness/harness.js';
import type { ModelClient } from './harness/model.js';
import { tracedWakeQueue, type WakeQueue } from './harness/queue.js';
import { AgentService, type ModelServing } from './resources/agents.js';
import { EnvironmentService } from './resources/environments.js';
import { FileService } from './resources/files.js';
import { SessionService } from './resources/sessions.js';
import { TenantService } from './resources/tenants.js';
import { RateLimiter, DEFAULT_RATE_LIMITS, type RateLimits } from './resources/rate-limits.js';
import { SandboxManager } from './sandbox/manager.js';
import type { SandboxProvider } from './sandbox/types.js';
import type { CapabilitySealer } from './sandbox/sealing.js';
import { LeaseManager } from './session/lease.js';
import type { EventLog } from './session/log.js';
import type { StateTable } from './store.js';
import type { McpGateway } from './mcp/gateway.js';
import type { LogNotifier } from './session/notifier.js';
import type { PreviewChannel } from './session/previews.js';
import { ProxyMcpGateway } from './mcp/proxy-gateway.js';
import type { CredentialProxyClient } from './vault/protocol.js';
import { VaultService } from './vault/vaults.js';
import type { BlobStore } from './storage/blob-store.js';
import type { WorkspaceLimits } from './sandbox/client.js';
import { DeploymentService } from './deployments/deployments.js';
import { MemoryStoreService } from './memory/store.js';
import { WebhookEndpointService, type WebhookSecretWriter } from './webhooks/endpoints.js';
import { OutboxPublisher, publishingEventLog, type WebhookPublisher } from './webhooks/publish.js';

/** Everything the API and the harness need, wired from adapters. No AWS and no local specifics. */
export interface CorralServices {
  table: StateTable;
  events: EventLog;
  queue: WakeQueue;
  agents: AgentService;
  environments: EnvironmentService;
  sessions: SessionService;
  tenants: TenantService;
  leases: LeaseManager;
  sandboxes: SandboxManager;
  harness: Harness;
  rateLimiter: RateLimiter;
  vaults: VaultService;
  /** The credential proxy, when this deployment has one (vault secrets, MCP, git). */
  credentialProxy?: CredentialProxyClient;
  /** Bytes of files and workspace snapshots (S3 on AWS, the data dir locally), when configured. */
  blobs?: BlobStore;
  /** Previews of the model's answers for streams with `event_deltas` (session/previews.ts), when configured. */
  previews?: PreviewChannel;
  /** The Files API (`client.beta.files`) over `blobs`; answers 503 when there is no blob store. */
  files: FileService;
  /** `client.beta.deployments` and `deploymentRuns`; its `schedules` is set by the runtime that fires them. */
  deployments: DeploymentService;
  /** Memory stores (`client.beta.memoryStores`), in the state table (memory/store.ts). */
  memoryStores: MemoryStoreService;
  /** Webhook endpoints (`client.beta.organization.webhooks`); 503 when the deployment has no webhook secret store. */
  webhooks: WebhookEndpointService;
  /** Publishes webhook events (core/webhooks/publish.ts); a no-op without webhooks. */
  webhookEvents: WebhookPublisher;
}

export function createServices(deps: {
  table: StateTable;
  events: EventLog;
  queue: WakeQueue;
  sandboxProvider: SandboxProvider;
  model: ModelClient;
  harness?: HarnessOptions;
  /**
   * Wrap what the harness is built with, e.g. to change when it provisions (the benchmark's
   * coupled design, bench/lib/eager-sandbox.ts). The product never sets it.
   */
  wrapHarnessDeps?: (deps: HarnessDeps) => HarnessDeps;
  leaseTtlMs?: number;
  /** The agent's MCP servers, through the credential proxy (default: over `credentialProxy`). */
  mcp?: McpGateway;
  /** Announces log appends within this process (the local runtime). */
  notifier?: LogNotifier;
  /** The credential proxy: the only holder of secrets (vault credentials, repository tokens). */
  credentialProxy?: CredentialProxyClient;
  /** Per-tenant request limits per minute. */
  rateLimits?: RateLimits;
  /** Most shards a tenant's counter of one class is spread over. @default DEFAULT_RATE_LIMIT_SHARDS */
  rateLimitShards?: number;
  /** The rate limits' fixed window (tests use a long one, so no window ends mid-test). @default 60_000 */
  rateLimitWindowMs?: number;
  /** Clock for leases (tests). */
  clock?: () => number;
  /** Repository origins accepted besides public https ones (`CORRAL_REPOSITORY_URL_ALLOW`). */
  repositoryUrlAllow?: string[];
  /**
   * The model provider and its configured models (`CORRAL_MODEL_PROVIDER`, `CORRAL_MODELS`): an
   * agent whose model it cannot serve is a 400. @default - any model id is accepted
   */
  models?: ModelServing;
  /** Key that seals sandbox capabilities in the state table (see sandbox/sealing.ts). */
  sandboxCapabilityKey?: Buffer;
  /** Seals them with a key held elsewhere (AWS: KMS); instead of `sandboxCapabilityKey`. */
  sandboxCapabilitySealer?: CapabilitySealer;
  /** Bytes of files and workspace snapshots (see storage/blob-store.ts). */
  blobs?: BlobStore;
  /** The channel of previews between the harness and the streams (see session/previews.ts). */
  previews?: PreviewChannel;
  /** Bounds of a workspace snapshot (kept in `blobs`); see sandbox/workspaces.ts. */
  workspaceLimits?: Partial<WorkspaceLimits>;
  /** Sandboxes started ahead per environment (`CORRAL_WARM_POOL`, sandbox/warm-pool.ts). @default - none */
  warmPool?: WarmPoolSettings;
  /** The clock of deployments' schedules (the local runtime's may be time-scaled). @default Date.now */
  deploymentClock?: () => number;
  /**
   * Webhooks (docs/WEBHOOKS.md): where signing secrets are written, the URL rule
   * (`CORRAL_WEBHOOK_URL_ALLOW`) and how to ask the deliverer to run. @default - none: the
   * endpoint routes answer 503 and nothing is published
   */
  webhooks?: { secrets: WebhookSecretWriter; urlAllow: string[]; kick: () => void };
}): CorralServices {
  // Every wake the core asks for is a span whose context goes with the message (telemetry/trace.ts).
  const queue = tracedWakeQueue(deps.queue);
  const webhooks = new WebhookEndpointService(deps.table, deps.webhooks?.secrets ?? unavailableWebhookSecrets, { allow: deps.webhooks?.urlAllow ?? [] });
  const webhookEvents: WebhookPublisher = deps.webhooks ? new OutboxPublisher(deps.table, webhooks, deps.webhooks.kick) : { publish: async () => undefined };
  // Every append that stands for webhook events publishes them (session status changes, outcome verdicts).
  const events = deps.webhooks ? publishingEventLog(deps.events, deps.table, webhookEvents, deps.harness?.logger) : deps.events;
  const agents = new AgentService(deps.table, deps.models);
  const environments = new EnvironmentService(deps.table);
  const files = new FileService(deps.table, deps.blobs);
  const vaults = new VaultService(deps.table, deps.credentialProxy);
  const memoryStores = new MemoryStoreService(deps.table);
  const sessions = new SessionService(deps.table, events, agents, environments, queue, {
    vaults,
    secrets: deps.credentialProxy,
  }, { allow: deps.repositoryUrlAllow ?? [] }, {
    get available() {
      return files.available;
    },
    get: (tenant: string, id: string) => files.get(tenant, id),
    deleteSessionFiles: (tenant: string, sessionId: string) => files.deleteSessionFiles(tenant, sessionId),
    refusal: async () => deps.sandboxProvider.sessionFilesRefusal?.(),
  }, {
    get: (tenant: string, id: string) => memoryStores.get(tenant, id),
    // Stores are mounted where the session's files are: a sandbox without /mnt cannot have them.
    refusal: async () => deps.sandboxProvider.sessionFilesRefusal?.(),
  });
  const mcp = deps.mcp ?? (deps.credentialProxy ? new ProxyMcpGateway(deps.credentialProxy) : undefined);
  const leases = new LeaseManager(deps.table, deps.leaseTtlMs, deps.clock);
  const sandboxFiles = files.available
    ? {
        read: (tenant: string, id: string) => files.readBytes(tenant, id),
        present: (tenant: string, ids: readonly string[]) => files.present(tenant, ids),
        outputs: (tenant: string, sessionId: string) => files.outputs(tenant, sessionId),
        putOutput: (...args: Parameters<FileService['putOutput']>) => files.putOutput(...args),
      }
    : undefined;
  const sandboxes = new SandboxManager(
    deps.sandboxProvider,
    deps.table,
    deps.sandboxCapabilitySealer ?? deps.sandboxCapabilityKey,
    sandboxFiles,
    // With a blob store, a sandbox stopped for idleness keeps its workspace (sandbox/workspaces.ts).
    deps.blobs ? { blobs: deps.blobs, limits: deps.workspaceLimits } : undefined,
    {
      ...(deps.warmPool ? { warmPool: deps.warmPool } : {}),
      ...(deps.harness?.logger ? { logger: deps.harness.logger } : {}),
      // With a blob store, an environment's pip and npm packages are installed once per version (package-cache.ts).
      ...(deps.blobs ? { packageCache: { blobs: deps.blobs } } : {}),
      memoryStores,
    },
  );
  const harnessDeps: HarnessDeps = { events, table: deps.table, sessions, environments, leases, sandboxes, model: deps.model, queue, mcp, notifier: deps.notifier, previews: deps.previews };
  const harness = new Harness(deps.wrapHarnessDeps ? deps.wrapHarnessDeps(harnessDeps) : harnessDeps, deps.harness);
  return {
    table: deps.table,
    events,
    // The queue as given (the runtimes' workers and tests read it); the core's own wakes go
    // through the traced wrapper above.
    queue: deps.queue,
    agents,
    environments,
    sessions,
    tenants: new TenantService(deps.table),
    leases,
    sandboxes,
    harness,
    rateLimiter: new RateLimiter(deps.table, deps.rateLimits ?? DEFAULT_RATE_LIMITS, { shards: deps.rateLimitShards, windowMs: deps.rateLimitWindowMs }),
    vaults,
    credentialProxy: deps.credentialProxy,
    blobs: deps.blobs,
    previews: deps.previews,
    files,
    deployments: new DeploymentService(deps.table, agents, environments, sessions, vaults, {
      ...(deps.deploymentClock ? { clock: deps.deploymentClock } : {}),
      ...(deps.harness?.logger ? { logger: deps.harness.logger } : {}),
      webhooks: webhookEvents,
    }),
    memoryStores,
    webhooks,
    webhookEvents,
  };
}

const unavailableWebhookSecrets: WebhookSecretWriter = {
  put: async () => {
    throw new CorralError('api_error', 503, 'webhooks are not configured on this deployment');
  },
  delete: async () => undefined,
};
