/**
 * The rehearsal's workspace scenario (docs/WORKSPACES.md): a Fargate sandbox stopped for idleness
 * by the scheduled reaper comes back with its files. Everything runs as deployed: the reaper from
 * its bundle with its own role (S3 `workspaces/*` write and delete, KMS decrypt of the capability
 * key) and its own address in the VPC, which the sandbox's security group must admit; the
 * snapshot lands in the template's bucket; the harness restores it into a new task with its role.
 * The rehearsal's checks after each scenario fail it for any IAM denial on the way.
 *
 * The rehearsal synthesizes with `sandboxIdleMinutes=1` (scripts/rehearse.ts), so the scenario
 * waits for the sandbox to be idle for real (a minute), as the reaper's environment says, rather
 * than rewriting its record.
 */
import { DynamoDBClient, QueryCommand } from '@aws-sdk/client-dynamodb';
import { SANDBOX_PREFIX, keys } from '../../lambdas/core/storage/keys.js';
import type { Rehearsal } from './rehearsal.js';
import { fail, runTurn, type Event, type Scenario } from './scenarios.js';

export const WORKSPACE_SCENARIOS = ['workspace-after-idle'] as const;

const toolResults = (events: Event[]) => events.filter((e) => e.type === 'agent.tool_result').map((e) => JSON.stringify(e.content));

export function workspaceScenarios(r: Rehearsal, admin: DynamoDBClient): Scenario[] {
  return [
    {
      name: 'workspace-after-idle',
      proves:
        'a Fargate sandbox stopped for idleness by the scheduled reaper (in the VPC, with its own role) is snapshotted to S3 and the next tool call runs in a new task that sees its files',
      timeoutMs: 300_000,
      async run(ctx) {
        const reaper = r.fn('SandboxReaperFunction');
        const idleMs = Number(reaper.fn.environment.CORRAL_SANDBOX_IDLE_MS);
        if (!(idleMs > 0)) fail(`the reaper has no CORRAL_SANDBOX_IDLE_MS (${String(reaper.fn.environment.CORRAL_SANDBOX_IDLE_MS)})`);
        if (idleMs > 120_000) fail(`the reaper's idle setting is ${idleMs} ms: synthesize the rehearsal with sandboxIdleMinutes=1`);
        if (!reaper.fn.runtimeEnvironment.CORRAL_REHEARSAL_SOURCE_ADDRESS) fail('the reaper is not in the VPC: it cannot reach a sandbox');
        const bucket = r.model.outputs.BlobBucketName;
        if (!bucket) fail('the template has no BlobBucketName output');

        const session = await ctx.newSession();
        const marker = ctx.marker('workspace');
        const tasksOf = () => r.ecs.running().filter((t) => t.tags.some((tag) => tag.key === 'corral:session' && tag.value === session));
        // Files in the workspace: text in a directory, and 200 KB of random bytes (a hash to compare).
        const wrote = await runTurn(
          ctx,
          session,
          `Use bash to run \`mkdir -p notes && echo ${marker} > notes/kept.txt && head -c 200000 /dev/urandom > blob.bin && sha256sum blob.bin\` and tell me what it printed.`,
        );
        const hash = toolResults(wrote).join('').match(/\b[0-9a-f]{64}\b/)?.[0];
        if (!hash) fail(`the first tool call printed no hash: ${toolResults(wrote).join(' ').slice(0, 300)}`);
        const [first] = tasksOf();
        if (!first || tasksOf().length !== 1) fail(`expected one running task for the session, found ${tasksOf().length}`);

        // Wait until the sandbox has been idle for longer than the reaper's setting, as its record says.
        const items = await admin.send(
          new QueryCommand({
            TableName: r.model.outputs.StateTableName,
            KeyConditionExpression: 'pk = :pk AND begins_with(sk, :s)',
            ExpressionAttributeValues: { ':pk': { S: keys.partition('session', session) }, ':s': { S: SANDBOX_PREFIX } },
          }),
        );
        const lastUsedAt = items.Items?.[0]?.lastUsedAt?.S;
        if (!lastUsedAt) fail('no sandbox record with lastUsedAt in the state table');
        const wait = Date.parse(lastUsedAt) + idleMs + 1_000 - Date.now();
        if (wait > 0) await new Promise((res) => setTimeout(res, wait));

        // The reaper, invoked as the schedule invokes it.
        const before = new Set(r.s3.keys(bucket));
        const out = (await r.runSchedule('SandboxReaper')) as { reaped?: number; failed?: number; snapshots?: number; snapshotsFailed?: number };
        if (!out?.reaped) fail(`the reaper reaped nothing: ${JSON.stringify(out)}`);
        if (!out.snapshots || out.snapshotsFailed) fail(`the reaper kept no snapshot: ${JSON.stringify(out)}`);
        if (tasksOf().length) fail('the reaped sandbox task still runs');
        const stored = r.s3.keys(bucket).filter((k) => !before.has(k) && k.startsWith('workspaces/') && k.includes(`/${session}/`));
        if (stored.length !== 1) fail(`expected one new snapshot of the session in the bucket, found ${JSON.stringify(stored)}`);

        // The next tool call runs in a new task, restored from the snapshot.
        const started = Date.now();
        const read = await runTurn(ctx, session, 'Use bash to run `cat notes/kept.txt && sha256sum blob.bin` and tell me what it printed.');
        const turnMs = Date.now() - started;
        const results = toolResults(read).join(' ');
        if (!results.includes(marker)) fail(`the new sandbox does not have notes/kept.txt: ${results.slice(0, 400)}`);
        if (!results.includes(hash)) fail(`blob.bin came back different (expected ${hash}): ${results.slice(0, 400)}`);
        if (!/restored from the snapshot/.test(results)) fail(`the tool result does not say the workspace was restored: ${results.slice(0, 400)}`);
        const [second] = tasksOf();
        if (!second || second.id === first.id) fail('the call after the reap did not run in a new task');
        const files = results.match(/(\d+) files?, ([\d.]+ [KMG]?i?B)/);
        return `reaped with a snapshot (${stored[0].split('/').pop()}${files ? `: ${files[1]} files, ${files[2]}` : ''}); new task ${second.id.slice(0, 8)} had notes/kept.txt and blob.bin (same sha256); the turn with the restore took ${(turnMs / 1000).toFixed(1)} s`;
      },
    },
  ];
}
