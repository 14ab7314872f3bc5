/**
 * Every number the capacity model takes from outside this repository: AWS's default quotas,
 * us-east-1 list prices, the prices of the platforms Corral is compared with, and the workload
 * constants that no benchmark measures. Each carries its source; none is looked up at run time.
 *
 * `checked` says how the figure was confirmed: `docs-read` where the page was read while this
 * table was written (2025), `recalled` where it is AWS's published value as the author knows it
 * but the page was not re-read. A deployer who depends on a figure should check it in the
 * account's Service Quotas console (quotas) or the pricing page (prices): they change, and an
 * account's applied quota may differ from the default.
 */

import { DEFAULT_INTERRUPT_POLL_MS } from '../../lambdas/core/harness/interrupts.js';
import { PREVIEW_LIMITS } from '../../lambdas/core/session/previews.js';

export type Checked = 'docs-read' | 'recalled';

export interface Quota {
  readonly name: string;
  /** AWS's default value. */
  readonly value: number;
  readonly unit: string;
  /** Adjustable through Service Quotas / support; `false` for hard limits. */
  readonly adjustable: boolean;
  /** A documented or commonly granted increase, for the "needs" column; undefined if unknown. */
  readonly documentedIncrease?: string;
  readonly source: string;
  readonly checked: Checked;
}

