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
  /** The private subnets the harness function and the sandbox tasks use. */
  readonly subnets: ec2.SubnetSelection;
  readonly subnetIds: string[];

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
      this.subnets = { subnets: this.vpc.privateSubnets };
      return;
    }
    const vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: props.maxAzs ?? 2,
      natGateways: 1,
      natGatewayProvider:
        props.nat === 'instance'
          ? ec2.NatProvider.instanceV2({
              instanceType: ec2.InstanceType.of(ec2.InstanceClass.T4G, ec2.InstanceSize.NANO),
              machineImage: ec2.MachineImage.latestAmazonLinux2023({ cpuType: ec2.AmazonLinuxCpuType.ARM_64 }),
              defaultAllowedTraffic: ec2.NatTrafficDirection.OUTBOUND_ONLY,
            })
          : ec2.NatProvider.gateway(),
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
  }
}
