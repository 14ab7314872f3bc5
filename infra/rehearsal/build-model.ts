/**
 * The rehearsal's model of a synthesized template (`model.ts`): every resource the rehearsal
 * runs, with references resolved to the physical names the rehearsal gives its resources, the
 * way CloudFormation would invent them.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { ModelFunction, ModelQueue, ModelRestApi, ModelTable, RehearsalModel } from './model.js';
import type { SecurityGroup, SecurityGroupRule } from './network.js';
import type { RehearsedTaskDefinition } from './ecs.js';

export interface ModelOverrides {
  region: string;
  account: string;
  /** The URL of a queue of this name (the emulator's). */
  queueUrl(name: string): string;
  stackName?: string;
}

type Json = unknown;
interface CfnResource {
  Type: string;
  Properties?: Record<string, Json>;
  Metadata?: Record<string, Json>;
  DependsOn?: string | string[];
}
export interface CfnTemplate {
  Resources: Record<string, CfnResource>;
  Outputs?: Record<string, { Value: Json }>;
  Parameters?: Record<string, { Default?: Json }>;
  Conditions?: Record<string, Json>;
}

const suffix = (logicalId: string, n = 12) => createHash('sha256').update(logicalId).digest('hex').slice(0, n).toUpperCase();
const hexId = (prefix: string, logicalId: string) => `${prefix}-${createHash('sha256').update(logicalId).digest('hex').slice(0, 17)}`;

/** Resolves intrinsic functions against invented physical ids. */
export class TemplateResolver {
  constructor(
    readonly template: CfnTemplate,
    readonly o: ModelOverrides,
  ) {}

  get stack() {
    return this.o.stackName ?? 'Corral';
  }

  private generatedName(logicalId: string, max = 64) {
    const s = `${this.stack}-${logicalId}`;
    const tail = `-${suffix(logicalId)}`;
    return `${s.slice(0, max - tail.length)}${tail}`;
  }

  private resource(logicalId: string): CfnResource {
    const r = this.template.Resources[logicalId];
    if (!r) throw new Error(`the template has no resource ${logicalId}`);
    return r;
  }

  queueName(logicalId: string): string {
    const p = this.resource(logicalId).Properties ?? {};
    if (typeof p.QueueName === 'string') return p.QueueName;
    const fifo = p.FifoQueue === true || p.FifoQueue === 'true';
    return fifo ? `${this.generatedName(logicalId, 75)}.fifo` : this.generatedName(logicalId, 80);
  }

  ref(logicalId: string): string {
    const { region, account } = this.o;
    switch (logicalId) {
      case 'AWS::Region':
        return region;
      case 'AWS::AccountId':
        return account;
      case 'AWS::Partition':
        return 'aws';
      case 'AWS::URLSuffix':
        return 'amazonaws.com';
      case 'AWS::StackName':
        return this.stack;
      case 'AWS::StackId':
        return `arn:aws:cloudformation:${region}:${account}:stack/${this.stack}/${suffix(this.stack, 8)}`;
      case 'AWS::NoValue':
        return undefined as unknown as string;
    }
    if (this.template.Parameters?.[logicalId]) return String(this.template.Parameters[logicalId].Default ?? '');
    const r = this.resource(logicalId);
    const p = r.Properties ?? {};
    switch (r.Type) {
      case 'AWS::DynamoDB::Table':
        return typeof p.TableName === 'string' ? p.TableName : this.generatedName(logicalId, 255);
      case 'AWS::SQS::Queue':
        return this.o.queueUrl(this.queueName(logicalId));
      case 'AWS::Lambda::Function':
        return typeof p.FunctionName === 'string' ? p.FunctionName : this.generatedName(logicalId, 64);
      case 'AWS::IAM::Role':
        return typeof p.RoleName === 'string' ? p.RoleName : this.generatedName(logicalId, 64);
      case 'AWS::ECS::Cluster':
        return typeof p.ClusterName === 'string' ? p.ClusterName : this.generatedName(logicalId, 255);
      case 'AWS::ECS::TaskDefinition':
        return `arn:aws:ecs:${region}:${account}:task-definition/${this.taskFamily(logicalId)}:1`;
      case 'AWS::EC2::SecurityGroup':
        return hexId('sg', logicalId);
      case 'AWS::EC2::Subnet':
        return hexId('subnet', logicalId);
      case 'AWS::EC2::VPC':
        return hexId('vpc', logicalId);
      case 'AWS::Logs::LogGroup':
        return typeof p.LogGroupName === 'string' ? p.LogGroupName : this.generatedName(logicalId, 255);
      case 'AWS::SNS::Topic':
        return `arn:aws:sns:${region}:${account}:${this.generatedName(logicalId, 256)}`;
      case 'AWS::ApiGateway::RestApi':
      case 'AWS::ApiGateway::Resource':
      case 'AWS::ApiGateway::Deployment':
        return suffix(logicalId, 10).toLowerCase();
      case 'AWS::ApiGateway::Stage':
        return String(p.StageName ?? 'prod');
      default:
        return this.generatedName(logicalId, 128);
    }
  }

