/**
 * Every key Corral stores under, in both tables: the only place a key is spelled out. A test
 * (`test/unit/storage-keys.test.ts`) fails if a key template appears anywhere else in the source.
 *
 * These strings are the on-disk format of deployed tables: changing one strands every item
 * written under the old spelling, and `dynamodb:LeadingKeys` conditions in `infra/` name some of
 * them (`RATE_LIMIT_PARTITIONS`). Add keys; do not change them.
 *
 * The state table: partition key `pk`, sort key `sk`, one index (`gsi1pk`, `gsi1sk`).
 *
 * | item                | pk                         | sk                 | gsi1pk                      | gsi1sk |
 * |---------------------|----------------------------|--------------------|-----------------------------|--------|
 * | agent head          | `agent#<id>`               | `head`             | `<tenant>#agents`           | id     |
 * | agent version       | `agent#<id>`               | `v#<10-digit n>`   |                             |        |
 * | environment         | `env#<id>`                 | `head`             | `<tenant>#environments`     | id     |
 * | vault               | `vault#<id>`               | `head`             | `<tenant>#vaults`           | id     |
 * | vault credential    | `vault#<vault>`            | `cred#<id>`        |                             |        |
 * | session head        | `session#<id>`             | `head`             | (`<tenant>#sessions`)***    | (id)   |
 * | session listing     | `session#<id>`             | `listing`          | `<tenant>#sessions`         | id     |
 * | file head           | `file#<id>`                | `head`             | `<tenant>#files`            | id     |
 * | file of a session   | `session#<id>`             | `file#<file id>`   |                             |        |
 * | file expiry         | `files#expiring`           | `<expires_at>#<file id>` |                       |        |
 * | session usage       | `session#<id>`             | `head#usage`       |                             |        |
 * | harness cursor      | `session#<id>`             | `cursor`           |                             |        |
 * | harness lease       | `session#<id>`             | `lease`            |                             |        |
 * | sandbox record      | `session#<id>`             | `sandbox#<name>`   | `sandboxes#active#<shard>`* | `<lastUsedAt>#<session>#<name>` |
 * | preview chunk**     | `session#<id>`             | `preview#<request id>#<6-digit seq>` |           |        |
 * | API key             | `apikey#<sha256 hex>`      | `key`              |                             |        |
 * | sandbox task state**| `ecstask#<task id>`        | `state`            |                             |        |
 * | warm pool slot      | `warmpool#<environment id>`| `slot#<3-digit n>` |                             |        |
 * | warm pool recipe    | `warmpool#<environment id>`| `recipe`           |                             |        |
 * | warm pool registry  | `warmpools`                | `<environment id>` |                             |        |
 * | rate-limit counter  | `rate#<tenant>#<class>`, shard k > 0: `rate#<tenant>#<class>#<k>` | `<window ms>` |   |        |
 * | auth-failure counter| `authfail#addr#<address>`, `authfail#all` | `<window ms>` |              |        |
 * | git channel**       | `gitchan#<session id>`     | `<channel id>`     |                             |        |
 *
 * (*) only while the sandbox is ready: the index is sparse.
 * (***) only on heads written before the listing item existed; a session created since is in the
 * tenant's index through its listing item alone, which is written once, so its head's status
 * changes write no index entry (`SessionHeadRecords`).
 * (**) short-lived (TTL `expiresAt`): a model request's preview for streams with `event_deltas`
 * (core/session/previews.ts); never read past its expiry. A sandbox task's state is written from
 * ECS's task state change events (lambdas/adapters/aws/ecs-task-events.ts) and read by the harness
 * while the task starts; it expires a day after its last change.
 *
 * The events table: partition key `sessionId` (S), sort key `position` (N); the chunks of a large
 * event in a partition of their own, `<session>~<event id>` (see `event-items.ts`).
 */

const AGENT = 'agent#';
const ENVIRONMENT = 'env#';
const VAULT = 'vault#';
const SESSION = 'session#';
const FILE = 'file#';
const API_KEY = 'apikey#';
const RATE = 'rate#';
const PREVIEW_WATCH = 'watch#';
const FILE_EXPIRY_PARTITION = 'files#expiring';
const TASK_STATE = 'ecstask#';
const WARM_POOL = 'warmpool#';
const GIT_CHANNEL = 'gitchan#';
const EGRESS_GRANT = 'egress#';

/** Sort key of every resource's head item. */
export const HEAD_SK = 'head';

/** The kinds of tenant-owned resource with a head item, listed per tenant through the index. */
export type HeadKind = 'agent' | 'environment' | 'vault' | 'session' | 'file';

