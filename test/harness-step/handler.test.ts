import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import {
  ChangeMessageVisibilityBatchCommand,
  SendMessageCommand,
  SQSClient,
  type ChangeMessageVisibilityBatchCommandInput,
  type SendMessageCommandInput,
} from '@aws-sdk/client-sqs';
import type { Context, SQSRecord } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { HarnessMetrics } from '../../lambdas/adapters/aws/metrics.js';
import { createAwsModel } from '../../lambdas/adapters/aws/model.js';
import { coreLogger, createAwsServices } from '../../lambdas/adapters/aws/services.js';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite, type EmbeddedDynamo } from '../../lambdas/adapters/local/dynalite.js';
import { ProcessSandboxProvider } from '../../lambdas/adapters/local/process-sandbox.js';
import { AgentCreate, EnvironmentCreate } from '../../lambdas/core/api/schemas.js';
import type { CorralServices } from '../../lambdas/core/services.js';
import { DEFAULT_HEARTBEAT, createHarnessStepHandler } from '../../lambdas/harness-step/handler.js';
import { startFakeMessagesApi, type FakeMessagesApi } from '../fixtures/fake-messages-api.js';
import { startTelemetry } from '../../lambdas/core/telemetry/setup.js';
import { parseTraceparent, withSpan } from '../../lambdas/core/telemetry/trace.js';

const QUEUE_URL = 'https://sqs.us-east-1.amazonaws.com/123456789012/wake.fifo';
const TENANT = 'acme';
const sqsMock = mockClient(SQSClient);

/** An SQS FIFO record as Lambda delivers it (message group = session id). */
function record(i: number, body: string, group: string, receiveCount = 1): SQSRecord {
  return {
    messageId: `msg-${i}`,
    receiptHandle: `receipt-${i}`,
    body,
    attributes: {
      ApproximateReceiveCount: String(receiveCount),
      SentTimestamp: String(Date.now()),
      SenderId: 'AIDAEXAMPLE',
      ApproximateFirstReceiveTimestamp: String(Date.now()),
      MessageGroupId: group,
      MessageDeduplicationId: `dedup-${i}`,
      SequenceNumber: String(1000 + i),
    },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:wake.fifo',
    awsRegion: 'us-east-1',
  };
}
const wake = (i: number, sessionId: string, receiveCount = 1) => record(i, JSON.stringify({ sessionId }), sessionId, receiveCount);
const wakeRecord = wake;

