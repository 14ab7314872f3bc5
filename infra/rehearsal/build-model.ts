/**
 * The rehearsal's model of a synthesized template (`model.ts`): every resource the rehearsal
 * runs, read with `template.ts` and resolved to the physical names the rehearsal gives its
 * resources (queue URLs on the rehearsal's AWS endpoint; the rest as CloudFormation would
 * invent them).
 */
import { join } from 'node:path';
import type { ModelEventRule, ModelRestApi, ModelTable, RehearsalModel } from './model.js';
import type { SecurityGroup, SecurityGroupRule } from './network.js';
import type { RehearsedTaskDefinition } from './ecs.js';
import {
  createContext,
  DefaultPhysicalIds,
  dynamoTables,
  ecsServices,
  ecsTaskDefinitions,
  eventSourceMappings,
  loadBalancers as templateLoadBalancers,
  targetGroups as templateTargetGroups,
  vpcLinks,
  type PhysicalIdOverride,
  functions as templateFunctions,
  resolve,
  resourcesOfType,
  restApi as templateRestApi,
  securityGroups as templateSecurityGroups,
  sqsQueues,
  type CfnTemplate,
  type ResolveContext,
  type SecurityGroupRule as TemplateRule,
} from './template.js';

export type { CfnTemplate };

export interface ModelOverrides {
  region: string;
  account: string;
  /** Queue URLs are `<queueUrlBase>/<name>`. */
  queueUrlBase: string;
  stackName?: string;
  /**
   * What a backend decides rather than the template (a table's `StreamArn` is the one its DynamoDB
   * reports), by logical id.
   */
  physicalIds?: Record<string, PhysicalIdOverride>;
}

/** The resolution context the rehearsal uses for a template. */
export function rehearsalContext(template: CfnTemplate, o: ModelOverrides): ResolveContext {
  return createContext(template, {
    accountId: o.account,
    region: o.region,
    stackName: o.stackName ?? 'Corral',
    physicalIds: new DefaultPhysicalIds({ queueUrlBase: o.queueUrlBase, overrides: o.physicalIds }),
  });
}

const rule = (r: TemplateRule): SecurityGroupRule => ({
  protocol: r.ipProtocol,
  fromPort: r.fromPort,
  toPort: r.toPort,
  peerGroup: r.peerGroupId,
  cidr: r.cidrIp ?? (r.cidrIpv6 ? '0.0.0.0/0' : undefined),
});

/** Logical id prefix of CDK's AwsCustomResource provider function (its singleton's fixed id). */
const AWS_CUSTOM_RESOURCE_PROVIDER = 'AWS679f53fac002430cb0da5b7982bd2287';