export const QUOTAS = {
  lambdaConcurrency: {
    name: 'Lambda concurrent executions (account, region; shared by every function)',
    value: 1000,
    unit: 'executions',
    adjustable: true,
    documentedIncrease: 'raised on request to tens of thousands; 100 must stay unreserved',
    source: 'https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html',
    checked: 'recalled',
  },
  apiGatewayAccountRps: {
    name: 'API Gateway throttle (account, region, all APIs)',
    value: 10_000,
    unit: 'requests/s',
    adjustable: true,
    documentedIncrease: 'raised on request',
    source: 'https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html',
    checked: 'recalled',
  },
  dynamodbPartitionWcu: {
    name: 'DynamoDB writes per partition key (item collection / GSI partition)',
    value: 1000,
    unit: 'WCU/s',
    adjustable: false,
    source: 'https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html',
    checked: 'recalled',
  },
  dynamodbPartitionRcu: {
    name: 'DynamoDB reads per partition',
    value: 3000,
    unit: 'RCU/s',
    adjustable: false,
    source: 'https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html',
    checked: 'recalled',
  },
  dynamodbTableRru: {
    name: 'DynamoDB on-demand read throughput per table',
    value: 40_000,
    unit: 'RRU/s',
    adjustable: true,
    documentedIncrease: 'raised on request (per-table quota)',
    source: 'https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html',
    checked: 'recalled',
  },
  dynamodbTableWru: {
    name: 'DynamoDB on-demand write throughput per table',
    value: 40_000,
    unit: 'WRU/s',
    adjustable: true,
    documentedIncrease: 'raised on request (per-table quota)',
    source: 'https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html',
    checked: 'recalled',
  },
  sqsFifoTps: {
    name: 'SQS FIFO transactions per API action per queue (without high throughput)',
    value: 300,
    unit: 'calls/s',
    adjustable: false,
    source: 'https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html',
    checked: 'docs-read',
  },
  sqsFifoHighThroughputTps: {
    name: 'SQS FIFO transactions per API action per queue (high-throughput mode, us-east-1)',
    value: 70_000,
    unit: 'calls/s',
    adjustable: false,
    source: 'https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html',
    checked: 'recalled',
  },
  sqsFifoInFlight: {
    name: 'SQS FIFO messages in flight per queue',
    value: 120_000,
    unit: 'messages',
    adjustable: false,
    source: 'https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html',
    checked: 'recalled',
  },
  fargateLaunchRate: {
    name: 'Fargate task launch rate (token bucket: 100 burst, 20/s sustained)',
    value: 20,
    unit: 'tasks/s',
    adjustable: true,
    documentedIncrease: 'raised on request',
    source: 'https://docs.aws.amazon.com/AmazonECS/latest/developerguide/throttling.html',
    checked: 'docs-read',
  },
  ecsRunTaskRate: {
    name: 'ECS RunTask API calls on Fargate (one task per call as Corral calls it)',
    value: 20,
    unit: 'calls/s',
    adjustable: true,
    source: 'https://docs.aws.amazon.com/AmazonECS/latest/developerguide/throttling.html',
    checked: 'docs-read',
  },
  ecsDescribeTasksRate: {
    name: 'ECS DescribeTasks API calls (sustained)',
    value: 20,
    unit: 'calls/s',
    adjustable: true,
    source: 'https://docs.aws.amazon.com/AmazonECS/latest/APIReference/request-throttling.html',
    checked: 'recalled',
  },
  ecsProvisioningPerCluster: {
    name: 'ECS tasks in PROVISIONING state per cluster',
    value: 500,
    unit: 'tasks',
    adjustable: false,
    source: 'https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-quotas.html',
    checked: 'recalled',
  },
  fargateOnDemandVcpu: {
    name: 'Fargate On-Demand vCPU resource count (account, region)',
    value: 6,
    unit: 'vCPU',
    adjustable: true,
    documentedIncrease: 'the default shown for new accounts; older accounts often hold thousands; raised on request',
    source: 'https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-quotas.html',
    checked: 'recalled',
  },
  fargateSpotVcpu: {
    name: 'Fargate Spot vCPU resource count (account, region)',
    value: 6,
    unit: 'vCPU',
    adjustable: true,
    documentedIncrease: 'as for On-Demand',
    source: 'https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-quotas.html',
    checked: 'recalled',
  },
  eniPerRegion: {
    name: 'Network interfaces per region (one per Fargate task; Lambda VPC ENIs are shared)',
    value: 5000,
    unit: 'ENIs',
    adjustable: true,
    documentedIncrease: 'raised on request',
    source: 'https://docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html',
    checked: 'recalled',
  },
  natConnectionsPerDestination: {
    name: 'NAT gateway simultaneous connections per destination (IP, port, protocol)',
    value: 55_000,
    unit: 'connections',
    adjustable: false,
    source: 'https://docs.aws.amazon.com/vpc/latest/userguide/nat-gateway-basics.html',
    checked: 'recalled',
  },
  secretsManagerGetSecretValue: {
    name: 'Secrets Manager GetSecretValue + DescribeSecret',
    value: 10_000,
    unit: 'calls/s',
    adjustable: false,
    source: 'https://docs.aws.amazon.com/secretsmanager/latest/userguide/reference_limits.html',
    checked: 'recalled',
  },
  kmsSymmetric: {
    name: 'KMS symmetric cryptographic operations (us-east-1, shared)',
    value: 100_000,
    unit: 'calls/s',
    adjustable: true,
    source: 'https://docs.aws.amazon.com/kms/latest/developerguide/requests-per-second.html',
    checked: 'recalled',
  },
} as const satisfies Record<string, Quota>;

export type QuotaId = keyof typeof QUOTAS;

export interface Price {
  readonly value: number;
  readonly unit: string;
  readonly source: string;
  readonly checked: Checked;
  readonly note?: string;
}

/** us-east-1 list prices (on-demand, first tier), as published in 2025. */
export const PRICES_AS_OF = 'us-east-1 list prices as published in 2025 (first tier, no free tier, no savings plans)';

