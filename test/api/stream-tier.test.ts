import Anthropic from '@anthropic-ai/sdk';
import { DescribeTableCommand, UpdateTableCommand } from '@aws-sdk/client-dynamodb';
import { DynamoDBStreamsClient } from '@aws-sdk/client-dynamodb-streams';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoStreamConsumer } from '../../lambdas/adapters/aws/dynamodb-stream-consumer.js';
import { createAwsServices } from '../../lambdas/adapters/aws/services.js';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import type { CorralServices } from '../../lambdas/core/services.js';
import { makeEvent } from '../../lambdas/core/session/events.js';
import { FanoutNotifier } from '../../lambdas/core/session/notifier.js';
import { generateApiKey } from '../../lambdas/core/resources/tenants.js';
import { NO_SANDBOXES, startStreamTier, type StreamTier } from '../../lambdas/stream-tier/server.js';
import { OidcVerifier } from '../../lambdas/core/auth/oidc.js';
import { startOidcIssuer, type OidcIssuerFixture } from '../fixtures/oidc-issuer.js';
import { dynamoDbLocalUnavailable, startDynamoDbLocal } from '../helpers/dynamodb-local.js';

/**
 * The stream tier (lambdas/stream-tier/) on 127.0.0.1, fed by the events table's DynamoDB stream
 * on AWS's DynamoDB Local (dynalite has no streams), read by the official SDK's `events.stream()`.
 *
 * The tier's log poll is set to 10 minutes here, so an event that reaches a client within the
 * test reached it through the stream consumer's notification, not through a poll.
 */
const unavailable = dynamoDbLocalUnavailable();
if (process.env.CI && unavailable) throw new Error(`CI needs DynamoDB Local for the stream tier: ${unavailable}`);

const TABLES = { events: 'events', state: 'state' };
const TENANT = 'tenant-stream-tier';
const msg = (text: string) => makeEvent({ type: 'user.message', content: [{ type: 'text', text }] });

type StreamedEvent = { id: string; type: string };

/** Reads `n` events (pings are not events) from an SDK stream, then closes it. */
async function take(stream: AsyncIterable<unknown> & { controller: AbortController }, n: number): Promise<StreamedEvent[]> {
  const got: StreamedEvent[] = [];
  for await (const e of stream) {
    const ev = e as StreamedEvent;
    if (ev.type === 'ping') continue;
    got.push(ev);
    if (got.length === n) break;
  }
  stream.controller.abort();
  return got;
}

