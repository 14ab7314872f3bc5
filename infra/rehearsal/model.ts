/**
 * What the deploy rehearsal runs, read off the synthesized template: functions with their
 * bundles, environments, roles and limits; tables; queues and the event source mapping; the
 * REST API; the VPC's security groups and subnets; the sandbox cluster and task definition;
 * scheduled rules. Everything the template says by reference is resolved to the physical names
 * the rehearsal gives its resources.
 */
import type { SecurityGroup } from './network.js';
import type { RehearsedService, RehearsedTaskDefinition } from './ecs.js';

export interface ModelFunction {
  logicalId: string;
  name: string;
  arn: string;
  assetDir: string;
  handler: string;
  timeoutSeconds: number;
  memoryMb: number;
  reservedConcurrency?: number;
  environment: Record<string, string>;
  roleLogicalId: string;
  roleArn: string;
  /** Present for functions attached to the VPC. */
  vpc?: { securityGroups: string[]; subnets: string[] };
}

export interface ModelTable {
  logicalId: string;
  name: string;
  keySchema: Array<{ AttributeName: string; KeyType: 'HASH' | 'RANGE' }>;
  attributeDefinitions: Array<{ AttributeName: string; AttributeType: 'S' | 'N' | 'B' }>;
  globalSecondaryIndexes: Array<{ IndexName: string; KeySchema: Array<{ AttributeName: string; KeyType: 'HASH' | 'RANGE' }>; Projection: { ProjectionType: string; NonKeyAttributes?: string[] } }>;
  ttlAttribute?: string;
  /** The table's DynamoDB stream (`StreamSpecification.StreamViewType`), when it has one. */
  streamViewType?: string;
}

export interface ModelQueue {
  logicalId: string;
  name: string;
  url: string;
  arn: string;
  fifo: boolean;
  visibilityTimeoutSeconds?: number;
  retentionSeconds?: number;
  contentBasedDeduplication?: boolean;
  redrive?: { deadLetterTargetArn: string; maxReceiveCount: number };
}

export interface ModelEventSource {
  functionLogicalId: string;
  queueArn: string;
  batchSize: number;
  reportBatchItemFailures: boolean;
  maxConcurrency?: number;
}

export interface ModelMethod {
  httpMethod: string;
  /** The function of a Lambda proxy integration. */
  functionLogicalId?: string;
  /** An HTTP proxy integration through a VPC link (to a network load balancer). */
  vpcLink?: {
    id: string;
    /** The load balancers the VPC link reaches (their ARNs). */
    targetArns: string[];
    /** The integration's URI (`http://<NLB DNS name>/v1/sessions/{id}/events/stream`). */
    uri: string;
    integrationHttpMethod: string;
    /** `integration.request.*` ← `method.request.*` / `context.*`, as the template maps them. */
    requestParameters: Record<string, string>;
  };
  streaming: boolean;
  timeoutMs: number;
}

/** An ECS service: the tasks the service scheduler keeps running, and the target groups it registers them in. */
export interface ModelService extends RehearsedService {
  logicalId: string;
}

/** A network load balancer: its DNS name, listeners and the target groups they forward to. */
export interface ModelLoadBalancer {
  logicalId: string;
  arn: string;
  dnsName: string;
  type: string;
  securityGroups: string[];
  listeners: Array<{ port: number; protocol: string; targetGroupArn: string }>;
}

export interface ModelTargetGroup {
  logicalId: string;
  arn: string;
  port: number;
  protocol: string;
  targetType: string;
  healthCheck: { protocol: string; path?: string; intervalSeconds: number; healthyThreshold: number; unhealthyThreshold: number };
}

export interface ModelRestApi {
  id: string;
  stage: string;
  throttle?: { rate: number; burst: number };
  resources: Array<{ id: string; path: string; methods: ModelMethod[] }>;
  /** The API's `binaryMediaTypes` (see api-gateway.ts for what they change). */
  binaryMediaTypes: string[];
}

export interface ModelSchedule {
  ruleLogicalId: string;
  functionLogicalId: string;
  expression: string;
}

/** A rule that matches events (rather than a schedule): its pattern and the function it invokes. */
export interface ModelEventRule {
  ruleLogicalId: string;
  functionLogicalId: string;
  pattern: { source?: string[]; 'detail-type'?: string[]; detail?: Record<string, unknown[]> };
}

export interface RehearsalModel {
  region: string;
  account: string;
  stackName: string;
  functions: ModelFunction[];
  tables: ModelTable[];
  queues: ModelQueue[];
  eventSources: ModelEventSource[];
  restApi: ModelRestApi;
  securityGroups: SecurityGroup[];
  vpcCidr: string;
  subnets: string[];
  clusters: Array<{ name: string; arn: string }>;
  /** S3 buckets, by the physical name functions see in their environment. */
  buckets: Array<{ logicalId: string; name: string; arn: string }>;
  taskDefinitions: RehearsedTaskDefinition[];
  services: ModelService[];
  loadBalancers: ModelLoadBalancer[];
  targetGroups: ModelTargetGroup[];
  schedules: ModelSchedule[];
  eventRules: ModelEventRule[];
  outputs: Record<string, string>;
}
