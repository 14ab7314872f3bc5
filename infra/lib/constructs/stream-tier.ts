import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duration, RemovalPolicy, Stack, type CfnElement } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as sns from 'aws-cdk-lib/aws-sns';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { buildSync } from 'esbuild';
import { consoleScriptDefine } from '../../../lambdas/api/console/bundle.js';
import { STREAM_TIER_ENV } from '../../../lambdas/stream-tier/env.js';
import { BUNDLE_ALIASES, BUNDLE_TARGET, ESM_REQUIRE_BANNER } from '../bundling.js';
import { acknowledge, defaultPolicyOf } from '../nag.js';
import { repoPath } from '../paths.js';
import { CorralRole } from '../roles.js';
import type { Api } from './api.js';
import type { Network } from './network.js';
import type { Sandboxes } from './sandboxes.js';
import type { SessionLog } from './session-log.js';

/** The port the stream tier listens on inside its task. */
export const STREAM_TIER_PORT = 8080;
/** The header API Gateway writes the caller's address into (for the failed-authentication limit). */
export const STREAM_TIER_CLIENT_ADDRESS_HEADER = 'X-Corral-Client-Address';
/**
 * GetRecords calls a second on one shard, across every task, that the tier keeps under: DynamoDB
 * Streams serves 5 a second per shard, and throttles beyond.
 */
export const SHARD_READS_PER_SECOND = 4;

export interface StreamTierProps {
  readonly api: Api;
  readonly sessionLog: SessionLog;
  readonly network: Network;
  /** Its cluster runs the tier's tasks too (a cluster costs nothing of its own). */
  readonly sandboxes: Sandboxes;
  /** Service name on the tier's log lines (Powertools' `service`). */
  readonly serviceName: string;
  readonly logRetention?: logs.RetentionDays;
  /** vCPU units of a task. @default 1024 */
  readonly cpu?: number;
  /** Memory of a task, MiB. @default 2048 */
  readonly memoryMiB?: number;
  /** Tasks always running (one per availability zone keeps streams up through a zone's loss). @default 2 */
  readonly minTasks?: number;
  /**
   * Most tasks. Every task reads every shard of the events table's stream, so this also sets how
   * often a task reads a shard (`SHARD_READS_PER_SECOND` in all): 4 tasks read each shard once a
   * second. @default 4
   */
  readonly maxTasks?: number;
  /** Longest a stream stays open (the integration's timeout; the tier ends it 10 s before). */
  readonly streamTimeout: Duration;
  /** Where the tier's alarms notify (the stack adds its alarm topic later, to `alarms`). @default - nowhere */
  readonly alarmTopic?: sns.ITopic;
  /** Age of the oldest stream record a task read in a minute above which the lag alarm fires. @default 60 s */
  readonly iteratorAgeThreshold?: Duration;
}

/** The metric the tier's once-a-minute log line carries (`iteratorAgeMs`), under this namespace. */
export const STREAM_TIER_METRICS = { namespace: 'Corral/StreamTier', iteratorAge: 'IteratorAgeMs', errors: 'Errors' } as const;

/**
 * The stream tier: `GET /v1/sessions/{id}/events/stream` served by a Fargate service of Node
 * processes, each holding many streams (lambdas/stream-tier/), instead of one Lambda execution per
 * open stream. API Gateway (the same REST API, the same stage and throttling) reaches it through a
 * VPC link to an internal Network Load Balancer, with the integration's `responseTransferMode:
 * STREAM`. The tasks learn of appends from the events table's DynamoDB stream (keys only) and
 * read the log itself for each stream, with the stream function's permissions.
 *
 * The image is the tier's entry bundled by esbuild at synthesis, with the Lambda bundles'
 * settings (infra/lib/bundling.ts), on the official Node 22 image: no build inside Docker.
 */
export class StreamTier extends Construct {
  readonly service: ecs.FargateService;
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly loadBalancer: elbv2.NetworkLoadBalancer;
  readonly vpcLink: apigw.VpcLink;
  readonly securityGroup: ec2.SecurityGroup;
  readonly logGroup: logs.LogGroup;
  /** Wait between two GetRecords calls of one task on one shard. */
  readonly shardPollMs: number;
  readonly targetGroup: elbv2.NetworkTargetGroup;
  /**
   * Unhealthy targets; fewer healthy tasks than the minimum; every task in service at the most
   * (the tier cannot scale further); the stream read behind its tip; error lines of the tier
   * (a 5xx it answered, a failure); connections the NLB reset (no healthy target).
   */
  readonly alarms: cloudwatch.Alarm[] = [];

