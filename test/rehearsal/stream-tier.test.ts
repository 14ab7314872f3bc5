import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REHEARSAL_CONTEXT, rehearse } from '../../scripts/rehearse.js';
import { synthesize } from '../../infra/rehearsal/rehearsal.js';
import { startFakeMessagesApi, type FakeMessagesApi } from '../fixtures/fake-messages-api.js';
import { dynamoDbLocalUnavailable } from '../helpers/dynamodb-local.js';

/**
 * The stream tier as deployed (`streamTier=fargate`), in the deploy rehearsal: its tasks run from
 * the template's image asset with the task definition's environment, port and task role (every
 * AWS call checked against that role's policies), behind the template's NLB, reached by API
 * Gateway through the VPC link, fed by the events table's DynamoDB stream on DynamoDB Local. The
 * official SDK follows a session through it while a turn with a tool call runs, is cut mid-turn
 * twice (its socket, then every tier task replaced) and resumes with Last-Event-ID: it receives
 * the log exactly, and a heartbeat arrives.
 */
const unavailable = dynamoDbLocalUnavailable();
if (process.env.CI && unavailable) throw new Error(`CI needs DynamoDB Local for the stream tier rehearsal: ${unavailable}`);

describe.skipIf(!!unavailable)('deploy rehearsal: the stream tier', () => {
  let fake: FakeMessagesApi;
  let dir: string;
  let assembly: string;
  const context = { ...REHEARSAL_CONTEXT, streamTier: 'fargate' };

  beforeAll(async () => {
    fake = await startFakeMessagesApi();
    dir = mkdtempSync(join(tmpdir(), 'corral-rehearsal-tier-'));
    assembly = await synthesize(join(dir, 'cdk.out'), { ...context, anthropicBaseUrl: fake.url });
  }, 300_000);
  afterAll(async () => {
    await fake?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('streams a session through the tier with the SDK, resumes with Last-Event-ID after a socket cut and after task replacement, and misses nothing', async () => {
    const report = await rehearse({ fake, cloudAssembly: assembly, context: { streamTier: 'fargate' }, dynamodb: 'dynamodb-local', only: ['stream-tier'] });
    expect(report.results.map((r) => [r.name, r.ok, r.detail])).toEqual([['stream-tier', true, expect.stringMatching(/the log's \d+ exactly; an idle stream's heartbeat/)]]);
    expect(report.denials).toEqual([]);
    // The stream went through the tier: its tasks read the events stream and the log with their
    // task role, and the stream function (still deployed, no route to it) never ran.
    const calls = new Map(report.calls);
    const tier = [...calls.keys()].filter((k) => k.includes('StreamTier'));
    for (const op of ['dynamodb:DescribeStream', 'dynamodb:GetShardIterator', 'dynamodb:GetRecords', 'dynamodb:Query']) {
      expect(tier.some((k) => k.endsWith(` ${op}`)), `the tier's tasks made no ${op}`).toBe(true);
    }
    const streamFunction = Object.entries(report.functionStats).find(([id]) => id.startsWith('ApiStreamHandler'));
    expect(streamFunction?.[1].invocations).toBe(0);
  }, 300_000);
});
