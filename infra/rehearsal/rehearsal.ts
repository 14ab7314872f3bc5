/**
 * The deploy rehearsal: Corral run as the synthesized template describes it, on this machine.
 *
 * - the CDK app is synthesized (`cdk synth`, offline) and every function runs from its bundled
 *   asset in that cloud assembly, in its own processes, with the template's handler, environment
 *   (references resolved to the rehearsal's resources), memory and timeout (`lambda-runtime.ts`);
 * - every AWS SDK call goes to one endpoint that checks it against the calling function's role
 *   policies from the template and answers `AccessDeniedException` where IAM would deny it
 *   (`aws-gateway.ts`, `authorize.ts`);
 * - DynamoDB tables are created from the template's definitions on dynalite or DynamoDB Local;
 *   SQS queues on a real-protocol emulator (fauxqs) with the template's FIFO, visibility and
 *   redrive settings, drained by the template's event source mapping (`event-source.ts`);
 * - API Gateway routes, integrations and limits come from the template (`api-gateway.ts`);
 * - ECS RunTask starts the sandbox agent with the image's command and the task definition's
 *   environment and port, reachable only where the security groups allow (`ecs.ts`, `network.ts`);
 * - ECS services (the stream tier, with `streamTier=fargate`) run their task definition's image
 *   asset as processes with its environment, port and task role, registered with the template's
 *   network load balancer (`load-balancer.ts`), which API Gateway reaches through the VPC link of
 *   an `HTTP_PROXY` integration; the events table's DynamoDB stream is DynamoDB Local's own;
 * - Secrets Manager, SSM, KMS (the template's keys, with their key policies) and Lambda's Invoke
 *   API are small emulations (`emulators.ts`); S3 keeps the template's buckets' objects as files
 *   (`s3.ts`).
 *
 * `startRehearsal` returns the API URL (the stack's `ApiUrl`), an API key made the way an
 * operator makes one (`scripts/create-api-key.ts`), and handles on everything for scenarios.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CreateTableCommand,
  DescribeTableCommand,
  DynamoDBClient,
  UpdateTimeToLiveCommand,
} from '@aws-sdk/client-dynamodb';
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import dynalite from 'dynalite';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AwsGateway, httpForwarder, type AwsCall, type Authorization, type Backend, type Caller } from './aws-gateway.js';
import { createAuthorizer } from './authorize.js';
import { buildModel, type ModelOverrides } from './build-model.js';
import { EcsEmulator, buildAgentBundle, dockerfileEntrypoint, imageFromDockerfile, type RehearsedImage } from './ecs.js';
import { NetworkLoadBalancerEmulator } from './load-balancer.js';
import { KmsEmulator, LambdaInvokeEmulator, SecretsManagerEmulator, SsmEmulator } from './emulators.js';
import { resourcePolicies } from './iam.js';
import { rehearsalContext } from './build-model.js';
import { RestApiGateway } from './api-gateway.js';
import { SqsEventSourceMapping } from './event-source.js';
import { LambdaFunctionRuntime } from './lambda-runtime.js';
import type { ModelEventRule, RehearsalModel } from './model.js';
import { PRIVATE_PREFIX, VpcNetwork } from './network.js';
import { S3Emulator } from './s3.js';
import { SchedulerEmulator } from './scheduler.js';
import { createApiKey } from '../../scripts/create-api-key.js';
import { dynamoDbLocalUnavailable, startDynamoDbLocal } from '../../test/helpers/dynamodb-local.js';

const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = resolve(HERE, '../..');
const PRELOAD = join(HERE, 'vpc-preload.mjs');

export const REHEARSAL_REGION = 'us-east-1';
/** fauxqs's account; every ARN of the rehearsal uses it so the queue ARNs agree. */
export const REHEARSAL_ACCOUNT = '000000000000';

