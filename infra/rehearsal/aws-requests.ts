/**
 * What IAM checks an AWS SDK request needs, for the calls Corral's functions make.
 *
 * The rehearsal's gateway receives each SDK call as the SDK sends it (SigV4-signed HTTP) and must
 * ask IAM what AWS would ask: one request can need several checks (a `RunTask` also passes roles
 * and tags the task; a `BatchWriteItem` touches each table), each with its own action, resource ARN
 * and condition keys. This module turns the request into that list; `iam.ts` evaluates it. Request
 * shapes were checked against the installed SDK v3 clients (see test/rehearsal/aws-requests.test.ts).
 */
import { createHash } from 'node:crypto';
import type { ContextValue } from './iam.js';

/** An SDK request as the gateway receives it. */
export interface SdkRequest {
  readonly method: string;
  /** The path with query string, e.g. `/2015-03-31/functions/fn/invocations?Qualifier=live`. */
  readonly path: string;
  /** Header names in any case. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** The parsed JSON body (undefined for none). */
  readonly body?: unknown;
}

/** One authorization check AWS performs for a request. */
export interface AuthorizationCheck {
  readonly action: string;
  readonly resource: string;
  /** Request-specific condition keys (the caller adds the principal's and the connection's). */
  readonly context: Record<string, ContextValue>;
}

/** The parsed request: who signed it for which service, which operation, which checks. */
export interface ClassifiedRequest {
  readonly accessKeyId: string;
  readonly region: string;
  /** The SigV4 signing name: `dynamodb`, `sqs`, `ecs`, `secretsmanager`, `ssm`, `kms`, `lambda`. */
  readonly service: string;
  /** The API operation, e.g. `UpdateItem`. */
  readonly operation: string;
  readonly checks: AuthorizationCheck[];
}

/** A request the rehearsal does not emulate; the gateway answers it with an error naming it. */
export class UnsupportedRequestError extends Error {
  constructor(
    readonly service: string,
    readonly operation: string,
    detail = '',
  ) {
    super(`${service}:${operation} is unsupported in the rehearsal${detail ? `: ${detail}` : ''}`);
    this.name = 'UnsupportedRequestError';
  }
}

/** A request the SDK would not send (missing fields, unsigned): a client error. */
export class MalformedRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MalformedRequestError';
  }
}

/** What the request mapping needs to know about the deployment. */
export interface RequestOptions {
  /** The account the stack runs in. */
  readonly accountId: string;
  /** @default 'aws' */
  readonly partition?: string;
  /**
   * A table's (or an index's) key schema, to read `dynamodb:LeadingKeys`. Without an answer the
   * key is left out of the context (policies then see it as missing).
   */
  readonly keySchema?: (tableName: string, indexName?: string) => { partitionKey: string } | undefined;
  /** The task and execution roles of a task definition (by ARN), for `iam:PassRole` on RunTask. */
  readonly taskDefinition?: (taskDefinitionArn: string) => { taskRoleArn?: string; executionRoleArn?: string } | undefined;
  /** The full ARN of an existing secret by name; without it, the ARN the name would get (see {@link secretArnFor}). */
  readonly secretArn?: (name: string) => string | undefined;
  /** The id of a task RunTask is about to start (its ARN is what `ecs:TagResource` is checked on). */
  readonly newTaskId?: () => string;
  /** The ARN of the KMS key a ciphertext blob (base64) names, for a `Decrypt` without `KeyId`. */
  readonly ciphertextKeyArn?: (ciphertextBase64: string) => string | undefined;
}

const header = (req: SdkRequest, name: string): string | undefined => {
  const lower = name.toLowerCase();
  for (const [k, v] of Object.entries(req.headers)) if (k.toLowerCase() === lower) return Array.isArray(v) ? v[0] : v;
  return undefined;
};

