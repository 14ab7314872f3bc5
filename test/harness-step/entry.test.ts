import { ChangeMessageVisibilityBatchCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { Context, SQSEvent } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createAwsServices } from '../../lambdas/adapters/aws/services.js';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite, type EmbeddedDynamo } from '../../lambdas/adapters/local/dynalite.js';
import { AgentCreate, EnvironmentCreate } from '../../lambdas/core/api/schemas.js';
import { startFakeMessagesApi, type FakeMessagesApi } from '../fixtures/fake-messages-api.js';
import { AwsGateway } from '../../infra/rehearsal/aws-gateway.js';
import { SsmEmulator } from '../../infra/rehearsal/emulators.js';

/** The deployed entry (lambdas/harness-step/index.ts): everything from the environment the stack sets. */
const sqsMock = mockClient(SQSClient);
/** SSM: the deploy rehearsal's Parameter Store on loopback (AWS_ENDPOINT_URL_SSM), signatures checked. */
const ssm = new SsmEmulator('arn:aws:ssm:us-east-1:123456789012:parameter');
const ssmGateway = new AwsGateway({
  callers: new Map([['local', { accessKeyId: 'local', name: 'harness', roleLogicalId: 'Role', roleArn: 'arn:aws:iam::123456789012:role/Role' }]]),
  backends: { ssm },
  authorize: () => [{ allowed: true }],
  secretOf: () => 'local',
});

describe('harness step Lambda entry', () => {
  let dynamo: EmbeddedDynamo;
  let fake: FakeMessagesApi;
  const emitted: string[] = [];

  beforeAll(async () => {
    dynamo = await startDynalite();
    await ensureTables(dynamo.client, { events: 'events', state: 'state' });
    fake = await startFakeMessagesApi();
    sqsMock.on(SendMessageCommand).resolves({ MessageId: 'm' });
    // The heartbeat (the role has sqs:ChangeMessageVisibility through the event source).
    sqsMock.on(ChangeMessageVisibilityBatchCommand).resolves({ Successful: [], Failed: [] });
    ssm.put('/corral/anthropic-api-key', 'sk-from-ssm');
    const env: Record<string, string> = {
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'local',
      AWS_SECRET_ACCESS_KEY: 'local',
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
      AWS_ENDPOINT_URL_SSM: await ssmGateway.start(),
      CORRAL_EVENTS_TABLE: 'events',
      CORRAL_STATE_TABLE: 'state',
      CORRAL_WAKE_QUEUE_URL: 'https://sqs.us-east-1.amazonaws.com/123456789012/wake.fifo',
      CORRAL_SANDBOX_CLUSTER: 'arn:aws:ecs:us-east-1:123456789012:cluster/corral',
      CORRAL_SANDBOX_TASK_DEFINITION: 'arn:aws:ecs:us-east-1:123456789012:task-definition/sandbox:1',
      CORRAL_SANDBOX_SUBNETS: 'subnet-a',
      CORRAL_SANDBOX_SECURITY_GROUPS: 'sg-a',
      CORRAL_SANDBOX_CONTAINER: 'agent',
      CORRAL_MODEL_API_KEY_PARAMETER: '/corral/anthropic-api-key',
      ANTHROPIC_BASE_URL: fake.url,
      CORRAL_METRICS_SESSION_DIMENSIONS: 'agent',
      POWERTOOLS_SERVICE_NAME: 'corral-harness',
      POWERTOOLS_METRICS_NAMESPACE: 'Corral',
      POWERTOOLS_TRACE_ENABLED: 'false',
    };
    for (const [k, v] of Object.entries(env)) vi.stubEnv(k, v);
    vi.spyOn(process.stdout, 'write').mockImplementation(((chunk: unknown) => {
      emitted.push(String(chunk));
      return true;
    }) as typeof process.stdout.write);
  });
  afterAll(async () => {
    vi.restoreAllMocks();
    vi.unstubAllEnvs();
    await fake?.close();
    await dynamo?.close();
    await ssmGateway.close();
  });

  it('wakes a session with the model key from SSM and the agent as a metric dimension', async () => {
    const { services } = await createAwsServices({ clients: { dynamodb: dynamo.client } });
    const agent = await services.agents.create('t', AgentCreate.parse({ name: 'triage', model: 'claude-sonnet-4-6' }));
    const environment = await services.environments.create('t', EnvironmentCreate.parse({ name: 'e', config: { type: 'cloud' } }));
    const session = await services.sessions.create('t', { agent: agent.id, environment_id: environment.id });
    await services.sessions.send('t', session.id, [{ type: 'user.message', content: [{ type: 'text', text: 'hi' }] }]);

    const { handler } = await import('../../lambdas/harness-step/index.js');
    const event = {
      Records: [
        {
          messageId: 'm1',
          receiptHandle: 'r1',
          body: JSON.stringify({ sessionId: session.id }),
          attributes: { ApproximateReceiveCount: '1', MessageGroupId: session.id },
          messageAttributes: {},
          md5OfBody: '',
          eventSource: 'aws:sqs',
          eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:wake.fifo',
          awsRegion: 'us-east-1',
        },
      ],
    } as unknown as SQSEvent;
    const res = await handler(event, { awsRequestId: 'req', functionName: 'harness', getRemainingTimeInMillis: () => 900_000 } as unknown as Context);
    expect(res.batchItemFailures).toEqual([]);
    expect((await services.events.getEvents(session.id)).at(-1)?.event.type).toBe('session.status_idle');
    const auth = fake.requests.at(-1)!.headers;
    expect(auth['x-api-key'] ?? auth.authorization?.replace(/^Bearer /, '')).toBe('sk-from-ssm');
    const emf = emitted.flatMap((c) => c.split('\n')).filter((l) => l.includes('"_aws"')).map((l) => JSON.parse(l));
    expect(emf.length).toBeGreaterThan(0);
    expect(emf[0]._aws.CloudWatchMetrics[0].Dimensions).toEqual([['service'], ['service', 'Agent']]);
    expect(emf[0]).toMatchObject({ service: 'corral-harness', Agent: 'triage' });
  });
});