export interface RehearsalOptions {
  /** CDK context for the synthesis (`-c key=value`). */
  context?: Record<string, string>;
  /** Use this cloud assembly instead of synthesizing (it must have been synthesized with the same context). */
  cloudAssembly?: string;
  /** `dynalite` (default) or `dynamodb-local` (AWS's DynamoDB Local, needs Java and the jar). */
  dynamodb?: 'dynalite' | 'dynamodb-local';
  /** The model key the SSM parameter holds. */
  modelApiKey?: string;
  /** The account's Lambda concurrency (reserved executions come out of it). @default 50 */
  accountConcurrency?: number;
  /** Where logs, workspaces and the assembly go. @default a fresh temporary directory */
  workDir?: string;
  /** Keep the work directory after `stop` (for reading the functions' logs). */
  keepWorkDir?: boolean;
  log?: (line: string) => void;
  /**
   * Stand-in internet names for the proxy service (`proxyService=fargate`): each resolves to
   * 127.0.0.1 in its tasks, which may then reach loopback (the rehearsal's internet). Never in
   * the template. @default none
   */
  egressHosts?: string[];
  /**
   * Extra CA certificates (PEM) the proxy service's tasks trust upstream
   * (`CORRAL_PROXY_UPSTREAM_CA`): the rehearsal's HTTPS "internet" serves certificates of its own
   * CA. Never in the template. @default none
   */
  upstreamCa?: string;
  /**
   * How many times faster than real time EventBridge Scheduler's schedules run (`scheduler.ts`):
   * at 15 a one-minute schedule fires every 4 seconds, which leaves a cold start of the fire
   * function on a loaded machine time to finish before the next tick. @default 15
   */
  scheduleTimeScale?: number;
}

export interface Rehearsal {
  model: RehearsalModel;
  /** The stack's `ApiUrl`: what the SDK's `baseURL` is set to. */
  apiUrl: string;
  apiKey: string;
  workDir: string;
  accountConcurrency: number;
  /** DynamoDB as the operator reaches it (no IAM in between). */
  dynamoEndpoint: string;
  gateway: AwsGateway;
  api: RestApiGateway;
  ecs: EcsEmulator;
  /** The template's network load balancers (the stream tier's). */
  loadBalancers: NetworkLoadBalancerEmulator[];
  network: VpcNetwork;
  secrets: SecretsManagerEmulator;
  kms: KmsEmulator;
  s3: S3Emulator;
  /** EventBridge Scheduler: the schedules the API made, and every firing (time-scaled). */
  scheduler: SchedulerEmulator;
  functions: Map<string, LambdaFunctionRuntime>;
  /** The function of a logical id prefix (`HarnessStepFunction`, `ApiStreamHandler`, ...). */
  fn(prefix: string): LambdaFunctionRuntime;
  /** Runs a scheduled rule's target now, as EventBridge would at its next tick. */
  runSchedule(ruleLogicalIdPrefix: string): Promise<unknown>;
  /** Where a function's logs are. */
  logFile(prefix: string): string;
  stop(): Promise<void>;
}

