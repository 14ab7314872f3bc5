import Anthropic from '@anthropic-ai/sdk';
import { DescribeTableCommand, UpdateTableCommand } from '@aws-sdk/client-dynamodb';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { streamTierImage } from '../../infra/lib/constructs/stream-tier.js';
import { createAwsServices } from '../../lambdas/adapters/aws/services.js';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { generateApiKey } from '../../lambdas/core/resources/tenants.js';
import { makeEvent } from '../../lambdas/core/session/events.js';
import type { CorralServices } from '../../lambdas/core/services.js';
import { STREAM_TIER_ENV } from '../../lambdas/stream-tier/env.js';
import { NO_SANDBOXES } from '../../lambdas/stream-tier/server.js';
import { dynamoDbLocalUnavailable, startDynamoDbLocal } from '../helpers/dynamodb-local.js';

/**
 * What the stream tier's image runs: the bundle infra/lib/constructs/stream-tier.ts builds at
 * synthesis, started as the container starts it (`node stream-tier.mjs`, its configuration in the
 * environment), against DynamoDB Local on 127.0.0.1, streamed by the official SDK.
 */
const unavailable = dynamoDbLocalUnavailable();
if (process.env.CI && unavailable) throw new Error(`CI needs DynamoDB Local for the stream tier: ${unavailable}`);

const TABLES = { events: 'events', state: 'state' };
const TENANT = 'tenant-bundle';

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

describe.skipIf(unavailable)('the stream tier image bundle', () => {
  let db: Awaited<ReturnType<typeof startDynamoDbLocal>>;
  let services: CorralServices;
  let child: ChildProcess;
  let url: string;
  let apiKey: string;
  let output = '';

  beforeAll(async () => {
    const dir = streamTierImage(true);
    const dockerfile = readFileSync(join(dir, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/ENTRYPOINT \["node", "\/opt\/corral\/stream-tier\.mjs"\]/);
    db = await startDynamoDbLocal();
    await ensureTables(db.client, TABLES);
    await db.client.send(new UpdateTableCommand({ TableName: TABLES.events, StreamSpecification: { StreamEnabled: true, StreamViewType: 'KEYS_ONLY' } }));
    const streamArn = (await db.client.send(new DescribeTableCommand({ TableName: TABLES.events }))).Table!.LatestStreamArn!;
    const env = { CORRAL_EVENTS_TABLE: TABLES.events, CORRAL_STATE_TABLE: TABLES.state, CORRAL_WAKE_QUEUE_URL: 'http://127.0.0.1:9/000000000000/wake.fifo' };
    ({ services } = await createAwsServices({ env, clients: { dynamodb: db.client }, sandboxProvider: NO_SANDBOXES }));
    apiKey = generateApiKey();
    await services.tenants.addKey(TENANT, apiKey);
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    child = spawn(process.execPath, [join(dir, 'stream-tier.mjs')], {
      env: {
        PATH: process.env.PATH,
        ...env,
        [STREAM_TIER_ENV.streamArn]: streamArn,
        [STREAM_TIER_ENV.port]: String(port),
        [STREAM_TIER_ENV.shardPollMs]: '200',
        // Only a notification from the stream brings an event within the test.
        [STREAM_TIER_ENV.logPollMs]: '600000',
        AWS_REGION: 'local',
        AWS_ACCESS_KEY_ID: 'local',
        AWS_SECRET_ACCESS_KEY: 'local',
        AWS_ENDPOINT_URL_DYNAMODB: db.endpoint,
        AWS_ENDPOINT_URL_DYNAMODB_STREAMS: db.endpoint,
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    for (let i = 0; ; i++) {
      const ok = await fetch(`${url}/health`).then((r) => r.status === 200, () => false);
      if (ok) break;
      if (child.exitCode !== null || i > 300) throw new Error(`the tier did not become healthy: ${output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    await db?.close();
  });

  it('serves the SDK events appended by another writer, and leaves cleanly on SIGTERM', async () => {
    const agent = await services.agents.create(TENANT, { name: 'a', model: 'claude-sonnet-4-6' });
    const environment = await services.environments.create(TENANT, { name: 'e', config: { type: 'cloud' } });
    const session = await services.sessions.create(TENANT, { agent: agent.id, environment_id: environment.id });
    const client = new Anthropic({ apiKey, baseURL: url, maxRetries: 0 });
    const stream = await client.beta.sessions.events.stream(session.id);
    const sent = [1, 2, 3].map((n) => makeEvent({ type: 'user.message', content: [{ type: 'text', text: `m${n}` }] }));
    for (const e of sent) await services.events.emitEvent(session.id, e);
    const got: string[] = [];
    for await (const e of stream) {
      if ((e as { type: string }).type === 'ping') continue;
      got.push((e as { id: string }).id);
      if (got.length === sent.length) break;
    }
    expect(got).toEqual(sent.map((e) => e.id));
    // ECS stops a task with SIGTERM: the open stream ends and the process exits 0.
    const again = await fetch(`${url}/v1/sessions/${session.id}/events/stream`, { headers: { 'x-api-key': apiKey } });
    const body = again.text();
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    await body;
    expect(output).not.toContain(apiKey);
  });
});