  taskFamily(logicalId: string): string {
    const p = this.resource(logicalId).Properties ?? {};
    return typeof p.Family === 'string' ? p.Family : `${this.stack}${logicalId}`;
  }

  getAtt(logicalId: string, attr: string): string {
    const { region, account } = this.o;
    const r = this.resource(logicalId);
    const ref = () => this.ref(logicalId);
    switch (`${r.Type}.${attr}`) {
      case 'AWS::DynamoDB::Table.Arn':
        return `arn:aws:dynamodb:${region}:${account}:table/${ref()}`;
      case 'AWS::DynamoDB::Table.StreamArn':
        return `arn:aws:dynamodb:${region}:${account}:table/${ref()}/stream/2026-01-01T00:00:00.000`;
      case 'AWS::SQS::Queue.Arn':
        return `arn:aws:sqs:${region}:${account}:${this.queueName(logicalId)}`;
      case 'AWS::SQS::Queue.QueueName':
        return this.queueName(logicalId);
      case 'AWS::SQS::Queue.QueueUrl':
        return ref();
      case 'AWS::Lambda::Function.Arn':
        return `arn:aws:lambda:${region}:${account}:function:${ref()}`;
      case 'AWS::IAM::Role.Arn':
        return `arn:aws:iam::${account}:role/${ref()}`;
      case 'AWS::ECS::Cluster.Arn':
        return `arn:aws:ecs:${region}:${account}:cluster/${ref()}`;
      case 'AWS::ECS::TaskDefinition.TaskDefinitionArn':
        return ref();
      case 'AWS::EC2::SecurityGroup.GroupId':
        return ref();
      case 'AWS::EC2::VPC.CidrBlock':
        return String(r.Properties?.CidrBlock ?? '10.0.0.0/16');
      case 'AWS::EC2::VPC.DefaultSecurityGroup':
        return hexId('sg', `${logicalId}Default`);
      case 'AWS::EC2::Subnet.AvailabilityZone':
        return String(this.resolve(r.Properties?.AvailabilityZone) ?? `${region}a`);
      case 'AWS::Logs::LogGroup.Arn':
        return `arn:aws:logs:${region}:${account}:log-group:${ref()}:*`;
      case 'AWS::SNS::Topic.TopicName':
        return ref().split(':').pop()!;
      case 'AWS::ApiGateway::RestApi.RootResourceId':
        return suffix(`${logicalId}Root`, 10).toLowerCase();
      case 'AWS::Events::Rule.Arn':
        return `arn:aws:events:${region}:${account}:rule/${ref()}`;
      default:
        return `arn:aws:rehearsal:${region}:${account}:${logicalId}/${attr}`;
    }
  }

  resolve(value: Json, path = ''): Json {
    if (Array.isArray(value)) return value.map((v, i) => this.resolve(v, `${path}[${i}]`));
    if (!value || typeof value !== 'object') return value;
    const o = value as Record<string, Json>;
    const keys = Object.keys(o);
    if (keys.length === 1) {
      const [k] = keys;
      const v = o[k];
      switch (k) {
        case 'Ref':
          return this.ref(String(v));
        case 'Fn::GetAtt': {
          const [id, attr] = Array.isArray(v) ? (v as string[]) : String(v).split('.');
          return this.getAtt(id, attr);
        }
        case 'Fn::Join': {
          const [sep, parts] = v as [string, Json[]];
          return (this.resolve(parts, path) as Json[]).map(String).join(sep);
        }
        case 'Fn::Select': {
          const [i, list] = v as [Json, Json];
          return (this.resolve(list, path) as Json[])[Number(this.resolve(i, path))];
        }
        case 'Fn::Split': {
          const [sep, s] = v as [string, Json];
          return String(this.resolve(s, path)).split(sep);
        }
        case 'Fn::GetAZs':
          return [`${this.o.region}a`, `${this.o.region}b`, `${this.o.region}c`];
        case 'Fn::Sub': {
          const [text, vars] = Array.isArray(v) ? (v as [string, Record<string, Json>]) : [String(v), {}];
          return text.replace(/\$\{([^}]+)\}/g, (_m, name: string) => {
            if (name.startsWith('!')) return `\${${name.slice(1)}}`;
            if (vars[name] !== undefined) return String(this.resolve(vars[name], path));
            if (name.includes('.') && !name.startsWith('AWS::')) {
              const [id, attr] = name.split('.');
              return this.getAtt(id, attr);
            }
            return this.ref(name);
          });
        }
      }
      if (k.startsWith('Fn::')) throw new Error(`the rehearsal cannot resolve ${k} at ${path || '(root)'}`);
    }
    return Object.fromEntries(keys.map((k) => [k, this.resolve(o[k], `${path}.${k}`)]));
  }
}