const HEAD_PARTITION: Record<HeadKind, string> = { agent: AGENT, environment: ENVIRONMENT, vault: VAULT, session: SESSION, file: FILE };
const TENANT_INDEX: Record<HeadKind, string> = { agent: 'agents', environment: 'environments', vault: 'vaults', session: 'sessions', file: 'files' };

export const keys = {
  /** The partition of a resource (its head and, for agents and vaults, its children). */
  partition: (kind: HeadKind, id: string) => `${HEAD_PARTITION[kind]}${id}`,
  head: (kind: HeadKind, id: string) => ({ pk: keys.partition(kind, id), sk: HEAD_SK }),
  /** The index partition that lists a tenant's resources of one kind. */
  tenantIndex: (kind: HeadKind, tenant: string) => `${tenant}#${TENANT_INDEX[kind]}`,

  agentVersion: (id: string, version: number) => ({ pk: keys.partition('agent', id), sk: `${AGENT_VERSION_PREFIX}${String(version).padStart(10, '0')}` }),
  credential: (vaultId: string, id: string) => ({ pk: keys.partition('vault', vaultId), sk: `${CREDENTIAL_PREFIX}${id}` }),

  /**
   * What changes in a session with every model call (usage, stats), kept beside its head and out
   * of the tenant's index, so those writes cost no index write. Its sort key starts with the
   * head's, so one query reads both.
   */
  sessionUsage: (sessionId: string) => ({ pk: keys.partition('session', sessionId), sk: `${HEAD_SK}#usage` }),
  /**
   * A file scoped to a session (one the session's agent wrote under `/mnt/session/outputs`),
   * beside the session's head: `files.list({ scope_id })` reads the session's partition.
   */
  sessionFile: (sessionId: string, fileId: string) => ({ pk: keys.partition('session', sessionId), sk: `${SESSION_FILE_PREFIX}${fileId}` }),
  /**
   * A file that expires (`expires_in_seconds`), in one partition ordered by expiry: the sweep
   * (`FileService.sweepExpired`) reads the ones due from its start. Written only for uploads
   * that expire, so the partition stays small and cold.
   */
  fileExpiry: (expiresAt: string, fileId: string) => ({ pk: FILE_EXPIRY_PARTITION, sk: `${expiresAt}#${fileId}` }),
  /**
   * A session's entry in the tenant's index: only the keys and the tenant, written when the
   * session is created and removed with it. Nothing in it changes, so the session's status
   * changes (writes of its head, which is in no index) never write the tenant's index partition.
   */
  sessionListing: (sessionId: string) => ({ pk: keys.partition('session', sessionId), sk: 'listing' }),
  cursor: (sessionId: string) => ({ pk: keys.partition('session', sessionId), sk: 'cursor' }),
  /** A counter the API raises after appending a `user.interrupt`, which a running harness reads instead of the log. */
  interruptSignal: (sessionId: string) => ({ pk: keys.partition('session', sessionId), sk: 'signal#interrupt' }),
  lease: (sessionId: string) => ({ pk: keys.partition('session', sessionId), sk: 'lease' }),
  sandbox: (sessionId: string, name: string) => ({ pk: keys.partition('session', sessionId), sk: `${SANDBOX_PREFIX}${name}` }),
  /** Chunk `seq` of the preview of model request `request` (its `span.model_request_start` id). */
  previewChunk: (sessionId: string, request: string, seq: number) => ({
    pk: keys.partition('session', sessionId),
    sk: `${keys.previewChunks(request)}${String(seq).padStart(6, '0')}`,
  }),
  /**
   * A stream's interest in a session's previews (`event_deltas`): in a partition of its own, so
   * that the stream function, which writes nothing else but rate-limit counters, may write it
   * (`PREVIEW_WATCH_PARTITIONS`).
   */
  previewWatch: (sessionId: string) => ({ pk: `${PREVIEW_WATCH}${sessionId}`, sk: 'deltas' }),
  /** Sort-key prefix of every chunk of one request's preview. */
  previewChunks: (request: string) => `${PREVIEW_PREFIX}${request}#`,
  /**
   * An open git channel of a sandbox of a session (core/vault/git-channels.ts): written by the
   * credential proxy's `git_open`, read by whichever process serves the channel (the proxy
   * service on AWS), deleted by `git_close`. In a partition per session, outside the session's own.
   */
  gitChannels: (sessionId: string) => `${GIT_CHANNEL}${sessionId}`,
  gitChannel: (sessionId: string, id: string) => ({ pk: `${GIT_CHANNEL}${sessionId}`, sk: id }),
  /** The last state ECS reported of a sandbox task (`id`: the last part of its ARN). */
  taskState: (taskId: string) => ({ pk: `${TASK_STATE}${taskId}`, sk: 'state' }),
  /** An environment's warm pool: its slots (`sandbox/warm-pool.ts`) and the recipe it fills them with. */
  warmPool: (environmentId: string) => `${WARM_POOL}${environmentId}`,
  warmPoolSlot: (environmentId: string, slot: number) => ({ pk: `${WARM_POOL}${environmentId}`, sk: `${WARM_POOL_SLOT_PREFIX}${String(slot).padStart(3, '0')}` }),
  warmPoolRecipe: (environmentId: string) => ({ pk: `${WARM_POOL}${environmentId}`, sk: 'recipe' }),
  /** The environments that have (had) a warm pool, which the reaper visits. */
  warmPoolRegistryPartition: 'warmpools',
  warmPoolRegistry: (environmentId: string) => ({ pk: 'warmpools', sk: environmentId }),
  /** Index partition `shard` of the ready sandboxes, which the idle reaper reads. */
  activeSandboxes: (shard: number) => `sandboxes#active#${shard}`,
  /** Index sort key of a ready sandbox: ordered by last use. */
  activeSandboxOrder: (lastUsedAt: string, sessionId: string, name: string) => `${lastUsedAt}#${sessionId}#${name}`,

  apiKey: (hash: string) => ({ pk: `${API_KEY}${hash}`, sk: 'key' }),
  /** A Fargate sandbox's egress grant, by the SHA-256 of its capability (`sandbox/egress-grant.ts`). */
  egressGrant: (capabilityHash: string) => ({ pk: `${EGRESS_GRANT}${capabilityHash}`, sk: 'grant' }),
  /** Which grant a sandbox task (by the SHA-256 of its ARN) holds, so its release revokes it. */
  egressGrantRef: (refHash: string) => ({ pk: `${EGRESS_GRANT}ref#${refHash}`, sk: 'grant' }),
  /**
   * Shard `shard` of a tenant's request counter of one class; the sort key is the window. Each
   * shard is a partition of its own (a class's counters are spread so none is written hot); shard
   * 0 keeps the spelling of the unsharded counter.
   */
  rateCounter: (tenant: string, kind: string, window: number, shard = 0) => ({
    pk: `${RATE}${tenant}#${kind}${shard > 0 ? `#${shard}` : ''}`,
    sk: String(window),
  }),
  /** Failed-authentication counters: per client address, and across all of them. */
  authFailures: (address: string | 'all', window: number) => ({
    pk: address === 'all' ? 'authfail#all' : `authfail#addr#${address}`,
    sk: String(window),
  }),

  /** Events table: the partition of a large event's chunks. `~` never occurs in a session id. */
  eventChunks: (sessionId: string, eventId: string) => `${sessionId}~${eventId}`,
} as const;

