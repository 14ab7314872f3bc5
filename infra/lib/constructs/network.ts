import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as logs from 'aws-cdk-lib/aws-logs';
import { RemovalPolicy } from 'aws-cdk-lib';
import { acknowledge } from '../nag.js';
import { Construct } from 'constructs';

/** An existing VPC, named by ids alone (no lookup, so synthesis needs no credentials). */
export interface ExistingVpc {
  readonly vpcId: string;
  /**
   * Private subnets with a route to the internet (NAT) or the VPC endpoints the harness needs. An
   * S3 gateway endpoint on their route tables keeps workspace snapshots and files off the NAT.
   */
  readonly privateSubnetIds: string[];
  /** The availability zone of each subnet, in the same order (one per subnet, or one per AZ). */
  readonly availabilityZones: string[];
}

export interface NetworkProps {
  /** Run the harness and the sandboxes in this VPC instead of creating one. @default - a new VPC */
  readonly existingVpc?: ExistingVpc;
  /**
   * How a new VPC's private subnets reach the internet (the model API, package registries, git
   * hosts, ECR):
   * - `gateway`: one managed NAT gateway (about 32 USD a month plus data, running at all times).
   * - `instance`: one t4g.nano NAT instance (a few USD a month; you patch and watch it).
   * Ignored with `existingVpc`.
   * @default 'gateway'
   */
  readonly nat?: 'gateway' | 'instance';
  /** Availability zones of a new VPC. @default 2 */
  readonly maxAzs?: number;
  /**
   * Secondary /16 CIDR blocks (`10.1.0.0/16`, `10.2.0.0/16`, ...) a new VPC adds for sandbox tasks
   * alone (CDK context `sandboxCidrBlocks`), 0-4. Each block is split into one private subnet per
   * availability zone (two /17s of 32,763 usable addresses with 2 zones), routed to the internet
   * through the NAT and on the S3 and DynamoDB gateway endpoints like the other private subnets.
   * The VPC's own 10.0.0.0/16 keeps its two /20 private subnets (8,182 addresses), where the
   * functions run and sandboxes run too. A VPC takes 5 CIDR blocks by default (a quota AWS raises),
   * so 4 is the most without an increase. Ignored with `existingVpc` (bring subnets sized for it).
   * @default 0
   */
  readonly sandboxCidrBlocks?: number;
  /**
   * Interface endpoints for ECR (`ecr.api`, `ecr.dkr`) and CloudWatch Logs in a new VPC's private
   * subnets (CDK context `vpcInterfaceEndpoints=true`), so a sandbox task's image pull (manifest
   * through ECR; its layers come from S3, through the free S3 gateway endpoint) and its log
   * stream do not cross the NAT, which bills 0.045 USD per GB. Each interface endpoint costs
   * 0.01 USD an hour per zone (3 x 2 zones: about 43.80 USD a month) plus 0.01 USD per GB; see
   * docs/DEPLOY.md for when that pays. Ignored with `existingVpc`.
   * @default false
   */
  readonly interfaceEndpoints?: boolean;
  /** Record rejected traffic in a VPC flow log (billed per GB ingested). @default false */
  readonly flowLogs?: boolean;
}

/**
 * Where the harness and the sandboxes run: a VPC of their own by default (public subnets for the
 * NAT, private subnets with egress for everything Corral runs, free DynamoDB and S3 gateway
 * endpoints so log and blob traffic do not cross the NAT), or the user's own VPC and private subnets, given by id, so
 * agents reach private resources without peering.
 */
export class Network extends Construct {
  readonly vpc: ec2.IVpc;
  /** The private subnets the functions (and the sandbox tasks) use. */
  readonly subnets: ec2.SubnetSelection;
  readonly subnetIds: string[];
  /** The subnets sandbox tasks start in: the private subnets and those of `sandboxCidrBlocks`. */
  readonly sandboxSubnetIds: string[];
  /** The subnets of `sandboxCidrBlocks` (none by default). */
  readonly sandboxSubnets: ec2.PrivateSubnet[] = [];
  /** The interface endpoints' security group (`interfaceEndpoints`), which sandbox tasks reach to start. */
  endpointSecurityGroup?: ec2.SecurityGroup;

