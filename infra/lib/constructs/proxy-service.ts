import { Arn, ArnFormat, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct } from 'constructs';
import { CORRAL_ENV } from '../../../lambdas/core/config.js';
import { keys } from '../../../lambdas/core/storage/keys.js';
import { PROXY_HARNESS_PORT, PROXY_SANDBOX_PORT, PROXY_SERVICE_ENV } from '../../../lambdas/proxy-service/env.js';
import { acknowledge, defaultPolicyOf } from '../nag.js';
import { DEFAULT_EGRESS_CA_SECRET } from '../../../lambdas/adapters/aws/secrets-manager-egress-ca.js';
import { VAULT_SECRET_PREFIX } from './credential-proxy.js';
import { nodeServiceImage } from '../node-service-image.js';
import { CorralRole } from '../roles.js';
import type { Network } from './network.js';
import type { Sandboxes } from './sandboxes.js';
import type { SessionLog } from './session-log.js';

export interface ProxyServiceProps {
  readonly sessionLog: SessionLog;
  readonly network: Network;
  /** Its cluster runs the service's tasks; its security group is narrowed to the proxy (it must be made with `restrictEgress`). */
  readonly sandboxes: Sandboxes;
  /** Service name on the service's log lines (Powertools' `service`). */
  readonly serviceName: string;
  readonly logRetention?: logs.RetentionDays;
  /**
   * The region's S3 managed prefix list (`com.amazonaws.<region>.s3`, `pl-…`; CDK context
   * `s3PrefixListId`): a Fargate task pulls its image's layers from S3 through the task's own
   * network interface, so the sandbox security group must reach S3 on 443, and nothing else there.
   * @default looked up at deploy time ({@link S3_PREFIX_LIST_LOOKUP}): the id differs per region and
   * CloudFormation has no resource that names it, and a synth-time lookup would need credentials
   */
  readonly s3PrefixListId?: string;
  /** vCPU units of a task. @default 512 */
  readonly cpu?: number;
  /** Memory of a task, MiB. @default 1024 */
  readonly memoryMiB?: number;
  /** Tasks always running: one per availability zone, so a zone's loss leaves sandboxes a way out. @default 2 */
  readonly minTasks?: number;
  /** Most tasks. @default 10 */
  readonly maxTasks?: number;
}

/**
 * The proxy service: the credential proxy's long-connection half (lambdas/proxy-service/), an
 * autoscaled Fargate service in the private subnets behind an internal Network Load Balancer.
 *
 * - Port 3128 (sandboxes): every outbound connection of a sandbox (the sandbox security group's
 *   only egress besides what a task needs to start: S3's prefix list and the VPC's interface
 *   endpoints on 443), and the git channel.
 * - Port 8081 (harness): model forwarding; only the harness's security group reaches it
 *   (`allowHarness`), never the sandboxes'.
 *
 * The load balancer, not Cloud Map: a stable name for the ECS provider to hand to sandboxes,
 * health-checked targets and connection draining on deploys and scale-in (a sandbox's open
 * tunnel is not cut by a DNS answer that went stale), and a security group of its own on which
 * the two ports' callers are told apart. It costs about 16.50 USD a month plus its capacity units
 * (docs/EGRESS.md), besides the tasks (2 x 0.5 vCPU, 1 GiB on arm64: about 29 USD a month).
 */
export class ProxyService extends Construct {
  readonly service: ecs.FargateService;
  readonly taskDefinition: ecs.FargateTaskDefinition;
  /** The task role: the only role besides the credential proxy function's that may read vault secrets (granted by what plugs in). */
  readonly taskRole: iam.Role;
  readonly loadBalancer: elbv2.NetworkLoadBalancer;
  /** The load balancer's group: sandboxes reach it on 3128, the harness on 8081. */
  readonly loadBalancerSecurityGroup: ec2.SecurityGroup;
  /** The tasks' group: the load balancer reaches both ports; out to the internet (NAT) and AWS APIs. */
  readonly securityGroup: ec2.SecurityGroup;
  readonly logGroup: logs.LogGroup;
  readonly sandboxTargetGroup: elbv2.NetworkTargetGroup;
  readonly harnessTargetGroup: elbv2.NetworkTargetGroup;
  /** `host:port` sandboxes reach the service at (the ECS provider passes it in the task's environment). */
  readonly sandboxAddress: string;
  /** `http://host:port` the harness reaches the service at. */
  readonly harnessUrl: string;
  /** The region's S3 managed prefix list id: the one given, or the deploy-time lookup's answer (a token). */
  readonly s3PrefixListId: string;