const ofType = (t: CfnTemplate, type: string) => Object.entries(t.Resources).filter(([, r]) => r.Type === type);

function rules(r: TemplateResolver, raw: unknown, peerKey: 'SourceSecurityGroupId' | 'DestinationSecurityGroupId'): SecurityGroupRule[] {
  return ((r.resolve(raw) as Array<Record<string, unknown>> | undefined) ?? []).map((x) => ({
    protocol: String(x.IpProtocol ?? '-1'),
    fromPort: x.FromPort === undefined ? undefined : Number(x.FromPort),
    toPort: x.ToPort === undefined ? undefined : Number(x.ToPort),
    peerGroup: x[peerKey] as string | undefined,
    cidr: (x.CidrIp as string | undefined) ?? (x.CidrIpv6 ? '::/0' : undefined),
  }));
}

export function buildModel(template: CfnTemplate, assemblyDir: string, o: ModelOverrides): RehearsalModel {
  const r = new TemplateResolver(template, o);
  const { region, account } = o;
  const functions: ModelFunction[] = ofType(template, 'AWS::Lambda::Function').map(([id, res]) => {
    const p = res.Properties ?? {};
    const assetPath = res.Metadata?.['aws:asset:path'];
    const roleArn = String(r.resolve(p.Role));
    const roleLogicalId = (p.Role as { 'Fn::GetAtt'?: [string, string] })?.['Fn::GetAtt']?.[0] ?? '';
    const vpc = p.VpcConfig as { SecurityGroupIds?: unknown; SubnetIds?: unknown } | undefined;
    return {
      logicalId: id,
      name: r.ref(id),
      arn: r.getAtt(id, 'Arn'),
      assetDir: typeof assetPath === 'string' ? join(assemblyDir, assetPath) : '',
      handler: String(p.Handler ?? 'index.handler'),
      timeoutSeconds: Number(p.Timeout ?? 3),
      memoryMb: Number(p.MemorySize ?? 128),
      reservedConcurrency: p.ReservedConcurrentExecutions === undefined ? undefined : Number(p.ReservedConcurrentExecutions),
      environment: Object.fromEntries(
        Object.entries((r.resolve((p.Environment as { Variables?: unknown })?.Variables ?? {}) as Record<string, unknown>)).map(([k, v]) => [k, String(v)]),
      ),
      roleLogicalId,
      roleArn,
      vpc: vpc ? { securityGroups: r.resolve(vpc.SecurityGroupIds) as string[], subnets: r.resolve(vpc.SubnetIds) as string[] } : undefined,
    };
  });
  // Custom-resource providers (CDK's own, e.g. the default security group restriction) run
  // during deployment only.
  const runnable = functions.filter((f) => !f.handler.startsWith('__entrypoint__'));

  const tables: ModelTable[] = ofType(template, 'AWS::DynamoDB::Table').map(([id, res]) => {
    const p = r.resolve(res.Properties ?? {}) as Record<string, unknown>;
    const ttl = p.TimeToLiveSpecification as { Enabled?: boolean; AttributeName?: string } | undefined;
    return {
      logicalId: id,
      name: r.ref(id),
      keySchema: p.KeySchema as ModelTable['keySchema'],
      attributeDefinitions: p.AttributeDefinitions as ModelTable['attributeDefinitions'],
      globalSecondaryIndexes: ((p.GlobalSecondaryIndexes as ModelTable['globalSecondaryIndexes']) ?? []).map((g) => ({ IndexName: g.IndexName, KeySchema: g.KeySchema, Projection: g.Projection })),
      ttlAttribute: ttl?.Enabled ? ttl.AttributeName : undefined,
    };
  });

  const queues: ModelQueue[] = ofType(template, 'AWS::SQS::Queue').map(([id, res]) => {
    const p = r.resolve(res.Properties ?? {}) as Record<string, unknown>;
    const redrive = p.RedrivePolicy as { deadLetterTargetArn?: string; maxReceiveCount?: number } | undefined;
    return {
      logicalId: id,
      name: r.queueName(id),
      url: r.ref(id),
      arn: r.getAtt(id, 'Arn'),
      fifo: p.FifoQueue === true || p.FifoQueue === 'true',
      visibilityTimeoutSeconds: p.VisibilityTimeout === undefined ? undefined : Number(p.VisibilityTimeout),
      retentionSeconds: p.MessageRetentionPeriod === undefined ? undefined : Number(p.MessageRetentionPeriod),
      contentBasedDeduplication: p.ContentBasedDeduplication === undefined ? undefined : p.ContentBasedDeduplication === true || p.ContentBasedDeduplication === 'true',
      redrive: redrive?.deadLetterTargetArn ? { deadLetterTargetArn: redrive.deadLetterTargetArn, maxReceiveCount: Number(redrive.maxReceiveCount ?? 10) } : undefined,
    };
  });

  const eventSources = ofType(template, 'AWS::Lambda::EventSourceMapping').map(([, res]) => {
    const raw = res.Properties ?? {};
    const p = r.resolve(raw) as Record<string, unknown>;
    const fnRef = (raw.FunctionName as { Ref?: string })?.Ref;
    const target = functions.find((f) => f.logicalId === fnRef || f.name === p.FunctionName || f.arn === p.FunctionName);
    if (!target) throw new Error(`event source mapping for ${String(p.FunctionName)}: no such function`);
    return {
      functionLogicalId: target.logicalId,
      queueArn: String(p.EventSourceArn),
      batchSize: Number(p.BatchSize ?? 10),
      reportBatchItemFailures: ((p.FunctionResponseTypes as string[]) ?? []).includes('ReportBatchItemFailures'),
      maxConcurrency: (p.ScalingConfig as { MaximumConcurrency?: number })?.MaximumConcurrency,
    };
  });

  // The REST API: resources by parent, methods, integrations.
  const [restId] = ofType(template, 'AWS::ApiGateway::RestApi').map(([id]) => id);
  if (!restId) throw new Error('the template has no REST API');
  const resourceIds = new Map<string, { id: string; path: string }>();
  const rootId = r.getAtt(restId, 'RootResourceId');
  resourceIds.set(rootId, { id: rootId, path: '/' });
  const apiResources = ofType(template, 'AWS::ApiGateway::Resource');
  for (let pass = 0; pass < apiResources.length + 1; pass++) {
    for (const [id, res] of apiResources) {
      const physical = r.ref(id);
      if (resourceIds.has(physical)) continue;
      const parent = String(r.resolve(res.Properties?.ParentId));
      const parentPath = resourceIds.get(parent)?.path;
      if (parentPath === undefined) continue;
      resourceIds.set(physical, { id: physical, path: `${parentPath === '/' ? '' : parentPath}/${String(res.Properties?.PathPart)}` });
    }
  }
  const restResources = new Map<string, ModelRestApi['resources'][number]>();
  for (const v of resourceIds.values()) restResources.set(v.id, { id: v.id, path: v.path, methods: [] });
  for (const [id, res] of ofType(template, 'AWS::ApiGateway::Method')) {
    const p = res.Properties ?? {};
    const resourceId = String(r.resolve(p.ResourceId));
    const target = restResources.get(resourceId);
    if (!target) throw new Error(`API method ${id}: resource ${resourceId} is not in the API`);
    const integration = (p.Integration ?? {}) as Record<string, unknown>;
    if (integration.Type !== 'AWS_PROXY') throw new Error(`API method ${id}: integration ${String(integration.Type)} is not a Lambda proxy`);
    const uri = String(r.resolve(integration.Uri));
    const fnArn = uri.match(/functions\/(arn:[^/]+)\/(response-streaming-)?invocations/)?.[1];
    const target2 = functions.find((f) => f.arn === fnArn);
    if (!target2) throw new Error(`API method ${id}: integration URI ${uri} names no function of the template`);
    const streaming = integration.ResponseTransferMode === 'STREAM';
    target.methods.push({
      httpMethod: String(p.HttpMethod),
      functionLogicalId: target2.logicalId,
      streaming,
      timeoutMs: Number(integration.TimeoutInMillis ?? 29_000),
    });
  }
  const stages = ofType(template, 'AWS::ApiGateway::Stage');
  const stageProps = (stages[0]?.[1].Properties ?? {}) as { StageName?: string; MethodSettings?: Array<{ ThrottlingRateLimit?: number; ThrottlingBurstLimit?: number; ResourcePath?: string; HttpMethod?: string }> };
  const throttle = stageProps.MethodSettings?.find((m) => m.ResourcePath === '/*' && m.HttpMethod === '*');
  const restApi: ModelRestApi = {
    id: r.ref(restId),
    stage: stageProps.StageName ?? 'prod',
    throttle: throttle?.ThrottlingRateLimit !== undefined ? { rate: throttle.ThrottlingRateLimit, burst: throttle.ThrottlingBurstLimit ?? throttle.ThrottlingRateLimit } : undefined,
    resources: [...restResources.values()],
  };

  const securityGroups: SecurityGroup[] = ofType(template, 'AWS::EC2::SecurityGroup').map(([id, res]) => ({
    id: r.ref(id),
    name: id,
    ingress: rules(r, res.Properties?.SecurityGroupIngress, 'SourceSecurityGroupId'),
    egress: rules(r, res.Properties?.SecurityGroupEgress, 'DestinationSecurityGroupId'),
  }));
  for (const [, res] of ofType(template, 'AWS::EC2::SecurityGroupIngress')) {
    const p = r.resolve(res.Properties ?? {}) as Record<string, unknown>;
    const g = securityGroups.find((s) => s.id === p.GroupId);
    if (g) g.ingress.push(...rules(r, [res.Properties], 'SourceSecurityGroupId'));
  }
  for (const [, res] of ofType(template, 'AWS::EC2::SecurityGroupEgress')) {
    const p = r.resolve(res.Properties ?? {}) as Record<string, unknown>;
    const g = securityGroups.find((s) => s.id === p.GroupId);
    if (g) g.egress.push(...rules(r, [res.Properties], 'DestinationSecurityGroupId'));
  }
  const [vpcId] = ofType(template, 'AWS::EC2::VPC').map(([id]) => id);
  const vpcCidr = vpcId ? String(template.Resources[vpcId].Properties?.CidrBlock ?? '10.0.0.0/16') : '10.0.0.0/16';

  const taskDefinitions: RehearsedTaskDefinition[] = ofType(template, 'AWS::ECS::TaskDefinition').map(([id, res]) => {
    const p = r.resolve(res.Properties ?? {}) as Record<string, unknown>;
    return {
      arn: r.ref(id),
      family: r.taskFamily(id),
      taskRoleArn: p.TaskRoleArn as string | undefined,
      executionRoleArn: p.ExecutionRoleArn as string | undefined,
      containers: ((p.ContainerDefinitions as Array<Record<string, unknown>>) ?? []).map((c) => ({
        name: String(c.Name),
        environment: Object.fromEntries(((c.Environment as Array<{ Name: string; Value: string }>) ?? []).map((e) => [e.Name, String(e.Value)])),
        ports: ((c.PortMappings as Array<{ ContainerPort: number }>) ?? []).map((m) => Number(m.ContainerPort)),
        command: c.EntryPoint || c.Command ? [...((c.EntryPoint as string[]) ?? []), ...((c.Command as string[]) ?? [])] : undefined,
      })),
    };
  });

  const schedules = ofType(template, 'AWS::Events::Rule').flatMap(([id, res]) => {
    const p = res.Properties ?? {};
    return ((p.Targets as Array<{ Arn: unknown }>) ?? []).map((t) => {
      const arn = String(r.resolve(t.Arn));
      const target = functions.find((f) => f.arn === arn);
      if (!target) throw new Error(`rule ${id} targets ${arn}, not a function of the template`);
      return { ruleLogicalId: id, functionLogicalId: target.logicalId, expression: String(p.ScheduleExpression ?? '') };
    });
  });

  const outputs = Object.fromEntries(Object.entries(template.Outputs ?? {}).map(([k, v]) => [k, String(r.resolve(v.Value))]));

  return {
    region,
    account,
    stackName: r.stack,
    functions: runnable,
    tables,
    queues,
    eventSources,
    restApi,
    securityGroups,
    vpcCidr,
    subnets: ofType(template, 'AWS::EC2::Subnet')
      .filter(([, res]) => (res.Properties?.MapPublicIpOnLaunch as boolean | undefined) !== true)
      .map(([id]) => r.ref(id)),
    clusters: ofType(template, 'AWS::ECS::Cluster').map(([id]) => ({ name: r.ref(id), arn: r.getAtt(id, 'Arn') })),
    taskDefinitions,
    schedules,
    outputs,
  };
}
