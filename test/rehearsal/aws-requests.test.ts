import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  BatchGetItemCommand,
  BatchWriteItemCommand,
  CreateTableCommand,
  DeleteItemCommand,
  DescribeTableCommand,
  DynamoDBClient,
  GetItemCommand,
  ListTablesCommand,
  PutItemCommand,
  QueryCommand,
  ScanCommand,
  TransactGetItemsCommand,
  TransactWriteItemsCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { DescribeTasksCommand, ECSClient, RunTaskCommand, StopTaskCommand } from '@aws-sdk/client-ecs';
import { InvokeCommand, InvokeWithResponseStreamCommand, LambdaClient } from '@aws-sdk/client-lambda';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import {
  CreateSecretCommand,
  DeleteSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  SecretsManagerClient,
  TagResourceCommand,
} from '@aws-sdk/client-secrets-manager';
import {
  ChangeMessageVisibilityBatchCommand,
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { GetParameterCommand, GetParametersCommand, SSMClient } from '@aws-sdk/client-ssm';
import { DecryptCommand, EncryptCommand, GenerateDataKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { CAPABILITY_ENCRYPTION_CONTEXT } from '../../lambdas/core/sandbox/sealing.js';
import { DescribeStreamCommand, DynamoDBStreamsClient, GetRecordsCommand, GetShardIteratorCommand } from '@aws-sdk/client-dynamodb-streams';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  classifyRequest,
  functionArnOf,
  parseAuthorization,
  queueArnOfUrl,
  secretArnFor,
  UnsupportedRequestError,
  type RequestOptions,
  type SdkRequest,
} from '../../infra/rehearsal/aws-requests.js';
import { accessDeniedMessage, assumedRoleArn, evaluate, evaluateKeyPolicy, resourcePolicies, resourcePolicyFor, role } from '../../infra/rehearsal/iam.js';
import { createContext, dynamoTables, ecsTaskDefinitions, functions, type ResolveContext } from '../../infra/rehearsal/template.js';
import { synthesizedTemplate } from './synth.js';

/**
 * The request shapes are not guessed: each command is really sent by the installed SDK client to a
 * local HTTP server that records it, and the recorded request is what gets classified.
 */
let server: Server;
let endpoint: string;
const captured: SdkRequest[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        body = text;
      }
      captured.push({ method: req.method!, path: req.url!, headers: req.headers as IncomingHttpHeaders, body });
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.0' });
      res.end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const ACCOUNT = '123456789012';
const config = () => ({ endpoint, region: 'us-east-1', maxAttempts: 1, credentials: { accessKeyId: 'AKIDREHEARSALHARNESS', secretAccessKey: 'not-a-secret' } });
type Sendable = { send(command: never): Promise<unknown> };

/** Sends one command for real and returns the request the server saw. */
async function capture(client: Sendable, command: unknown): Promise<SdkRequest> {
  const before = captured.length;
  await client.send(command as never).catch(() => undefined); // the canned `{}` answer need not parse
  expect(captured.length, 'the SDK sent exactly one request').toBe(before + 1);
  return captured[before];
}

const keySchemas: Record<string, { partitionKey: string }> = { state: { partitionKey: 'pk' }, 'state/gsi1': { partitionKey: 'gsi1pk' }, events: { partitionKey: 'sessionId' } };
const options: RequestOptions = {
  accountId: ACCOUNT,
  keySchema: (t, i) => keySchemas[i ? `${t}/${i}` : t],
  taskDefinition: () => ({ taskRoleArn: `arn:aws:iam::${ACCOUNT}:role/TaskRole`, executionRoleArn: `arn:aws:iam::${ACCOUNT}:role/ExecRole` }),
  newTaskId: () => 'f00d',
};
const classify = (r: SdkRequest, o: RequestOptions = options) => classifyRequest(r, o);
const T = (name: string) => `arn:aws:dynamodb:us-east-1:${ACCOUNT}:table/${name}`;

describe('DynamoDB Streams requests', () => {
  const streams = () => new DynamoDBStreamsClient(config());
  const stream = `${T('events')}/stream/2026-11-29T19:00:00.000`;

  it('are checked on the stream ARN: named by DescribeStream and GetShardIterator, carried by the shard iterator of GetRecords', async () => {
    const describe = classify(await capture(streams(), new DescribeStreamCommand({ StreamArn: stream })));
    expect(describe).toMatchObject({ service: 'dynamodb', operation: 'DescribeStream' });
    expect(describe.checks).toEqual([{ action: 'dynamodb:DescribeStream', resource: stream, context: {} }]);
    const iterator = classify(await capture(streams(), new GetShardIteratorCommand({ StreamArn: stream, ShardId: 'shardId-1', ShardIteratorType: 'LATEST' })));
    expect(iterator.checks).toEqual([{ action: 'dynamodb:GetShardIterator', resource: stream, context: {} }]);
    // AWS's (and DynamoDB Local's) iterators: the stream's ARN, then opaque parts, `|`-separated.
    const request = await capture(streams(), new GetRecordsCommand({ ShardIterator: `${stream}|1|AAAAAAAAAAHk0bZmKx` }));
    expect(classify(request).checks).toEqual([{ action: 'dynamodb:GetRecords', resource: stream, context: {} }]);
    const opaque = await capture(streams(), new GetRecordsCommand({ ShardIterator: 'opaque' }));
    expect(() => classify(opaque)).toThrow(/names no stream/);
  });
});

describe('DynamoDB requests', () => {
  const ddb = () => new DynamoDBClient(config());

  it('single-item operations: the table, with the partition key as dynamodb:LeadingKeys', async () => {
    const key = { pk: { S: 'session#s1' }, sk: { S: 'lease' } };
    const get = classify(await capture(ddb(), new GetItemCommand({ TableName: 'state', Key: key, ConsistentRead: true })));
    expect(get).toMatchObject({ service: 'dynamodb', operation: 'GetItem', region: 'us-east-1', accessKeyId: 'AKIDREHEARSALHARNESS' });
    expect(get.checks).toEqual([{ action: 'dynamodb:GetItem', resource: T('state'), context: { 'dynamodb:LeadingKeys': ['session#s1'] } }]);
    const put = classify(await capture(ddb(), new PutItemCommand({ TableName: 'events', Item: { sessionId: { S: 's1' }, position: { N: '3' } }, ReturnValues: 'NONE' })));
    expect(put.checks).toEqual([{ action: 'dynamodb:PutItem', resource: T('events'), context: { 'dynamodb:LeadingKeys': ['s1'], 'dynamodb:ReturnValues': 'NONE' } }]);
    const upd = classify(await capture(ddb(), new UpdateItemCommand({ TableName: 'state', Key: key, UpdateExpression: 'SET a = :a', ExpressionAttributeValues: { ':a': { N: '1' } } })));
    expect(upd.checks[0]).toMatchObject({ action: 'dynamodb:UpdateItem', resource: T('state'), context: { 'dynamodb:LeadingKeys': ['session#s1'] } });
    const del = classify(await capture(ddb(), new DeleteItemCommand({ TableName: T('state'), Key: key })));
    expect(del.checks[0]).toMatchObject({ action: 'dynamodb:DeleteItem', resource: T('state') });
  });

  it('Query and Scan: an index is its own resource; the key condition gives LeadingKeys', async () => {
    const q = classify(
      await capture(
        ddb(),
        new QueryCommand({
          TableName: 'state',
          IndexName: 'gsi1',
          KeyConditionExpression: '#p = :p AND begins_with(#s, :s)',
          ExpressionAttributeNames: { '#p': 'gsi1pk', '#s': 'gsi1sk' },
          ExpressionAttributeValues: { ':p': { S: 'tenant#t1' }, ':s': { S: 'agent#' } },
        }),
      ),
    );
    expect(q.checks).toEqual([{ action: 'dynamodb:Query', resource: `${T('state')}/index/gsi1`, context: { 'dynamodb:LeadingKeys': ['tenant#t1'] } }]);
    const q2 = classify(await capture(ddb(), new QueryCommand({ TableName: 'events', KeyConditionExpression: 'sessionId = :id AND #pos > :from', ExpressionAttributeNames: { '#pos': 'position' }, ExpressionAttributeValues: { ':id': { S: 's9' }, ':from': { N: '0' } } })));
    expect(q2.checks[0].context).toEqual({ 'dynamodb:LeadingKeys': ['s9'] });
    const scan = classify(await capture(ddb(), new ScanCommand({ TableName: 'state', Select: 'COUNT' })));
    expect(scan.checks).toEqual([{ action: 'dynamodb:Scan', resource: T('state'), context: { 'dynamodb:Select': 'COUNT' } }]);
  });

  it('batch operations: one check per table with every partition key', async () => {
    const w = classify(
      await capture(
        ddb(),
        new BatchWriteItemCommand({
          RequestItems: {
            events: [{ PutRequest: { Item: { sessionId: { S: 'a' }, position: { N: '1' } } } }, { PutRequest: { Item: { sessionId: { S: 'b' }, position: { N: '1' } } } }],
            state: [{ DeleteRequest: { Key: { pk: { S: 'x' }, sk: { S: 'y' } } } }],
          },
        }),
      ),
    );
    expect(w.checks).toEqual([
      { action: 'dynamodb:BatchWriteItem', resource: T('events'), context: { 'dynamodb:LeadingKeys': ['a', 'b'] } },
      { action: 'dynamodb:BatchWriteItem', resource: T('state'), context: { 'dynamodb:LeadingKeys': ['x'] } },
    ]);
    const g = classify(await capture(ddb(), new BatchGetItemCommand({ RequestItems: { state: { Keys: [{ pk: { S: 'p1' }, sk: { S: 's' } }, { pk: { S: 'p1' }, sk: { S: 't' } }] } } })));
    expect(g.checks).toEqual([{ action: 'dynamodb:BatchGetItem', resource: T('state'), context: { 'dynamodb:LeadingKeys': ['p1'] } }]);
  });

  it('transactions: each item as its underlying action', async () => {
    const tw = classify(
      await capture(
        ddb(),
        new TransactWriteItemsCommand({
          TransactItems: [
            { Put: { TableName: 'events', Item: { sessionId: { S: 's1' }, position: { N: '4' } } } },
            { Update: { TableName: 'state', Key: { pk: { S: 'p' }, sk: { S: 's' } }, UpdateExpression: 'SET a = :a', ExpressionAttributeValues: { ':a': { N: '1' } } } },
            { ConditionCheck: { TableName: 'state', Key: { pk: { S: 'q' }, sk: { S: 's' } }, ConditionExpression: 'attribute_exists(pk)' } },
            { Delete: { TableName: 'state', Key: { pk: { S: 'r' }, sk: { S: 's' } } } },
          ],
        }),
      ),
    );
    expect(tw.checks.map((c) => [c.action, c.resource, c.context['dynamodb:LeadingKeys']])).toEqual([
      ['dynamodb:PutItem', T('events'), ['s1']],
      ['dynamodb:UpdateItem', T('state'), ['p']],
      ['dynamodb:ConditionCheckItem', T('state'), ['q']],
      ['dynamodb:DeleteItem', T('state'), ['r']],
    ]);
    const tg = classify(await capture(ddb(), new TransactGetItemsCommand({ TransactItems: [{ Get: { TableName: 'state', Key: { pk: { S: 'p' }, sk: { S: 's' } } } }] })));
    expect(tg.checks).toEqual([{ action: 'dynamodb:GetItem', resource: T('state'), context: { 'dynamodb:LeadingKeys': ['p'] } }]);
  });

  it('table operations, and an unsupported one named', async () => {
    expect(classify(await capture(ddb(), new DescribeTableCommand({ TableName: 'state' }))).checks).toEqual([{ action: 'dynamodb:DescribeTable', resource: T('state'), context: {} }]);
    const create = classify(
      await capture(ddb(), new CreateTableCommand({ TableName: 'fresh', BillingMode: 'PAY_PER_REQUEST', KeySchema: [{ AttributeName: 'k', KeyType: 'HASH' }], AttributeDefinitions: [{ AttributeName: 'k', AttributeType: 'S' }] })),
    );
    expect(create.checks).toEqual([{ action: 'dynamodb:CreateTable', resource: T('fresh'), context: {} }]);
    const list = await capture(ddb(), new ListTablesCommand({}));
    expect(() => classify(list)).toThrow(UnsupportedRequestError);
    expect(() => classify(list)).toThrow('dynamodb:ListTables is unsupported in the rehearsal');
  });
});

describe('SQS requests (JSON protocol)', () => {
  const sqs = () => new SQSClient(config());
  const url = () => `${endpoint}/${ACCOUNT}/wake.fifo`;
  const Q = `arn:aws:sqs:us-east-1:${ACCOUNT}:wake.fifo`;

  it('maps every operation (batches to their single action) onto the queue ARN', async () => {
    const cases: Array<[unknown, string, string]> = [
      [new SendMessageCommand({ QueueUrl: url(), MessageBody: 's1', MessageGroupId: 's1', MessageDeduplicationId: 'd' }), 'SendMessage', 'sqs:SendMessage'],
      [new SendMessageBatchCommand({ QueueUrl: url(), Entries: [{ Id: '1', MessageBody: 'x', MessageGroupId: 'g' }] }), 'SendMessageBatch', 'sqs:SendMessage'],
      [new ReceiveMessageCommand({ QueueUrl: url(), MaxNumberOfMessages: 1 }), 'ReceiveMessage', 'sqs:ReceiveMessage'],
      [new DeleteMessageCommand({ QueueUrl: url(), ReceiptHandle: 'h' }), 'DeleteMessage', 'sqs:DeleteMessage'],
      [new DeleteMessageBatchCommand({ QueueUrl: url(), Entries: [{ Id: '1', ReceiptHandle: 'h' }] }), 'DeleteMessageBatch', 'sqs:DeleteMessage'],
      [new ChangeMessageVisibilityCommand({ QueueUrl: url(), ReceiptHandle: 'h', VisibilityTimeout: 5 }), 'ChangeMessageVisibility', 'sqs:ChangeMessageVisibility'],
      [new ChangeMessageVisibilityBatchCommand({ QueueUrl: url(), Entries: [{ Id: '1', ReceiptHandle: 'h', VisibilityTimeout: 5 }] }), 'ChangeMessageVisibilityBatch', 'sqs:ChangeMessageVisibility'],
      [new GetQueueAttributesCommand({ QueueUrl: url(), AttributeNames: ['All'] }), 'GetQueueAttributes', 'sqs:GetQueueAttributes'],
    ];
    for (const [command, operation, action] of cases) {
      const c = classify(await capture(sqs(), command));
      expect(c, operation).toMatchObject({ service: 'sqs', operation });
      expect(c.checks, operation).toEqual([{ action, resource: Q, context: {} }]);
    }
    const byName = classify(await capture(sqs(), new GetQueueUrlCommand({ QueueName: 'wake.fifo' })));
    expect(byName.checks).toEqual([{ action: 'sqs:GetQueueUrl', resource: Q, context: {} }]);
    expect(() => classify(captured.at(-1)!)).not.toThrow();
    const create = await capture(sqs(), new CreateQueueCommand({ QueueName: 'x' }));
    expect(() => classify(create)).toThrow('sqs:CreateQueue is unsupported in the rehearsal');
  });

  it('reads the queue ARN from AWS and local queue URLs', () => {
    expect(queueArnOfUrl(`https://sqs.eu-west-1.amazonaws.com/${ACCOUNT}/q`, { region: 'us-east-1', partition: 'aws' })).toBe(`arn:aws:sqs:eu-west-1:${ACCOUNT}:q`);
    expect(queueArnOfUrl(`http://127.0.0.1:9324/${ACCOUNT}/q.fifo`, { region: 'us-east-1', partition: 'aws' })).toBe(`arn:aws:sqs:us-east-1:${ACCOUNT}:q.fifo`);
    expect(() => queueArnOfUrl('http://127.0.0.1/q', { region: 'us-east-1', partition: 'aws' })).toThrow(/not a queue URL/);
  });
});

describe('ECS requests', () => {
  const ecs = () => new ECSClient(config());
  const cluster = `arn:aws:ecs:us-east-1:${ACCOUNT}:cluster/sandboxes`;
  const td = `arn:aws:ecs:us-east-1:${ACCOUNT}:task-definition/sandbox:1`;

  it('RunTask: the task definition in the cluster, the roles it passes, the tags it creates', async () => {
    const r = classify(
      await capture(
        ecs(),
        new RunTaskCommand({
          cluster,
          taskDefinition: td,
          launchType: 'FARGATE',
          networkConfiguration: { awsvpcConfiguration: { subnets: ['subnet-1'], securityGroups: ['sg-1'] } },
          tags: [{ key: 'corral:session', value: 's1' }],
          enableExecuteCommand: false,
        }),
      ),
    );
    expect(r).toMatchObject({ service: 'ecs', operation: 'RunTask' });
    expect(r.checks).toEqual([
      { action: 'ecs:RunTask', resource: td, context: { 'ecs:cluster': cluster, 'aws:TagKeys': ['corral:session'], 'aws:RequestTag/corral:session': 's1', 'ecs:enable-execute-command': 'false' } },
      { action: 'iam:PassRole', resource: `arn:aws:iam::${ACCOUNT}:role/TaskRole`, context: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } },
      { action: 'iam:PassRole', resource: `arn:aws:iam::${ACCOUNT}:role/ExecRole`, context: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } },
      {
        action: 'ecs:TagResource',
        resource: `arn:aws:ecs:us-east-1:${ACCOUNT}:task/sandboxes/f00d`,
        context: { 'ecs:cluster': cluster, 'aws:TagKeys': ['corral:session'], 'aws:RequestTag/corral:session': 's1', 'ecs:CreateAction': 'RunTask' },
      },
    ]);
    const untagged = classify(await capture(ecs(), new RunTaskCommand({ taskDefinition: 'sandbox' })));
    expect(untagged.checks.map((c) => c.action)).toEqual(['ecs:RunTask', 'iam:PassRole', 'iam:PassRole']);
    expect(untagged.checks[0]).toMatchObject({ resource: td, context: { 'ecs:cluster': `arn:aws:ecs:us-east-1:${ACCOUNT}:cluster/default` } });
  });

  it('StopTask and DescribeTasks: each task, in its cluster', async () => {
    const task = `arn:aws:ecs:us-east-1:${ACCOUNT}:task/sandboxes/abc`;
    const stop = classify(await capture(ecs(), new StopTaskCommand({ cluster, task, reason: 'idle' })));
    expect(stop.checks).toEqual([{ action: 'ecs:StopTask', resource: task, context: { 'ecs:cluster': cluster } }]);
    const d = classify(await capture(ecs(), new DescribeTasksCommand({ cluster: 'sandboxes', tasks: [task, 'def'] })));
    expect(d.checks).toEqual([
      { action: 'ecs:DescribeTasks', resource: task, context: { 'ecs:cluster': cluster } },
      { action: 'ecs:DescribeTasks', resource: `arn:aws:ecs:us-east-1:${ACCOUNT}:task/sandboxes/def`, context: { 'ecs:cluster': cluster } },
    ]);
  });
});