  constructor(scope: Construct, id: string, props: ProxyServiceProps) {
    super(scope, id);
    const minTasks = props.minTasks ?? 2;
    const maxTasks = props.maxTasks ?? 10;
    if (maxTasks < minTasks) throw new Error(`ProxyService: maxTasks (${maxTasks}) is below minTasks (${minTasks})`);
    if (props.s3PrefixListId !== undefined && !/^pl-[0-9a-f]{8,17}$/.test(props.s3PrefixListId)) {
      throw new Error(`ProxyService: s3PrefixListId is a managed prefix list id (pl-…), not ${JSON.stringify(props.s3PrefixListId)}`);
    }
    const vpc = props.network.vpc;

    this.taskRole = new iam.Role(this, 'TaskRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: 'Corral proxy service: reads the sandboxes\' egress grants',
    });
    // The grants alone (their partitions), read only.
    this.taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'EgressGrants',
        actions: ['dynamodb:GetItem'],
        resources: [props.sessionLog.state.tableArn],
        conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [`${keys.egressGrant('').pk}*`] } },
      }),
    );
    // environment_variable credentials: the egress CA (made by the service on first use, so the
    // template never holds its key) and the vault's secrets, read at substitution time after the
    // session's records (GetItem/Query, read only) say the session still holds the credential.
    // With the credential proxy function's, this role is the only one that may read a vault secret.
    const secretArn = (name: string) => Arn.format({ service: 'secretsmanager', resource: 'secret', resourceName: name, arnFormat: ArnFormat.COLON_RESOURCE_NAME }, Stack.of(this));
    this.taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'EgressCa',
        actions: ['secretsmanager:GetSecretValue', 'secretsmanager:CreateSecret', 'secretsmanager:PutSecretValue', 'secretsmanager:TagResource'],
        resources: [secretArn(`${DEFAULT_EGRESS_CA_SECRET}-??????`)],
      }),
    );
    this.taskRole.addToPrincipalPolicy(new iam.PolicyStatement({ sid: 'VaultSecretsRead', actions: ['secretsmanager:GetSecretValue'], resources: [secretArn(`${VAULT_SECRET_PREFIX}*`)] }));
    this.taskRole.addToPrincipalPolicy(new iam.PolicyStatement({ sid: 'SessionRecordsRead', actions: ['dynamodb:GetItem', 'dynamodb:Query'], resources: [props.sessionLog.state.tableArn] }));
    acknowledge(defaultPolicyOf(this.taskRole), {
      id: 'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:corral/vault/*]',
      reason: 'Vault secrets are created at run time, one per credential; the prefix corral/vault/ confines the proxy service to them, and it only reads.',
    });
    const executionRole = new CorralRole(this, 'ExecutionRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: 'Corral proxy service: ECS pulls the image and writes the logs with it',
    });
    this.taskDefinition = new ecs.FargateTaskDefinition(this, 'Task', {
      cpu: props.cpu ?? 512,
      memoryLimitMiB: props.memoryMiB ?? 1024,
      runtimePlatform: { cpuArchitecture: ecs.CpuArchitecture.ARM64, operatingSystemFamily: ecs.OperatingSystemFamily.LINUX },
      taskRole: this.taskRole,
      executionRole,
    });
    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.taskDefinition.addContainer('Proxy', {
      containerName: 'proxy',
      image: ecs.ContainerImage.fromAsset(
        nodeServiceImage({
          entry: 'lambdas/proxy-service/main.ts',
          name: 'proxy-service',
          description: 'The Corral proxy service',
          ports: [PROXY_SANDBOX_PORT, PROXY_HARNESS_PORT],
          bundle: Stack.of(this).bundlingRequired,
        }),
        { platform: Platform.LINUX_ARM64 },
      ),
      essential: true,
      portMappings: [
        { containerPort: PROXY_SANDBOX_PORT, protocol: ecs.Protocol.TCP },
        { containerPort: PROXY_HARNESS_PORT, protocol: ecs.Protocol.TCP },
      ],
      environment: {
        [CORRAL_ENV.stateTable]: props.sessionLog.state.tableName,
        [PROXY_SERVICE_ENV.sandboxPort]: String(PROXY_SANDBOX_PORT),
        [PROXY_SERVICE_ENV.harnessPort]: String(PROXY_HARNESS_PORT),
        [PROXY_SERVICE_ENV.egressCaSecret]: DEFAULT_EGRESS_CA_SECRET,
        POWERTOOLS_SERVICE_NAME: props.serviceName,
        NODE_ENV: 'production',
      },
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: 'proxy' }),
      stopTimeout: Duration.seconds(30),
    });

    this.loadBalancerSecurityGroup = new ec2.SecurityGroup(this, 'LoadBalancerSecurityGroup', {
      vpc,
      description: 'Corral proxy service load balancer: 3128 from sandboxes, 8081 from the harness',
      allowAllOutbound: false,
    });
    this.securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc,
      description: 'Corral proxy service tasks: both ports from its load balancer; out to the internet',
      // The proxy is the way out: it connects wherever a sandbox's policy allows (after its checks).
      allowAllOutbound: true,
    });
    for (const port of [PROXY_SANDBOX_PORT, PROXY_HARNESS_PORT]) {
      this.securityGroup.addIngressRule(this.loadBalancerSecurityGroup, ec2.Port.tcp(port), 'the proxy service load balancer');
      this.loadBalancerSecurityGroup.addEgressRule(this.securityGroup, ec2.Port.tcp(port), 'to the proxy service tasks');
    }

    // The sandboxes' only way out: the proxy's sandbox port, and what a Fargate task needs to start
    // (image layers from S3, the ECR API and CloudWatch Logs through the interface endpoints).
    const sandboxGroup = props.sandboxes.securityGroup;
    this.loadBalancerSecurityGroup.addIngressRule(sandboxGroup, ec2.Port.tcp(PROXY_SANDBOX_PORT), 'sandboxes: egress through the proxy');
    sandboxGroup.addEgressRule(this.loadBalancerSecurityGroup, ec2.Port.tcp(PROXY_SANDBOX_PORT), 'the proxy service: every outbound connection');
    this.s3PrefixListId = props.s3PrefixListId ?? lookUpS3PrefixList(this, props.logRetention);
    sandboxGroup.addEgressRule(ec2.Peer.prefixList(this.s3PrefixListId), ec2.Port.tcp(443), 'S3 (gateway endpoint): image layers');
    const endpoints = props.network.endpointSecurityGroup;
    if (!endpoints) throw new Error('ProxyService: the VPC needs its interface endpoints (ECR, CloudWatch Logs) for sandbox tasks to start without other egress (vpcInterfaceEndpoints)');
    sandboxGroup.addEgressRule(endpoints, ec2.Port.tcp(443), 'ECR and CloudWatch Logs interface endpoints: image pull and logs');

    // Only standalone egress rules name these groups (CDK writes rules to other groups and to
    // prefix lists as resources of their own), and a group whose template lists no egress gets
    // EC2's default allow-all rule: each keeps an inline rule that matches nothing.
    closeDefaultEgress(sandboxGroup);
    closeDefaultEgress(this.loadBalancerSecurityGroup);

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
    // Relayed bytes (and TLS, where credentials apply) cost CPU; open connections cost memory.
    scaling.scaleOnCpuUtilization('Cpu', { targetUtilizationPercent: 50, scaleInCooldown: Duration.minutes(10), scaleOutCooldown: Duration.minutes(1) });
    scaling.scaleOnMemoryUtilization('Memory', { targetUtilizationPercent: 60, scaleInCooldown: Duration.minutes(10), scaleOutCooldown: Duration.minutes(1) });

    this.loadBalancer = new elbv2.NetworkLoadBalancer(this, 'LoadBalancer', {
      vpc,
      vpcSubnets: props.network.subnets,
      internetFacing: false,
      crossZoneEnabled: true,
      securityGroups: [this.loadBalancerSecurityGroup],
    });
    const target = (port: number, id: string) =>
      this.loadBalancer.addListener(`${id}Listener`, { port, protocol: elbv2.Protocol.TCP }).addTargets(id, {
        port,
        protocol: elbv2.Protocol.TCP,
        targets: [this.service.loadBalancerTarget({ containerName: 'proxy', containerPort: port })],
        deregistrationDelay: Duration.seconds(30),
        healthCheck: { protocol: elbv2.Protocol.HTTP, path: '/healthz', interval: Duration.seconds(10), healthyThresholdCount: 2, unhealthyThresholdCount: 2 },
      });
    this.sandboxTargetGroup = target(PROXY_SANDBOX_PORT, 'Sandboxes');
    this.harnessTargetGroup = target(PROXY_HARNESS_PORT, 'Harness');
    this.sandboxAddress = `${this.loadBalancer.loadBalancerDnsName}:${PROXY_SANDBOX_PORT}`;
    this.harnessUrl = `http://${this.loadBalancer.loadBalancerDnsName}:${PROXY_HARNESS_PORT}`;

    acknowledge(this.loadBalancer, {
      id: 'AwsSolutions-ELB2',
      reason: 'The proxy logs every egress decision (host, port, session, sandbox); NLB access logs would add only TLS listener logs, and the listeners are TCP.',
    });
    acknowledge(this.taskDefinition, { id: 'AwsSolutions-ECS2', reason: 'The environment holds the state table\'s name and the ports, no secret.' });
  }

  /** Let `peer` (the harness's security group) reach the harness port: model forwarding. */
  allowHarness(peer: ec2.ISecurityGroup): void {
    this.loadBalancerSecurityGroup.addIngressRule(peer, ec2.Port.tcp(PROXY_HARNESS_PORT), 'the harness: model forwarding');
  }

  /**
   * Forward the harness's model calls (`/model/v1/messages` on the harness port): the task role,
   * and no other role of the stack, may read the key's SSM SecureString parameter (the AWS
   * managed `aws/ssm` key decrypts it for SSM's callers), and the container learns its name and
   * the provider's base URL. The harness is pointed here with `HarnessStep.useModelProxy`.
   */
  forwardModelCalls(opts: { keyParameter: string; baseUrl?: string }): void {
    const stack = Stack.of(this);
    this.taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'ModelKey',
        actions: ['ssm:GetParameter'],
        resources: [stack.formatArn({ service: 'ssm', resource: 'parameter', resourceName: opts.keyParameter.replace(/^\//, ''), arnFormat: ArnFormat.SLASH_RESOURCE_NAME })],
      }),
    );
    const container = this.taskDefinition.defaultContainer!;
    container.addEnvironment(CORRAL_ENV.modelApiKeyParameter, opts.keyParameter);
    if (opts.baseUrl) container.addEnvironment(CORRAL_ENV.modelBaseUrl, opts.baseUrl);
  }

  /** The environment the sandbox provider (the harness, the API) needs: where sandboxes reach the proxy. */
  get providerEnvironment(): Record<string, string> {
    return { [CORRAL_ENV.proxyServiceAddress]: this.sandboxAddress };
  }
}

