import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ECSClient } from '@aws-sdk/client-ecs';
import { SendMessageCommand, SQSClient, type SendMessageCommandInput } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createAwsModel } from '../../lambdas/adapters/aws/model.js';
import { SsmParameters } from '../../lambdas/adapters/aws/ssm-parameter.js';
import { AwsGateway } from '../../infra/rehearsal/aws-gateway.js';
import { SsmEmulator } from '../../infra/rehearsal/emulators.js';
import { coreLogger, createAwsServices, NO_MODEL, readAwsConfig } from '../../lambdas/adapters/aws/services.js';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite, type EmbeddedDynamo } from '../../lambdas/adapters/local/dynalite.js';
import { ProcessSandboxProvider } from '../../lambdas/adapters/local/process-sandbox.js';
import { AgentCreate, EnvironmentCreate } from '../../lambdas/core/api/schemas.js';
import { startFakeMessagesApi, type FakeMessagesApi } from '../fixtures/fake-messages-api.js';

const QUEUE_URL = 'https://sqs.us-east-1.amazonaws.com/123456789012/wake.fifo';
const sqsMock = mockClient(SQSClient);
/** SSM: the deploy rehearsal's Parameter Store on loopback, behind its gateway (signatures checked). */
const ssmParameters = new SsmEmulator('arn:aws:ssm:us-east-1:123456789012:parameter');
const ssmGateway = new AwsGateway({
  callers: new Map([['AKIDSSMTEST', { accessKeyId: 'AKIDSSMTEST', name: 'test', roleLogicalId: 'Role', roleArn: 'arn:aws:iam::123456789012:role/Role' }]]),
  backends: { ssm: ssmParameters },
  authorize: () => [{ allowed: true }],
  secretOf: () => 'ssm-secret',
});
const ssmCalls = () => ssmGateway.calls.get('test ssm:GetParameter') ?? 0;
const base = { CORRAL_EVENTS_TABLE: 'events', CORRAL_STATE_TABLE: 'state', CORRAL_WAKE_QUEUE_URL: QUEUE_URL };
const sandboxEnv = {
  CORRAL_SANDBOX_CLUSTER: 'arn:aws:ecs:us-east-1:123456789012:cluster/corral',
  CORRAL_SANDBOX_TASK_DEFINITION: 'arn:aws:ecs:us-east-1:123456789012:task-definition/corral-sandbox:3',
  CORRAL_SANDBOX_SUBNETS: 'subnet-a, subnet-b',
  CORRAL_SANDBOX_SECURITY_GROUPS: 'sg-1',
  CORRAL_SANDBOX_CONTAINER: 'agent',
};

describe('readAwsConfig: the Lambda environment the stack sets', () => {
  it('reads tables, queue, sandbox and model settings', () => {
    const config = readAwsConfig({ ...base, ...sandboxEnv, ANTHROPIC_BASE_URL: 'https://llm.example.com', CORRAL_MODEL_API_KEY_PARAMETER: '/corral/key' });
    expect(config).toEqual({
      eventsTable: 'events',
      stateTable: 'state',
      wakeQueueUrl: QUEUE_URL,
      sandbox: {
        cluster: sandboxEnv.CORRAL_SANDBOX_CLUSTER,
        taskDefinition: sandboxEnv.CORRAL_SANDBOX_TASK_DEFINITION,
        subnets: ['subnet-a', 'subnet-b'],
        securityGroups: ['sg-1'],
        containerName: 'agent',
        port: 8080,
        assignPublicIp: false,
        // Task state by polling DescribeTasks, on-demand Fargate, unless the stack says otherwise.
        taskEvents: false,
        spot: false,
      },
      model: { provider: 'anthropic', baseUrl: 'https://llm.example.com', apiKeyParameter: '/corral/key' },
      // No repository origins besides public https ones unless the stack allows some.
      repositoryUrlAllow: [],
      // The built-in per-tenant limits, counted on 10 shards, unless the stack sets others.
      rateLimits: { create: 300, write: 1200, read: 6000 },
      rateLimitShards: 10,
    });
    expect(readAwsConfig({ ...base, ...sandboxEnv, CORRAL_SANDBOX_PORT: '9000', CORRAL_SANDBOX_ASSIGN_PUBLIC_IP: 'true', CORRAL_SANDBOX_TASK_EVENTS: 'true', CORRAL_SANDBOX_SPOT: 'true' }).sandbox).toMatchObject({
      port: 9000,
      assignPublicIp: true,
      taskEvents: true,
      spot: true,
    });
  });

  it('names every missing or invalid variable', () => {
    expect(() => readAwsConfig({})).toThrow(/CORRAL_EVENTS_TABLE.*CORRAL_STATE_TABLE.*CORRAL_WAKE_QUEUE_URL/);
    expect(() => readAwsConfig({ ...base, CORRAL_SANDBOX_CLUSTER: 'c' })).toThrow(/CORRAL_SANDBOX_TASK_DEFINITION/);
    expect(() => readAwsConfig({ ...base, ...sandboxEnv, CORRAL_SANDBOX_PORT: 'eighty' })).toThrow(/CORRAL_SANDBOX_PORT/);
    expect(() => readAwsConfig({ ...base, ANTHROPIC_BASE_URL: 'not a url' })).toThrow(/ANTHROPIC_BASE_URL/);
    expect(() => readAwsConfig({ ...base, CORRAL_BLOB_BUCKET: 'Not_A_Bucket' })).toThrow(/CORRAL_BLOB_BUCKET: expected an S3 bucket name/);
  });
});