describe('Secrets Manager, SSM and Lambda requests', () => {
  const sm = () => new SecretsManagerClient(config());
  const name = 'corral/vault/v1/c1';
  const arn = secretArnFor(name, 'us-east-1', ACCOUNT);

  it('secrets by name get the ARN of that name; CreateSecret with tags also needs TagResource', async () => {
    expect(arn).toMatch(new RegExp(`^arn:aws:secretsmanager:us-east-1:${ACCOUNT}:secret:corral/vault/v1/c1-[A-Za-z0-9]{6}$`));
    const create = classify(await capture(sm(), new CreateSecretCommand({ Name: name, SecretString: 'x', Tags: [{ Key: 'corral:managed-by', Value: 'credential-proxy' }] })));
    expect(create.checks).toEqual([
      { action: 'secretsmanager:CreateSecret', resource: arn, context: { 'secretsmanager:Name': name, 'aws:TagKeys': ['corral:managed-by'], 'aws:RequestTag/corral:managed-by': 'credential-proxy' } },
      { action: 'secretsmanager:TagResource', resource: arn, context: { 'aws:TagKeys': ['corral:managed-by'], 'aws:RequestTag/corral:managed-by': 'credential-proxy' } },
    ]);
    for (const [command, action] of [
      [new GetSecretValueCommand({ SecretId: name }), 'secretsmanager:GetSecretValue'],
      [new PutSecretValueCommand({ SecretId: name, SecretString: 'y' }), 'secretsmanager:PutSecretValue'],
      [new DeleteSecretCommand({ SecretId: name, ForceDeleteWithoutRecovery: true }), 'secretsmanager:DeleteSecret'],
      [new DescribeSecretCommand({ SecretId: arn }), 'secretsmanager:DescribeSecret'],
      [new TagResourceCommand({ SecretId: name, Tags: [] }), 'secretsmanager:TagResource'],
    ] as const) {
      expect(classify(await capture(sm(), command)).checks[0], action).toMatchObject({ action, resource: arn });
    }
    const known = classify(await capture(sm(), new GetSecretValueCommand({ SecretId: name })), { ...options, secretArn: () => `${arn.slice(0, -6)}ZZZZZZ` });
    expect(known.checks[0].resource.endsWith('-ZZZZZZ')).toBe(true);
  });

  it('SSM parameters by name, with or without the leading slash', async () => {
    const ssm = () => new SSMClient(config());
    const p = classify(await capture(ssm(), new GetParameterCommand({ Name: '/corral/anthropic-api-key', WithDecryption: true })));
    expect(p).toMatchObject({ service: 'ssm', operation: 'GetParameter' });
    expect(p.checks).toEqual([{ action: 'ssm:GetParameter', resource: `arn:aws:ssm:us-east-1:${ACCOUNT}:parameter/corral/anthropic-api-key`, context: {} }]);
    const ps = classify(await capture(ssm(), new GetParametersCommand({ Names: ['a/b', '/c'] })));
    expect(ps.checks.map((c) => [c.action, c.resource])).toEqual([
      ['ssm:GetParameters', `arn:aws:ssm:us-east-1:${ACCOUNT}:parameter/a/b`],
      ['ssm:GetParameters', `arn:aws:ssm:us-east-1:${ACCOUNT}:parameter/c`],
    ]);
  });

  it('Lambda invocations by name, ARN and qualifier', async () => {
    const lambda = () => new LambdaClient(config());
    const F = `arn:aws:lambda:us-east-1:${ACCOUNT}:function:proxy`;
    const byName = classify(await capture(lambda(), new InvokeCommand({ FunctionName: 'proxy', Payload: Buffer.from('{}') })));
    expect(byName).toMatchObject({ service: 'lambda', operation: 'Invoke' });
    expect(byName.checks).toEqual([{ action: 'lambda:InvokeFunction', resource: F, context: {} }]);
    const byArn = classify(await capture(lambda(), new InvokeCommand({ FunctionName: F, Qualifier: 'live' })));
    expect(byArn.checks[0].resource).toBe(`${F}:live`);
    const stream = classify(await capture(lambda(), new InvokeWithResponseStreamCommand({ FunctionName: 'proxy' })));
    expect(stream).toMatchObject({ operation: 'InvokeWithResponseStream', checks: [{ action: 'lambda:InvokeFunction', resource: F }] });
    expect(functionArnOf(`${ACCOUNT}:function:proxy`, undefined, { region: 'us-east-1', accountId: ACCOUNT, partition: 'aws' })).toBe(F);
  });

  it('KMS: the key named by the request, or by the ciphertext for a Decrypt, with the encryption context as condition keys', async () => {
    const kms = () => new KMSClient(config());
    const KEY = `arn:aws:kms:us-east-1:${ACCOUNT}:key/1234abcd-0000-4000-8000-000000000000`;
    const gen = classify(await capture(kms(), new GenerateDataKeyCommand({ KeyId: KEY, KeySpec: 'AES_256', EncryptionContext: { 'corral:purpose': 'sandbox-capability' } })));
    expect(gen).toMatchObject({ service: 'kms', operation: 'GenerateDataKey', checks: [{ action: 'kms:GenerateDataKey', resource: KEY }] });
    expect(gen.checks[0].context).toMatchObject({ 'kms:EncryptionContext:corral:purpose': 'sandbox-capability', 'kms:EncryptionContextKeys': ['corral:purpose'], 'kms:DataKeySpec': 'AES_256' });
    const byId = classify(await capture(kms(), new EncryptCommand({ KeyId: '1234abcd-0000-4000-8000-000000000000', Plaintext: Buffer.from('x') })));
    expect(byId.checks[0]).toMatchObject({ action: 'kms:Encrypt', resource: KEY });
    const blob = Buffer.from('ciphertext of KEY');
    const other = `arn:aws:kms:us-east-1:${ACCOUNT}:key/other`;
    const dec = classify(await capture(kms(), new DecryptCommand({ CiphertextBlob: blob, KeyId: other })), { ...options, ciphertextKeyArn: (b) => (b === blob.toString('base64') ? KEY : undefined) });
    expect(dec.checks).toMatchObject([{ action: 'kms:Decrypt', resource: KEY }]);
    await expect(capture(kms(), new DecryptCommand({ CiphertextBlob: blob })).then((r) => classify(r))).rejects.toThrow(/names no key/);
    await expect(capture(kms(), new EncryptCommand({ KeyId: 'alias/x', Plaintext: Buffer.from('x') })).then((r) => classify(r))).rejects.toThrow(/aliases are not emulated/);
  });

  it('S3 object operations: the object ARN, multipart steps as s3:PutObject, with the key decoded', async () => {
    const s3 = new S3Client(config());
    const O = 'arn:aws:s3:::corral-blobs/files/t 1/file_1';
    const cases: Array<[unknown, string, string]> = [
      [new PutObjectCommand({ Bucket: 'corral-blobs', Key: 'files/t 1/file_1', Body: 'x' }), 'PutObject', 's3:PutObject'],
      [new GetObjectCommand({ Bucket: 'corral-blobs', Key: 'files/t 1/file_1' }), 'GetObject', 's3:GetObject'],
      [new HeadObjectCommand({ Bucket: 'corral-blobs', Key: 'files/t 1/file_1' }), 'HeadObject', 's3:GetObject'],
      [new DeleteObjectCommand({ Bucket: 'corral-blobs', Key: 'files/t 1/file_1' }), 'DeleteObject', 's3:DeleteObject'],
      [new CreateMultipartUploadCommand({ Bucket: 'corral-blobs', Key: 'files/t 1/file_1' }), 'CreateMultipartUpload', 's3:PutObject'],
      [new UploadPartCommand({ Bucket: 'corral-blobs', Key: 'files/t 1/file_1', UploadId: 'u', PartNumber: 1, Body: 'x' }), 'UploadPart', 's3:PutObject'],
      [new CompleteMultipartUploadCommand({ Bucket: 'corral-blobs', Key: 'files/t 1/file_1', UploadId: 'u', MultipartUpload: { Parts: [{ ETag: '"e"', PartNumber: 1 }] } }), 'CompleteMultipartUpload', 's3:PutObject'],
      [new AbortMultipartUploadCommand({ Bucket: 'corral-blobs', Key: 'files/t 1/file_1', UploadId: 'u' }), 'AbortMultipartUpload', 's3:AbortMultipartUpload'],
    ];
    for (const [command, operation, action] of cases) {
      const c = classify(await capture(s3, command));
      expect(c.service).toBe('s3');
      expect(c.operation).toBe(operation);
      expect(c.checks).toEqual([{ action, resource: O, context: {} }]);
    }
  });

  it('names services and requests it does not emulate', async () => {
    const s3 = new S3Client({ ...config(), forcePathStyle: true });
    const list = await capture(s3, new ListObjectsV2Command({ Bucket: 'b', Prefix: 'files/' }));
    expect(() => classify(list)).toThrow(/^s3:GET \/b\/?\?list-type=2.* is unsupported in the rehearsal/);
    expect(() => parseAuthorization(undefined)).toThrow(/Signature Version 4/);
  });
});