/** The SigV4 credential scope of an `Authorization` header. */
export function parseAuthorization(value: string | undefined): { accessKeyId: string; date: string; region: string; service: string } {
  const m = value?.match(/^AWS4-HMAC-SHA256\s+Credential=([^/\s,]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request/);
  if (!m) throw new MalformedRequestError('the request is not signed with AWS Signature Version 4 (no Credential scope in Authorization)');
  return { accessKeyId: m[1], date: m[2], region: m[3], service: m[4] };
}

/** What `CreateSecret` names a secret: `<name>-<6 characters>`, stable here per name. */
export function secretArnFor(name: string, region: string, accountId: string, partition = 'aws'): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const h = createHash('sha256').update(`${accountId}/${region}/${name}`).digest();
  const suffix = Array.from(h.subarray(0, 6), (b) => alphabet[b % alphabet.length]).join('');
  return `arn:${partition}:secretsmanager:${region}:${accountId}:secret:${name}-${suffix}`;
}

type Body = Record<string, unknown>;

function field<T = unknown>(body: Body, name: string, operation: string, service: string): T {
  const v = body[name];
  if (v === undefined || v === null || v === '') throw new MalformedRequestError(`${service}:${operation} without ${name}`);
  return v as T;
}

/**
 * The authorization checks for one SDK request. Throws {@link UnsupportedRequestError} for a
 * service or operation the rehearsal does not emulate, {@link MalformedRequestError} for a request
 * the SDK would not send.
 */
export function classifyRequest(req: SdkRequest, options: RequestOptions): ClassifiedRequest {
  const auth = parseAuthorization(header(req, 'authorization'));
  const base = { accessKeyId: auth.accessKeyId, region: auth.region, service: auth.service };
  const env: Env = { region: auth.region, accountId: options.accountId, partition: options.partition ?? 'aws', options };
  const body = (req.body && typeof req.body === 'object' ? req.body : {}) as Body;

  if (auth.service === 'lambda') {
    const { operation, checks } = lambdaChecks(req, env);
    return { ...base, operation, checks };
  }
  if (auth.service === 's3') {
    const { operation, checks } = s3Checks(req, env);
    return { ...base, operation, checks };
  }
  if (auth.service === 'scheduler') {
    const { operation, checks } = schedulerChecks(req, env);
    return { ...base, operation, checks };
  }
  const target = header(req, 'x-amz-target');
  if (!target) throw new UnsupportedRequestError(auth.service, `${req.method} ${req.path.split('?')[0]}`, 'only the JSON protocol (X-Amz-Target) is emulated');
  const operation = target.slice(target.lastIndexOf('.') + 1);
  const prefix = target.slice(0, target.lastIndexOf('.'));
  const expected: Record<string, string> = {
    dynamodb: 'DynamoDB_20120810',
    sqs: 'AmazonSQS',
    ecs: 'AmazonEC2ContainerServiceV20141113',
    secretsmanager: 'secretsmanager',
    ssm: 'AmazonSSM',
    kms: 'TrentService',
  };
  if (!(auth.service in expected)) throw new UnsupportedRequestError(auth.service, operation);
  // DynamoDB Streams signs as `dynamodb` too, with its own target prefix.
  if (auth.service === 'dynamodb' && prefix === 'DynamoDBStreams_20120810') return { ...base, operation, checks: dynamodbStreamsChecks(operation, body) };
  if (prefix !== expected[auth.service]) throw new MalformedRequestError(`X-Amz-Target ${target} does not belong to ${auth.service}`);
  const handlers: Record<string, (op: string, b: Body, e: Env) => AuthorizationCheck[]> = {
    dynamodb: dynamodbChecks,
    sqs: sqsChecks,
    ecs: ecsChecks,
    secretsmanager: secretsChecks,
    ssm: ssmChecks,
    kms: kmsChecks,
  };
  return { ...base, operation, checks: handlers[auth.service](operation, body, env) };
}

interface Env {
  readonly region: string;
  readonly accountId: string;
  readonly partition: string;
  readonly options: RequestOptions;
}

// ---------------------------------------------------------------------------------------------
// DynamoDB
// ---------------------------------------------------------------------------------------------