  constructor(scope: Construct, id: string, props: StreamTierProps) {
    super(scope, id);
    const table = props.sessionLog.events;
    if (!table.tableStreamArn) throw new Error('StreamTier: the events table needs a stream (SessionLogProps.eventsStream)');
    const minTasks = props.minTasks ?? 2;
    const maxTasks = props.maxTasks ?? 4;
    if (maxTasks < minTasks) throw new Error(`StreamTier: maxTasks (${maxTasks}) is below minTasks (${minTasks})`);
    this.shardPollMs = Math.max(1000, Math.ceil((maxTasks * 1000) / SHARD_READS_PER_SECOND));

    const taskRole = new iam.Role(this, 'TaskRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: 'Corral stream tier: reads the event log, its stream and the state table; charges rate limits',
    });
    // The stream function's permissions, and the three calls the consumer makes on this one stream
    // (not `grantStreamRead`, which adds ListStreams on every table of the account).
    props.api.grantStreamRoute(taskRole);
    taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'EventsStream',
        actions: ['dynamodb:DescribeStream', 'dynamodb:GetShardIterator', 'dynamodb:GetRecords'],
        resources: [table.tableStreamArn],
      }),
    );
    const executionRole = new CorralRole(this, 'ExecutionRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: 'Corral stream tier: ECS pulls the image and writes the logs with it',
    });
    this.taskDefinition = new ecs.FargateTaskDefinition(this, 'Task', {
      cpu: props.cpu ?? 1024,
      memoryLimitMiB: props.memoryMiB ?? 2048,
      runtimePlatform: { cpuArchitecture: ecs.CpuArchitecture.ARM64, operatingSystemFamily: ecs.OperatingSystemFamily.LINUX },
      taskRole,
      executionRole,
    });
    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const maxStreamMs = props.streamTimeout.toMilliseconds() - 10_000;
    this.taskDefinition.addContainer('Tier', {
      containerName: 'tier',
      image: ecs.ContainerImage.fromAsset(streamTierImage(Stack.of(this).bundlingRequired), { platform: Platform.LINUX_ARM64 }),
      essential: true,
      portMappings: [{ containerPort: STREAM_TIER_PORT, protocol: ecs.Protocol.TCP }],
      environment: {
        ...props.api.environment,
        [STREAM_TIER_ENV.streamArn]: table.tableStreamArn,
        [STREAM_TIER_ENV.port]: String(STREAM_TIER_PORT),
        [STREAM_TIER_ENV.shardPollMs]: String(this.shardPollMs),
        [STREAM_TIER_ENV.maxStreamMs]: String(maxStreamMs),
        [STREAM_TIER_ENV.clientAddressHeader]: STREAM_TIER_CLIENT_ADDRESS_HEADER,
        POWERTOOLS_SERVICE_NAME: props.serviceName,
        NODE_ENV: 'production',
      },
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: 'tier' }),
      // ECS stops a task with SIGTERM; the tier ends its streams at once (clients reconnect to
      // another task with Last-Event-ID) and exits.
      stopTimeout: Duration.seconds(30),
    });

    this.securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.network.vpc,
      description: 'Corral stream tier: its port from the load balancer (in the VPC); out to AWS APIs',
      allowAllOutbound: true,
    });
    // The NLB forwards from its own addresses in the VPC (client addresses are not preserved for
    // IP targets over TCP), so the VPC's range is what reaches the port.
    this.securityGroup.addIngressRule(ec2.Peer.ipv4(props.network.vpc.vpcCidrBlock), ec2.Port.tcp(STREAM_TIER_PORT), 'the stream tier load balancer');

    this.service = new ecs.FargateService(this, 'Service', {
      cluster: props.sandboxes.cluster,
      taskDefinition: this.taskDefinition,
      desiredCount: minTasks,
      vpcSubnets: props.network.subnets,
      securityGroups: [this.securityGroup],
      assignPublicIp: false,
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      circuitBreaker: { rollback: true },
    });
    const scaling = this.service.autoScaleTaskCount({ minCapacity: minTasks, maxCapacity: maxTasks });
    // An open stream costs the task memory (its socket, buffers and timers), hardly any CPU while
    // idle: memory tracks connections; CPU catches bursts of appends fanned out to many readers.
    scaling.scaleOnMemoryUtilization('Memory', { targetUtilizationPercent: 60, scaleInCooldown: Duration.minutes(10), scaleOutCooldown: Duration.minutes(1) });
    scaling.scaleOnCpuUtilization('Cpu', { targetUtilizationPercent: 60, scaleInCooldown: Duration.minutes(10), scaleOutCooldown: Duration.minutes(1) });

    this.loadBalancer = new elbv2.NetworkLoadBalancer(this, 'LoadBalancer', {
      vpc: props.network.vpc,
      vpcSubnets: props.network.subnets,
      internetFacing: false,
      crossZoneEnabled: true,
    });
    const listener = this.loadBalancer.addListener('Listener', { port: 80, protocol: elbv2.Protocol.TCP });
    this.targetGroup = listener.addTargets('Tasks', {
      port: STREAM_TIER_PORT,
      protocol: elbv2.Protocol.TCP,
      targets: [this.service.loadBalancerTarget({ containerName: 'tier', containerPort: STREAM_TIER_PORT })],
      // Draining lasts no longer than the task's stop: the tier ends its streams on SIGTERM.
      deregistrationDelay: Duration.seconds(30),
      healthCheck: { protocol: elbv2.Protocol.HTTP, path: '/health', interval: Duration.seconds(10), healthyThresholdCount: 2, unhealthyThresholdCount: 2 },
    });
    this.addAlarms(props, minTasks, maxTasks);
    this.vpcLink = new apigw.VpcLink(this, 'VpcLink', { targets: [this.loadBalancer], description: 'Corral API to the stream tier' });

    const integration = new apigw.Integration({
      type: apigw.IntegrationType.HTTP_PROXY,
      integrationHttpMethod: 'GET',
      uri: `http://${this.loadBalancer.loadBalancerDnsName}/v1/sessions/{id}/events/stream`,
      options: {
        connectionType: apigw.ConnectionType.VPC_LINK,
        vpcLink: this.vpcLink,
        timeout: props.streamTimeout,
        responseTransferMode: apigw.ResponseTransferMode.STREAM,
        requestParameters: {
          'integration.request.path.id': 'method.request.path.id',
          // Overwrites whatever the caller sent under that name.
          [`integration.request.header.${STREAM_TIER_CLIENT_ADDRESS_HEADER}`]: 'context.identity.sourceIp',
        },
      },
    });
    props.api.streamResource.addMethod('GET', integration, { requestParameters: { 'method.request.path.id': true } });

    acknowledge(
      this.loadBalancer,
      { id: 'AwsSolutions-ELB2', reason: 'Connections are logged by API Gateway (access logs) in front of it; the NLB is internal and reached only through the VPC link.' },
    );
    acknowledge(this.taskDefinition, { id: 'AwsSolutions-ECS2', reason: 'The environment holds names and ARNs of the stack\'s resources, no secret.' });
    acknowledge(this.securityGroup, {
      id: 'AwsSolutions-EC23',
      reason: 'The one ingress rule admits the tier port from the VPC CIDR only (a token cdk-nag cannot resolve); the NLB forwards from addresses in the VPC.',
    });
    const state = Stack.of(this).getLogicalId(props.sessionLog.state.node.defaultChild as CfnElement);
    acknowledge(defaultPolicyOf(taskRole), {
      id: `AwsSolutions-IAM5[Resource::<${state}.Arn>/index/*]`,
      reason: 'DynamoDB grants on the state table also cover its indexes (`<table>/index/*`, its one index gsi1), as for the stream function.',
    });
  }

  private addAlarms(props: StreamTierProps, minTasks: number, maxTasks: number) {
    const oneMinute = Duration.minutes(1);
    const alarm = (id: string, p: cloudwatch.AlarmProps) => {
      const a = new cloudwatch.Alarm(this, id, { treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING, ...p });
      if (props.alarmTopic) {
        a.addAlarmAction(new actions.SnsAction(props.alarmTopic));
        a.addOkAction(new actions.SnsAction(props.alarmTopic));
      }
      this.alarms.push(a);
      return a;
    };
    const tg = this.targetGroup.metrics;
    alarm('UnhealthyTargets', {
      alarmDescription: 'A stream tier task failed its health check (GET /health) for 3 minutes: see the tier\'s logs',
      metric: tg.unHealthyHostCount({ statistic: 'Maximum', period: oneMinute }),
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      threshold: 0,
      evaluationPeriods: 3,
    });
    alarm('TooFewHealthyTasks', {
      alarmDescription: `Fewer than ${minTasks} stream tier tasks in service for 3 minutes (no data counts: the target group has no healthy task to report)`,
      metric: tg.healthyHostCount({ statistic: 'Minimum', period: oneMinute }),
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      threshold: minTasks,
      evaluationPeriods: 3,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });
    alarm('AtMaxTasks', {
      alarmDescription: `All ${maxTasks} stream tier tasks (the most it scales to) in service for 15 minutes: raise streamTierMaxTasks (docs/SCALE.md)`,
      metric: tg.healthyHostCount({ statistic: 'Minimum', period: Duration.minutes(5) }),
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      threshold: maxTasks,
      evaluationPeriods: 3,
    });
    alarm('NlbResets', {
      alarmDescription: 'The stream tier\'s load balancer reset connections (no healthy target to send them to) in 3 consecutive minutes',
      metric: new cloudwatch.Metric({
        namespace: 'AWS/NetworkELB',
        metricName: 'TCP_ELB_Reset_Count',
        dimensionsMap: { LoadBalancer: this.loadBalancer.loadBalancerFullName },
        statistic: 'Sum',
        period: oneMinute,
      }),
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      threshold: 0,
      evaluationPeriods: 3,
    });
    // DynamoDB Streams publishes no iterator age for a consumer that is not Lambda: each task logs
    // the oldest record it read in the last minute, and a metric filter makes it a metric.
    const iteratorAge = new logs.MetricFilter(this, 'IteratorAgeFilter', {
      logGroup: this.logGroup,
      filterPattern: logs.FilterPattern.exists('$.iteratorAgeMs'),
      metricNamespace: STREAM_TIER_METRICS.namespace,
      metricName: STREAM_TIER_METRICS.iteratorAge,
      metricValue: '$.iteratorAgeMs',
      unit: cloudwatch.Unit.MILLISECONDS,
    });
    const ageMs = (props.iteratorAgeThreshold ?? Duration.seconds(60)).toMilliseconds();
    alarm('IteratorAge', {
      alarmDescription: `A stream tier task read the events stream more than ${ageMs / 1000} s behind its tip in 3 consecutive minutes: streams lag behind the log`,
      metric: iteratorAge.metric({ statistic: 'Maximum', period: oneMinute }),
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      threshold: ageMs,
      evaluationPeriods: 3,
    });
    // The tier logs every 5xx it answers and every failure at ERROR (Powertools' `level`).
    const errors = new logs.MetricFilter(this, 'ErrorFilter', {
      logGroup: this.logGroup,
      filterPattern: logs.FilterPattern.stringValue('$.level', '=', 'ERROR'),
      metricNamespace: STREAM_TIER_METRICS.namespace,
      metricName: STREAM_TIER_METRICS.errors,
      metricValue: '1',
    });
    alarm('Errors', {
      alarmDescription: 'The stream tier logged errors (a 5xx it answered, a failed stream read) in 2 of the last 3 five-minute periods',
      metric: errors.metric({ statistic: 'Sum', period: Duration.minutes(5) }),
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      threshold: 0,
      evaluationPeriods: 3,
      datapointsToAlarm: 2,
    });
  }
}