  constructor(scope: Construct, id: string, props: NetworkProps = {}) {
    super(scope, id);
    if (props.existingVpc) {
      const { vpcId, privateSubnetIds, availabilityZones } = props.existingVpc;
      if (!privateSubnetIds.length) throw new Error('existingVpc.privateSubnetIds: give at least one subnet id');
      if (!availabilityZones.length || privateSubnetIds.length % availabilityZones.length !== 0) {
        throw new Error('existingVpc.availabilityZones: give the availability zone of each private subnet (or one per zone, subnets grouped by zone)');
      }
      this.vpc = ec2.Vpc.fromVpcAttributes(this, 'Vpc', { vpcId, availabilityZones, privateSubnetIds });
      this.subnetIds = [...privateSubnetIds];
      this.sandboxSubnetIds = this.subnetIds;
      this.subnets = { subnets: this.vpc.privateSubnets };
      return;
    }
    const blocks = props.sandboxCidrBlocks ?? 0;
    if (!Number.isInteger(blocks) || blocks < 0 || blocks > 4) throw new Error(`sandboxCidrBlocks: an integer from 0 to 4, not ${blocks}`);
    const natProvider =
      props.nat === 'instance'
        ? ec2.NatProvider.instanceV2({
            instanceType: ec2.InstanceType.of(ec2.InstanceClass.T4G, ec2.InstanceSize.NANO),
            machineImage: ec2.MachineImage.latestAmazonLinux2023({ cpuType: ec2.AmazonLinuxCpuType.ARM_64 }),
            defaultAllowedTraffic: ec2.NatTrafficDirection.OUTBOUND_ONLY,
          })
        : ec2.NatProvider.gateway();
    const vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: props.maxAzs ?? 2,
      natGateways: 1,
      natGatewayProvider: natProvider,
      subnetConfiguration: [
        { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
        { name: 'private', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 20 },
      ],
      restrictDefaultSecurityGroup: true,
      // Free gateway endpoints: log traffic (DynamoDB) and blob traffic (S3: files, workspace
      // snapshots the reaper stores and the harness restores) do not cross the NAT, which bills
      // per GB processed.
      gatewayEndpoints: {
        DynamoDB: { service: ec2.GatewayVpcEndpointAwsService.DYNAMODB },
        S3: { service: ec2.GatewayVpcEndpointAwsService.S3 },
      },
    });
    if (props.flowLogs) {
      vpc.addFlowLog('FlowLog', {
        trafficType: ec2.FlowLogTrafficType.REJECT,
        destination: ec2.FlowLogDestination.toCloudWatchLogs(
          new logs.LogGroup(this, 'FlowLogs', { retention: logs.RetentionDays.ONE_MONTH, removalPolicy: RemovalPolicy.DESTROY }),
        ),
      });
    } else {
      acknowledge(vpc, {
        id: 'AwsSolutions-VPC7',
        reason: 'Flow logs are opt-in (NetworkProps.flowLogs) so that an idle deployment ingests nothing.',
      });
    }
    if (props.nat === 'instance') {
      acknowledge(
        vpc,
        { id: 'AwsSolutions-EC28', reason: 'A NAT instance needs no detailed monitoring; it is the cheap option by choice.' },
        { id: 'AwsSolutions-EC29', reason: 'The NAT instance is replaceable: CloudFormation recreates it, nothing is stored on it.' },
        { id: 'AwsSolutions-EC26', reason: 'The NAT instance stores no data on its root volume.' },
      );
    }
    this.vpc = vpc;
    this.subnets = { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS };
    this.subnetIds = vpc.privateSubnets.map((s) => s.subnetId);
    this.addSandboxBlocks(vpc, natProvider, blocks);
    this.sandboxSubnetIds = [...this.subnetIds, ...this.sandboxSubnets.map((s) => s.subnetId)];
    if (props.interfaceEndpoints) this.addInterfaceEndpoints(vpc, blocks);
  }

  /**
   * ECR and CloudWatch Logs interface endpoints, with private DNS, in the private subnets (one
   * per zone: the sandbox subnets of the same zones reach them by the VPC's local routes), in a
   * security group that admits HTTPS from the VPC's address blocks only.
   */
  private addInterfaceEndpoints(vpc: ec2.Vpc, blocks: number): void {
    const securityGroup = new ec2.SecurityGroup(this, 'EndpointSecurityGroup', {
      vpc,
      description: 'Corral VPC interface endpoints (ECR, CloudWatch Logs): HTTPS from the VPC',
      allowAllOutbound: false,
    });
    this.endpointSecurityGroup = securityGroup;
    // The VPC's block as a literal (CDK's default for a new VPC), so the rule is checkable at synthesis.
    for (const cidr of ['10.0.0.0/16', ...Array.from({ length: blocks }, (_, b) => `10.${b + 1}.0.0/16`)]) {
      securityGroup.addIngressRule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(443), 'HTTPS from the VPC');
    }
    const services: Array<[string, ec2.InterfaceVpcEndpointAwsService]> = [
      ['EcrApiEndpoint', ec2.InterfaceVpcEndpointAwsService.ECR],
      ['EcrDockerEndpoint', ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER],
      ['LogsEndpoint', ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS],
    ];
    for (const [id, service] of services) {
      vpc.addInterfaceEndpoint(id, { service, privateDnsEnabled: true, subnets: this.subnets, securityGroups: [securityGroup], open: false });
    }
  }

  /**
   * `count` secondary CIDR blocks, each split into one private subnet per zone, routed like the
   * VPC's private subnets: to the NAT of the provider, and to the gateway endpoints (their route
   * tables are added to the endpoints the VPC made).
   */
  private addSandboxBlocks(vpc: ec2.Vpc, nat: ec2.NatProvider, count: number): void {
    const zones = vpc.availabilityZones;
    // The smallest power of two that fits a subnet per zone: 2 zones, two /17s.
    const bits = Math.ceil(Math.log2(Math.max(1, zones.length)));
    for (let b = 0; b < count; b++) {
      const block = new ec2.CfnVPCCidrBlock(this, `SandboxCidr${b + 1}`, { vpcId: vpc.vpcId, cidrBlock: `10.${b + 1}.0.0/16` });
      zones.forEach((az, z) => {
        const size = 2 ** (16 - bits);
        const third = (z * size) >> 8;
        const subnet = new ec2.PrivateSubnet(this, `SandboxSubnet${b + 1}${String.fromCharCode(65 + z)}`, {
          vpcId: vpc.vpcId,
          availabilityZone: az,
          cidrBlock: `10.${b + 1}.${third}.0/${16 + bits}`,
        });
        subnet.node.addDependency(block);
        nat.configureSubnet(subnet);
        this.sandboxSubnets.push(subnet);
      });
    }
    for (const name of ['S3', 'DynamoDB']) {
      const endpoint = vpc.node.findChild(name).node.defaultChild as ec2.CfnVPCEndpoint;
      endpoint.routeTableIds = [...(endpoint.routeTableIds ?? []), ...this.sandboxSubnets.map((s) => s.routeTable.routeTableId)];
    }
  }
}