/** `TableName` may be a name or (in current APIs) a table ARN. */
function tableArn(nameOrArn: string, e: Env): { arn: string; name: string } {
  if (nameOrArn.startsWith('arn:')) return { arn: nameOrArn, name: nameOrArn.replace(/^.*:table\//, '').split('/')[0] };
  return { arn: `arn:${e.partition}:dynamodb:${e.region}:${e.accountId}:table/${nameOrArn}`, name: nameOrArn };
}

/** A DynamoDB attribute value as a string, the way `dynamodb:LeadingKeys` compares it. */
function scalarOf(av: unknown): string | undefined {
  if (!av || typeof av !== 'object') return undefined;
  const v = av as Record<string, unknown>;
  for (const t of ['S', 'N', 'B']) if (typeof v[t] === 'string') return v[t] as string;
  return undefined;
}

function leadingKey(item: unknown, table: string, e: Env, index?: string): string | undefined {
  const schema = e.options.keySchema?.(table, index);
  if (!schema || !item || typeof item !== 'object') return undefined;
  return scalarOf((item as Record<string, unknown>)[schema.partitionKey]);
}

/** The partition key value a Query's key condition fixes (`#pk = :v`, `pk = :v`, or `KeyConditions`). */
function queryLeadingKey(body: Body, table: string, e: Env, index?: string): string | undefined {
  const schema = e.options.keySchema?.(table, index);
  if (!schema) return undefined;
  const names = (body.ExpressionAttributeNames ?? {}) as Record<string, string>;
  const values = (body.ExpressionAttributeValues ?? {}) as Record<string, unknown>;
  const expr = body.KeyConditionExpression;
  if (typeof expr === 'string') {
    const name = (token: string) => (token.startsWith('#') ? names[token] : token);
    for (const m of expr.matchAll(/(#?[A-Za-z0-9_.-]+|:[A-Za-z0-9_]+)\s*=\s*(#?[A-Za-z0-9_.-]+|:[A-Za-z0-9_]+)/g)) {
      const [a, b] = [m[1], m[2]];
      if (b.startsWith(':') && name(a) === schema.partitionKey) return scalarOf(values[b]);
      if (a.startsWith(':') && name(b) === schema.partitionKey) return scalarOf(values[a]);
    }
    return undefined;
  }
  const legacy = (body.KeyConditions ?? {}) as Record<string, { AttributeValueList?: unknown[] }>;
  return scalarOf(legacy[schema.partitionKey]?.AttributeValueList?.[0]);
}

function dynamoContext(body: Body, leadingKeys: Array<string | undefined>): Record<string, ContextValue> {
  const ctx: Record<string, ContextValue> = {};
  const keys = leadingKeys.filter((k): k is string => k !== undefined);
  if (keys.length) ctx['dynamodb:LeadingKeys'] = [...new Set(keys)];
  for (const k of ['Select', 'ReturnValues', 'ReturnConsumedCapacity'] as const) {
    if (typeof body[k] === 'string') ctx[`dynamodb:${k}`] = body[k] as string;
  }
  return ctx;
}

/**
 * DynamoDB Streams: each call is checked on the stream's ARN. `GetRecords` names only its shard
 * iterator, which carries the stream's ARN (DynamoDB Local's and AWS's both: `…|arn:…/stream/…|…`).
 */
function dynamodbStreamsChecks(op: string, body: Body): AuthorizationCheck[] {
  switch (op) {
    case 'DescribeStream':
    case 'GetShardIterator':
      return [{ action: `dynamodb:${op}`, resource: field<string>(body, 'StreamArn', op, 'dynamodb'), context: {} }];
    case 'GetRecords': {
      const iterator = field<string>(body, 'ShardIterator', op, 'dynamodb');
      const arn = iterator.match(/arn:[^|]+\/stream\/[^|]+/)?.[0];
      if (!arn) throw new MalformedRequestError('dynamodb:GetRecords with a shard iterator that names no stream');
      return [{ action: 'dynamodb:GetRecords', resource: arn, context: {} }];
    }
    case 'ListStreams':
      return [{ action: 'dynamodb:ListStreams', resource: '*', context: {} }];
    default:
      throw new UnsupportedRequestError('dynamodb', op);
  }
}

function dynamodbChecks(op: string, body: Body, e: Env): AuthorizationCheck[] {
  const f = <T>(name: string) => field<T>(body, name, op, 'dynamodb');
  switch (op) {
    case 'GetItem':
    case 'DeleteItem':
    case 'UpdateItem':
    case 'PutItem': {
      const t = tableArn(f<string>('TableName'), e);
      const item = op === 'PutItem' ? f('Item') : f('Key');
      return [{ action: `dynamodb:${op}`, resource: t.arn, context: dynamoContext(body, [leadingKey(item, t.name, e)]) }];
    }
    case 'Query':
    case 'Scan': {
      const t = tableArn(f<string>('TableName'), e);
      const index = typeof body.IndexName === 'string' ? body.IndexName : undefined;
      const resource = index ? `${t.arn}/index/${index}` : t.arn;
      const keys = op === 'Query' ? [queryLeadingKey(body, t.name, e, index)] : [];
      return [{ action: `dynamodb:${op}`, resource, context: dynamoContext(body, keys) }];
    }
    case 'DescribeTable':
    case 'CreateTable':
    case 'DeleteTable':
    case 'UpdateTable':
    case 'DescribeTimeToLive':
    case 'UpdateTimeToLive':
      return [{ action: `dynamodb:${op}`, resource: tableArn(f<string>('TableName'), e).arn, context: {} }];
    case 'BatchGetItem':
    case 'BatchWriteItem': {
      // One check per table; LeadingKeys holds every partition key the call touches there.
      const items = f<Record<string, unknown>>('RequestItems');
      return Object.entries(items).map(([name, spec]) => {
        const t = tableArn(name, e);
        let keys: unknown[];
        if (op === 'BatchGetItem') keys = ((spec as { Keys?: unknown[] }).Keys ?? []) as unknown[];
        else
          keys = ((spec ?? []) as Array<{ PutRequest?: { Item: unknown }; DeleteRequest?: { Key: unknown } }>).map((w) => w.PutRequest?.Item ?? w.DeleteRequest?.Key);
        return { action: `dynamodb:${op}`, resource: t.arn, context: dynamoContext(body, keys.map((k) => leadingKey(k, t.name, e))) };
      });
    }
    case 'TransactWriteItems':
    case 'TransactGetItems': {
      // Transactions have no action of their own: each item is checked as its underlying operation.
      const actions: Record<string, string> = { Put: 'PutItem', Update: 'UpdateItem', Delete: 'DeleteItem', ConditionCheck: 'ConditionCheckItem', Get: 'GetItem' };
      return f<Array<Record<string, Body>>>('TransactItems').map((entry) => {
        const [kind, spec] = Object.entries(entry)[0] ?? [];
        if (!kind || !actions[kind] || !spec) throw new MalformedRequestError(`dynamodb:${op} with an item that is none of ${Object.keys(actions).join(', ')}`);
        const t = tableArn(field<string>(spec, 'TableName', op, 'dynamodb'), e);
        const item = kind === 'Put' ? spec.Item : spec.Key;
        return { action: `dynamodb:${actions[kind]}`, resource: t.arn, context: dynamoContext(body, [leadingKey(item, t.name, e)]) };
      });
    }
    default:
      throw new UnsupportedRequestError('dynamodb', op);
  }
}

// ---------------------------------------------------------------------------------------------
// SQS
// ---------------------------------------------------------------------------------------------

/** The queue ARN of a queue URL (`…/<account>/<name>`), in the URL's region when it names one. */
export function queueArnOfUrl(url: string, e: { region: string; partition: string }): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new MalformedRequestError(`not a queue URL: ${url}`);
  }
  const parts = u.pathname.split('/').filter(Boolean);
  if (parts.length < 2 || !/^\d{12}$/.test(parts[parts.length - 2])) throw new MalformedRequestError(`not a queue URL: ${url}`);
  const region = u.hostname.match(/^sqs\.([a-z0-9-]+)\.amazonaws\.com/)?.[1] ?? e.region;
  return `arn:${e.partition}:sqs:${region}:${parts[parts.length - 2]}:${parts[parts.length - 1]}`;
}

const SQS_ACTIONS: Record<string, string> = {
  SendMessage: 'sqs:SendMessage',
  SendMessageBatch: 'sqs:SendMessage',
  ReceiveMessage: 'sqs:ReceiveMessage',
  DeleteMessage: 'sqs:DeleteMessage',
  DeleteMessageBatch: 'sqs:DeleteMessage',
  ChangeMessageVisibility: 'sqs:ChangeMessageVisibility',
  ChangeMessageVisibilityBatch: 'sqs:ChangeMessageVisibility',
  GetQueueAttributes: 'sqs:GetQueueAttributes',
  PurgeQueue: 'sqs:PurgeQueue',
};

function sqsChecks(op: string, body: Body, e: Env): AuthorizationCheck[] {
  if (op === 'GetQueueUrl') {
    const name = field<string>(body, 'QueueName', op, 'sqs');
    const owner = typeof body.QueueOwnerAWSAccountId === 'string' ? body.QueueOwnerAWSAccountId : e.accountId;
    return [{ action: 'sqs:GetQueueUrl', resource: `arn:${e.partition}:sqs:${e.region}:${owner}:${name}`, context: {} }];
  }
  const action = SQS_ACTIONS[op];
  if (!action) throw new UnsupportedRequestError('sqs', op);
  return [{ action, resource: queueArnOfUrl(field<string>(body, 'QueueUrl', op, 'sqs'), e), context: {} }];
}

// ---------------------------------------------------------------------------------------------
// ECS
// ---------------------------------------------------------------------------------------------

function clusterOf(cluster: unknown, e: Env): { arn: string; name: string } {
  const c = typeof cluster === 'string' && cluster !== '' ? cluster : 'default';
  if (c.startsWith('arn:')) return { arn: c, name: c.replace(/^.*:cluster\//, '') };
  return { arn: `arn:${e.partition}:ecs:${e.region}:${e.accountId}:cluster/${c}`, name: c };
}

function taskArnOf(task: string, cluster: { name: string }, e: Env): string {
  return task.startsWith('arn:') ? task : `arn:${e.partition}:ecs:${e.region}:${e.accountId}:task/${cluster.name}/${task}`;
}

/** A task definition given as `family`, `family:revision` or ARN; a bare family is taken at revision 1. */
function taskDefinitionArnOf(td: string, e: Env): string {
  if (td.startsWith('arn:')) return td;
  return `arn:${e.partition}:ecs:${e.region}:${e.accountId}:task-definition/${/:\d+$/.test(td) ? td : `${td}:1`}`;
}

function tagContext(tags: unknown, keyField: string, valueField: string): Record<string, ContextValue> {
  const list = Array.isArray(tags) ? (tags as Array<Record<string, string>>) : [];
  if (!list.length) return {};
  const ctx: Record<string, ContextValue> = { 'aws:TagKeys': list.map((t) => t[keyField]) };
  for (const t of list) ctx[`aws:RequestTag/${t[keyField]}`] = t[valueField];
  return ctx;
}

function ecsChecks(op: string, body: Body, e: Env): AuthorizationCheck[] {
  const cluster = clusterOf(body.cluster, e);
  const clusterCtx = { 'ecs:cluster': cluster.arn };
  switch (op) {
    case 'RunTask': {
      const td = taskDefinitionArnOf(field<string>(body, 'taskDefinition', op, 'ecs'), e);
      const tags = tagContext(body.tags, 'key', 'value');
      const runCtx: Record<string, ContextValue> = { ...clusterCtx, ...tags };
      if (typeof body.enableExecuteCommand === 'boolean') runCtx['ecs:enable-execute-command'] = String(body.enableExecuteCommand);
      const checks: AuthorizationCheck[] = [{ action: 'ecs:RunTask', resource: td, context: runCtx }];
      // ECS passes the task definition's roles (or the overriding ones) to the task.
      const roles = e.options.taskDefinition?.(td) ?? {};
      const overrides = (body.overrides ?? {}) as { taskRoleArn?: string; executionRoleArn?: string };
      for (const r of new Set([overrides.taskRoleArn ?? roles.taskRoleArn, overrides.executionRoleArn ?? roles.executionRoleArn])) {
        if (r) checks.push({ action: 'iam:PassRole', resource: r, context: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } });
      }
      if (Object.keys(tags).length) {
        const id = e.options.newTaskId?.() ?? createHash('sha256').update(JSON.stringify(body)).digest('hex').slice(0, 32);
        checks.push({ action: 'ecs:TagResource', resource: taskArnOf(id, cluster, e), context: { ...clusterCtx, ...tags, 'ecs:CreateAction': 'RunTask' } });
      }
      return checks;
    }
    case 'StopTask':
      return [{ action: 'ecs:StopTask', resource: taskArnOf(field<string>(body, 'task', op, 'ecs'), cluster, e), context: clusterCtx }];
    case 'DescribeTasks':
      return field<string[]>(body, 'tasks', op, 'ecs').map((t) => ({ action: 'ecs:DescribeTasks', resource: taskArnOf(t, cluster, e), context: clusterCtx }));
    default:
      throw new UnsupportedRequestError('ecs', op);
  }
}

// ---------------------------------------------------------------------------------------------
// Secrets Manager, SSM, KMS, Lambda
// ---------------------------------------------------------------------------------------------

function secretArnOf(secretId: string, e: Env): string {
  if (secretId.startsWith('arn:')) return secretId;
  return e.options.secretArn?.(secretId) ?? secretArnFor(secretId, e.region, e.accountId, e.partition);
}

function secretsChecks(op: string, body: Body, e: Env): AuthorizationCheck[] {
  switch (op) {
    case 'GetSecretValue':
    case 'DescribeSecret':
    case 'PutSecretValue':
    case 'DeleteSecret':
    case 'UpdateSecret':
    case 'ListSecretVersionIds':
      return [{ action: `secretsmanager:${op}`, resource: secretArnOf(field<string>(body, 'SecretId', op, 'secretsmanager'), e), context: {} }];
    case 'TagResource': {
      const tags = tagContext(body.Tags, 'Key', 'Value');
      return [{ action: 'secretsmanager:TagResource', resource: secretArnOf(field<string>(body, 'SecretId', op, 'secretsmanager'), e), context: tags }];
    }
    case 'CreateSecret': {
      // The new secret's ARN (name plus a random 6-character suffix) is what the policy is checked on.
      const name = field<string>(body, 'Name', op, 'secretsmanager');
      const resource = secretArnOf(name, e);
      const tags = tagContext(body.Tags, 'Key', 'Value');
      const checks: AuthorizationCheck[] = [{ action: 'secretsmanager:CreateSecret', resource, context: { 'secretsmanager:Name': name, ...tags } }];
      // Tags given at creation also need TagResource.
      if (Object.keys(tags).length) checks.push({ action: 'secretsmanager:TagResource', resource, context: tags });
      if (body.KmsKeyId !== undefined) throw new UnsupportedRequestError('secretsmanager', op, 'KmsKeyId (a customer managed key) is not emulated');
      return checks;
    }
    default:
      throw new UnsupportedRequestError('secretsmanager', op);
  }
}

function parameterArn(name: string, e: Env): string {
  if (name.startsWith('arn:')) return name;
  return `arn:${e.partition}:ssm:${e.region}:${e.accountId}:parameter/${name.replace(/^\//, '')}`;
}

function ssmChecks(op: string, body: Body, e: Env): AuthorizationCheck[] {
  switch (op) {
    case 'GetParameter':
      return [{ action: 'ssm:GetParameter', resource: parameterArn(field<string>(body, 'Name', op, 'ssm'), e), context: {} }];
    case 'GetParameters':
      // GetParameters is its own IAM action, checked on each parameter.
      return field<string[]>(body, 'Names', op, 'ssm').map((n) => ({ action: 'ssm:GetParameters', resource: parameterArn(n, e), context: {} }));
    default:
      throw new UnsupportedRequestError('ssm', op);
  }
}

/** A key id or key ARN -> the key's ARN (aliases are not emulated). */
function kmsKeyArn(keyId: string, op: string, e: Env): string {
  if (keyId.startsWith('alias/') || /:alias\//.test(keyId)) throw new UnsupportedRequestError('kms', op, 'key aliases are not emulated');
  return keyId.startsWith('arn:') ? keyId : `arn:${e.partition}:kms:${e.region}:${e.accountId}:key/${keyId}`;
}

/** KMS condition keys of a request: the encryption context and the caller's account. */
function kmsContext(body: Body, e: Env): Record<string, ContextValue> {
  const ctx: Record<string, ContextValue> = { 'kms:CallerAccount': e.accountId };
  const enc = body.EncryptionContext;
  if (enc && typeof enc === 'object') {
    const entries = Object.entries(enc as Record<string, unknown>);
    if (entries.length) ctx['kms:EncryptionContextKeys'] = entries.map(([k]) => k);
    for (const [k, v] of entries) ctx[`kms:EncryptionContext:${k}`] = String(v);
  }
  if (typeof body.KeySpec === 'string') ctx['kms:DataKeySpec'] = body.KeySpec;
  return ctx;
}

function kmsChecks(op: string, body: Body, e: Env): AuthorizationCheck[] {
  switch (op) {
    case 'Encrypt':
    case 'GenerateDataKey':
    case 'GenerateDataKeyWithoutPlaintext':
      return [{ action: `kms:${op}`, resource: kmsKeyArn(field<string>(body, 'KeyId', op, 'kms'), op, e), context: kmsContext(body, e) }];
    case 'Decrypt': {
      // A symmetric ciphertext names its key; KeyId, when given, must be that key (the service
      // checks that after authorization), so the check is on the key the ciphertext names.
      const blob = field<string>(body, 'CiphertextBlob', op, 'kms');
      const named = e.options.ciphertextKeyArn?.(blob);
      const keyId = named ?? (typeof body.KeyId === 'string' ? kmsKeyArn(body.KeyId, op, e) : undefined);
      if (!keyId) throw new MalformedRequestError('kms:Decrypt of a ciphertext that names no key the rehearsal knows, without KeyId');
      return [{ action: 'kms:Decrypt', resource: keyId, context: kmsContext(body, e) }];
    }
    default:
      throw new UnsupportedRequestError('kms', op);
  }
}

/** The function ARN of a name, partial ARN (`<acct>:function:<name>`) or ARN, with its qualifier. */
export function functionArnOf(nameOrArn: string, qualifier: string | undefined, e: { region: string; accountId: string; partition: string }): string {
  let arn: string;
  if (nameOrArn.startsWith('arn:')) arn = nameOrArn;
  else if (/^\d{12}:function:/.test(nameOrArn)) arn = `arn:${e.partition}:lambda:${e.region}:${nameOrArn}`;
  else {
    const [name, q] = nameOrArn.split(':');
    arn = `arn:${e.partition}:lambda:${e.region}:${e.accountId}:function:${name}${q ? `:${q}` : ''}`;
  }
  const hasQualifier = arn.split(':').length > 7;
  return qualifier && !hasQualifier ? `${arn}:${qualifier}` : arn;
}

function lambdaChecks(req: SdkRequest, e: Env): { operation: string; checks: AuthorizationCheck[] } {
  const url = new URL(req.path, 'http://gateway');
  const m = url.pathname.match(/^\/(2015-03-31|2021-11-15)\/functions\/([^/]+)\/(invocations|response-streaming-invocations)$/);
  if (!m || req.method.toUpperCase() !== 'POST') throw new UnsupportedRequestError('lambda', `${req.method} ${url.pathname}`);
  const operation = m[3] === 'invocations' ? 'Invoke' : 'InvokeWithResponseStream';
  const resource = functionArnOf(decodeURIComponent(m[2]), url.searchParams.get('Qualifier') ?? undefined, e);
  // Both operations are authorized as lambda:InvokeFunction.
  return { operation, checks: [{ action: 'lambda:InvokeFunction', resource, context: {} }] };
}

// ---------------------------------------------------------------------------------------------
// EventBridge Scheduler (REST: the operation is the method on /schedules/{name})
// ---------------------------------------------------------------------------------------------

/**
 * A schedule call is checked as `scheduler:<Operation>` on the schedule's ARN
 * (`schedule/<group>/<name>`, the group from the body or `?groupName=`, else `default`); creating
 * or updating one also passes its target's role, checked as `iam:PassRole` of that role with
 * `iam:PassedToService` = `scheduler.amazonaws.com`, as IAM checks it.
 */
function schedulerChecks(req: SdkRequest, e: Env): { operation: string; checks: AuthorizationCheck[] } {
  const url = new URL(req.path, 'http://gateway');
  const m = url.pathname.match(/^\/schedules\/([^/]+)$/);
  const operations: Record<string, string> = { POST: 'CreateSchedule', PUT: 'UpdateSchedule', GET: 'GetSchedule', DELETE: 'DeleteSchedule' };
  const operation = operations[req.method.toUpperCase()];
  if (!m || !operation) throw new UnsupportedRequestError('scheduler', `${req.method} ${url.pathname}`);
  const body = (req.body && typeof req.body === 'object' ? req.body : {}) as Body;
  const group = String(body.GroupName ?? url.searchParams.get('groupName') ?? 'default');
  const resource = `arn:${e.partition}:scheduler:${e.region}:${e.accountId}:schedule/${group}/${decodeURIComponent(m[1])}`;
  const checks: AuthorizationCheck[] = [{ action: `scheduler:${operation}`, resource, context: {} }];
  if (operation === 'CreateSchedule' || operation === 'UpdateSchedule') {
    const roleArn = (body.Target as { RoleArn?: unknown } | undefined)?.RoleArn;
    if (typeof roleArn !== 'string' || !roleArn) throw new MalformedRequestError(`scheduler:${operation} without Target.RoleArn`);
    checks.push({ action: 'iam:PassRole', resource: roleArn, context: { 'iam:PassedToService': 'scheduler.amazonaws.com' } });
  }
  return { operation, checks };
}

// ---------------------------------------------------------------------------------------------
// S3 (REST: the operation is the method and the query, the resource the bucket and key)
// ---------------------------------------------------------------------------------------------

/** An S3 object request, path-style (`/<bucket>/<key>`, what the SDK sends to an IP endpoint). */
export interface S3Request {
  readonly operation: string;
  readonly bucket: string;
  /** The object key, decoded; empty for a request on the bucket itself. */
  readonly key: string;
  readonly query: URLSearchParams;
}

/**
 * The S3 operation of a request. Only the object operations Corral's blob store sends are named;
 * anything else is unsupported (listing, copying, tagging, ACLs, ...).
 */
export function s3Request(method: string, path: string): S3Request {
  const url = new URL(path, 'http://gateway');
  const [, bucket = '', ...rest] = url.pathname.split('/');
  let key: string;
  try {
    key = decodeURIComponent(rest.join('/'));
  } catch {
    throw new MalformedRequestError(`s3: the key of ${url.pathname} is not valid percent-encoding`);
  }
  const q = url.searchParams;
  const m = method.toUpperCase();
  const unsupported = () => new UnsupportedRequestError('s3', `${m} ${url.pathname}${url.search}`);
  if (!bucket) throw unsupported();
  if (!key) throw unsupported();
  let operation: string;
  if (m === 'PUT') {
    if (q.has('partNumber') && q.has('uploadId')) operation = 'UploadPart';
    else if ([...q.keys()].every((k) => k === 'x-id')) operation = 'PutObject';
    else throw unsupported();
  } else if (m === 'POST') {
    if (q.has('uploads')) operation = 'CreateMultipartUpload';
    else if (q.has('uploadId')) operation = 'CompleteMultipartUpload';
    else throw unsupported();
  } else if (m === 'DELETE') operation = q.has('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject';
  else if (m === 'GET' && [...q.keys()].every((k) => k === 'x-id')) operation = 'GetObject';
  else if (m === 'HEAD') operation = 'HeadObject';
  else throw unsupported();
  return { operation, bucket, key, query: q };
}

/** The IAM action each object operation is authorized as (the multipart steps are `s3:PutObject`). */
const S3_ACTIONS: Record<string, string> = {
  PutObject: 's3:PutObject',
  CreateMultipartUpload: 's3:PutObject',
  UploadPart: 's3:PutObject',
  CompleteMultipartUpload: 's3:PutObject',
  AbortMultipartUpload: 's3:AbortMultipartUpload',
  GetObject: 's3:GetObject',
  HeadObject: 's3:GetObject',
  DeleteObject: 's3:DeleteObject',
};

/** The ARN of an object: `arn:aws:s3:::<bucket>/<key>` (S3 ARNs name no region or account). */
export function s3ObjectArn(bucket: string, key: string, partition = 'aws'): string {
  return `arn:${partition}:s3:::${bucket}/${key}`;
}

function s3Checks(req: SdkRequest, e: Env): { operation: string; checks: AuthorizationCheck[] } {
  const r = s3Request(req.method, req.path);
  return { operation: r.operation, checks: [{ action: S3_ACTIONS[r.operation], resource: s3ObjectArn(r.bucket, r.key, e.partition), context: {} }] };
}