/**
 * The image's build context: a Dockerfile and the tier's bundle, written at synthesis into a
 * directory named after the bundle's hash (so an unchanged bundle is an unchanged asset). Where
 * bundling is skipped (`aws:cdk:bundling-stacks`, as the template tests do) the bundle is a stand-in.
 */
export function streamTierImage(bundle: boolean): string {
  let code = '// bundling was skipped for this synthesis\n';
  if (bundle) {
    const out = buildSync({
      entryPoints: [repoPath('lambdas/stream-tier/main.ts')],
      bundle: true,
      write: false,
      platform: 'node',
      target: BUNDLE_TARGET,
      format: 'esm',
      mainFields: ['module', 'main'],
      minify: true,
      legalComments: 'none',
      logLevel: 'silent',
      banner: { js: ESM_REQUIRE_BANNER },
      alias: BUNDLE_ALIASES,
      define: consoleScriptDefine(),
    });
    code = out.outputFiles[0].text;
  }
  const dockerfile = [
    '# The Corral stream tier (lambdas/stream-tier/main.ts), bundled at synthesis by infra/lib/constructs/stream-tier.ts.',
    'FROM public.ecr.aws/docker/library/node:22-bookworm-slim',
    'COPY --chmod=0644 stream-tier.mjs /opt/corral/stream-tier.mjs',
    'ENV NODE_ENV=production',
    'USER node',
    `EXPOSE ${STREAM_TIER_PORT}`,
    'ENTRYPOINT ["node", "/opt/corral/stream-tier.mjs"]',
    '',
  ].join('\n');
  const hash = createHash('sha256').update(dockerfile).update(code).digest('hex').slice(0, 16);
  const dir = join(tmpdir(), `corral-stream-tier-${hash}`);
  if (!existsSync(join(dir, 'Dockerfile'))) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'stream-tier.mjs'), code);
    writeFileSync(join(dir, 'Dockerfile'), dockerfile);
  }
  return dir;
}
