import { Arn, ArnFormat, Duration, Fn, Lazy, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import { acknowledge } from '../nag.js';
import { Construct } from 'constructs';
import { configEnvironment } from '../../../lambdas/core/config.js';
import { CAPABILITY_ENCRYPTION_CONTEXT } from '../../../lambdas/core/sandbox/sealing.js';
import { DEFAULT_SANDBOX_LIMITS, SANDBOX_LIMITS_ENV, formatSandboxLimits, humanBytes, resolveSandboxLimits, type SandboxLimits } from '../../../sandbox/limits.js';
import { REPO_ROOT } from '../paths.js';
import { CorralRole } from '../roles.js';
import type { Network } from './network.js';

/** The port the sandbox agent listens on inside its task. */
export const SANDBOX_PORT = 8080;
export const SANDBOX_CONTAINER = 'agent';

export interface SandboxesProps {
  readonly network: Network;
  /**
   * The sandbox image. @default - built from `sandbox/Dockerfile` with the repository root as
   * build context, for ARM64 (built by `cdk deploy`, not by `cdk synth`)
   */
  readonly image?: ecs.ContainerImage;
  /** vCPU units of a sandbox task (256 = 0.25 vCPU). @default 1024 */
  readonly cpu?: number;
  /** Memory of a sandbox task, in MiB (must fit the CPU, see the Fargate table). @default 2048 */
  readonly memoryMiB?: number;
  /** Ephemeral storage of a sandbox task, in GiB (21-200; Fargate includes 20). @default - 20 GiB */
  readonly ephemeralStorageGiB?: number;
  /**
   * Limits of the tools inside each sandbox (sandbox/limits.ts): processes, memory and CPU seconds
   * per process, file size, workspace disk. They reach the agent in the task definition's
   * environment (`CORRAL_SANDBOX_LIMITS`); the task size (`cpu`, `memoryMiB`,
   * `ephemeralStorageGiB`) stays the bound of the whole task. A memory or disk limit above the
   * task's memory or storage fails synthesis; the defaults are lowered to fit.
   * @default DEFAULT_SANDBOX_LIMITS, memory and disk capped by the task size
   */
  readonly limits?: Partial<SandboxLimits>;
  /**
   * Run sandbox tasks on Fargate Spot (about 70% cheaper), on demand when Spot has no capacity.
   * AWS may reclaim a Spot task with two minutes' notice: for Corral that is a sandbox death, which
   * the next tool call reports as an error and answers with a fresh sandbox (docs/SANDBOXES.md).
   * @default false
   */
  readonly spot?: boolean;
  /**
   * ECS clusters the sandbox tasks are spread over (CDK context `sandboxClusters`), 1-20. ECS lets
   * at most 500 tasks of a cluster be PROVISIONING at once, a quota AWS does not raise; each
   * session's tasks start in one cluster chosen from its id, so N clusters take N x 500. The first
   * cluster keeps the logical id of the single cluster (`Cluster`), the others are `Cluster2`...,
   * so raising the count adds clusters and replaces none.
   * @default 1
   */
  readonly clusters?: number;
  /**
   * The security group allows no outbound traffic of its own: the stack adds what may leave
   * (the proxy service's port, what a task needs to start: `ProxyService`). @default false (all outbound)
   */
  readonly restrictEgress?: boolean;
  /** Give sandbox tasks public IPs (only for subnets without NAT, e.g. public subnets). @default false */
  readonly assignPublicIp?: boolean;
  /** CloudWatch Container Insights on the cluster (billed per task metric). @default false */
  readonly containerInsights?: boolean;
  /** How long sandbox logs are kept. @default one week */
  readonly logRetention?: logs.RetentionDays;
}

/** Files of the repository root that never belong in the sandbox image's build context. */
export const SANDBOX_IMAGE_EXCLUDE = ['node_modules', '**/node_modules', 'cdk.out', '.corral', '.git', 'scratch', '*.log'];

/**
 * The hands: an ECS cluster and a Fargate task definition for the sandbox agent. No task runs
 * until a tool call needs one (the harness calls `RunTask` through lambdas/adapters/aws/ecs-sandbox-provider.ts)
 * and each is stopped when released, so an idle deployment runs no task at all.
 *
 * The task role has no permissions: nothing inside a sandbox can call AWS. The sandbox security
 * group accepts connections on the agent's port only from the security groups given to
 * `allowAgentAccessFrom` (the harness function's), and nothing else.
 */
export class Sandboxes extends Construct {
  /** The first cluster (the only one unless `clusters` is set). */
  readonly cluster: ecs.Cluster;
  /** Every cluster sandbox tasks start in (`clusters`). */
  readonly clusters: ecs.Cluster[];
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly container: ecs.ContainerDefinition;
  readonly securityGroup: ec2.SecurityGroup;
  readonly logGroup: logs.LogGroup;
  /** The limits every sandbox's tools run under. */
  readonly limits: SandboxLimits;
  /**
   * Seals sandbox capabilities in the state table (envelope encryption: data keys with the
   * encryption context `corral:purpose=sandbox-capability`). Only the functions given
   * `grantCapabilitySealing` (the harness, the API) may seal with it, and those given
   * `grantCapabilityOpening` (the reaper, which snapshots workspaces) may open what they sealed.
   */
  readonly capabilityKey: kms.Key;
  private readonly network: Network;
  private readonly assignPublicIp: boolean;
  private readonly spot: boolean;
  /** Whether a rule records this cluster's task state change events (`recordTaskEvents`). */
  private taskEventsRecorded = false;

  constructor(scope: Construct, id: string, props: SandboxesProps) {
    super(scope, id);
    this.network = props.network;
    this.assignPublicIp = props.assignPublicIp ?? false;
    this.spot = props.spot ?? false;
    const count = props.clusters ?? 1;
    if (!Number.isInteger(count) || count < 1 || count > 20) throw new Error(`sandbox clusters: an integer from 1 to 20, not ${count}`);
    this.clusters = Array.from(
      { length: count },
      (_, i) =>
        new ecs.Cluster(this, i === 0 ? 'Cluster' : `Cluster${i + 1}`, {
          vpc: props.network.vpc,
          // RunTask with a FARGATE_SPOT capacity provider strategy needs the providers on the cluster.
          enableFargateCapacityProviders: this.spot || undefined,
          containerInsightsV2: props.containerInsights ? ecs.ContainerInsights.ENABLED : ecs.ContainerInsights.DISABLED,
        }),
    );
    this.cluster = this.clusters[0];
    // An explicit, empty role: CDK would create one anyway; naming it makes "no permissions" visible.
    const taskRole = new iam.Role(this, 'TaskRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: 'Corral sandbox tasks: deliberately without any permission',
    });
    // Pulls the image and writes the logs. A CorralRole: the ECR token grant, which can only name
    // `*`, sits in a policy of its own (see infra/lib/roles.ts).
    const executionRole = new CorralRole(this, 'ExecutionRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: 'Corral sandbox tasks: ECS pulls the image and writes the logs with it',
    });
    const memoryMiB = props.memoryMiB ?? 2048;
    this.limits = sandboxLimitsFor(props.limits, memoryMiB, props.ephemeralStorageGiB ?? 20);
    this.taskDefinition = new ecs.FargateTaskDefinition(this, 'Task', {
      cpu: props.cpu ?? 1024,
      memoryLimitMiB: memoryMiB,
      ephemeralStorageGiB: props.ephemeralStorageGiB,
      runtimePlatform: { cpuArchitecture: ecs.CpuArchitecture.ARM64, operatingSystemFamily: ecs.OperatingSystemFamily.LINUX },
      taskRole,
      executionRole,
    });
    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention ?? logs.RetentionDays.ONE_WEEK,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.container = this.taskDefinition.addContainer('Agent', {
      containerName: SANDBOX_CONTAINER,
      image:
        props.image ??
        ecs.ContainerImage.fromAsset(REPO_ROOT, {
          file: 'sandbox/Dockerfile',
          platform: Platform.LINUX_ARM64,
          exclude: SANDBOX_IMAGE_EXCLUDE,
        }),
      essential: true,
      portMappings: [{ containerPort: SANDBOX_PORT, protocol: ecs.Protocol.TCP }],
      environment: { [SANDBOX_LIMITS_ENV]: formatSandboxLimits(this.limits) },
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: 'sandbox' }),
    });
    this.securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.network.vpc,
      description: 'Corral sandbox tasks: the agent port is reachable from the harness only',
      // With the proxy service (restrictEgress), a sandbox's only way out is the proxy, which
      // enforces the environment's networking; without it, everything goes out.
      allowAllOutbound: !props.restrictEgress,
    });

    this.capabilityKey = new kms.Key(this, 'CapabilityKey', {
      description: 'Corral: seals sandbox capabilities in the state table (the harness and the API; the reaper opens them)',
      enableKeyRotation: true,
      // Sealed capabilities only outlive their sandboxes by the reaper's interval.
      removalPolicy: RemovalPolicy.DESTROY,
      pendingWindow: Duration.days(7),
    });

    acknowledge(this.taskDefinition, {
      id: 'AwsSolutions-ECS2',
      reason: `The one environment variable of the task definition is ${SANDBOX_LIMITS_ENV}, the tools' limits: a stack setting, not a secret.`,
    });

    if (!props.containerInsights) {
      for (const cluster of this.clusters) {
        acknowledge(cluster, {
          id: 'AwsSolutions-ECS4',
          reason: 'Container Insights is opt-in (SandboxesProps.containerInsights): it is billed per task metric.',
        });
      }
    }
  }

  /** Let `peer` (the harness's, the API's security group) reach the sandbox agent's port. */
  allowAgentAccessFrom(peer: ec2.ISecurityGroup, description = 'the harness calls the sandbox agent'): void {
    this.securityGroup.addIngressRule(peer, ec2.Port.tcp(SANDBOX_PORT), description);
  }

  /**
   * Let `fn` seal and open sandbox capabilities (the harness runs tool calls, the API hands
   * sandboxes off): data keys of `capabilityKey`, only with the capability encryption context, and
   * the key's ARN in its environment. No other function gets either.
   */
  grantCapabilitySealing(fn: { addEnvironment(key: string, value: string): unknown } & iam.IGrantable): void {
    iam.Grant.addToPrincipal({
      grantee: fn,
      actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
      resourceArns: [this.capabilityKey.keyArn],
      conditions: {
        StringEquals: Object.fromEntries(Object.entries(CAPABILITY_ENCRYPTION_CONTEXT).map(([k, v]) => [`kms:EncryptionContext:${k}`, v])),
      },
    });
    for (const [k, v] of Object.entries(configEnvironment({ sandboxCapabilityKey: this.capabilityKey.keyArn }))) fn.addEnvironment(k, v);
  }

  /**
   * Let `fn` open sealed sandbox capabilities, and no more: `kms:Decrypt` of `capabilityKey` with
   * the capability encryption context (the reaper calls a sandbox's agent for its workspace before
   * stopping it; it never seals a new capability), and the key's ARN in its environment.
   */
  grantCapabilityOpening(fn: { addEnvironment(key: string, value: string): unknown } & iam.IGrantable): void {
    iam.Grant.addToPrincipal({
      grantee: fn,
      actions: ['kms:Decrypt'],
      resourceArns: [this.capabilityKey.keyArn],
      conditions: {
        StringEquals: Object.fromEntries(Object.entries(CAPABILITY_ENCRYPTION_CONTEXT).map(([k, v]) => [`kms:EncryptionContext:${k}`, v])),
      },
    });
    for (const [k, v] of Object.entries(configEnvironment({ sandboxCapabilityKey: this.capabilityKey.keyArn }))) fn.addEnvironment(k, v);
  }

  /** The clusters' ARNs: one value for a condition, a list for several. */
  private clusterArnCondition(): string | string[] {
    return this.clusters.length === 1 ? this.cluster.clusterArn : this.clusters.map((c) => c.clusterArn);
  }

  /** Start, inspect and stop sandbox tasks on these clusters (the harness). */
  grantManage(grantee: iam.IGrantable): void {
    // RunTask of this task definition, only in these clusters (CDK's grantRun does not say which
    // cluster), and iam:PassRole for its two roles, only to ECS tasks.
    iam.Grant.addToPrincipal({
      grantee,
      actions: ['ecs:RunTask'],
      resourceArns: [this.taskDefinition.taskDefinitionArn],
      conditions: { ArnEquals: { 'ecs:cluster': this.clusterArnCondition() } },
    });
    iam.Grant.addToPrincipal({
      grantee,
      actions: ['iam:PassRole'],
      resourceArns: [this.taskDefinition.taskRole.roleArn, this.taskDefinition.obtainExecutionRole().roleArn],
      conditions: { StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } },
    });
    // Tags given to RunTask (session id, sandbox name) need TagResource on the new task.
    iam.Grant.addToPrincipal({
      grantee,
      actions: ['ecs:TagResource'],
      resourceArns: this.taskArnPatterns(),
      conditions: { StringEquals: { 'ecs:CreateAction': 'RunTask' } },
    });
    this.grantRelease(grantee);
  }

  /** Inspect and stop sandbox tasks on these clusters (the API stops a deleted session's sandboxes). */
  grantRelease(grantee: iam.IGrantable): void {
    iam.Grant.addToPrincipal({
      grantee,
      actions: ['ecs:StopTask', 'ecs:DescribeTasks'],
      resourceArns: this.taskArnPatterns(),
      conditions: { ArnEquals: { 'ecs:cluster': this.clusterArnCondition() } },
    });
  }

  /** Every task of one cluster (the first by default). */
  taskArnPattern(cluster: ecs.ICluster = this.cluster): string {
    return Arn.format(
      { service: 'ecs', resource: 'task', resourceName: `${cluster.clusterName}/*`, arnFormat: ArnFormat.SLASH_RESOURCE_NAME },
      Stack.of(this),
    );
  }

  /** Every task of every cluster. */
  taskArnPatterns(): string[] {
    return this.clusters.map((c) => this.taskArnPattern(c));
  }

  /** The clusters' ARNs as one comma-separated value (`CORRAL_SANDBOX_CLUSTER`). */
  get clusterArns(): string {
    return this.clusters.length === 1 ? this.cluster.clusterArn : Fn.join(',', this.clusters.map((c) => c.clusterArn));
  }

  /**
   * Deliver this cluster's ECS task state change events to `target` (the reaper function, which
   * records them in the state table: lambdas/adapters/aws/ecs-task-events.ts), and tell the
   * functions that start tasks (`environment`, resolved at synthesis) to wait on those records
   * instead of polling DescribeTasks.
   */
  recordTaskEvents(scope: Construct, target: events.IRuleTarget): events.Rule {
    this.taskEventsRecorded = true;
    return new events.Rule(scope, 'TaskStateChanges', {
      description: 'Corral: sandbox task state changes, recorded for the harness waiting on them',
      eventPattern: {
        source: ['aws.ecs'],
        detailType: ['ECS Task State Change'],
        detail: { clusterArn: this.clusters.map((c) => c.clusterArn) },
      },
      targets: [target],
    });
  }

  /** What the Fargate sandbox provider needs, in the environment (lambdas/core/config.ts). */
  get environment(): Record<string, string> {
    return configEnvironment({
      sandboxCluster: this.clusterArns,
      sandboxTaskDefinition: this.taskDefinition.taskDefinitionArn,
      sandboxSubnets: this.network.sandboxSubnetIds.join(','),
      sandboxSecurityGroups: this.securityGroup.securityGroupId,
      sandboxContainer: SANDBOX_CONTAINER,
      sandboxPort: String(SANDBOX_PORT),
      sandboxAssignPublicIp: String(this.assignPublicIp),
      sandboxTaskEvents: Lazy.string({ produce: () => String(this.taskEventsRecorded) }),
      sandboxSpot: this.spot ? 'true' : undefined,
    });
  }
}

/**
 * The tools' limits for a task of `memoryMiB` and `storageGiB`: the given ones, checked against the
 * task, and the defaults for the rest, lowered to fit the task (a task of 1 GiB gets a 1 GiB
 * memory limit per process, not the default's).
 */
export function sandboxLimitsFor(given: Partial<SandboxLimits> | undefined, memoryMiB: number, storageGiB: number): SandboxLimits {
  const memory = memoryMiB * 1024 ** 2;
  const storage = storageGiB * 1024 ** 3;
  if (given?.memory !== undefined && given.memory > memory) {
    throw new Error(`sandbox limit memory (${humanBytes(given.memory)}) is above the task's memory (${memoryMiB} MiB): raise sandboxMemoryMiB or lower the limit`);
  }
  if (given?.disk !== undefined && given.disk > storage) {
    throw new Error(`sandbox limit disk (${humanBytes(given.disk)}) is above the task's ephemeral storage (${storageGiB} GiB): raise sandboxEphemeralStorageGiB or lower the limit`);
  }
  return resolveSandboxLimits({
    memory: Math.min(DEFAULT_SANDBOX_LIMITS.memory, memory),
    disk: Math.min(DEFAULT_SANDBOX_LIMITS.disk, storage),
    ...given,
  });
}
