/**
 * Time to a tool-first session's first tool result, with and without a warm pool
 * (lambdas/core/sandbox/warm-pool.ts), on the local provider over dynalite.
 *
 *   npx tsx bench/warm-pool.ts [rounds, default 8]
 *
 * Each round is a new session whose first action is `bash true` through the sandbox manager (what
 * the harness calls). Without a pool, the call starts a sandbox; with a pool of one, it claims the
 * pooled sandbox (a conditional write and a capability rotation), and the pool is refilled before
 * the next round, off the measured path. Local sandboxes start in about a second (a Node process);
 * a Fargate task takes tens of seconds (bench/results, `ttft-fargate`), which a pool saves the same
 * way. Prints the median and p95 of each, in ms.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DynamoStateTable } from '../lambdas/adapters/aws/dynamodb-state-table.js';
import { ensureTables } from '../lambdas/adapters/aws/tables.js';
import { startDynalite } from '../lambdas/adapters/local/dynalite.js';
import { ProcessSandboxProvider } from '../lambdas/adapters/local/process-sandbox.js';
import { SandboxManager } from '../lambdas/core/sandbox/manager.js';
import { fitRecipe, planRecipe } from '../lambdas/core/sandbox/recipe.js';
import { nowMs, round, summarize } from './lib/stats.js';

const rounds = Number(process.argv[2] ?? 8);
const db = await startDynalite();
await ensureTables(db.client, { events: 'events', state: 'state' });
const table = new DynamoStateTable(db.client, 'state');
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-bench-pool-'));
const provider = new ProcessSandboxProvider({ dataDir, logger: { warn: () => {} } });
const environmentId = 'env_bench_pool';
const plan = planRecipe({ session: { environment_id: environmentId, resources: [] }, environment: { config: { type: 'cloud' } }, credentials: [] });
const key = Buffer.alloc(32, 3);
const cold = new SandboxManager(provider, table, key);
const warm = new SandboxManager(provider, table, key, undefined, undefined, { warmPool: { sizes: { [environmentId]: 1 }, maxAgeMs: 3_600_000 } });
const pool = warm.warmPool!;

let n = 0;
async function firstCall(manager: SandboxManager): Promise<number> {
  const sessionId = `sesn_bench_${++n}`;
  const started = nowMs();
  const out = await manager.execute(sessionId, 'default', plan, 'bash', { command: 'true' });
  const ms = nowMs() - started;
  if (out.isError) throw new Error(`first call failed: ${out.output}`);
  await manager.releaseAll(sessionId);
  return ms;
}

try {
  // One of each first, unmeasured (tsx and the agent's modules warm up).
  await firstCall(cold);
  await pool.replenish(fitRecipe(plan, provider.recipeSupport).recipe);
  const without: number[] = [];
  const withPool: number[] = [];
  for (let i = 0; i < rounds; i++) {
    without.push(await firstCall(cold));
    await pool.settled(); // the pool is full before the measured call
    withPool.push(await firstCall(warm));
  }
  const show = (xs: number[]) => {
    const s = summarize(xs);
    return { median_ms: round(s.p50, 0), p95_ms: round(s.p95, 0) };
  };
  console.log(JSON.stringify({ isolation: await provider.isolationMode(), rounds, without_pool: show(without), with_pool: show(withPool), pool_starts: pool.started }, null, 2));
} finally {
  await pool.settled();
  await pool.reapExpired(new Date(Date.now() + 7_200_000));
  await provider.close();
  await db.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
}