/** Sort-key prefixes of the children of a partition. */
export const AGENT_VERSION_PREFIX = 'v#';
export const CREDENTIAL_PREFIX = 'cred#';
export const SANDBOX_PREFIX = 'sandbox#';
export const WARM_POOL_SLOT_PREFIX = 'slot#';
export const PREVIEW_PREFIX = 'preview#';
export const SESSION_FILE_PREFIX = FILE;
/** Partition-key prefix of every session's items (start-up recovery scans it). */
export const SESSION_PARTITION_PREFIX = SESSION;

/**
 * The partition keys of the rate-limit counters as an IAM `StringLike` pattern: the API's stream
 * function may write these items and no other (infra/lib/constructs/api.ts).
 */
export const RATE_LIMIT_PARTITIONS = `${RATE}*`;
/** IAM `dynamodb:LeadingKeys` pattern of every preview-watch item. */
export const PREVIEW_WATCH_PARTITIONS = `${PREVIEW_WATCH}*`;

// --- deployments (core/deployments/) -----------------------------------------------------------
//
// | item                  | pk                   | sk                       | gsi1pk                     | gsi1sk |
// |-----------------------|----------------------|--------------------------|----------------------------|--------|
// | deployment            | `deployment#<id>`    | `head`                   | `<tenant>#deployments`     | id     |
// | last scheduled run    | `deployment#<id>`    | `lastrun`                |                            |        |
// | fire claim            | `deployment#<id>`    | `fire#<scheduled ISO>` or `fire#manual#<run id>` |    |        |
// | deployment run        | `drun#<id>`          | `head`                   | `<tenant>#deployment_runs` | id     |

const DEPLOYMENT = 'deployment#';
const DEPLOYMENT_RUN = 'drun#';