export const PRICES = {
  lambdaGbSecondArm: { value: 0.0000133334, unit: '$/GB-s (arm64)', source: 'https://aws.amazon.com/lambda/pricing/', checked: 'recalled' },
  lambdaGbSecondX86: { value: 0.0000166667, unit: '$/GB-s (x86_64)', source: 'https://aws.amazon.com/lambda/pricing/', checked: 'recalled' },
  lambdaRequest: { value: 0.2 / 1e6, unit: '$/request', source: 'https://aws.amazon.com/lambda/pricing/', checked: 'recalled' },
  fargateVcpuHourArm: { value: 0.03238, unit: '$/vCPU-h (Linux/ARM)', source: 'https://aws.amazon.com/fargate/pricing/', checked: 'recalled' },
  fargateGbHourArm: { value: 0.00356, unit: '$/GB-h (Linux/ARM)', source: 'https://aws.amazon.com/fargate/pricing/', checked: 'recalled' },
  fargateVcpuHourX86: { value: 0.04048, unit: '$/vCPU-h (Linux/x86)', source: 'https://aws.amazon.com/fargate/pricing/', checked: 'recalled' },
  fargateGbHourX86: { value: 0.004445, unit: '$/GB-h (Linux/x86)', source: 'https://aws.amazon.com/fargate/pricing/', checked: 'recalled' },
  fargateSpotDiscount: {
    value: 0.7,
    unit: 'fraction off On-Demand',
    source: 'https://aws.amazon.com/fargate/pricing/',
    checked: 'recalled',
    note: 'Spot prices float; "up to 70%" is AWS\'s figure, used here as the typical discount',
  },
  dynamodbWru: { value: 0.625 / 1e6, unit: '$/write request unit (on-demand)', source: 'https://aws.amazon.com/dynamodb/pricing/on-demand/', checked: 'recalled' },
  dynamodbRru: { value: 0.125 / 1e6, unit: '$/read request unit (on-demand)', source: 'https://aws.amazon.com/dynamodb/pricing/on-demand/', checked: 'recalled' },
  dynamodbStreamsRead: { value: 0.02 / 1e5, unit: '$/streams read request unit', source: 'https://aws.amazon.com/dynamodb/pricing/on-demand/', checked: 'recalled' },
  sqsFifoRequest: { value: 0.5 / 1e6, unit: '$/FIFO request', source: 'https://aws.amazon.com/sqs/pricing/', checked: 'recalled' },
  apiGatewayRestRequest: { value: 3.5 / 1e6, unit: '$/REST API request', source: 'https://aws.amazon.com/api-gateway/pricing/', checked: 'recalled' },
  natGatewayHour: { value: 0.045, unit: '$/NAT gateway-hour', source: 'https://aws.amazon.com/vpc/pricing/', checked: 'recalled' },
  natGatewayGb: { value: 0.045, unit: '$/GB processed by NAT', source: 'https://aws.amazon.com/vpc/pricing/', checked: 'recalled' },
  kmsRequest: { value: 0.03 / 1e4, unit: '$/KMS request', source: 'https://aws.amazon.com/kms/pricing/', checked: 'recalled' },
  kmsKeyMonth: { value: 1, unit: '$/key-month', source: 'https://aws.amazon.com/kms/pricing/', checked: 'recalled' },
  logsIngestGb: { value: 0.5, unit: '$/GB ingested (CloudWatch Logs standard)', source: 'https://aws.amazon.com/cloudwatch/pricing/', checked: 'recalled' },
  alarmMonth: { value: 0.1, unit: '$/standard alarm-month', source: 'https://aws.amazon.com/cloudwatch/pricing/', checked: 'recalled' },
  dashboardMonth: { value: 3, unit: '$/dashboard-month', source: 'https://aws.amazon.com/cloudwatch/pricing/', checked: 'recalled' },
  s3PutRequest: { value: 0.005 / 1000, unit: '$/S3 PUT, COPY, POST or LIST request (Standard)', source: 'https://aws.amazon.com/s3/pricing/', checked: 'recalled' },
  s3GetRequest: { value: 0.0004 / 1000, unit: '$/S3 GET request (Standard)', source: 'https://aws.amazon.com/s3/pricing/', checked: 'recalled' },
  s3GbMonth: { value: 0.023, unit: '$/GB-month stored (S3 Standard, first 50 TB)', source: 'https://aws.amazon.com/s3/pricing/', checked: 'recalled' },
  vpcInterfaceEndpointHour: {
    value: 0.01,
    unit: '$/interface endpoint-hour per availability zone',
    source: 'https://aws.amazon.com/privatelink/pricing/',
    checked: 'recalled',
  },
  vpcInterfaceEndpointGb: {
    value: 0.01,
    unit: '$/GB processed by an interface endpoint (first PB a month)',
    source: 'https://aws.amazon.com/privatelink/pricing/',
    checked: 'recalled',
  },
  albHour: { value: 0.0225, unit: '$/ALB-hour', source: 'https://aws.amazon.com/elasticloadbalancing/pricing/', checked: 'recalled' },
  nlbHour: { value: 0.0225, unit: '$/NLB-hour', source: 'https://aws.amazon.com/elasticloadbalancing/pricing/', checked: 'recalled' },
  nlbLcuHour: {
    value: 0.006,
    unit: '$/NLCU-hour',
    source: 'https://aws.amazon.com/elasticloadbalancing/pricing/',
    checked: 'recalled',
    note: 'for TCP one NLCU covers 800 new connections a second, 100,000 active connections or 1 GB an hour, whichever is highest',
  },
  albLcuHour: {
    value: 0.008,
    unit: '$/LCU-hour',
    source: 'https://aws.amazon.com/elasticloadbalancing/pricing/',
    checked: 'recalled',
    note: 'one LCU covers 3,000 active connections (per minute)',
  },
  // other platforms, for the comparison only
  agentCoreVcpuHour: {
    value: 0.0895,
    unit: '$/vCPU-h of active CPU (Bedrock AgentCore Runtime)',
    source: 'https://aws.amazon.com/bedrock/agentcore/pricing/',
    checked: 'recalled',
    note: 'charged on CPU actually consumed (I/O wait is free) and peak memory',
  },
  agentCoreGbHour: { value: 0.00945, unit: '$/GB-h of peak memory (Bedrock AgentCore Runtime)', source: 'https://aws.amazon.com/bedrock/agentcore/pricing/', checked: 'recalled' },
  eksClusterHour: { value: 0.1, unit: '$/EKS cluster-hour', source: 'https://aws.amazon.com/eks/pricing/', checked: 'recalled' },
  ec2M7g2xlargeHour: { value: 0.3264, unit: '$/h m7g.2xlarge (8 vCPU, 32 GiB) On-Demand', source: 'https://aws.amazon.com/ec2/pricing/on-demand/', checked: 'recalled' },
} as const satisfies Record<string, Price>;

