/**
 * What the synthesized template deploys, in the terms the capacity model needs: each function's
 * memory, timeout and reserved concurrency, the wake queue's settings, the API stage's throttle,
 * the private subnets' sizes, the sandbox task's size, the tables' billing mode and the fixed
 * resources that cost by the month. Pure: a template in, a {@link DeployedShape} out.
 */
import type { CfnResource, CfnTemplate } from '../../infra/rehearsal/template.js';
import { CORRAL_ENV, readWarmPool } from '../../lambdas/core/config.js';
import { STREAM_TIER_ENV } from '../../lambdas/stream-tier/env.js';
import { DEFAULT_RATE_LIMIT_SHARDS, parseRateLimits, type RateLimits } from '../../lambdas/core/resources/rate-limits.js';

export type FunctionRole = 'harness' | 'api' | 'stream' | 'credentialProxy' | 'reaper';

export interface FunctionShape {
  readonly logicalId: string;
  readonly memoryMiB: number;
  readonly timeoutSeconds: number;
  readonly reservedConcurrency?: number;
  readonly arch: 'arm64' | 'x86_64';
  readonly inVpc: boolean;
}

export interface DeployedShape {
  readonly functions: Partial<Record<FunctionRole, FunctionShape>>;
  /** The wake queue's event source mapping. */
  readonly wakeSource: { batchSize: number; maxConcurrency?: number };
  readonly wakeQueue: { fifo: boolean; highThroughput: boolean; visibilityTimeoutSeconds: number; maxReceiveCount?: number };
  readonly stage: { rateLimit?: number; burstLimit?: number };
  /**
   * The per-tenant rate limits the API enforces and the most shards of each counter, from the API
   * function's environment (`CORRAL_RATE_LIMITS`, `CORRAL_RATE_LIMIT_SHARDS`: CDK context
   * `rateLimits`, `rateLimitShards`); the code's defaults where the template leaves one out.
   */
  readonly rateLimits: RateLimits;
  readonly rateLimitShards: number;
  /**
   * The subnets sandbox tasks start in, with their usable addresses: those `CORRAL_SANDBOX_SUBNETS`
   * of the harness names (the VPC's private subnets and those of CDK context `sandboxCidrBlocks`),
   * or every private subnet of the template where it names none; empty for an existing VPC.
   */
  readonly subnets: Array<{ logicalId: string; cidr: string; usableIps: number }>;
  /**
   * Whether an S3 gateway endpoint is on the route table of every sandbox subnet (so an image's
   * layers, which ECR serves from S3, and workspace snapshots skip the NAT); false where the
   * template has no sandbox subnet (an existing VPC: the template cannot see its route tables).
   */
  readonly s3GatewayOnSandboxSubnets: boolean;
  readonly natGateways: number;
  /** `<service> (<type>)` of each VPC endpoint, e.g. `s3 (Gateway)`, `ecr.dkr (Interface)`. */
  readonly vpcEndpoints: string[];
  /**
   * Network interfaces of the interface endpoints (one per subnet each is placed in; each costs by
   * the hour): the endpoints' `SubnetIds`, or the private subnets where the template leaves them out.
   */
  readonly interfaceEndpointEnis: number;
  /** ECS clusters sandbox tasks are spread over (every cluster but the stream tier's). */
  readonly sandboxClusters: number;
  /**
   * Whether the state table's `gsi1` carries a session's status (it projects all attributes, or
   * `status`): in the former design, where the head was in the index, a status change was then an
   * index write. The head is in no index now (a listing item per session, items.ts), so this only
   * prices `sessionIndex=per-status`; the template keeps the projection for the other kinds.
   */
  readonly sessionIndexOnStatus: boolean;
  readonly sandboxTask: { vcpu: number; memoryGb: number; arch: 'arm64' | 'x86_64'; ephemeralStorageGiB: number };
  /**
   * The stream tier (`streamTier=fargate`, infra/lib/constructs/stream-tier.ts): its task size, its
   * task count bounds and how often each task reads each shard of the events stream. Absent where
   * the stream function serves the streams.
   */
  readonly streamTier?: { vcpu: number; memoryGb: number; arch: 'arm64' | 'x86_64'; minTasks: number; maxTasks: number; shardPollMs: number; loadBalancers: number };
  /** The proxy service (`proxyService=fargate`, infra/lib/constructs/proxy-service.ts): its task size, its task bounds, its NLB. */
  readonly proxyService?: { vcpu: number; memoryGb: number; arch: 'arm64' | 'x86_64'; minTasks: number; maxTasks: number; loadBalancers: number };
  /**
   * Whether an EventBridge rule delivers the sandbox cluster's ECS task state changes to a function
   * (the reaper records them; the provider waits on the records instead of polling DescribeTasks).
   */
  readonly taskStateEvents: boolean;
  /** Whether sandbox tasks run on Fargate Spot (`CORRAL_SANDBOX_SPOT` of the harness; CDK context `fargateSpot`). */
  readonly sandboxSpot?: boolean;
  /**
   * Sandbox tasks kept started ahead, in all: the sum of the harness's `CORRAL_WARM_POOL` sizes
   * (CDK context `warmPool`, e.g. `env_a=2,env_b=1`; lambdas/core/sandbox/warm-pool.ts).
   */
  readonly warmPoolTasks?: number;
  /** Minutes before the reaper stops an unused sandbox. */
  readonly sandboxIdleMinutes?: number;
  readonly tables: Array<{ logicalId: string; billingMode: string; gsis: string[]; streams: boolean }>;
  readonly kmsKeys: number;
  readonly alarms: number;
  readonly dashboards: number;
}

