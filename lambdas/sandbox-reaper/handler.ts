/**
 * Lambda entry of the idle sandbox reaper, for a scheduled rule (EventBridge, e.g. every 5
 * minutes), and the recorder of the sandbox cluster's task state change events (a second rule):
 * an ECS event is written to the task's state record (lambdas/adapters/aws/ecs-task-events.ts),
 * which a harness starting that task reads instead of calling DescribeTasks; it reaps nothing.
 * On a schedule: It stops sandbox tasks no tool call has used for `CORRAL_SANDBOX_IDLE_MS` (default
 * 15 minutes) and marks them released; the next call to such a sandbox starts a fresh one. With a
 * blob bucket, it first asks each sandbox agent for its workspace and keeps it in the bucket, so
 * that the next sandbox of that name is restored from it (docs/WORKSPACES.md).
 *
 * Environment (`readSandboxReaperConfig`, lambdas/core/config.ts):
 *   CORRAL_STATE_TABLE             the state table (reads its `gsi1` index, writes sandbox records)
 *   CORRAL_SANDBOX_CLUSTER         the ECS cluster the sandbox tasks run in (StopTask)
 *   CORRAL_SANDBOX_IDLE_MS         optional, milliseconds
 *   CORRAL_BLOB_BUCKET             optional: where workspace snapshots go (without it, none are taken)
 *   CORRAL_SANDBOX_CAPABILITY_KEY  optional: the KMS key the sandboxes' capabilities are sealed with
 *   CORRAL_WORKSPACE_SNAPSHOT_MAX_BYTES, ..._MAX_ENTRIES  optional bounds of a snapshot
 *   CORRAL_WARM_POOL, CORRAL_WARM_POOL_MAX_AGE_MS  optional: pooled tasks never claimed are stopped
 * Permissions: dynamodb:Query on the table's gsi1 index, dynamodb:GetItem and PutItem on the
 * table, ecs:StopTask on the cluster's tasks; for snapshots, s3:PutObject, AbortMultipartUpload
 * and DeleteObject on the bucket's `workspaces/*`, kms:Decrypt of the capability key (with the
 * capability encryption context), and a route to the sandboxes' agent port (the function runs in
 * the VPC's private subnets, in a security group the sandboxes admit).
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { ECSClient } from '@aws-sdk/client-ecs';
import { KMSClient } from '@aws-sdk/client-kms';
import type { Context } from 'aws-lambda';
import { createDynamoClient } from '../adapters/aws/dynamodb-client.js';
import { coreLogger } from '../adapters/aws/services.js';
import { DynamoStateTable } from '../adapters/aws/dynamodb-state-table.js';
import { EcsSandboxProvider } from '../adapters/aws/ecs-sandbox-provider.js';
import { isTaskStateChange, recordTaskStateChange } from '../adapters/aws/ecs-task-events.js';
import { KmsCapabilitySealer } from '../adapters/aws/kms-capability-sealer.js';
import { S3BlobStore } from '../adapters/aws/s3-blob-store.js';
import { S3Client } from '../adapters/aws/s3-client.js';
import { readSandboxReaperConfig, readWarmPool } from '../core/config.js';
import { reapIdleSandboxes, type ReapResult } from '../core/sandbox/reaper.js';
import type { SandboxProvider } from '../core/sandbox/types.js';
import { WorkspaceSnapshots } from '../core/sandbox/workspaces.js';
import { WarmPool } from '../core/sandbox/warm-pool.js';
import type { StateTable } from '../core/store.js';

export interface SandboxReaperDeps {
  table: StateTable;
  provider: SandboxProvider;
  idleMs: number;
  logger: Logger;
  /**
   * Where workspaces are snapshotted before their sandbox stops (docs/WORKSPACES.md): the blob
   * bucket, with the capability sealer to open the sandboxes' stored capabilities. Absent (no
   * `CORRAL_BLOB_BUCKET`): sandboxes stop without a snapshot and come back empty.
   */
  workspaces?: WorkspaceSnapshots;
  /** Warm pools (`CORRAL_WARM_POOL`): their sandboxes never claimed are stopped too. @default - none */
  warmPool?: WarmPool;
}

