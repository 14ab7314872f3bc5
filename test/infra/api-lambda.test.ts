import { PassThrough } from 'node:stream';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite, type EmbeddedDynamo } from '../../lambdas/adapters/local/dynalite.js';
import { createApiKey } from '../../scripts/create-api-key.js';

/**
 * The API's Lambda entries (lambdas/api/lambda.ts) as API Gateway invokes them: a REST proxy
 * event in, a proxy result (buffered) or a response stream (streaming) out, against dynalite.
 */
const sqsMock = mockClient(SQSClient);

interface StreamMeta {
  statusCode: number;
  headers: Record<string, string>;
}
const streamMeta: StreamMeta[] = [];
// What the Lambda Node.js runtime provides to streaming handlers.
const awslambda = {
  streamifyResponse: (fn: unknown) => fn,
  HttpResponseStream: {
    from: (stream: PassThrough, meta: StreamMeta) => {
      streamMeta.push(meta);
      return stream;
    },
  },
};

function restEvent(method: string, path: string, headers: Record<string, string> = {}, body?: unknown): APIGatewayProxyEvent {
  return {
    resource: '/{proxy+}',
    path,
    httpMethod: method,
    headers: { host: 'abc.execute-api.us-east-1.amazonaws.com', ...headers },
    multiValueHeaders: {},
    queryStringParameters: null,
    multiValueQueryStringParameters: null,
    pathParameters: null,
    stageVariables: null,
    requestContext: {
      accountId: '123456789012',
      apiId: 'abc',
      domainName: 'abc.execute-api.us-east-1.amazonaws.com',
      httpMethod: method,
      path: `/prod${path}`,
      stage: 'prod',
      requestId: 'r',
      requestTimeEpoch: Date.now(),
      resourceId: 'x',
      resourcePath: '/{proxy+}',
      protocol: 'HTTP/1.1',
      identity: {} as APIGatewayProxyEvent['requestContext']['identity'],
      authorizer: null,
    },
    body: body === undefined ? null : JSON.stringify(body),
    isBase64Encoded: false,
  };
}

const context = (remainingMs: number) =>
  ({ awsRequestId: 'req', functionName: 'api', getRemainingTimeInMillis: () => remainingMs }) as unknown as Context;

describe('endStreamAfter', () => {
  it('ends a body that would never end, and cancels its source', async () => {
    const { endStreamAfter } = await import('../../lambdas/api/lambda.js');
    let cancelled = false;
    const source = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode('event: ping\n\n'));
      },
      cancel() {
        cancelled = true;
      },
    });
    const started = Date.now();
    const text = await endStreamAfter(new Response(source, { headers: { 'content-type': 'text/event-stream' } }), 100).text();
    expect(text).toBe('event: ping\n\n');
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
    expect(cancelled).toBe(true);
  });
});

describe('API Lambda handlers against dynalite', () => {
  let dynamo: EmbeddedDynamo;
  let apiKey: string;
  let lambda: typeof import('../../lambdas/api/lambda.js');

  beforeAll(async () => {
    dynamo = await startDynalite();
    await ensureTables(dynamo.client, { events: 'events', state: 'state' });
    apiKey = await createApiKey({ table: 'state', tenant: 'acme', client: dynamo.client });
    sqsMock.on(SendMessageCommand).resolves({ MessageId: 'm' });
    const env: Record<string, string> = {
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'local',
      AWS_SECRET_ACCESS_KEY: 'local',
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
      CORRAL_EVENTS_TABLE: 'events',
      CORRAL_STATE_TABLE: 'state',
      CORRAL_WAKE_QUEUE_URL: 'https://sqs.us-east-1.amazonaws.com/123456789012/wake.fifo',
      CORRAL_SANDBOX_CLUSTER: 'arn:aws:ecs:us-east-1:123456789012:cluster/corral',
      CORRAL_SANDBOX_TASK_DEFINITION: 'arn:aws:ecs:us-east-1:123456789012:task-definition/sandbox:1',
      CORRAL_SANDBOX_SUBNETS: 'subnet-a',
      CORRAL_SANDBOX_SECURITY_GROUPS: 'sg-a',
      CORRAL_SANDBOX_CONTAINER: 'agent',
      POWERTOOLS_TRACE_ENABLED: 'false',
      POWERTOOLS_LOG_LEVEL: 'ERROR',
    };
    for (const [k, v] of Object.entries(env)) vi.stubEnv(k, v);
    vi.stubGlobal('awslambda', awslambda);
    vi.resetModules(); // the streaming handler is created at import, when `awslambda` exists
    lambda = await import('../../lambdas/api/lambda.js');
  });
  afterAll(async () => {
    vi.unstubAllEnvs();
    vi.unstubAllGlobals();
    await dynamo?.close();
  });

  const call = async (event: APIGatewayProxyEvent) => (await lambda.handler(event as never, context(29_000))) as APIGatewayProxyResult;

  it('authenticates with the key the script created, and rejects requests without one', async () => {
    const ok = await call(restEvent('GET', '/v1/agents', { 'x-api-key': apiKey }));
    expect(ok.statusCode).toBe(200);
    expect(JSON.parse(ok.body)).toMatchObject({ data: [] });
    const denied = await call(restEvent('GET', '/v1/agents'));
    expect(denied.statusCode).toBe(401);
    expect(JSON.parse(denied.body)).toMatchObject({ type: 'error', error: { type: 'authentication_error' } });
    const health = await call(restEvent('GET', '/health'));
    expect(health.statusCode).toBe(200);
  });

  it('streams a session\'s events as SSE through the streaming handler and ends before the function times out', async () => {
    const headers = { 'x-api-key': apiKey, 'content-type': 'application/json' };
    const agent = JSON.parse((await call(restEvent('POST', '/v1/agents', headers, { name: 'a', model: 'claude-sonnet-4-6' }))).body);
    const env = JSON.parse((await call(restEvent('POST', '/v1/environments', headers, { name: 'e', config: { type: 'cloud' } }))).body);
    const session = JSON.parse((await call(restEvent('POST', '/v1/sessions', headers, { agent: agent.id, environment_id: env.id }))).body);
    const sent = await call(
      restEvent('POST', `/v1/sessions/${session.id}/events`, headers, {
        events: [{ type: 'user.message', content: [{ type: 'text', text: 'hello' }] }],
      }),
    );
    expect(sent.statusCode).toBe(200);

    expect(typeof lambda.streamHandler).toBe('function');
    const out = new PassThrough();
    const chunks: Buffer[] = [];
    out.on('data', (c: Buffer) => chunks.push(c));
    const started = Date.now();
    // 10.4 s left: the stream ends 10 s before the timeout, so after about 400 ms.
    await (lambda.streamHandler as unknown as (e: unknown, s: PassThrough, c: Context) => Promise<void>)(
      restEvent('GET', `/v1/sessions/${session.id}/events/stream`, { 'x-api-key': apiKey, 'last-event-id': '0' }),
      out,
      context(10_400),
    );
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(streamMeta.at(-1)).toMatchObject({ statusCode: 200, headers: { 'content-type': 'text/event-stream' } });
    const body = Buffer.concat(chunks).toString('utf8');
    expect(body).toContain('event: user.message');
    expect(body).toContain('id: 1');
  });
});