/**
 * EC2 gives a security group created without egress rules an allow-all one; CloudFormation drops
 * it only when the group's own `SecurityGroupEgress` lists rules. CDK's placeholder (ICMP type 252,
 * code 86 to 255.255.255.255/32: matches nothing) keeps the list non-empty when every real rule
 * is a separate resource.
 */
export const NO_TRAFFIC_EGRESS = { ipProtocol: 'icmp', cidrIp: '255.255.255.255/32', fromPort: 252, toPort: 86, description: 'Disallow all traffic' } as const;

function closeDefaultEgress(group: ec2.SecurityGroup): void {
  (group.node.defaultChild as ec2.CfnSecurityGroup).addPropertyOverride('SecurityGroupEgress', [
    { IpProtocol: NO_TRAFFIC_EGRESS.ipProtocol, CidrIp: NO_TRAFFIC_EGRESS.cidrIp, FromPort: NO_TRAFFIC_EGRESS.fromPort, ToPort: NO_TRAFFIC_EGRESS.toPort, Description: NO_TRAFFIC_EGRESS.description },
  ]);
}

/** Construct id of the S3 prefix list lookup, under the proxy service (the deploy rehearsal finds it by its call). */
export const S3_PREFIX_LIST_LOOKUP = 'S3PrefixList';

