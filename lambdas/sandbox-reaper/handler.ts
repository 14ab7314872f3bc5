/**
 * Lambda entry of the idle sandbox reaper, for a scheduled rule (EventBridge, e.g. every 5
 * minutes). It stops sandbox tasks no tool call has used for `CORRAL_SANDBOX_IDLE_MS` (default
 * 15 minutes) and marks them released; the next call to such a sandbox starts a fresh one.
 *
 * Environment (`readSandboxReaperConfig`, lambdas/core/config.ts):
 *   CORRAL_STATE_TABLE       the state table (reads its `gsi1` index, writes sandbox records)
 *   CORRAL_SANDBOX_CLUSTER   the ECS cluster the sandbox tasks run in (StopTask)
 *   CORRAL_SANDBOX_IDLE_MS   optional, milliseconds
 * Permissions: dynamodb:Query on the table's gsi1 index, dynamodb:PutItem on the table,
 * ecs:StopTask on the cluster's tasks.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ECSClient } from '@aws-sdk/client-ecs';
import type { Context } from 'aws-lambda';
import { coreLogger } from '../adapters/aws/services.js';
import { DynamoStateTable } from '../adapters/aws/dynamodb-state-table.js';
import { EcsSandboxProvider } from '../adapters/aws/ecs-sandbox-provider.js';
import { readSandboxReaperConfig } from '../core/config.js';
import { reapIdleSandboxes, type ReapResult } from '../core/sandbox/reaper.js';
import type { SandboxProvider } from '../core/sandbox/types.js';
import type { WorkspaceSnapshots } from '../core/sandbox/workspaces.js';
import type { StateTable } from '../core/store.js';

export interface SandboxReaperDeps {
  table: StateTable;
  provider: SandboxProvider;
  idleMs: number;
  logger: Logger;
  /**
   * Where workspaces are snapshotted before their sandbox stops (docs/WORKSPACES.md). Not wired
   * from the environment yet: it needs the S3 blob store, the capability sealer and a route to
   * the sandboxes; until then a Fargate sandbox stopped for idleness comes back empty.
   */
  workspaces?: WorkspaceSnapshots;
}

/** The handler over its dependencies (tests build it with dynalite and a mocked ECS). */
export function createSandboxReaperHandler(deps: () => SandboxReaperDeps) {
  return async function handler(_event: unknown, context?: Context): Promise<{ reaped: number; failed: number }> {
    const { table, provider, idleMs, logger, workspaces } = deps();
    if (context) logger.addContext(context);
    const result: ReapResult = await reapIdleSandboxes({ table, provider, idleMs, logger: coreLogger(logger), ...(workspaces ? { workspaces } : {}) });
    logger.info('sandbox reaper run', { reaped: result.reaped.length, failed: result.failed.length, idleMs });
    if (result.failed.length) logger.warn('some idle sandboxes could not be stopped; the next run retries', { failed: result.failed });
    return { reaped: result.reaped.length, failed: result.failed.length };
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
  cached = {
    table: new DynamoStateTable(new DynamoDBClient({}), config.stateTable),
    provider,
    idleMs: config.idleMs,
    logger: new Logger(),
  };
  return cached;
}

export const handler = createSandboxReaperHandler(() => fromEnvironment());