const ROLE_PREFIXES: Array<[FunctionRole, RegExp]> = [
  ['harness', /^HarnessStepFunction/],
  ['stream', /^ApiStreamHandler/],
  ['api', /^ApiHandler/],
  ['credentialProxy', /^CredentialProxyFunction/],
  ['reaper', /^SandboxReaperFunction/],
];

const num = (v: unknown): number | undefined => (v === undefined || v === null || v === '' ? undefined : Number(v));

/** Usable addresses of an IPv4 CIDR in a VPC subnet (AWS reserves 5 per subnet). */
export function usableIps(cidr: string): number {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(cidr);
  if (!m) throw new Error(`not an IPv4 CIDR: ${cidr}`);
  const prefix = Number(m[5]);
  if (prefix < 16 || prefix > 28) throw new Error(`a VPC subnet is /16 to /28, not /${prefix}`);
  return 2 ** (32 - prefix) - 5;
}

/** The logical ids a template value refers to (`Ref`s, anywhere inside it). */
function refsIn(value: unknown): string[] {
  if (Array.isArray(value)) return value.flatMap(refsIn);
  if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    if (typeof o.Ref === 'string') return [o.Ref];
    return Object.values(o).flatMap(refsIn);
  }
  return [];
}

/** Reads the deployed shape from a synthesized template; throws if a part the model needs is missing. */
export function deployedShape(template: CfnTemplate): DeployedShape {
  const resources = Object.entries(template.Resources);
  const ofType = (type: string) => resources.filter(([, r]) => r.Type === type);
  const props = (r: CfnResource) => (r.Properties ?? {}) as Record<string, any>;

  const functions: Partial<Record<FunctionRole, FunctionShape>> = {};
  for (const [id, r] of ofType('AWS::Lambda::Function')) {
    const role = ROLE_PREFIXES.find(([, re]) => re.test(id))?.[0];
    if (!role) continue;
    const p = props(r);
    functions[role] = {
      logicalId: id,
      memoryMiB: num(p.MemorySize) ?? 128,
      timeoutSeconds: num(p.Timeout) ?? 3,
      reservedConcurrency: num(p.ReservedConcurrentExecutions),
      arch: Array.isArray(p.Architectures) && p.Architectures.includes('arm64') ? 'arm64' : 'x86_64',
      inVpc: !!p.VpcConfig,
    };
  }
  for (const role of ['harness', 'api'] as const) if (!functions[role]) throw new Error(`template: no ${role} function`);

  const harnessId = functions.harness!.logicalId;
  const esm = ofType('AWS::Lambda::EventSourceMapping').find(([, r]) => JSON.stringify(props(r).FunctionName ?? '').includes(harnessId));
  if (!esm) throw new Error('template: no event source mapping for the harness');
  const esmProps = props(esm[1]);
  const queueId = esmProps.EventSourceArn?.['Fn::GetAtt']?.[0] as string | undefined;
  const queue = queueId ? template.Resources[queueId] : undefined;
  if (!queue) throw new Error('template: the harness event source is not a queue of this stack');
  const q = props(queue);

  const stageRes = ofType('AWS::ApiGateway::Stage')[0];
  const all = (stageRes ? (props(stageRes[1]).MethodSettings as Array<Record<string, unknown>> | undefined) : undefined)?.find(
    (s) => s.ResourcePath === '/*' && s.HttpMethod === '*',
  );

  // Sandbox subnets: the subnets of this template CORRAL_SANDBOX_SUBNETS refers to (a Ref each), else the private ones.
  const harnessEnv = (props(template.Resources[functions.harness!.logicalId]).Environment?.Variables ?? {}) as Record<string, unknown>;
  const sandboxSubnetRefs = new Set(refsIn(harnessEnv[CORRAL_ENV.sandboxSubnets]));
  const subnets = ofType('AWS::EC2::Subnet')
    .filter(([id, r]) => (sandboxSubnetRefs.size > 0 ? sandboxSubnetRefs.has(id) : props(r).MapPublicIpOnLaunch !== true))
    .map(([id, r]) => ({ logicalId: id, cidr: String(props(r).CidrBlock), usableIps: usableIps(String(props(r).CidrBlock)) }));
  const routeTableOf = new Map(
    ofType('AWS::EC2::SubnetRouteTableAssociation').map(([, r]) => [refsIn(props(r).SubnetId)[0], refsIn(props(r).RouteTableId)[0]] as const),
  );

  // The stream tier's task definition is `StreamTier…`; the sandbox's is the other one.
  const taskRes = ofType('AWS::ECS::TaskDefinition').find(([id]) => !id.startsWith('StreamTier'));
  if (!taskRes) throw new Error('template: no sandbox task definition');
  const t = props(taskRes[1]);

  const apiEnv = (props(template.Resources[functions.api!.logicalId]).Environment?.Variables ?? {}) as Record<string, unknown>;
  const envString = (name: string) => (typeof apiEnv[name] === 'string' ? (apiEnv[name] as string) : undefined);
  const shardsEnv = num(envString(CORRAL_ENV.rateLimitShards));
  if (shardsEnv !== undefined && !(Number.isInteger(shardsEnv) && shardsEnv >= 1)) throw new Error(`template: ${CORRAL_ENV.rateLimitShards} is not a positive integer`);

  const reaper = ofType('AWS::Lambda::Function').find(([id]) => id === functions.reaper?.logicalId)?.[1];
  const idleMs = num(reaper ? props(reaper).Environment?.Variables?.CORRAL_SANDBOX_IDLE_MS : undefined);

  let streamTier: DeployedShape['streamTier'];
  const tierTask = ofType('AWS::ECS::TaskDefinition').find(([id]) => id.startsWith('StreamTier'));
  if (tierTask) {
    const tp = props(tierTask[1]);
    const env = Object.fromEntries(((tp.ContainerDefinitions?.[0]?.Environment ?? []) as Array<{ Name: string; Value: unknown }>).map((e) => [e.Name, e.Value]));
    const scaling = ofType('AWS::ApplicationAutoScaling::ScalableTarget').find(([id]) => id.startsWith('StreamTier'));
    if (!scaling) throw new Error('template: the stream tier has no scalable target');
    streamTier = {
      vcpu: (num(tp.Cpu) ?? 1024) / 1024,
      memoryGb: (num(tp.Memory) ?? 2048) / 1024,
      arch: tp.RuntimePlatform?.CpuArchitecture === 'ARM64' ? 'arm64' : 'x86_64',
      minTasks: num(props(scaling[1]).MinCapacity) ?? 1,
      maxTasks: num(props(scaling[1]).MaxCapacity) ?? 1,
      shardPollMs: num(env[STREAM_TIER_ENV.shardPollMs]) ?? 1000,
      loadBalancers: ofType('AWS::ElasticLoadBalancingV2::LoadBalancer').filter(([id]) => id.startsWith('StreamTier')).length,
    };
  }

  let proxyService: DeployedShape['proxyService'];
  const proxyTask = ofType('AWS::ECS::TaskDefinition').find(([id]) => id.startsWith('ProxyService'));
  if (proxyTask) {
    const tp = props(proxyTask[1]);
    const scaling = ofType('AWS::ApplicationAutoScaling::ScalableTarget').find(([id]) => id.startsWith('ProxyService'));
    if (!scaling) throw new Error('template: the proxy service has no scalable target');
    proxyService = {
      vcpu: (num(tp.Cpu) ?? 512) / 1024,
      memoryGb: (num(tp.Memory) ?? 1024) / 1024,
      arch: tp.RuntimePlatform?.CpuArchitecture === 'ARM64' ? 'arm64' : 'x86_64',
      minTasks: num(props(scaling[1]).MinCapacity) ?? 1,
      maxTasks: num(props(scaling[1]).MaxCapacity) ?? 1,
      loadBalancers: ofType('AWS::ElasticLoadBalancingV2::LoadBalancer').filter(([id]) => id.startsWith('ProxyService')).length,
    };
  }

  const endpoints = ofType('AWS::EC2::VPCEndpoint');
  const s3GatewayRouteTables = new Set(
    endpoints
      .filter(([, r]) => (props(r).VpcEndpointType ?? 'Gateway') === 'Gateway' && /\.s3"/.test(JSON.stringify(props(r).ServiceName ?? '')))
      .flatMap(([, r]) => refsIn(props(r).RouteTableIds)),
  );
  const s3GatewayOnSandboxSubnets = subnets.length > 0 && subnets.every((x) => s3GatewayRouteTables.has(routeTableOf.get(x.logicalId) ?? ''));
  const privateSubnets = subnets.length || 2;
  const interfaceEndpointEnis = endpoints
    .filter(([, r]) => (props(r).VpcEndpointType ?? 'Gateway') === 'Interface')
    .reduce((n, [, r]) => n + (Array.isArray(props(r).SubnetIds) ? props(r).SubnetIds.length : privateSubnets), 0);
  const gsi1 = ofType('AWS::DynamoDB::Table')
    .flatMap(([, r]) => ((props(r).GlobalSecondaryIndexes ?? []) as Array<{ IndexName: string; Projection?: { ProjectionType?: string; NonKeyAttributes?: string[] } }>))
    .find((g) => g.IndexName === 'gsi1');
  const projection = gsi1?.Projection;
  const sessionIndexOnStatus =
    !!gsi1 && (projection?.ProjectionType === 'ALL' || (projection?.ProjectionType === 'INCLUDE' && !!projection.NonKeyAttributes?.includes('status')));

  return {
    functions,
    streamTier,
    proxyService,
    interfaceEndpointEnis,
    sandboxClusters: Math.max(1, ofType('AWS::ECS::Cluster').filter(([id]) => !id.startsWith('StreamTier')).length),
    sessionIndexOnStatus,
    wakeSource: { batchSize: num(esmProps.BatchSize) ?? 10, maxConcurrency: num(esmProps.ScalingConfig?.MaximumConcurrency) },
    wakeQueue: {
      fifo: q.FifoQueue === true,
      highThroughput: q.FifoThroughputLimit === 'perMessageGroupId' && q.DeduplicationScope === 'messageGroup',
      visibilityTimeoutSeconds: num(q.VisibilityTimeout) ?? 30,
      maxReceiveCount: num(q.RedrivePolicy?.maxReceiveCount),
    },
    stage: { rateLimit: num(all?.ThrottlingRateLimit), burstLimit: num(all?.ThrottlingBurstLimit) },
    rateLimits: parseRateLimits(envString(CORRAL_ENV.rateLimits)),
    rateLimitShards: shardsEnv ?? DEFAULT_RATE_LIMIT_SHARDS,
    subnets,
    s3GatewayOnSandboxSubnets,
    natGateways: ofType('AWS::EC2::NatGateway').length,
    vpcEndpoints: endpoints.map(([, r]) => {
      const name = JSON.stringify(props(r).ServiceName ?? '');
      // `com.amazonaws.<region>.<service>`, usually an Fn::Join whose last literal is `.<service>`
      return `${name.match(/\.([a-z0-9.-]+)"\]\]\}?$/)?.[1] ?? name} (${props(r).VpcEndpointType ?? 'Gateway'})`;
    }),
    sandboxTask: {
      vcpu: (num(t.Cpu) ?? 1024) / 1024,
      memoryGb: (num(t.Memory) ?? 2048) / 1024,
      arch: t.RuntimePlatform?.CpuArchitecture === 'ARM64' ? 'arm64' : 'x86_64',
      ephemeralStorageGiB: num(t.EphemeralStorage?.SizeInGiB) ?? 20,
    },
    sandboxIdleMinutes: idleMs === undefined ? undefined : idleMs / 60_000,
    sandboxSpot: (props(template.Resources[harnessId]).Environment?.Variables ?? {})[CORRAL_ENV.sandboxSpot] === 'true',
    warmPoolTasks: warmPoolTasks((props(template.Resources[harnessId]).Environment?.Variables ?? {})[CORRAL_ENV.warmPool]),
    taskStateEvents: ofType('AWS::Events::Rule').some(([, r]) => {
      const pattern = props(r).EventPattern as { source?: string[]; 'detail-type'?: string[] } | undefined;
      return !!pattern?.source?.includes('aws.ecs') && !!pattern['detail-type']?.includes('ECS Task State Change') && Array.isArray(props(r).Targets) && props(r).Targets.length > 0;
    }),
    tables: ofType('AWS::DynamoDB::Table').map(([id, r]) => ({
      logicalId: id,
      billingMode: String(props(r).BillingMode ?? 'PROVISIONED'),
      gsis: ((props(r).GlobalSecondaryIndexes as Array<{ IndexName: string }> | undefined) ?? []).map((g) => g.IndexName),
      streams: !!props(r).StreamSpecification,
    })),
    kmsKeys: ofType('AWS::KMS::Key').length,
    alarms: ofType('AWS::CloudWatch::Alarm').length,
    dashboards: ofType('AWS::CloudWatch::Dashboard').length,
  };
}

/** The tasks a `CORRAL_WARM_POOL` value keeps started ahead (`env_a=2,env_b=1` is 3), read as the harness reads it. */
export function warmPoolTasks(value: unknown): number {
  if (typeof value !== 'string') return 0;
  const pool = readWarmPool({ [CORRAL_ENV.warmPool]: value });
  return pool ? Object.values(pool.sizes).reduce((a, b) => a + b, 0) : 0;
}