/** `npx cdk synth` into `outDir`, offline, with the given context. */
export async function synthesize(outDir: string, context: Record<string, string> = {}, log?: (l: string) => void): Promise<string> {
  const args = ['cdk', 'synth', '-q', '-o', outDir, ...Object.entries(context).flatMap(([k, v]) => ['-c', `${k}=${v}`])];
  log?.(`synthesizing: npx ${args.join(' ')}`);
  const env: NodeJS.ProcessEnv = { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };
  for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE']) delete env[k];
  await new Promise<void>((resolvePromise, reject) => {
    const child = spawn('npx', args, { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.once('exit', (code) => (code === 0 ? resolvePromise() : reject(new Error(`cdk synth failed (${code}):\n${out.slice(-4000)}`))));
  });
  return outDir;
}

async function startDynamo(kind: 'dynalite' | 'dynamodb-local'): Promise<{ endpoint: string; close(): Promise<void> }> {
  if (kind === 'dynalite') {
    const server: Server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    return {
      endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      close: () => new Promise<void>((r) => server.close(() => r())),
    };
  }
  const unavailable = dynamoDbLocalUnavailable();
  if (unavailable) throw new Error(`DynamoDB Local cannot run: ${unavailable}`);
  const local = await startDynamoDbLocal({ sharedDb: true });
  return { endpoint: local.endpoint, close: () => local.close() };
}

export async function startRehearsal(opts: RehearsalOptions = {}): Promise<Rehearsal> {
  const log = opts.log ?? (() => undefined);
  const workDir = opts.workDir ?? mkdtempSync(join(tmpdir(), 'corral-rehearsal-'));
  mkdirSync(join(workDir, 'logs'), { recursive: true });
  const cleanups: Array<() => Promise<void> | void> = [];
  const stopAll = async () => {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch((err) => log(`cleanup: ${(err as Error).message}`));
    if (!opts.keepWorkDir && !opts.workDir) rmSync(workDir, { recursive: true, force: true });
  };
  try {
    const assembly = opts.cloudAssembly ?? (await synthesize(join(workDir, 'cdk.out'), opts.context, log));
    const template = JSON.parse(readFileSync(join(assembly, `${opts.context?.stackName ?? 'Corral'}.template.json`), 'utf8'));

    // Backends first: the physical names the template's references resolve to depend on them.
    const streams = Object.values(template.Resources as Record<string, { Type: string; Properties?: { StreamSpecification?: unknown } }>).some((r) => r.Type === 'AWS::DynamoDB::Table' && r.Properties?.StreamSpecification);
    if (streams && opts.dynamodb !== 'dynamodb-local') throw new Error('the template enables a DynamoDB stream (streamTier=fargate): rehearse it on DynamoDB Local (dynalite has no Streams)');
    const dynamo = await startDynamo(opts.dynamodb ?? 'dynalite');
    cleanups.push(() => dynamo.close());
    const { startFauxqs } = await import('fauxqs');
    const fauxqs = await startFauxqs({ port: 0, logger: false });
    cleanups.push(async () => {
      await (fauxqs as { stop?: () => Promise<void> }).stop?.();
    });
    const sqsEndpoint = `http://127.0.0.1:${fauxqs.port}`;
    // The AWS endpoint comes up first: queue URLs point at it (the SQS client sends to the
    // queue's URL, as it does on AWS), so they are known before the template is resolved.
    const callers = new Map<string, Caller>();
    const backends: Record<string, Backend> = {};
    let authorizer: (call: AwsCall) => Authorization[] | Promise<Authorization[]> = () => {
      throw new Error('the rehearsal is still starting');
    };
    const gateway = new AwsGateway({ callers, backends, authorize: (call) => authorizer(call) });
    const gatewayUrl = await gateway.start();
    cleanups.push(() => gateway.close());
    const overrides: ModelOverrides = {
      region: REHEARSAL_REGION,
      account: REHEARSAL_ACCOUNT,
      queueUrlBase: `${gatewayUrl}/${REHEARSAL_ACCOUNT}`,
    };
    let model = buildModel(template, assembly, overrides);
    log(`model: ${model.functions.length} functions, ${model.tables.length} tables, ${model.queues.length} queues, ${model.restApi.resources.length} API resources`);

    const admin = { region: REHEARSAL_REGION, credentials: { accessKeyId: 'RehearsalOperator', secretAccessKey: 'x' } };
    const ddb = new DynamoDBClient({ ...admin, endpoint: dynamo.endpoint });
    cleanups.push(() => ddb.destroy());
    for (const t of model.tables) {
      const created = await ddb.send(
        new CreateTableCommand({
          TableName: t.name,
          BillingMode: 'PAY_PER_REQUEST',
          StreamSpecification: t.streamViewType ? { StreamEnabled: true, StreamViewType: t.streamViewType as 'KEYS_ONLY' } : undefined,
          KeySchema: t.keySchema,
          AttributeDefinitions: t.attributeDefinitions,
          GlobalSecondaryIndexes: t.globalSecondaryIndexes.length ? (t.globalSecondaryIndexes as ConstructorParameters<typeof CreateTableCommand>[0]['GlobalSecondaryIndexes']) : undefined,
        }),
      );
      for (let i = 0; i < 100; i++) {
        const d = await ddb.send(new DescribeTableCommand({ TableName: t.name }));
        if (d.Table?.TableStatus === 'ACTIVE') break;
        await new Promise((r) => setTimeout(r, 50));
      }
      // The stream's ARN is the one DynamoDB gives it (its label is the time it was enabled).
      const streamArn = created.TableDescription?.LatestStreamArn;
      if (t.streamViewType) {
        if (!streamArn) throw new Error(`table ${t.name}: DynamoDB reports no stream`);
        (overrides.physicalIds ??= {})[t.logicalId] = { attributes: { StreamArn: streamArn } };
      }
      if (t.ttlAttribute && opts.dynamodb === 'dynamodb-local') {
        await ddb.send(new UpdateTimeToLiveCommand({ TableName: t.name, TimeToLiveSpecification: { Enabled: true, AttributeName: t.ttlAttribute } }));
      }
    }
    if (overrides.physicalIds) model = buildModel(template, assembly, overrides);
    const sqsAdmin = new SQSClient({ ...admin, endpoint: sqsEndpoint });
    cleanups.push(() => sqsAdmin.destroy());
    // Dead-letter queues first: a redrive policy names an existing queue.
    const ordered = [...model.queues].sort((a, b) => Number(!!a.redrive) - Number(!!b.redrive));
    for (const q of ordered) {
      const attributes: Record<string, string> = {};
      if (q.fifo) attributes.FifoQueue = 'true';
      if (q.contentBasedDeduplication !== undefined) attributes.ContentBasedDeduplication = String(q.contentBasedDeduplication);
      if (q.visibilityTimeoutSeconds !== undefined) attributes.VisibilityTimeout = String(q.visibilityTimeoutSeconds);
      if (q.retentionSeconds !== undefined) attributes.MessageRetentionPeriod = String(q.retentionSeconds);
      if (q.redrive) attributes.RedrivePolicy = JSON.stringify({ deadLetterTargetArn: q.redrive.deadLetterTargetArn, maxReceiveCount: String(q.redrive.maxReceiveCount) });
      const out = await sqsAdmin.send(new CreateQueueCommand({ QueueName: q.name, Attributes: attributes }));
      const check = await sqsAdmin.send(new GetQueueAttributesCommand({ QueueUrl: out.QueueUrl, AttributeNames: ['QueueArn'] }));
      if (check.Attributes?.QueueArn !== q.arn) throw new Error(`queue ${q.name}: the emulator's ARN ${check.Attributes?.QueueArn} is not the template's ${q.arn}`);
    }

    // The VPC and who is in it.
    const network = new VpcNetwork(new Map(model.securityGroups.map((g) => [g.id, g])), model.vpcCidr);
    cleanups.push(() => network.close());

    // Identities: one access key per function (its environments share it), one for each
    // event source mapping (which polls with the function's role).
    const keyOf = new Map<string, string>();
    for (const f of model.functions) {
      const key = `AKIA${randomBytes(8).toString('hex').toUpperCase()}`;
      callers.set(key, { accessKeyId: key, name: f.name, roleLogicalId: f.roleLogicalId, roleArn: f.roleArn });
      keyOf.set(f.logicalId, key);
    }

    // A task role's credentials, as ECS hands them to the task's containers.
    const taskRoleKeys = new Map<string, string>();
    for (const d of model.taskDefinitions) {
      if (!d.taskRoleLogicalId || !d.taskRoleArn || !model.services.some((s) => s.taskDefinitionArn === d.arn)) continue;
      const key = `ASIA${randomBytes(8).toString('hex').toUpperCase()}`;
      callers.set(key, { accessKeyId: key, name: `${d.family} task`, roleLogicalId: d.taskRoleLogicalId, roleArn: d.taskRoleArn });
      taskRoleKeys.set(d.arn, key);
    }
    const loadBalancers = model.loadBalancers.map((l) => new NetworkLoadBalancerEmulator(l, model.targetGroups, network));
    // The VPC's DNS: an internal load balancer's name resolves to its private address. Nothing
    // here resolves `*.elb.amazonaws.com`, so the environments that name one (the harness's
    // CORRAL_MODEL_PROXY_URL, the proxy service's address) get the address it would answer.
    for (const lb of loadBalancers) {
      const environments = [...model.functions.map((f) => f.environment), ...model.taskDefinitions.flatMap((d) => d.containers.map((c) => c.environment))];
      for (const env of environments) {
        for (const [k, v] of Object.entries(env)) if (v.includes(lb.lb.dnsName)) env[k] = v.split(lb.lb.dnsName).join(lb.address);
      }
    }
    cleanups.push(() => loadBalancers.forEach((l) => l.close()));
    for (const lb of loadBalancers) await lb.listen();

    const secrets = new SecretsManagerEmulator(`arn:aws:secretsmanager:${REHEARSAL_REGION}:${REHEARSAL_ACCOUNT}:secret:`);
    const ssm = new SsmEmulator(`arn:aws:ssm:${REHEARSAL_REGION}:${REHEARSAL_ACCOUNT}:parameter`);
    // The model key's parameter, named by whoever reads it: the harness, or the proxy service's task.
    const keyReaders = [...model.functions.map((f) => f.environment), ...model.taskDefinitions.flatMap((d) => d.containers.map((c) => c.environment))];
    for (const environment of keyReaders) {
      const parameter = environment.CORRAL_MODEL_API_KEY_PARAMETER;
      if (parameter) ssm.put(parameter, opts.modelApiKey ?? 'rehearsal-model-key');
    }
    const functions = new Map<string, LambdaFunctionRuntime>();
    const byName = (ref: string) => {
      const name = ref.startsWith('arn:') ? ref.split(':')[6] : ref;
      return [...functions.values()].find((r) => r.fn.name === name);
    };
    const agentBundle = buildAgentBundle(REPO_ROOT, join(workDir, 'agent.mjs'));
    const ecs = new EcsEmulator({
      region: REHEARSAL_REGION,
      account: REHEARSAL_ACCOUNT,
      clusters: model.clusters,
      taskDefinitions: model.taskDefinitions,
      subnets: model.subnets,
      network,
      imageCommand: dockerfileEntrypoint(join(REPO_ROOT, 'sandbox', 'Dockerfile')),
      agentBundle,
      dataDir: workDir,
      images: assemblyImages(assembly, opts.context?.stackName ?? 'Corral'),
      servicePreload: PRELOAD,
      // The proxy service's tasks reach the rehearsal's internet (loopback) by the stand-in names.
      serviceEnvironment: (service) => {
        const def = model.taskDefinitions.find((d) => d.arn === service.taskDefinitionArn);
        if (!def?.containers[0]?.environment.CORRAL_PROXY_SANDBOX_PORT) return {};
        return {
          CORRAL_PROXY_ALLOW_PRIVATE_ADDRESSES: '127.0.0.1',
          ...(opts.egressHosts?.length ? { CORRAL_REHEARSAL_HOSTS: opts.egressHosts.map((h) => `${h}=127.0.0.1`).join(',') } : {}),
          ...(opts.upstreamCa ? { CORRAL_PROXY_UPSTREAM_CA: opts.upstreamCa } : {}),
        };
      },
      // A sandbox task whose security groups reach no internet reaches the load balancer its
      // egress channel names, from its own address, if the security groups allow it.
      egressBridge: (from, host, port) => {
        // The channel names the load balancer's address (its DNS name resolved, above) or its name.
        const lb = loadBalancers.find((l) => l.address === host || l.lb.dnsName.toLowerCase() === host.toLowerCase());
        if (!lb) return Promise.reject(new Error(`no load balancer is named ${host}`));
        const verdict = network.check(from, lb.address, port);
        if (!verdict.ok) {
          network.refusals.push({ from, to: lb.address, port, reason: verdict.reason, at: new Date().toISOString() });
          return Promise.reject(new Error(verdict.reason));
        }
        network.accepted.push({ from, to: lb.address, port });
        return lb.connect(port);
      },
      taskRoleEnvironment: (d) => {
        const key = taskRoleKeys.get(d.arn);
        return {
          AWS_REGION: REHEARSAL_REGION,
          AWS_DEFAULT_REGION: REHEARSAL_REGION,
          AWS_ENDPOINT_URL: gatewayUrl,
          AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
          ...(key ? { AWS_ACCESS_KEY_ID: key, AWS_SECRET_ACCESS_KEY: randomBytes(20).toString('base64'), AWS_SESSION_TOKEN: randomBytes(32).toString('base64') } : {}),
        };
      },
      onServiceTask: (what, service, task) => {
        for (const target of service.loadBalancers) {
          const lb = loadBalancers.find((l) => l.serves(target.targetGroupArn));
          if (!lb) throw new Error(`service ${service.name} registers in ${target.targetGroupArn}, which no load balancer of the template forwards to`);
          if (what === 'running') lb.register(target.targetGroupArn, { id: task.id, address: task.address, port: target.containerPort });
          else lb.deregister(target.targetGroupArn, task.id);
        }
      },
      // EventBridge: each ECS event goes to the functions of the rules whose pattern matches it
      // (the sandbox cluster's task state changes, to the reaper), asynchronously, as deployed.
      onTaskStateChange: (event) => {
        for (const rule of model.eventRules.filter((r) => eventMatches(r.pattern, event))) {
          const runtime = functions.get(rule.functionLogicalId);
          if (!runtime) continue;
          eventDeliveries.push(
            runtime.invoke(event).then(
              (r) => {
                if (!r.ok) log(`rule ${rule.ruleLogicalId}: ${r.kind}: ${r.error.errorType}: ${r.error.errorMessage}`);
              },
              (err: unknown) => log(`rule ${rule.ruleLogicalId}: ${(err as Error).message}`),
            ),
          );
        }
      },
    });
    const eventDeliveries: Array<Promise<void>> = [];
    cleanups.push(async () => {
      await ecs.close();
      await Promise.allSettled(eventDeliveries);
    });
    const kms = new KmsEmulator(
      [...resourcePolicies(rehearsalContext(template, overrides)).values()].filter((p) => p.keyPolicy).map((p) => p.resourceArn),
    );
    const authorize = createAuthorizer(template, model, overrides, { secrets, kms, newTaskId: () => ecs.reserveTaskId() });
    authorizer = authorize;
    // The template's buckets, objects as files under the work directory.
    const s3 = new S3Emulator({
      dir: join(workDir, 's3'),
      buckets: model.buckets.map((b) => b.name),
      mayList: (call, bucket) => authorize.check(call.caller, 's3:ListBucket', model.buckets.find((b) => b.name === bucket)?.arn ?? `arn:aws:s3:::${bucket}`).allowed,
    });
    // EventBridge Scheduler: a schedule invokes its target as its role, which EventBridge
    // Scheduler must be trusted to assume and which must allow lambda:InvokeFunction on it.
    const rehearsalCtx = rehearsalContext(template, overrides);
    const roleByArn = (arn: string) =>
      Object.entries(template.Resources as Record<string, { Type: string; Properties?: { AssumeRolePolicyDocument?: unknown } }>).find(
        ([id, r]) => r.Type === 'AWS::IAM::Role' && rehearsalCtx.physicalIds.getAtt(id, 'Arn', rehearsalCtx) === arn,
      );
    const scheduler = new SchedulerEmulator({
      arnPrefix: `arn:aws:scheduler:${REHEARSAL_REGION}:${REHEARSAL_ACCOUNT}:schedule/`,
      timeScale: opts.scheduleTimeScale ?? 15,
      invoke: async (target, payload) => {
        const found = roleByArn(target.RoleArn);
        if (!found) throw new Error(`the schedule's role ${target.RoleArn} is not a role of the template`);
        const [roleLogicalId, roleResource] = found;
        if (!JSON.stringify(roleResource.Properties?.AssumeRolePolicyDocument ?? {}).includes('scheduler.amazonaws.com')) {
          throw new Error(`EventBridge Scheduler may not assume ${roleLogicalId}: its trust policy does not name scheduler.amazonaws.com`);
        }
        const caller: Caller = { accessKeyId: 'EventBridgeScheduler', name: 'EventBridgeScheduler', roleLogicalId, roleArn: target.RoleArn };
        const decision = authorize.check(caller, 'lambda:InvokeFunction', target.Arn);
        if (!decision.allowed) {
          gateway.denials.push({ function: 'EventBridge Scheduler', service: 'lambda', operation: 'Invoke', action: decision.action, resource: decision.resource, message: decision.message });
          throw new Error(decision.message);
        }
        const runtime = byName(target.Arn);
        if (!runtime) throw new Error(`the schedule's target ${target.Arn} is not a function of the template`);
        const result = await runtime.invoke(JSON.parse(payload));
        if (!result.ok) throw new Error(`${result.kind}: ${result.error.errorType}: ${result.error.errorMessage}`);
        return result.value;
      },
      onError: (message) => log(`EventBridge Scheduler: ${message}`),
    });
    cleanups.push(() => scheduler.close());
    Object.assign(backends, {
      scheduler,
      dynamodb: httpForwarder(dynamo.endpoint),
      // The emulator knows its queues by its own URLs.
      sqs: httpForwarder(sqsEndpoint, (call) => {
        const body = Buffer.from(call.body.toString('utf8').split(`${gatewayUrl}/`).join(`http://sqs.${REHEARSAL_REGION}.localhost:${fauxqs.port}/`));
        return { ...call, body };
      }),
      ecs,
      secretsmanager: secrets,
      ssm,
      kms,
      s3,
      lambda: new LambdaInvokeEmulator((ref) => {
        const r = byName(ref);
        return r ? (event) => r.invoke(event) : undefined;
      }),
    });

    // The account's concurrency less what functions reserve is shared by all the others.
    let unreservedInUse = 0;
    const accountConcurrency = opts.accountConcurrency ?? 50;
    const reservedTotal = model.functions.reduce((n, f) => n + (f.reservedConcurrency ?? 0), 0);
    if (reservedTotal > accountConcurrency) throw new Error(`functions reserve ${reservedTotal} executions, more than the account's ${accountConcurrency}`);
    const unreservedPool = accountConcurrency - reservedTotal;
    const unreserved = {
      available: () => unreservedInUse < unreservedPool,
      take: () => void unreservedInUse++,
      give: () => void unreservedInUse--,
    };
    for (const f of model.functions) {
      const key = keyOf.get(f.logicalId)!;
      const vpcAddress = f.vpc ? network.join({ name: `function ${f.name}`, securityGroups: f.vpc.securityGroups }) : undefined;
      const runtime = new LambdaFunctionRuntime(
        {
          ...f,
          runtimeEnvironment: {
            AWS_REGION: REHEARSAL_REGION,
            AWS_DEFAULT_REGION: REHEARSAL_REGION,
            AWS_ACCESS_KEY_ID: key,
            AWS_SECRET_ACCESS_KEY: randomBytes(20).toString('base64'),
            AWS_SESSION_TOKEN: randomBytes(32).toString('base64'),
            AWS_ENDPOINT_URL: gatewayUrl,
            AWS_XRAY_DAEMON_ADDRESS: '127.0.0.1:2000',
            AWS_XRAY_CONTEXT_MISSING: 'LOG_ERROR',
            // Lambda runs Node 22; this machine runs 20, which the SDK would warn about on every client.
            AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
            ...(vpcAddress ? { CORRAL_REHEARSAL_SOURCE_ADDRESS: vpcAddress, CORRAL_REHEARSAL_PRIVATE_PREFIX: PRIVATE_PREFIX } : {}),
          },
          preload: vpcAddress ? [PRELOAD] : [],
          logFile: join(workDir, 'logs', `${f.logicalId}.log`),
        },
        unreserved,
      );
      functions.set(f.logicalId, runtime);
      cleanups.push(() => runtime.close());
    }
    const fn = (prefix: string) => {
      const hit = [...functions.entries()].find(([id]) => id.startsWith(prefix));
      if (!hit) throw new Error(`no function ${prefix}* in the template`);
      return hit[1];
    };

    const api = new RestApiGateway({
      restApiId: model.restApi.id,
      stage: model.restApi.stage,
      throttle: model.restApi.throttle,
      binaryMediaTypes: model.restApi.binaryMediaTypes,
      account: REHEARSAL_ACCOUNT,
      resources: model.restApi.resources.map((r) => ({
        id: r.id,
        path: r.path,
        methods: new Map(
          r.methods.map((m) => {
            if (m.vpcLink) {
              const link = m.vpcLink;
              const integration = {
                functionName: `VPC link ${link.id}`,
                streaming: m.streaming,
                timeoutMs: m.timeoutMs,
                invoke: () => Promise.reject(new Error('an HTTP integration invokes no function')),
                invokeStream: () => Promise.reject(new Error('an HTTP integration invokes no function')),
                http: {
                  uri: link.uri,
                  httpMethod: link.integrationHttpMethod,
                  requestParameters: link.requestParameters,
                  // The VPC link reaches the load balancers it names, and nothing else.
                  connect: (host: string, port: number) => {
                    const lb = loadBalancers.find((l) => l.lb.dnsName.toLowerCase() === host.toLowerCase());
                    if (!lb || !link.targetArns.includes(lb.lb.arn)) return Promise.reject(new Error(`VPC link ${link.id} does not reach ${host}`));
                    return lb.connect(port);
                  },
                },
              };
              return [m.httpMethod, integration];
            }
            const runtime = functions.get(m.functionLogicalId!);
            if (!runtime) throw new Error(`API method ${m.httpMethod} ${r.path} integrates ${m.functionLogicalId}, which is not a function of the template`);
            return [
              m.httpMethod,
              {
                functionName: runtime.fn.name,
                streaming: m.streaming,
                timeoutMs: m.timeoutMs,
                invoke: (event: unknown) => runtime.invoke(event),
                invokeStream: (event: unknown, sink: Parameters<LambdaFunctionRuntime['invokeStream']>[1], signal: AbortSignal) => runtime.invokeStream(event, sink, signal),
              },
            ];
          }),
        ),
      })),
    });
    const apiUrl = await api.start();
    cleanups.push(() => api.close());

    for (const es of model.eventSources) {
      const runtime = functions.get(es.functionLogicalId)!;
      const queue = model.queues.find((q) => q.arn === es.queueArn);
      if (!queue) throw new Error(`event source mapping of ${es.functionLogicalId}: no queue ${es.queueArn}`);
      const key = `AKIA${randomBytes(8).toString('hex').toUpperCase()}`;
      const fnModel = model.functions.find((f) => f.logicalId === es.functionLogicalId)!;
      callers.set(key, { accessKeyId: key, name: `event source mapping of ${fnModel.name}`, roleLogicalId: fnModel.roleLogicalId, roleArn: fnModel.roleArn });
      const sqs = new SQSClient({ region: REHEARSAL_REGION, endpoint: gatewayUrl, credentials: { accessKeyId: key, secretAccessKey: 'x' } });
      const mapping = new SqsEventSourceMapping({
        sqs,
        queueUrl: queue.url,
        queueArn: queue.arn,
        region: REHEARSAL_REGION,
        batchSize: es.batchSize,
        reportBatchItemFailures: es.reportBatchItemFailures,
        maxConcurrency: Math.min(es.maxConcurrency ?? 5, 5),
        invoke: (event) => runtime.invoke(event),
        onError: (err) => log(`event source mapping of ${fnModel.name}: ${(err as Error).name}: ${(err as Error).message}`),
      });
      await mapping.start();
      cleanups.push(async () => {
        await mapping.stop();
        sqs.destroy();
      });
    }

    // The services, as CloudFormation creates them: done once their tasks run and are in service.
    for (const service of model.services) {
      await ecs.startService(service);
      for (const target of service.loadBalancers) {
        const lb = loadBalancers.find((l) => l.serves(target.targetGroupArn))!;
        for (let i = 0; lb.healthyTargets(target.targetGroupArn) < service.desiredCount; i++) {
          if (i > 300) throw new Error(`service ${service.name}: ${lb.healthyTargets(target.targetGroupArn)} of ${service.desiredCount} targets healthy after 30 s`);
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      log(`service ${service.name}: ${service.desiredCount} tasks in service`);
    }

    const stateTable = model.outputs.StateTableName;
    if (!stateTable) throw new Error('the template has no StateTableName output');
    const apiKey = await createApiKey({ table: stateTable, tenant: 'rehearsal', client: ddb });

    return {
      model,
      apiUrl,
      apiKey,
      workDir,
      accountConcurrency,
      dynamoEndpoint: dynamo.endpoint,
      gateway,
      api,
      ecs,
      loadBalancers,
      network,
      secrets,
      kms,
      s3,
      scheduler,
      functions,
      fn,
      logFile: (prefix) => join(workDir, 'logs', `${[...functions.keys()].find((id) => id.startsWith(prefix))}.log`),
      async runSchedule(prefix) {
        const rule = model.schedules.find((s) => s.ruleLogicalId.startsWith(prefix));
        if (!rule) throw new Error(`no scheduled rule ${prefix}*`);
        const result = await functions.get(rule.functionLogicalId)!.invoke({
          version: '0',
          id: randomBytes(16).toString('hex'),
          'detail-type': 'Scheduled Event',
          source: 'aws.events',
          account: REHEARSAL_ACCOUNT,
          time: new Date().toISOString(),
          region: REHEARSAL_REGION,
          resources: [`arn:aws:events:${REHEARSAL_REGION}:${REHEARSAL_ACCOUNT}:rule/${rule.ruleLogicalId}`],
          detail: {},
        });
        if (!result.ok) throw new Error(`scheduled ${rule.ruleLogicalId} failed: ${result.kind}: ${result.error.errorType}: ${result.error.errorMessage}`);
        return result.value;
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** The cloud assembly's container image assets that the rehearsal can run (a Dockerfile whose COPYs it follows), by image reference. */
function assemblyImages(assembly: string, stackName: string): Map<string, RehearsedImage> {
  const images = new Map<string, RehearsedImage>();
  const manifest = JSON.parse(readFileSync(join(assembly, `${stackName}.assets.json`), 'utf8')) as {
    dockerImages?: Record<string, { source: { directory: string; dockerFile?: string }; destinations: Record<string, { repositoryName: string; imageTag: string }> }>;
  };
  for (const image of Object.values(manifest.dockerImages ?? {})) {
    // The sandbox image (its own Dockerfile) is the sandbox agent's: RunTask runs that bundle.
    if (image.source.dockerFile) continue;
    for (const d of Object.values(image.destinations)) {
      const repo = d.repositoryName.replace('${AWS::AccountId}', REHEARSAL_ACCOUNT).replace('${AWS::Region}', REHEARSAL_REGION);
      images.set(`${REHEARSAL_ACCOUNT}.dkr.ecr.${REHEARSAL_REGION}.amazonaws.com/${repo}:${d.imageTag}`, imageFromDockerfile(join(assembly, image.source.directory)));
    }
  }
  return images;
}

/** Whether an EventBridge pattern (source, detail-type, and exact values of top-level detail fields) matches `event`. */
export function eventMatches(pattern: ModelEventRule['pattern'], event: Record<string, unknown>): boolean {
  if (pattern.source && !pattern.source.includes(String(event.source))) return false;
  if (pattern['detail-type'] && !pattern['detail-type'].includes(String(event['detail-type']))) return false;
  const detail = (event.detail ?? {}) as Record<string, unknown>;
  for (const [k, allowed] of Object.entries(pattern.detail ?? {})) if (!allowed.includes(detail[k])) return false;
  return true;
}