describe.skipIf(unavailable)('stream tier on DynamoDB Streams', () => {
  let db: Awaited<ReturnType<typeof startDynamoDbLocal>>;
  let services: CorralServices;
  let notifier: FanoutNotifier;
  let consumer: DynamoStreamConsumer;
  let tier: StreamTier;
  let client: Anthropic;
  let streamsClient: DynamoDBStreamsClient;
  let streamArn: string;
  let idp: OidcIssuerFixture;
  const gaps: string[] = [];

  const newSession = async () => {
    const agent = await services.agents.create(TENANT, { name: 'a', model: 'claude-sonnet-4-6' });
    const env = await services.environments.create(TENANT, { name: `e-${Math.random()}`, config: { type: 'cloud' } });
    return (await services.sessions.create(TENANT, { agent: agent.id, environment_id: env.id })).id;
  };

  beforeAll(async () => {
    db = await startDynamoDbLocal();
    await ensureTables(db.client, TABLES);
    // The stack's setting (infra/lib/constructs/stream-tier.ts): keys only.
    await db.client.send(new UpdateTableCommand({ TableName: TABLES.events, StreamSpecification: { StreamEnabled: true, StreamViewType: 'KEYS_ONLY' } }));
    streamArn = (await db.client.send(new DescribeTableCommand({ TableName: TABLES.events }))).Table!.LatestStreamArn!;
    expect(streamArn).toBeTruthy();
    ({ services } = await createAwsServices({
      env: { CORRAL_EVENTS_TABLE: TABLES.events, CORRAL_STATE_TABLE: TABLES.state, CORRAL_WAKE_QUEUE_URL: 'http://127.0.0.1:9/000000000000/wake.fifo' },
      clients: { dynamodb: db.client },
      sandboxProvider: NO_SANDBOXES,
    }));
    const apiKey = generateApiKey();
    await services.tenants.addKey(TENANT, apiKey);
    streamsClient = new DynamoDBStreamsClient({ endpoint: db.endpoint, region: 'local', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
    notifier = new FanoutNotifier();
    consumer = new DynamoStreamConsumer({
      client: streamsClient,
      streamArn,
      pollMs: 100,
      onAppend: (id) => notifier.notify(id),
      onGap: (reason) => {
        gaps.push(reason);
        notifier.notifyAll();
      },
    });
    await consumer.start();
    idp = await startOidcIssuer();
    const oidc = new OidcVerifier([{ issuer: idp.url, audiences: ['corral'], tenant: TENANT, groupsClaim: 'groups', roles: { staff: 'user' }, clientId: null, scopes: ['openid'], clockSkewSeconds: 60 }]);
    tier = await startStreamTier({ services, notifier, port: 0, stream: { pollMs: 600_000 }, oidc });
    client = new Anthropic({ apiKey, baseURL: tier.url, maxRetries: 0 });
  });
  afterAll(async () => {
    await tier?.close();
    await idp?.close();
    await consumer?.stop();
    streamsClient?.destroy();
    await db?.close();
  });

  it('delivers events appended by another writer, in order, through the stream consumer', async () => {
    const id = await newSession();
    const stream = await client.beta.sessions.events.stream(id);
    const sent = [msg('one'), msg('two'), msg('three')];
    const reading = take(stream, 3);
    // Appended as the harness does, by a writer the tier knows nothing of.
    for (const e of sent) await services.events.emitEvent(id, e);
    expect((await reading).map((e) => e.id)).toEqual(sent.map((e) => e.id));
    expect(Object.values(consumer.status())).toContain('reading');
  });

  it('streams to a signed-in user (an OIDC token, as the API accepts it), and refuses a token of no issuer it knows', async () => {
    const id = await newSession();
    const user = new Anthropic({ baseURL: tier.url, apiKey: null, authToken: idp.sign({ sub: 'ana', aud: 'corral', groups: ['staff'] }), maxRetries: 0 });
    const stream = await user.beta.sessions.events.stream(id);
    const reading = take(stream, 1);
    const e = msg('for ana');
    await services.events.emitEvent(id, e);
    expect((await reading).map((x) => x.id)).toEqual([e.id]);
    const stranger = new Anthropic({ baseURL: tier.url, apiKey: null, authToken: idp.sign({ sub: 'ana', aud: 'elsewhere', groups: ['staff'] }), maxRetries: 0 });
    await expect(stranger.beta.sessions.events.stream(id)).rejects.toMatchObject({ status: 401 });
  });

  it('resumes after Last-Event-ID with nothing missed and nothing twice', async () => {
    const id = await newSession();
    const before = [msg('a'), msg('b'), msg('c'), msg('d')];
    const stored = [];
    for (const e of before) stored.push(await services.events.emitEvent(id, e));
    // A client that saw up to the second event reconnects.
    const stream = await client.beta.sessions.events.stream(id, {}, { headers: { 'Last-Event-ID': String(stored[1].position) } });
    const after = [msg('e'), msg('f')];
    const reading = take(stream, 4);
    for (const e of after) await services.events.emitEvent(id, e);
    expect((await reading).map((e) => e.id)).toEqual([...before.slice(2), ...after].map((e) => e.id));
  });

  it('serves many concurrent streams from one process, each with all of its session and none of another', async () => {
    const sessions = await Promise.all(Array.from({ length: 5 }, () => newSession()));
    const perSession = 12;
    const streams = await Promise.all(sessions.flatMap((id) => Array.from({ length: perSession }, () => client.beta.sessions.events.stream(id).then((s) => ({ id, s })))));
    const readings = streams.map(({ id, s }) => take(s, 4).then((events) => ({ id, events })));
    // Every stream is subscribed once its response has started: one process holds them all.
    expect(tier.openStreams()).toBeGreaterThanOrEqual(sessions.length * perSession);
    const sent = new Map<string, string[]>();
    for (let round = 0; round < 4; round++) {
      await Promise.all(
        sessions.map(async (id) => {
          const e = msg(`${id}-${round}`);
          sent.set(id, [...(sent.get(id) ?? []), e.id]);
          await services.events.emitEvent(id, e);
        }),
      );
    }
    for (const { id, events } of await Promise.all(readings)) expect(events.map((e) => e.id)).toEqual(sent.get(id));
    // Sixty streams opened against DynamoDB Local (Java, on a shared machine): a budget, not a timing claim.
  }, 180_000);

  it('authenticates like the API and serves nothing but the stream', async () => {
    const id = await newSession();
    const anon = await fetch(`${tier.url}/v1/sessions/${id}/events/stream`);
    expect(anon.status).toBe(401);
    const other = new Anthropic({ apiKey: 'sk-not-a-key', baseURL: tier.url, maxRetries: 0 });
    await expect(other.beta.sessions.events.stream(id)).rejects.toMatchObject({ status: 401 });
    const list = await fetch(`${tier.url}/v1/sessions/${id}/events`, { headers: { 'x-api-key': client.apiKey! } });
    expect(list.status).toBe(404);
    const send = await fetch(`${tier.url}/v1/sessions/${id}/events`, { method: 'POST', headers: { 'x-api-key': client.apiKey!, 'content-type': 'application/json' }, body: '{}' });
    expect(send.status).toBe(404);
  });

  it('reads the log after a gap, so events the consumer never announced still arrive', async () => {
    const id = await newSession();
    const stream = await client.beta.sessions.events.stream(id);
    const reading = take(stream, 2);
    // Appended while no notification reaches this stream: the consumer is stopped.
    await consumer.stop();
    const missed = [msg('while-stopped-1'), msg('while-stopped-2')];
    for (const e of missed) await services.events.emitEvent(id, e);
    // A restarted consumer starts at the tip, so it never sees those records; the tier treats
    // a start with streams already open as a gap, and every stream rereads its log.
    consumer = new DynamoStreamConsumer({ client: streamsClient, streamArn, pollMs: 100, onAppend: (s) => notifier.notify(s), onGap: () => notifier.notifyAll() });
    await consumer.start();
    notifier.notifyAll();
    expect((await reading).map((e) => e.id)).toEqual(missed.map((e) => e.id));
  });

  it('ends every stream cleanly when it closes, so clients reconnect elsewhere with Last-Event-ID', async () => {
    const id = await newSession();
    const first = await services.events.emitEvent(id, msg('x'));
    const res = await fetch(`${tier.url}/v1/sessions/${id}/events/stream`, { headers: { 'x-api-key': client.apiKey!, 'last-event-id': '0' } });
    expect(res.status).toBe(200);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let body = '';
    while (!body.includes(`id: ${first.position}\n`)) body += (await reader.read()).value ?? '';
    // Closing ends the open response: the read below reaches its end instead of waiting for more.
    await tier.close();
    for (;;) {
      const { done } = await reader.read();
      if (done) break;
    }
    expect(tier.openStreams()).toBe(0);
  });
});