describe('the SDK calls of Corral functions against the template IAM', () => {
  let ctx: ResolveContext;
  const fn = (prefix: string) => functions(ctx).find((f) => f.logicalId.startsWith(prefix))!;

  /** Every check of a real SDK request, evaluated for the function's role (with TLS, as on AWS). */
  async function authorize(fnPrefix: string, client: Sendable, command: unknown) {
    const f = fn(fnPrefix);
    const r = role(ctx, f.roleLogicalId!);
    const tasks = ecsTaskDefinitions(ctx);
    const tables = dynamoTables(ctx);
    const c = classify(await capture(client, command), {
      accountId: ctx.env.accountId,
      keySchema: (t, i) => {
        const table = tables.find((x) => x.tableName === t);
        return i ? table?.globalSecondaryIndexes.find((g) => g.indexName === i)?.keySchema : table?.keySchema;
      },
      taskDefinition: (arn) => tasks.find((t) => t.arn === arn),
    });
    const policies = resourcePolicies(ctx);
    return c.checks.map((check) => {
      const request = { principalArn: assumedRoleArn(r.arn, f.functionName), action: check.action, resource: check.resource, context: { ...check.context, 'aws:SecureTransport': 'true' } };
      const rp = resourcePolicyFor(policies, check.resource);
      const decision = rp?.keyPolicy ? evaluateKeyPolicy(request, r.statements, rp.statements) : evaluate(request, r.statements, rp?.statements);
      return { check, decision: decision.decision, message: decision.allowed ? undefined : accessDeniedMessage(request, decision) };
    });
  }

  beforeAll(async () => {
    ctx = createContext(await synthesizedTemplate());
  }, 120_000);

  it('allows the harness to start a sandbox the way the ECS provider does, and not in another cluster', async () => {
    const harness = fn('HarnessStepFunction');
    const run = (cluster: string) =>
      new RunTaskCommand({
        cluster,
        taskDefinition: harness.environment.CORRAL_SANDBOX_TASK_DEFINITION,
        launchType: 'FARGATE',
        count: 1,
        networkConfiguration: { awsvpcConfiguration: { subnets: harness.environment.CORRAL_SANDBOX_SUBNETS.split(','), securityGroups: [harness.environment.CORRAL_SANDBOX_SECURITY_GROUPS], assignPublicIp: 'DISABLED' } },
        tags: [{ key: 'corral:session', value: 's1' }],
        enableExecuteCommand: false,
      });
    const ecs = new ECSClient(config());
    const inSandboxes = await authorize('HarnessStepFunction', ecs, run(harness.environment.CORRAL_SANDBOX_CLUSTER));
    expect(inSandboxes.map((x) => [x.check.action, x.decision])).toEqual([
      ['ecs:RunTask', 'allow'],
      ['iam:PassRole', 'allow'],
      ['iam:PassRole', 'allow'],
      ['ecs:TagResource', 'allow'],
    ]);
    const elsewhere = await authorize('HarnessStepFunction', ecs, run(`arn:aws:ecs:us-east-1:${ctx.env.accountId}:cluster/other`));
    // RunTask itself is confined to the sandbox cluster (ecs:cluster condition), not only the tags.
    const denied = elsewhere.filter((x) => x.decision !== 'allow');
    expect(denied.map((x) => x.check.action)).toEqual(['ecs:RunTask', 'ecs:TagResource']);
    expect(denied[0].message).toMatch(/is not authorized to perform: ecs:RunTask on resource: arn:aws:ecs:us-east-1:123456789012:task-definition\//);
    expect(denied[1].message).toMatch(/is not authorized to perform: ecs:TagResource on resource: arn:aws:ecs:us-east-1:123456789012:task\/other\//);
    const stop = await authorize('SandboxReaperFunction', ecs, new StopTaskCommand({ cluster: `arn:aws:ecs:us-east-1:${ctx.env.accountId}:cluster/other`, task: 'abc' }));
    expect(stop[0].decision).toBe('implicit-deny');
  });

  it('denies the API stream function an UpdateItem on the state table, and allows its reads', async () => {
    const f = fn('ApiStreamHandler');
    const ddb = new DynamoDBClient(config());
    const key = { pk: { S: 'session#s1' }, sk: { S: 'meta' } };
    const [update] = await authorize('ApiStreamHandler', ddb, new UpdateItemCommand({ TableName: f.environment.CORRAL_STATE_TABLE, Key: key, UpdateExpression: 'SET a = :a', ExpressionAttributeValues: { ':a': { N: '1' } } }));
    expect(update.decision).toBe('implicit-deny');
    expect(update.message).toContain(`is not authorized to perform: dynamodb:UpdateItem on resource: arn:aws:dynamodb:us-east-1:123456789012:table/${f.environment.CORRAL_STATE_TABLE} because no identity-based policy allows`);
    const [get] = await authorize('ApiStreamHandler', ddb, new GetItemCommand({ TableName: f.environment.CORRAL_STATE_TABLE, Key: key }));
    expect(get.decision).toBe('allow');
    expect(get.check.context['dynamodb:LeadingKeys']).toEqual(['session#s1']);
  });

  it('lets the harness and the API function use the sandbox capability key, the reaper open with it, for its purpose only, and nobody else', async () => {
    const key = fn('HarnessStepFunction').environment.CORRAL_SANDBOX_CAPABILITY_KEY;
    expect(key).toMatch(/^arn:aws:kms:us-east-1:\d{12}:key\//);
    const kms = new KMSClient(config());
    const generate = (purpose: Record<string, string>) => new GenerateDataKeyCommand({ KeyId: key, KeySpec: 'AES_256', EncryptionContext: purpose });
    const decrypt = new DecryptCommand({ KeyId: key, CiphertextBlob: Buffer.from('sealed'), EncryptionContext: { ...CAPABILITY_ENCRYPTION_CONTEXT } });
    for (const f of ['HarnessStepFunction', 'ApiHandler8']) {
      expect((await authorize(f, kms, generate({ ...CAPABILITY_ENCRYPTION_CONTEXT })))[0], f).toMatchObject({ decision: 'allow', check: { resource: key } });
      expect((await authorize(f, kms, decrypt))[0], f).toMatchObject({ decision: 'allow', check: { action: 'kms:Decrypt', resource: key } });
      expect((await authorize(f, kms, generate({ 'corral:purpose': 'something-else' })))[0].decision, f).toBe('implicit-deny');
      expect((await authorize(f, kms, new EncryptCommand({ KeyId: key, Plaintext: Buffer.from('x'), EncryptionContext: { ...CAPABILITY_ENCRYPTION_CONTEXT } })))[0].decision, f).toBe('implicit-deny');
    }
    // The reaper opens capabilities to take workspace snapshots; it seals none.
    expect((await authorize('SandboxReaperFunction', kms, decrypt))[0]).toMatchObject({ decision: 'allow', check: { action: 'kms:Decrypt', resource: key } });
    expect((await authorize('SandboxReaperFunction', kms, generate({ ...CAPABILITY_ENCRYPTION_CONTEXT })))[0].decision).toBe('implicit-deny');
    const otherPurpose = new DecryptCommand({ KeyId: key, CiphertextBlob: Buffer.from('sealed'), EncryptionContext: { 'corral:purpose': 'something-else' } });
    expect((await authorize('SandboxReaperFunction', kms, otherPurpose))[0].decision).toBe('implicit-deny');
    for (const f of ['ApiStreamHandler', 'CredentialProxyFunction']) {
      const [d] = await authorize(f, kms, decrypt);
      expect(d.decision, f).toBe('implicit-deny');
      expect(d.message).toMatch(/is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:/);
    }
  });

  it('lets the credential proxy create vault secrets and nobody else read them; the harness invokes the proxy and cannot read the model key', async () => {
    const sm = new SecretsManagerClient(config());
    const create = new CreateSecretCommand({ Name: 'corral/vault/v1/c1', SecretString: 'x', Tags: [{ Key: 'corral:managed-by', Value: 'credential-proxy' }] });
    expect((await authorize('CredentialProxyFunction', sm, create)).map((x) => x.decision)).toEqual(['allow', 'allow']);
    expect((await authorize('HarnessStepFunction', sm, new GetSecretValueCommand({ SecretId: 'corral/vault/v1/c1' })))[0].decision).toBe('implicit-deny');
    const harness = fn('HarnessStepFunction');
    const invoke = await authorize('HarnessStepFunction', new LambdaClient(config()), new InvokeCommand({ FunctionName: harness.environment.CORRAL_CREDENTIAL_PROXY_FUNCTION, Payload: Buffer.from('{}') }));
    expect(invoke[0].decision).toBe('allow');
    // The model key is the proxy service's to read (the harness calls the model through it).
    expect(harness.environment.CORRAL_MODEL_API_KEY_PARAMETER).toBeUndefined();
    const ssm = await authorize('HarnessStepFunction', new SSMClient(config()), new GetParameterCommand({ Name: '/corral/anthropic-api-key', WithDecryption: true }));
    expect(ssm[0].decision).toBe('implicit-deny');
    const wake = await authorize('ApiHandler8', new SQSClient(config()), new SendMessageCommand({ QueueUrl: fn('ApiHandler8').environment.CORRAL_WAKE_QUEUE_URL, MessageBody: 's1', MessageGroupId: 's1' }));
    expect(wake[0]).toMatchObject({ decision: 'allow', check: { action: 'sqs:SendMessage' } });
  });
});
