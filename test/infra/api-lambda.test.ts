import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite, type EmbeddedDynamo } from '../../lambdas/adapters/local/dynalite.js';
import { createApiKey } from '../../scripts/create-api-key.js';
import { AwsGateway } from '../../infra/rehearsal/aws-gateway.js';
import { S3Emulator } from '../../infra/rehearsal/s3.js';
import { startOidcIssuer, type OidcIssuerFixture } from '../fixtures/oidc-issuer.js';

/**
 * The API's Lambda entries (lambdas/api/lambda.ts) as API Gateway invokes them: a REST proxy
 * event in, a proxy result (buffered) or a response stream (streaming) out, against dynalite.
 */
const sqsMock = mockClient(SQSClient);
/** The blob bucket: the deploy rehearsal's S3 on loopback (AWS_ENDPOINT_URL_S3), signatures checked. */
const blobDir = mkdtempSync(join(tmpdir(), 'api-lambda-blobs-'));
const s3 = new AwsGateway({
  callers: new Map([['local', { accessKeyId: 'local', name: 'api', roleLogicalId: 'Role', roleArn: 'arn:aws:iam::123456789012:role/Role' }]]),
  backends: { s3: new S3Emulator({ dir: blobDir, buckets: ['corral-blobs'], mayList: () => true }) },
  authorize: () => [{ allowed: true }],
  secretOf: () => 'local',
});

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
  let idp: OidcIssuerFixture;

  beforeAll(async () => {
    idp = await startOidcIssuer();
    dynamo = await startDynalite();
    await ensureTables(dynamo.client, { events: 'events', state: 'state' });
    apiKey = await createApiKey({ table: 'state', tenant: 'acme', client: dynamo.client });
    sqsMock.on(SendMessageCommand).resolves({ MessageId: 'm' });
    const env: Record<string, string> = {
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'local',
      AWS_SECRET_ACCESS_KEY: 'local',
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
      AWS_ENDPOINT_URL_S3: await s3.start(),
      CORRAL_EVENTS_TABLE: 'events',
      CORRAL_STATE_TABLE: 'state',
      CORRAL_WAKE_QUEUE_URL: 'https://sqs.us-east-1.amazonaws.com/123456789012/wake.fifo',
      CORRAL_SANDBOX_CLUSTER: 'arn:aws:ecs:us-east-1:123456789012:cluster/corral',
      CORRAL_SANDBOX_TASK_DEFINITION: 'arn:aws:ecs:us-east-1:123456789012:task-definition/sandbox:1',
      CORRAL_SANDBOX_SUBNETS: 'subnet-a',
      CORRAL_SANDBOX_SECURITY_GROUPS: 'sg-a',
      CORRAL_SANDBOX_CONTAINER: 'agent',
      CORRAL_BLOB_BUCKET: 'corral-blobs',
      CORRAL_OIDC_ISSUERS: JSON.stringify([{ issuer: idp.url, audiences: ['corral'], tenant: 'acme', roles: { eng: 'developer', staff: 'user' }, client_id: 'cli' }]),
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
    await idp?.close();
    await s3.close();
    rmSync(blobDir, { recursive: true, force: true });
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

  it('accepts OIDC tokens of the issuers in CORRAL_OIDC_ISSUERS, in their tenant, by role', async () => {
    const auth = await call(restEvent('GET', '/corral/auth'));
    expect(JSON.parse(auth.body)).toEqual({ api_key: true, oidc: [{ issuer: idp.url, client_id: 'cli', scopes: ['openid', 'profile', 'offline_access'] }] });
    const bearer = (groups: string[]) => ({ authorization: `Bearer ${idp.sign({ sub: 'ana', aud: 'corral', groups })}`, 'content-type': 'application/json' });
    const refused = await call(restEvent('POST', '/v1/agents', bearer(['staff']), { name: 'a', model: 'claude-sonnet-4-6' }));
    expect(refused.statusCode).toBe(403);
    const made = await call(restEvent('POST', '/v1/agents', bearer(['eng']), { name: 'oidc-made', model: 'claude-sonnet-4-6' }));
    expect(made.statusCode, made.body).toBe(200);
    // in tenant acme: the key of acme sees it
    const seen = await call(restEvent('GET', `/v1/agents/${JSON.parse(made.body).id}`, { 'x-api-key': apiKey }));
    expect(JSON.parse(seen.body)).toMatchObject({ name: 'oidc-made' });
  });

  it('takes an upload base64 (as API Gateway hands a binary media type) and gives a file\'s bytes back base64, whatever its type', async () => {
    // Every byte value, so neither way may pass through UTF-8; `text/plain`, which Hono would send as text.
    const bytes = Buffer.concat([Buffer.from('corral-binary\n'), Buffer.from(Array.from({ length: 256 }, (_, i) => i))]);
    const form = new FormData();
    form.append('file', new File([bytes], 'every-byte.txt', { type: 'text/plain' }));
    const multipart = new Request('http://x/', { method: 'POST', body: form });
    const event = restEvent('POST', '/v1/files', { 'x-api-key': apiKey, 'content-type': multipart.headers.get('content-type')! });
    event.body = Buffer.from(await multipart.arrayBuffer()).toString('base64');
    event.isBase64Encoded = true;
    const uploaded = await call(event);
    expect(uploaded.statusCode, uploaded.body).toBe(200);
    expect(uploaded.isBase64Encoded).toBe(false); // JSON leaves as text
    const file = JSON.parse(uploaded.body);
    expect(file).toMatchObject({ filename: 'every-byte.txt', mime_type: 'text/plain', size_bytes: bytes.length });

    const content = await call(restEvent('GET', `/v1/files/${file.id}/content`, { 'x-api-key': apiKey, accept: 'application/binary' }));
    expect(content.statusCode).toBe(200);
    expect(content.isBase64Encoded).toBe(true);
    expect(Buffer.from(content.body, 'base64').equals(bytes)).toBe(true);
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