/** What a run answers; `recorded` for a task state change event (whether it was newer than the record). */
export interface SandboxReaperResult {
  reaped: number;
  failed: number;
  snapshots: number;
  snapshotsFailed: number;
  recorded?: boolean;
}

/** The handler over its dependencies (tests build it with dynalite and a mocked ECS). */
export function createSandboxReaperHandler(deps: () => SandboxReaperDeps) {
  return async function handler(event: unknown, context?: Context): Promise<SandboxReaperResult> {
    const { table, provider, idleMs, logger, workspaces, warmPool } = deps();
    if (context) logger.addContext(context);
    if (isTaskStateChange(event)) {
      // A malformed event throws: EventBridge retries it, then drops it, and the provider's
      // DescribeTasks fallback covers the gap.
      const recorded = await recordTaskStateChange(table, event);
      logger.debug('sandbox task state recorded', { taskArn: event.detail.taskArn, lastStatus: event.detail.lastStatus, version: event.detail.version, recorded });
      return { reaped: 0, failed: 0, snapshots: 0, snapshotsFailed: 0, recorded };
    }
    const result: ReapResult = await reapIdleSandboxes({ table, provider, idleMs, logger: coreLogger(logger), ...(workspaces ? { workspaces } : {}), ...(warmPool ? { warmPool } : {}) });
    const snapshots = result.snapshots.filter((s) => s.key).length;
    const snapshotsFailed = result.snapshots.length - snapshots;
    logger.info('sandbox reaper run', { reaped: result.reaped.length, failed: result.failed.length, snapshots, snapshotsFailed, idleMs, ...(result.pooled ? { pooledStopped: result.pooled.length } : {}) });
    if (result.failed.length) logger.warn('some idle sandboxes could not be stopped; the next run retries', { failed: result.failed });
    return { reaped: result.reaped.length, failed: result.failed.length, snapshots, snapshotsFailed };
  };
}

let cached: SandboxReaperDeps | undefined;

function fromEnvironment(env: Record<string, string | undefined> = process.env): SandboxReaperDeps {
  if (cached) return cached;
  const config = readSandboxReaperConfig(env);
  const provider = new EcsSandboxProvider({
    ecs: new ECSClient({}),
    cluster: config.cluster,
    // Only StopTask is used here: how sandboxes are started is the harness's business.
    taskDefinition: '',
    subnets: [],
    securityGroups: [],
    containerName: '',
    port: 0,
  });
  const dynamodb = createDynamoClient();
  const table = new DynamoStateTable(dynamodb, config.stateTable);
  // Capabilities are stored sealed with the stack's KMS key; this function may only open them.
  const sealer = config.sandboxCapabilityKey ? new KmsCapabilitySealer({ kms: new KMSClient({}), keyId: config.sandboxCapabilityKey }) : undefined;
  const workspaces = config.blobBucket
    ? new WorkspaceSnapshots({ blobs: new S3BlobStore({ s3: new S3Client({ credentials: dynamodb.config.credentials, region: dynamodb.config.region }), bucket: config.blobBucket }), limits: config.workspaceLimits }, table, sealer)
    : undefined;
  const logger = new Logger();
  // The pool's reaping needs only the table and StopTask (it never opens a pooled capability).
  const pool = readWarmPool(env);
  const warmPool = pool ? new WarmPool({ table, provider, settings: pool, logger: coreLogger(logger) }) : undefined;
  cached = {
    table,
    provider,
    idleMs: config.idleMs,
    logger,
    ...(workspaces ? { workspaces } : {}),
    ...(warmPool ? { warmPool } : {}),
  };
  return cached;
}

export const handler = createSandboxReaperHandler(() => fromEnvironment());
