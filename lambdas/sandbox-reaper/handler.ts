/**
 * Lambda entry of the idle sandbox reaper, for a scheduled rule (EventBridge, e.g. every 5
 * minutes). It stops sandbox tasks no tool call has used for `CORRAL_SANDBOX_IDLE_MS` (default
 * 15 minutes) and marks them released; the next call to such a sandbox starts a fresh one.
 *
 * Environment:
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
import { AWS_ENV, coreLogger } from '../adapters/aws/services.js';
import { DynamoStateTable } from '../adapters/aws/dynamodb-state-table.js';
import { EcsSandboxProvider } from '../adapters/aws/ecs-sandbox-provider.js';
import { reapIdleSandboxes, sandboxIdleMsFromEnv, type ReapResult } from '../core/sandbox/reaper.js';
import type { SandboxProvider } from '../core/sandbox/types.js';
import type { StateTable } from '../core/store.js';

export interface SandboxReaperDeps {
  table: StateTable;
  provider: SandboxProvider;
  idleMs: number;
  logger: Logger;
}

/** The handler over its dependencies (tests build it with dynalite and a mocked ECS). */
export function createSandboxReaperHandler(deps: () => SandboxReaperDeps) {
  return async function handler(_event: unknown, context?: Context): Promise<{ reaped: number; failed: number }> {
    const { table, provider, idleMs, logger } = deps();
    if (context) logger.addContext(context);
    const result: ReapResult = await reapIdleSandboxes({ table, provider, idleMs, logger: coreLogger(logger) });
    logger.info('sandbox reaper run', { reaped: result.reaped.length, failed: result.failed.length, idleMs });
    if (result.failed.length) logger.warn('some idle sandboxes could not be stopped; the next run retries', { failed: result.failed });
    return { reaped: result.reaped.length, failed: result.failed.length };
  };
}

let cached: SandboxReaperDeps | undefined;

function fromEnvironment(env: Record<string, string | undefined> = process.env): SandboxReaperDeps {
  if (cached) return cached;
  const tableName = env[AWS_ENV.stateTable];
  const cluster = env[AWS_ENV.sandboxCluster];
  if (!tableName || !cluster) {
    throw new Error(`Corral configuration is invalid: ${AWS_ENV.stateTable} and ${AWS_ENV.sandboxCluster} are required by the sandbox reaper`);
  }
  const list = (v: string | undefined) => (v ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const provider = new EcsSandboxProvider({
    ecs: new ECSClient({}),
    cluster,
    // Only StopTask is used here; the rest describes how sandboxes are started.
    taskDefinition: env[AWS_ENV.sandboxTaskDefinition] ?? '',
    subnets: list(env[AWS_ENV.sandboxSubnets]),
    securityGroups: list(env[AWS_ENV.sandboxSecurityGroups]),
    containerName: env[AWS_ENV.sandboxContainer] ?? '',
    port: Number(env[AWS_ENV.sandboxPort] ?? 8080),
  });
  cached = {
    table: new DynamoStateTable(new DynamoDBClient({}), tableName),
    provider,
    idleMs: sandboxIdleMsFromEnv(env),
    logger: new Logger(),
  };
  return cached;
}

export const handler = createSandboxReaperHandler(() => fromEnvironment());