export function buildModel(template: CfnTemplate, assemblyDir: string, o: ModelOverrides): RehearsalModel {
  const ctx = rehearsalContext(template, o);
  // Custom-resource providers (CDK's own, e.g. the default security group's restriction, and the
  // AwsCustomResource provider of the S3 prefix list lookup, answered in template.ts) run during
  // deployment only.
  const fns = templateFunctions(ctx).filter((f) => !f.handler.startsWith('__entrypoint__') && !f.logicalId.startsWith(AWS_CUSTOM_RESOURCE_PROVIDER));
  const functions = fns.map((f) => {
    if (!f.assetPath) throw new Error(`function ${f.logicalId} has no bundled asset (aws:asset:path): synthesize with \`cdk synth\``);
    if (!f.roleLogicalId) throw new Error(`function ${f.logicalId} runs as a role that is not in the template`);
    return {
      logicalId: f.logicalId,
      name: f.functionName,
      arn: f.arn,
      assetDir: join(assemblyDir, f.assetPath),
      handler: f.handler,
      timeoutSeconds: f.timeout,
      memoryMb: f.memorySize,
      reservedConcurrency: f.reservedConcurrency,
      environment: { ...f.environment },
      roleLogicalId: f.roleLogicalId,
      roleArn: f.roleArn,
      vpc: f.vpc ? { securityGroups: f.vpc.securityGroupIds, subnets: f.vpc.subnetIds } : undefined,
    };
  });

  const tables: ModelTable[] = dynamoTables(ctx).map((t) => {
    const key = (k: { partitionKey: string; sortKey?: string }) => [
      { AttributeName: k.partitionKey, KeyType: 'HASH' as const },
      ...(k.sortKey ? [{ AttributeName: k.sortKey, KeyType: 'RANGE' as const }] : []),
    ];
    return {
      logicalId: t.logicalId,
      name: t.tableName,
      keySchema: key(t.keySchema),
      attributeDefinitions: Object.entries(t.attributeDefinitions).map(([AttributeName, AttributeType]) => ({ AttributeName, AttributeType: AttributeType as 'S' | 'N' | 'B' })),
      globalSecondaryIndexes: t.globalSecondaryIndexes.map((g) => ({ IndexName: g.indexName, KeySchema: key(g.keySchema), Projection: { ProjectionType: g.projectionType } })),
      ttlAttribute: t.ttlAttribute,
      streamViewType: t.streamViewType,
    };
  });

  const queues = sqsQueues(ctx).map((q) => ({
    logicalId: q.logicalId,
    name: q.queueName,
    url: q.url,
    arn: q.arn,
    fifo: q.fifo,
    visibilityTimeoutSeconds: q.visibilityTimeout,
    retentionSeconds: q.messageRetentionPeriod,
    contentBasedDeduplication: q.fifo ? q.contentBasedDeduplication : undefined,
    redrive: q.redrivePolicy ? { deadLetterTargetArn: q.redrivePolicy.deadLetterTargetArn, maxReceiveCount: q.redrivePolicy.maxReceiveCount } : undefined,
  }));

  const eventSources = eventSourceMappings(ctx)
    .filter((e) => e.enabled)
    .map((e) => {
      const target = functions.find((f) => f.logicalId === e.functionLogicalId || f.name === e.functionName || f.arn === e.functionName);
      if (!target || !e.eventSourceArn) throw new Error(`event source mapping ${e.logicalId}: no function ${e.functionName} or no source`);
      return {
        functionLogicalId: target.logicalId,
        queueArn: e.eventSourceArn,
        batchSize: e.batchSize,
        reportBatchItemFailures: e.functionResponseTypes.includes('ReportBatchItemFailures'),
        maxConcurrency: e.maximumConcurrency,
      };
    });

  const api = templateRestApi(ctx);
  const resources = new Map<string, ModelRestApi['resources'][number]>(api.resources.map((r) => [r.id, { id: r.id, path: r.path, methods: [] }]));
  const links = vpcLinks(ctx);
  for (const m of api.methods) {
    const i = m.integration;
    const streaming = i?.responseTransferMode === 'STREAM';
    if (i?.type === 'HTTP_PROXY' && i.connectionType === 'VPC_LINK') {
      const link = links.find((l) => l.id === i.connectionId);
      if (!link) throw new Error(`API method ${m.httpMethod} ${m.path} (${m.logicalId}) goes through VPC link ${i.connectionId}, which is not in the template`);
      if (!i.uri) throw new Error(`API method ${m.httpMethod} ${m.path} (${m.logicalId}) has no integration URI`);
      resources.get(m.resourceId)!.methods.push({
        httpMethod: m.httpMethod,
        vpcLink: { id: link.id, targetArns: link.targetArns, uri: i.uri, integrationHttpMethod: i.integrationHttpMethod ?? m.httpMethod, requestParameters: i.requestParameters },
        streaming,
        timeoutMs: i.timeoutInMillis,
      });
      continue;
    }
    if (!i || i.type !== 'AWS_PROXY' || !i.functionLogicalId) throw new Error(`API method ${m.httpMethod} ${m.path} (${m.logicalId}) is neither a Lambda proxy integration of a function in the template nor an HTTP proxy through a VPC link`);
    resources.get(m.resourceId)!.methods.push({ httpMethod: m.httpMethod, functionLogicalId: i.functionLogicalId, streaming, timeoutMs: i.timeoutInMillis });
  }
  const stage = api.stages[0];
  const settings = (stage?.methodSettings ?? []) as Array<{ ResourcePath?: string; HttpMethod?: string; ThrottlingRateLimit?: number; ThrottlingBurstLimit?: number }>;
  const throttle = settings.find((m) => m.ResourcePath === '/*' && m.HttpMethod === '*');
  const restApi: ModelRestApi = {
    id: api.id,
    stage: stage?.stageName ?? 'prod',
    throttle: throttle?.ThrottlingRateLimit !== undefined ? { rate: Number(throttle.ThrottlingRateLimit), burst: Number(throttle.ThrottlingBurstLimit ?? throttle.ThrottlingRateLimit) } : undefined,
    resources: [...resources.values()],
    binaryMediaTypes: api.binaryMediaTypes,
  };

  const securityGroups: SecurityGroup[] = templateSecurityGroups(ctx).map((g) => ({ id: g.groupId, name: g.logicalId, ingress: g.ingress.map(rule), egress: g.egress.map(rule) }));
  const [vpcId] = resourcesOfType(ctx, 'AWS::EC2::VPC');
  const vpcCidr = vpcId ? String(resolve(template.Resources[vpcId].Properties?.CidrBlock ?? '10.0.0.0/16', ctx)) : '10.0.0.0/16';

  const taskDefinitions: RehearsedTaskDefinition[] = ecsTaskDefinitions(ctx).map((d) => ({
    arn: d.arn,
    family: d.family,
    taskRoleArn: d.taskRoleArn,
    taskRoleLogicalId: d.taskRoleLogicalId,
    executionRoleArn: d.executionRoleArn,
    containers: d.containers.map((c) => ({
      name: c.name,
      image: c.image,
      environment: c.environment,
      ports: c.portMappings.map((m) => m.containerPort),
      command: c.entryPoint || c.command ? [...(c.entryPoint ?? []), ...(c.command ?? [])] : undefined,
    })),
  }));

  const rules = resourcesOfType(ctx, 'AWS::Events::Rule').flatMap((id) => {
    const p = resolve(template.Resources[id].Properties ?? {}, ctx, `Resources.${id}.Properties`) as {
      ScheduleExpression?: string;
      EventPattern?: ModelEventRule['pattern'];
      State?: string;
      Targets?: Array<{ Arn: string }>;
    };
    if (p.State === 'DISABLED') return [];
    return (p.Targets ?? []).map((t) => {
      const target = functions.find((f) => f.arn === t.Arn);
      if (!target) throw new Error(`rule ${id} targets ${t.Arn}, not a function of the template`);
      return { ruleLogicalId: id, functionLogicalId: target.logicalId, expression: p.ScheduleExpression, pattern: p.EventPattern };
    });
  });
  const schedules = rules.filter((r) => r.expression).map((r) => ({ ruleLogicalId: r.ruleLogicalId, functionLogicalId: r.functionLogicalId, expression: String(r.expression) }));
  const eventRules = rules.filter((r) => r.pattern).map((r) => ({ ruleLogicalId: r.ruleLogicalId, functionLogicalId: r.functionLogicalId, pattern: r.pattern! }));

  const outputs = Object.fromEntries(Object.entries(template.Outputs ?? {}).map(([k, v]) => [k, String(resolve(v.Value, ctx, `Outputs.${k}`))]));
  const subnets = resourcesOfType(ctx, 'AWS::EC2::Subnet')
    .filter((id) => template.Resources[id].Properties?.MapPublicIpOnLaunch !== true)
    .map((id) => ctx.physicalIds.ref(id, ctx));

  return {
    region: o.region,
    account: o.account,
    stackName: ctx.env.stackName,
    functions,
    tables,
    queues,
    eventSources,
    restApi,
    securityGroups,
    vpcCidr,
    subnets,
    clusters: resourcesOfType(ctx, 'AWS::ECS::Cluster').map((id) => ({ name: ctx.physicalIds.ref(id, ctx), arn: String(ctx.physicalIds.getAtt(id, 'Arn', ctx)) })),
    buckets: resourcesOfType(ctx, 'AWS::S3::Bucket').map((id) => ({ logicalId: id, name: ctx.physicalIds.ref(id, ctx), arn: String(ctx.physicalIds.getAtt(id, 'Arn', ctx)) })),
    taskDefinitions,
    services: ecsServices(ctx).map((s) => ({
      logicalId: s.logicalId,
      name: s.name,
      clusterArn: s.clusterArn,
      taskDefinitionArn: s.taskDefinitionArn,
      desiredCount: s.desiredCount,
      subnets: s.subnets,
      securityGroups: s.securityGroups,
      loadBalancers: s.loadBalancers,
    })),
    loadBalancers: templateLoadBalancers(ctx).map((l) => ({ logicalId: l.logicalId, arn: l.arn, dnsName: l.dnsName, type: l.type, securityGroups: l.securityGroups, listeners: l.listeners })),
    targetGroups: templateTargetGroups(ctx).map((g) => ({ logicalId: g.logicalId, arn: g.arn, port: g.port, protocol: g.protocol, targetType: g.targetType, healthCheck: g.healthCheck })),
    schedules,
    eventRules,
    outputs,
  };
}