describe('createAwsServices: the core wired to DynamoDB, SQS, Fargate and the model', () => {
  let dynamo: EmbeddedDynamo;
  let fake: FakeMessagesApi;
  let dataDir: string;
  const sqs = new SQSClient({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
  let ssm: SsmParameters;

  beforeAll(async () => {
    dynamo = await startDynalite();
    await ensureTables(dynamo.client, { events: 'events', state: 'state' });
    fake = await startFakeMessagesApi();
    dataDir = mkdtempSync(join(tmpdir(), 'corral-aws-services-'));
    ssm = new SsmParameters({ region: 'us-east-1', endpoint: await ssmGateway.start(), maxAttempts: 1, credentials: { accessKeyId: 'AKIDSSMTEST', secretAccessKey: 'ssm-secret' } });
  });
  afterAll(async () => {
    await fake?.close();
    await dynamo?.close();
    ssm?.destroy();
    await ssmGateway.close();
    rmSync(dataDir, { recursive: true, force: true });
  });
  beforeEach(() => {
    sqsMock.reset();
    sqsMock.on(SendMessageCommand).resolves({ MessageId: 'm' });
  });

  it('builds the Fargate sandbox provider from the environment', async () => {
    const ecs = new ECSClient({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
    const { services } = await createAwsServices({ env: { ...base, ...sandboxEnv }, clients: { dynamodb: dynamo.client, sqs, ecs } });
    const provider = (services.sandboxes as unknown as { provider: object }).provider;
    expect(provider.constructor.name).toBe('EcsSandboxProvider');
  });

  it('keeps blobs in the bucket CORRAL_BLOB_BUCKET names, and has no blob store without it', async () => {
    const ecs = new ECSClient({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
    const withBucket = await createAwsServices({ env: { ...base, ...sandboxEnv, CORRAL_BLOB_BUCKET: 'corral-blobs-1' }, clients: { dynamodb: dynamo.client, sqs, ecs } });
    expect(withBucket.config.blobBucket).toBe('corral-blobs-1');
    expect(withBucket.services.blobs?.constructor.name).toBe('S3BlobStore');
    expect((withBucket.services.blobs as unknown as { bucket: string }).bucket).toBe('corral-blobs-1');
    const without = await createAwsServices({ env: { ...base, ...sandboxEnv }, clients: { dynamodb: dynamo.client, sqs, ecs } });
    expect(without.services.blobs).toBeUndefined();
  });

  it('refuses to start without a sandbox configuration or provider', async () => {
    await expect(createAwsServices({ env: base, clients: { dynamodb: dynamo.client, sqs } })).rejects.toThrow(/CORRAL_SANDBOX_CLUSTER/);
  });

  it('runs a session: state in DynamoDB, wakes to the FIFO queue, the model key from SSM', async () => {
    ssmParameters.put('/corral/key', 'sk-model-from-ssm');
    const before = ssmCalls();
    const env = { ...base, ANTHROPIC_BASE_URL: fake.url, CORRAL_MODEL_API_KEY_PARAMETER: '/corral/key' };
    const { services } = await createAwsServices({
      env,
      clients: { dynamodb: dynamo.client, sqs },
      sandboxProvider: new ProcessSandboxProvider({ dataDir, isolation: 'none' }),
      model: (config) => createAwsModel(config, { ssm }),
    });
    const agent = await services.agents.create('t', AgentCreate.parse({ name: 'a', model: 'claude-sonnet-4-6' }));
    const environment = await services.environments.create('t', EnvironmentCreate.parse({ name: 'e', config: { type: 'cloud' } }));
    const session = await services.sessions.create('t', { agent: agent.id, environment_id: environment.id });
    await services.sessions.send('t', session.id, [{ type: 'user.message', content: [{ type: 'text', text: 'hi' }] }]);
    const sent = sqsMock.commandCalls(SendMessageCommand).map((c) => c.args[0].input as SendMessageCommandInput);
    expect(sent.at(-1)).toMatchObject({ QueueUrl: QUEUE_URL, MessageGroupId: session.id, MessageBody: JSON.stringify({ sessionId: session.id }) });

    expect(await services.harness.wake(session.id)).toEqual({ status: 'done' });
    const headers = fake.requests.at(-1)!.headers;
    expect(headers['x-api-key'] ?? headers.authorization?.replace(/^Bearer /, '')).toBe('sk-model-from-ssm');
    expect(ssmCalls()).toBe(before + 1);
    expect((await services.events.getEvents(session.id)).at(-1)?.event.type).toBe('session.status_idle');
  });

  it('leaves the model key alone unless asked (the API never reads it)', async () => {
    const before = ssmCalls();
    await createAwsServices({
      env: { ...base, CORRAL_MODEL_API_KEY_PARAMETER: '/corral/key' },
      clients: { dynamodb: dynamo.client, sqs },
      sandboxProvider: new ProcessSandboxProvider({ dataDir, isolation: 'none' }),
    });
    expect(ssmCalls()).toBe(before);
  });

  it('builds services without a model for the API: a model call is refused, not sent anywhere', async () => {
    const requestsBefore = fake.requests.length;
    await expect(NO_MODEL.complete({ model: 'claude-sonnet-4-6', messages: [], tools: [], maxTokens: 10 })).rejects.toThrow(/without a model/);
    expect(fake.requests.length).toBe(requestsBefore);
  });
});

describe('coreLogger', () => {
  it('passes the core logger fields to a Powertools-style logger', () => {
    const calls: unknown[][] = [];
    const rec = (level: string) => (message: string, ...extra: unknown[]) => void calls.push([level, message, ...extra]);
    const log = coreLogger({ info: rec('info'), warn: rec('warn'), error: rec('error') });
    log.info('a');
    log.warn('b', { sessionId: 's', position: 3 });
    expect(calls).toEqual([
      ['info', 'a'],
      ['warn', 'b', { sessionId: 's', position: 3 }],
    ]);
  });
});