export type PriceId = keyof typeof PRICES;

/** A workload figure no benchmark measures, with where it comes from. */
export interface Constant {
  readonly value: number;
  readonly source: string;
}

/**
 * The workload the issue costs (issue 20, "Why"): one turn a minute, two 10 s model calls and one
 * tool call per turn, a 1 vCPU / 2 GB sandbox, an event stream open for the session's life.
 * Code constants name the file they are read from.
 */
export const CONSTANTS = {
  modelCallsPerTurn: { value: 2, source: 'issue 20 workload' },
  modelCallSeconds: { value: 10, source: 'issue 20 workload' },
  toolCallsPerTurn: { value: 1, source: 'issue 20 workload' },
  toolCallSeconds: { value: 5, source: 'assumption: a typical bash/read/edit tool call' },
  /** A session hour starts this many sandboxes (the reaper stops one idle for sandboxIdleMinutes). */
  sandboxStartsPerActiveHour: { value: 1, source: 'assumption: one sandbox per active session-hour' },
  sandboxStartSeconds: { value: 30, source: 'bench settings.fargateMedianMs (the simulated Fargate start-up median)' },
  describeTasksEverySeconds: { value: 2, source: 'lambdas/adapters/aws/ecs-sandbox-provider.ts pollIntervalMs (without task state events)' },
  taskStateReadsPerSecond: {
    value: 1,
    source: 'lambdas/adapters/aws/ecs-sandbox-provider.ts stateReadIntervalMs: with task state events, a starting task\'s state record is read (GetItem, strongly consistent, 1 RRU) once a second',
  },
  taskStateEventsPerStart: {
    value: 6,
    source: 'assumption: ECS sends a task state change at PROVISIONING, PENDING, ACTIVATING, RUNNING, and two while it stops (each a reaper invocation and a state-table write)',
  },
  taskStateEventSeconds: { value: 0.05, source: 'assumption: the reaper function records one event in about 50 ms (one conditional PutItem; not measured on AWS)' },
  describeTasksFallbackPerStart: {
    value: 0,
    source: 'lambdas/adapters/aws/ecs-sandbox-provider.ts describeFallbackMs: DescribeTasks only when no event moved the record for 20 s (events lost or late); taken as none',
  },
  sandboxImageGb: {
    value: 0.5,
    source: 'assumption: not measured (issue 20 item 4 asks for the size to be reported); its layers come from S3 (ECR serves a layer as a redirect to S3), so they cross the NAT only where the sandbox subnets\' route tables have no S3 gateway endpoint',
  },
  ecrApiBytesPerPull: {
    value: 20_000,
    source: 'assumption: not measured: an image pull\'s calls to ECR itself (an authorization token from ecr.api; the manifest and a redirect to S3 per layer from ecr.dkr) with their TLS handshakes, about 20 KB; through the NAT unless ecr.api and ecr.dkr interface endpoints exist',
  },
  sandboxLogBytesPerToolCall: {
    value: 1024,
    source: 'sandbox/agent/sandbox-agent.ts logs one JSON line a tool call (about 100 B); assumption: the awslogs driver sends it in a PutLogEvents request of its own (a call a minute is sparser than its 5 s batches), about 1 KB with headers and signature; through the NAT unless a logs interface endpoint exists',
  },
  signalReadsPerSecond: {
    value: 1000 / DEFAULT_INTERRUPT_POLL_MS,
    source: 'lambdas/core/harness/interrupts.ts DEFAULT_INTERRUPT_POLL_MS: a running harness reads signal#interrupt (GetItem, strongly consistent, 1 RRU) once a second through each model and tool call',
  },
  interruptReadsPerCall: {
    value: 2,
    source: 'lambdas/core/harness/interrupts.ts watchInterrupt: one signal read and one log query (1 RRU each) when a model or tool call starts; the log again only when the signal moves (an interrupt)',
  },
  interruptPollsPerSecond: { value: 4, source: 'former design (before the signal; commit 086aeb1): the harness queried the log every 250 ms through each model and tool call on AWS' },
  streamPollsPerSecond: { value: 1, source: 'lambdas/api/stream.ts pollMs default 1000 ms' },
  leaseRenewEverySeconds: { value: 20, source: 'lambdas/core/session/lease.ts: a third of the 60 s lease' },
  visibilityHeartbeatEverySeconds: { value: 60, source: 'lambdas/harness-step/handler.ts DEFAULT_HEARTBEAT.everyMs' },
  wakesPerTurn: { value: 1, source: 'lambdas/core/harness/harness.ts: one wake runs steps until the session is idle' },
  apiRequestsPerTurn: { value: 1, source: 'assumption: the client POSTs one user event per turn (the stream carries the rest)' },
  apiRequestSeconds: { value: 0.05, source: 'assumption: API function duration per request (not measured on AWS)' },
  sessionIndexWritesPerTurn: {
    value: 0,
    source: 'lambdas/core/storage/items.ts SessionHeadRecords.put/page: a session is listed through a listing item written once at creation and deleted with the session; the head carries no index key, so status changes and usage write nothing to <tenant>#sessions (test/e2e/session-index-writes.test.ts counts 0 index writes a turn)',
  },
  sessionIndexWritesPerSession: {
    value: 2,
    source: 'lambdas/core/storage/items.ts SessionHeadRecords.put: one listing item written when the session is created, one delete when it is deleted (test/e2e/session-index-writes.test.ts)',
  },
  sessionLifetimeHours: { value: 1, source: 'assumption: a session lives an hour from creation to deletion (the index\'s creates and deletes are a rate per lifetime)' },
  sessionIndexWritesPerTurnPerStatus: {
    value: 2,
    source: 'former design (before the listing item, commit c0b5d8e): the head was in gsi1 and written on status changes, running and idle, an index write each where gsi1 carries the status',
  },
  sessionIndexWritesPerTurnFormer: { value: 4, source: 'former design (issue 20): the session record, usage included, rewritten 4 times a turn, each a gsi1 write' },
  previewChunksPerSecond: {
    value: 1000 / PREVIEW_LIMITS.flushMs,
    source: 'lambdas/core/session/previews.ts PREVIEW_LIMITS.flushMs: the harness writes a preview chunk (1 WRU, a state-table item) at most every 250 ms while text streams, watched or not',
  },
  previewedShareOfModelTime: {
    value: 0.5,
    source: 'assumption: half of a model call streams previewed text (the answer streams text; a call ending in a tool call mostly streams its input, which is not previewed)',
  },
  previewPollsPerSecond: {
    value: 1000 / PREVIEW_LIMITS.pollMs,
    source: 'lambdas/api/stream.ts, PREVIEW_LIMITS.pollMs: a stream with event_deltas queries the open request\'s chunks every 250 ms (1 RRU) while a model request is open',
  },
  streamsWithEventDeltas: { value: 1, source: 'assumption: every open stream asks for event_deltas (the upper bound; the harness writes chunks only for a session such a stream watches, lambdas/core/session/previews.ts TablePreviewChannel.watched, and a stream without them reads no chunks)' },
  snapshotsPerSandboxStop: {
    value: 1,
    source: 'lambdas/sandbox-reaper/handler.ts: the reaper snapshots the workspace of every sandbox it stops for idleness into the blob bucket (docs/WORKSPACES.md); the stack\'s VPC has an S3 gateway endpoint, so snapshots do not cross the NAT',
  },
  workspaceSnapshotGb: { value: 0.02, source: 'assumption: a 20 MB gzipped workspace (not measured); docs/WORKSPACES.md bounds it' },
  s3WritesPerSnapshot: { value: 3, source: 'lambdas/adapters/aws/s3-blob-store.ts: a streamed body goes up as a multipart upload (create, a part, complete)' },
  writeUnitsPerItem: { value: 1, source: 'assumption: state and event items under 1 KB' },
  kmsCallsPerTurn: { value: 1, source: 'lambdas/adapters/aws/kms-capability-sealer.ts: one Decrypt per wake on a cold instance (cache per instance)' },
  credentialCallsPerTurn: { value: 0, source: 'assumption: the workload uses no vault credential (each would be a proxy call and a GetSecretValue)' },
  modelResponseBytes: { value: 4096, source: 'assumption: a streamed answer of about 4 KB' },
  logBytesPerStep: { value: 2048, source: 'assumption: JSON log lines and EMF metrics per harness step' },
  tenants: { value: 1, source: 'assumption: one tenant runs all sessions (the hot-key case)' },
  // the stream tier (streamTier=fargate)
  streamConnectionsPerTask: { value: 10000, source: 'bench/stream-tier-memory.ts, measured on this machine: about 95 KiB of resident memory per open stream in one stream tier process (2,000 streams over 20 sessions, Node 20), so 10,000 take about 0.95 GB of a 2 GB task, under the service\'s 60% memory target; CPU not measured (idle streams use almost none)' },
  streamTierLogPollSeconds: { value: 30, source: 'lambdas/stream-tier/server.ts STREAM_TIER_DEFAULTS.pollMs (a connection reads the log without a notification)' },
  eventsStreamShards: { value: 10, source: 'assumption: shards of the events table\'s stream (about one per table partition; each partition takes 1,000 writes/s)' },
  nlbActiveFlowsPerLcu: { value: 100000, source: 'https://aws.amazon.com/elasticloadbalancing/pricing/ (TCP: 100,000 active connections per NLCU)' },
  // comparison
  agentCoreActiveCpuFraction: { value: 0.2, source: 'assumption: an agent session consumes CPU 20% of its wall time (the rest waits on the model)' },
  k8sPodsPerNodeReserved: { value: 8, source: 'm7g.2xlarge with 1 vCPU / 2 GB requests: 8 pods (CPU-bound)' },
  k8sPodsPerNodePacked: { value: 16, source: 'm7g.2xlarge with 0.25 vCPU / 2 GB requests: 16 pods (memory-bound)' },
} as const satisfies Record<string, Constant>;

export type ConstantId = keyof typeof CONSTANTS;