function lambdaContext(remainingMs = 600_000): Context {
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: 'corral-harness-step',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:corral-harness-step',
    memoryLimitInMB: '1024',
    awsRequestId: 'req-1',
    logGroupName: '/aws/lambda/corral-harness-step',
    logStreamName: 'stream',
    getRemainingTimeInMillis: () => remainingMs,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

/** Every JSON line written to stdout and stderr (Powertools writes log lines and EMF there). */
function captureOutput() {
  const lines: Array<Record<string, unknown>> = [];
  const sink = ((chunk: unknown) => {
    for (const line of String(chunk).split('\n')) {
      if (!line.trim()) continue;
      try {
        lines.push(JSON.parse(line));
      } catch {
        // not a structured line
      }
    }
    return true;
  }) as typeof process.stdout.write;
  const spies = [vi.spyOn(process.stdout, 'write').mockImplementation(sink), vi.spyOn(process.stderr, 'write').mockImplementation(sink)];
  return {
    lines,
    logs: () => lines.filter((l) => !('_aws' in l)),
    metrics: () => lines.filter((l) => '_aws' in l),
    restore: () => spies.forEach((s) => s.mockRestore()),
  };
}

describe('harness step handler (SQS FIFO batch -> harness.wake), against dynalite', () => {
  let dynamo: EmbeddedDynamo;
  let fake: FakeMessagesApi;
  let services: CorralServices;
  let handler: ReturnType<typeof createHarnessStepHandler>;
  let logger: Logger;
  let metrics: HarnessMetrics;
  let dataDir: string;
  let agentId: string;
  let environmentId: string;
  let out: ReturnType<typeof captureOutput>;
  const sqs = new SQSClient({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });

  beforeAll(async () => {
    dynamo = await startDynalite();
    const tables = { events: 'events', state: 'state' };
    await ensureTables(dynamo.client, tables);
    fake = await startFakeMessagesApi();
    dataDir = mkdtempSync(join(tmpdir(), 'corral-harness-step-'));
    logger = new Logger({ serviceName: 'corral-harness' });
    metrics = new HarnessMetrics(new Metrics({ namespace: 'Corral', serviceName: 'corral-harness' }));
    ({ services } = await createAwsServices({
      env: { CORRAL_EVENTS_TABLE: tables.events, CORRAL_STATE_TABLE: tables.state, CORRAL_WAKE_QUEUE_URL: QUEUE_URL, ANTHROPIC_BASE_URL: fake.url },
      clients: { dynamodb: dynamo.client, sqs },
      sandboxProvider: new ProcessSandboxProvider({ dataDir, isolation: 'none' }),
      model: (config) => createAwsModel(config),
      harness: { logger: coreLogger(logger), observer: metrics.observer, retryDelayMs: () => 1 },
      onAppend: (_id, stored) => logger.appendKeys({ position: stored.position }),
    }));
    handler = createHarnessStepHandler({ runtime: async () => ({ services, sqs, queueUrl: QUEUE_URL }), logger, metrics });
    const agent = await services.agents.create(TENANT, AgentCreate.parse({ name: 'reviewer', model: 'claude-sonnet-4-6' }));
    const environment = await services.environments.create(TENANT, EnvironmentCreate.parse({ name: 'env', config: { type: 'cloud' } }));
    agentId = agent.id;
    environmentId = environment.id;
  });

  afterAll(async () => {
    await fake?.close();
    await dynamo?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  beforeEach(() => {
    sqsMock.reset();
    sqsMock.on(SendMessageCommand).resolves({ MessageId: 'sent' });
    sqsMock.on(ChangeMessageVisibilityBatchCommand).resolves({ Successful: [], Failed: [] });
    out = captureOutput();
  });
  afterEach(() => {
    out.restore();
    vi.restoreAllMocks();
  });

  async function sessionWithMessage(text = 'hello') {
    const session = await services.sessions.create(TENANT, { agent: agentId, environment_id: environmentId });
    await services.sessions.send(TENANT, session.id, [{ type: 'user.message', content: [{ type: 'text', text }] }]);
    sqsMock.resetHistory();
    return session.id;
  }
  const visibilityCalls = () =>
    sqsMock.commandCalls(ChangeMessageVisibilityBatchCommand).map((c) => (c.args[0].input as ChangeMessageVisibilityBatchCommandInput).Entries ?? []);
  const allChanges = () => visibilityCalls().flat();
  /** The heartbeat sets the default 120 s; hand-backs use the lease's rest (<= 60 s) or a backoff of 2^n s. */
  const isHeartbeat = (e: { VisibilityTimeout?: number }) => e.VisibilityTimeout === DEFAULT_HEARTBEAT.visibilitySeconds;
  const visibilityChanges = () => allChanges().filter((e) => !isHeartbeat(e));
  /** The visibility each message was left with: what SQS goes by once the invocation returns. */
  const finalVisibility = () => Object.fromEntries(allChanges().map((e) => [e.ReceiptHandle, e.VisibilityTimeout]));

  it('runs the wake to the end, deletes the message, and logs and measures it', async () => {
    const sessionId = await sessionWithMessage('say something');
    const res = await handler({ Records: [wake(1, sessionId)] }, lambdaContext());
    expect(res.batchItemFailures).toEqual([]);
    const types = (await services.events.getEvents(sessionId)).map((e) => e.event.type);
    expect(types).toContain('agent.message');
    expect(types.at(-1)).toBe('session.status_idle');
    expect(visibilityChanges()).toEqual([]);
    // one heartbeat, at the start (the next would be a minute later): back within 2 minutes if killed
    expect(allChanges()).toEqual([expect.objectContaining({ ReceiptHandle: 'receipt-1', VisibilityTimeout: 120 })]);

    // Structured logs carry the session id and the event position.
    const finished = out.logs().find((l) => l.message === 'wake finished');
    expect(finished).toMatchObject({ level: 'INFO', service: 'corral-harness', sessionId, status: 'done' });
    expect(finished?.position).toBe(types.length);
    // EMF: the observer's timings, under the service dimension.
    const emf = out.metrics();
    const names = new Set(emf.flatMap((m) => ((m._aws as { CloudWatchMetrics: Array<{ Metrics: Array<{ Name: string }> }> }).CloudWatchMetrics[0].Metrics.map((x) => x.Name))));
    for (const name of ['TimeToFirstToken', 'ModelLatency', 'StepDuration', 'HarnessOverhead']) expect(names).toContain(name);
    expect(emf[0]).toMatchObject({ service: 'corral-harness' });
  });

  it('continues the trace its wake message carries, and sends the spans before the invocation returns', async () => {
    const spans: Array<{ name: string; traceId: string; spanId: string; parentSpanId?: string }> = [];
    const receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString()) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: typeof spans }> }> };
        for (const rs of body.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
        res.writeHead(200).end('{}');
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    // A batch would wait ten minutes: only the handler's flush can have sent what arrives.
    const telemetry = startTelemetry({ url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/v1/traces`, headers: {}, serviceName: 'corral-harness' }, { delayMs: 600_000 });
    try {
      const session = await services.sessions.create(TENANT, { agent: agentId, environment_id: environmentId });
      sqsMock.resetHistory();
      await withSpan('api.request', { kind: 'server' }, () =>
        services.sessions.send(TENANT, session.id, [{ type: 'user.message', content: [{ type: 'text', text: 'trace me' }] }]),
      );
      const body = (sqsMock.commandCalls(SendMessageCommand)[0]!.args[0].input as SendMessageCommandInput).MessageBody!;
      const wakeContext = parseTraceparent((JSON.parse(body) as { traceparent?: string }).traceparent);
      expect(wakeContext).toBeDefined();
      const res = await handler({ Records: [record(1, body, session.id)] }, lambdaContext());
      expect(res.batchItemFailures).toEqual([]);
      const step = spans.find((s) => s.name === 'harness.step');
      expect(step).toMatchObject({ traceId: wakeContext!.traceId, parentSpanId: wakeContext!.spanId });
      expect(spans.find((s) => s.name === 'wake')).toMatchObject({ spanId: wakeContext!.spanId });
      expect(spans.filter((s) => s.name === 'model_request').every((s) => s.parentSpanId === step!.spanId)).toBe(true);
      expect(spans.some((s) => s.name === 'model_request')).toBe(true);
    } finally {
      await telemetry!.stop();
      await new Promise<void>((r) => receiver.close(() => r()));
    }
  });

  it('reports a busy session as a batch item failure and brings it back when the lease ends', async () => {
    const sessionId = await sessionWithMessage();
    const lease = await services.leases.acquire(sessionId, 'another-harness');
    expect(lease).not.toBeNull();
    const res = await handler({ Records: [wake(1, sessionId)] }, lambdaContext());
    expect(res.batchItemFailures).toEqual([{ itemIdentifier: 'msg-1' }]);
    const [change] = visibilityChanges();
    expect(change.ReceiptHandle).toBe('receipt-1');
    expect(finalVisibility()).toEqual({ 'receipt-1': change.VisibilityTimeout });
    // the lease's remaining time (60 s TTL), not the queue's long visibility timeout
    expect(change.VisibilityTimeout).toBeGreaterThanOrEqual(55);
    expect(change.VisibilityTimeout).toBeLessThanOrEqual(60);
    expect((await services.events.getEvents(sessionId)).map((e) => e.event.type)).toEqual(['user.message']);
    await services.leases.release(lease!);
  });

  it('fails every later message of a failed session in the batch, without running it, and runs the other sessions', async () => {
    const busy = await sessionWithMessage();
    const free = await sessionWithMessage('other');
    const lease = await services.leases.acquire(busy, 'another-harness');
    const wakeSpy = vi.spyOn(services.harness, 'wake');
    const res = await handler({ Records: [wake(1, busy), wake(2, free), wake(3, busy)] }, lambdaContext());
    expect(res.batchItemFailures).toEqual([{ itemIdentifier: 'msg-1' }, { itemIdentifier: 'msg-3' }]);
    expect(wakeSpy.mock.calls.map(([id]) => id)).toEqual([busy, free]);
    expect((await services.events.getEvents(free)).at(-1)?.event.type).toBe('session.status_idle');
    // both handed back with the busy delay, so the group is not blocked for the whole visibility timeout
    const changes = visibilityChanges();
    expect(changes.map((c) => c.ReceiptHandle).sort()).toEqual(['receipt-1', 'receipt-3']);
    expect(new Set(changes.map((c) => c.VisibilityTimeout)).size).toBe(1);
    await services.leases.release(lease!);
  });

  it('drops malformed messages (logged and counted, not retried)', async () => {
    const wakeSpy = vi.spyOn(services.harness, 'wake');
    const res = await handler(
      { Records: [record(1, 'not json', 'g1'), record(2, JSON.stringify({ session: 'x' }), 'g2'), record(3, JSON.stringify({ sessionId: '' }), 'g3')] },
      lambdaContext(),
    );
    expect(res.batchItemFailures).toEqual([]);
    expect(wakeSpy).not.toHaveBeenCalled();
    expect(visibilityChanges()).toEqual([]);
    expect(out.logs().filter((l) => l.message === 'malformed wake message dropped').map((l) => l.messageId)).toEqual(['msg-1', 'msg-2', 'msg-3']);
    expect(out.metrics().filter((m) => 'Errors' in m)).toHaveLength(3);
  });

  it('retries a wake that throws, backing off by its receive count', async () => {
    const sessionId = await sessionWithMessage();
    vi.spyOn(services.harness, 'wake').mockRejectedValueOnce(new Error('DynamoDB throttled'));
    const res = await handler({ Records: [wake(1, sessionId, 4)] }, lambdaContext());
    expect(res.batchItemFailures).toEqual([{ itemIdentifier: 'msg-1' }]);
    expect(visibilityChanges()).toEqual([expect.objectContaining({ ReceiptHandle: 'receipt-1', VisibilityTimeout: 8 })]);
    // the heartbeat kept it invisible while the wake ran, and stopped before the hand-back
    expect(allChanges().filter(isHeartbeat).map((e) => e.ReceiptHandle)).toEqual(['receipt-1']);
    expect(finalVisibility()).toEqual({ 'receipt-1': 8 });
    expect(out.logs().find((l) => l.message === 'wake failed; the message will be retried')).toMatchObject({ sessionId, level: 'ERROR' });
  });

  it('keeps every record of the batch invisible with a heartbeat while the wakes run, and stops with the invocation', async () => {
    // Prepare: a short heartbeat; the first wake goes on until it has seen three beats
    const first = await sessionWithMessage('one');
    const second = await sessionWithMessage('two');
    const beating = createHarnessStepHandler({
      runtime: async () => ({ services, sqs, queueUrl: QUEUE_URL }),
      logger,
      metrics,
      heartbeat: { visibilitySeconds: 120, everyMs: 20 },
    });
    const wake = services.harness.wake.bind(services.harness);
    vi.spyOn(services.harness, 'wake').mockImplementation(async (id, opts) => {
      if (id === first) {
        for (let i = 0; i < 400 && visibilityCalls().length < 3; i++) await new Promise((r) => setTimeout(r, 10));
      }
      return wake(id, opts);
    });

    // Act
    const res = await beating({ Records: [wakeRecord(1, first), wakeRecord(2, second)] }, lambdaContext());

    // Assess: both wakes ran; every beat covered every record of the batch, none handed back
    expect(res.batchItemFailures).toEqual([]);
    expect((await services.events.getEvents(second)).at(-1)?.event.type).toBe('session.status_idle');
    const calls = visibilityCalls();
    expect(calls.length).toBeGreaterThanOrEqual(3);
    for (const entries of calls) {
      expect(entries.map((e) => [e.ReceiptHandle, e.VisibilityTimeout])).toEqual([
        ['receipt-1', 120],
        ['receipt-2', 120],
      ]);
    }
    // no beat after the invocation returned
    const after = calls.length;
    await new Promise((r) => setTimeout(r, 100));
    expect(visibilityCalls().length).toBe(after);
  });

  it('still hands back a failed record of a heartbeat batch with its backoff, after the last beat', async () => {
    const sessionId = await sessionWithMessage();
    const beating = createHarnessStepHandler({
      runtime: async () => ({ services, sqs, queueUrl: QUEUE_URL }),
      logger,
      metrics,
      heartbeat: { visibilitySeconds: 120, everyMs: 20 },
    });
    vi.spyOn(services.harness, 'wake').mockImplementationOnce(async () => {
      for (let i = 0; i < 400 && visibilityCalls().length < 2; i++) await new Promise((r) => setTimeout(r, 10));
      throw new Error('DynamoDB throttled');
    });
    const res = await beating({ Records: [wakeRecord(1, sessionId, 3)] }, lambdaContext());
    expect(res.batchItemFailures).toEqual([{ itemIdentifier: 'msg-1' }]);
    expect(allChanges().filter(isHeartbeat).length).toBeGreaterThanOrEqual(2);
    expect(allChanges().at(-1)).toEqual(expect.objectContaining({ ReceiptHandle: 'receipt-1', VisibilityTimeout: 4 }));
  });

  it('deletes the wake of a session that no longer exists', async () => {
    const res = await handler({ Records: [wake(1, 'sesn_does_not_exist')] }, lambdaContext());
    expect(res.batchItemFailures).toEqual([]);
    expect(out.logs().find((l) => l.message === 'wake finished')).toMatchObject({ status: 'gone' });
  });

  it('yields before the function times out and queues the continuation in the session group', async () => {
    const sessionId = await sessionWithMessage();
    // 1 ms left: the deadline (remaining minus the safety margin) has passed before the first action.
    const res = await handler({ Records: [wake(1, sessionId)] }, lambdaContext(1));
    expect(res.batchItemFailures).toEqual([]);
    expect(out.logs().find((l) => l.message === 'wake finished')).toMatchObject({ status: 'yielded' });
    const sent = sqsMock.commandCalls(SendMessageCommand).map((c) => c.args[0].input as SendMessageCommandInput);
    expect(sent.length).toBeGreaterThanOrEqual(1);
    expect(sent[0]).toMatchObject({ QueueUrl: QUEUE_URL, MessageGroupId: sessionId, MessageBody: JSON.stringify({ sessionId }) });
  });
});