export const deploymentKeys = {
  deployment: (id: string) => ({ pk: `${DEPLOYMENT}${id}`, sk: HEAD_SK }),
  deploymentIndex: (tenant: string) => `${tenant}#deployments`,
  /** When the deployment's schedule last started a run: apart from the head, so a fire never rewrites the template. */
  lastRun: (id: string) => ({ pk: `${DEPLOYMENT}${id}`, sk: 'lastrun' }),
  /**
   * The claim of one scheduled time (or one manual run): written only if absent, so a scheduler
   * that fires twice for the same time finds the first claim and starts nothing.
   */
  fireClaim: (id: string, scheduledAt: string) => ({ pk: `${DEPLOYMENT}${id}`, sk: `fire#${scheduledAt}` }),
  manualClaim: (id: string, runId: string) => ({ pk: `${DEPLOYMENT}${id}`, sk: `fire#manual#${runId}` }),
  run: (runId: string) => ({ pk: `${DEPLOYMENT_RUN}${runId}`, sk: HEAD_SK }),
  runIndex: (tenant: string) => `${tenant}#deployment_runs`,
} as const;

/** Partition-key prefix of every deployment's items (the local scheduler's start-up scan). */
export const DEPLOYMENT_PARTITION_PREFIX = DEPLOYMENT;

// --- memory stores (core/memory/store.ts) ---------------------------------------------------------
//
// | item                | pk                         | sk                 | gsi1pk                      | gsi1sk |
// |---------------------|----------------------------|--------------------|-----------------------------|--------|
// | memory store head   | `memstore#<id>`            | `head`             | `<tenant>#memory_stores`    | id     |
// | memory              | `memstore#<id>`            | `mem#<memory id>`  |                             |        |
// | memory's path       | `memstore#<id>`            | `path#<path>`      |                             |        |
// | memory version      | `memstore#<id>`            | `ver#<version id>` |                             |        |
// | memory count        | `memstore#<id>`            | `count`            |                             |        |
//
// Everything of a store is in its partition: deleting a store deletes the partition.

const MEMORY_STORE = 'memstore#';
export const MEMORY_PREFIX = 'mem#';
export const MEMORY_PATH_PREFIX = 'path#';
export const MEMORY_VERSION_PREFIX = 'ver#';

export const memoryKeys = {
  partition: (storeId: string) => `${MEMORY_STORE}${storeId}`,
  head: (storeId: string) => ({ pk: `${MEMORY_STORE}${storeId}`, sk: HEAD_SK }),
  /** The index partition that lists a tenant's memory stores. */
  tenantIndex: (tenant: string) => `${tenant}#memory_stores`,
  memory: (storeId: string, memoryId: string) => ({ pk: `${MEMORY_STORE}${storeId}`, sk: `${MEMORY_PREFIX}${memoryId}` }),
  /** A memory's path, which makes it unique in its store and orders the store's listing. */
  path: (storeId: string, path: string) => ({ pk: `${MEMORY_STORE}${storeId}`, sk: `${MEMORY_PATH_PREFIX}${path}` }),
  version: (storeId: string, versionId: string) => ({ pk: `${MEMORY_STORE}${storeId}`, sk: `${MEMORY_VERSION_PREFIX}${versionId}` }),
  count: (storeId: string) => ({ pk: `${MEMORY_STORE}${storeId}`, sk: 'count' }),
} as const;

// --- webhooks (core/webhooks/) --------------------------------------------------------------------

/**
 * Webhook endpoints and their deliveries. An endpoint is one item (listed per tenant through the
 * index); each event on its way to an endpoint is one item in the endpoint's partition (the
 * delivery log, newest last by sort key), and while it is pending it is also in one index
 * partition ordered by when its next attempt is due, which the deliverer reads.
 */
export const webhookKeys = {
  endpoint: (id: string) => ({ pk: `whep#${id}`, sk: HEAD_SK }),
  endpointIndex: (tenant: string) => `${tenant}#webhook_endpoint`,
  delivery: (endpointId: string, createdAt: string, eventId: string) => ({ pk: `whdl#${endpointId}`, sk: `${createdAt}#${eventId}` }),
  deliveryPartition: (endpointId: string) => `whdl#${endpointId}`,
  /** The index partition of every pending delivery; its sort key starts with the due time. */
  due: 'webhook#due',
  dueSort: (nextAttemptAt: string, endpointId: string, sk: string) => `${nextAttemptAt}#${endpointId}#${sk}`,
  /** The signing secret's name in the webhook secret store. */
  secretRef: (endpointId: string) => `webhook/${endpointId}`,
} as const;