/**
 * The region's S3 managed prefix list id, read at deploy time: a custom resource (CDK's
 * AwsCustomResource, one small function shared by the stack) calls EC2 DescribeManagedPrefixLists
 * for `com.amazonaws.<region>.s3` on create and update, and the security group rule takes its
 * answer. The template stays region-agnostic and synthesizes offline (CI has no credentials); the
 * context value `s3PrefixListId` skips it. The call is read-only and its physical id is the list's
 * name, so an update with the same region changes nothing.
 */
function lookUpS3PrefixList(scope: Construct, logRetention: logs.RetentionDays | undefined): string {
  const name = `com.amazonaws.${Stack.of(scope).region}.s3`;
  const call: cr.AwsSdkCall = {
    service: 'EC2',
    action: 'describeManagedPrefixLists',
    parameters: { Filters: [{ Name: 'prefix-list-name', Values: [name] }] },
    physicalResourceId: cr.PhysicalResourceId.of(name),
    outputPaths: ['PrefixLists.0.PrefixListId'],
  };
  const lookup = new cr.AwsCustomResource(scope, S3_PREFIX_LIST_LOOKUP, {
    onCreate: call,
    onUpdate: call,
    // DescribeManagedPrefixLists has no resource-level permissions: '*' is the only resource.
    policy: cr.AwsCustomResourcePolicy.fromStatements([new iam.PolicyStatement({ actions: ['ec2:DescribeManagedPrefixLists'], resources: ['*'] })]),
    // The runtime's SDK has the call; fetching the latest from npm at deploy time would need egress and time.
    installLatestAwsSdk: false,
    // A log group of its own, kept as long as the stack's others (not CDK's LogRetention function).
    logGroup: new logs.LogGroup(scope, `${S3_PREFIX_LIST_LOOKUP}Logs`, { retention: logRetention ?? logs.RetentionDays.ONE_MONTH, removalPolicy: RemovalPolicy.DESTROY }),
  });
  acknowledge(lookup, { id: 'AwsSolutions-IAM5[Resource::*]', reason: 'ec2:DescribeManagedPrefixLists has no resource-level permissions; the statement allows that one read-only call.' });
  // AwsCustomResource's one function per stack (CDK names it by this fixed id).
  const provider = Stack.of(scope).node.tryFindChild(AWS_CUSTOM_RESOURCE_PROVIDER);
  if (!provider) throw new Error(`ProxyService: no AwsCustomResource provider ${AWS_CUSTOM_RESOURCE_PROVIDER} in the stack`);
  acknowledge(provider, {
    id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
    reason: 'The AwsCustomResource provider function (CDK) writes its logs with the basic execution policy; it runs only during deploys.',
  });
  return lookup.getResponseField('PrefixLists.0.PrefixListId');
}

/** The construct id CDK gives AwsCustomResource's singleton provider function. */
const AWS_CUSTOM_RESOURCE_PROVIDER = 'AWS679f53fac002430cb0da5b7982bd2287';
