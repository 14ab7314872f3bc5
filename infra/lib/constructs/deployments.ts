import { Duration, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import { Construct } from 'constructs';
import { configEnvironment } from '../../../lambdas/core/config.js';
import { CorralFunction } from './corral-function.js';
import type { Network } from './network.js';
import type { SessionLog } from './session-log.js';
import type { WakeQueue } from './wake-queue.js';

export interface DeploymentsProps {
  readonly sessionLog: SessionLog;
  readonly wakeQueue: WakeQueue;
  readonly network: Network;
  /**
   * The fire function's environment: the API function's (`Api.environment`), since a scheduled
   * run makes the session create the API makes.
   */
  readonly environment: Record<string, string>;
  readonly serviceName: string;
  readonly metricsNamespace: string;
  readonly logRetention?: logs.RetentionDays;
}

/**
 * Deployments' schedules on AWS (docs/DEPLOYMENTS.md): a schedule group for every deployment's
 * EventBridge Scheduler schedules (`corral-<deployment id>`, made by the API through
 * lambdas/adapters/aws/deployment-schedules.ts), the role EventBridge Scheduler assumes to invoke
 * the target and nothing else, and the target: the deployment-fire function
 * (lambdas/deployment-fire/handler.ts), which starts the run of each scheduled time at most once.
 *
 * `grantManageSchedules` gives the API function what it needs to keep the schedules in step: the
 * Scheduler calls on this group's `corral-*` schedules, and `iam:PassRole` of the scheduler role
 * to EventBridge Scheduler only. `environment` is what the API function needs to find them.
 */
export class Deployments extends Construct {
  readonly group: scheduler.CfnScheduleGroup;
  readonly schedulerRole: iam.Role;
  readonly fireFunction: CorralFunction;
  readonly securityGroup: ec2.SecurityGroup;
  /** `CORRAL_SCHEDULE_GROUP`, `CORRAL_SCHEDULER_ROLE_ARN`, `CORRAL_DEPLOYMENT_FIRE_ARN` for the API function. */
  readonly environment: Record<string, string>;

  constructor(scope: Construct, id: string, props: DeploymentsProps) {
    super(scope, id);
    this.group = new scheduler.CfnScheduleGroup(this, 'Group', {});
    this.securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.network.vpc,
      description: 'Corral deployment runs: AWS APIs only',
      allowAllOutbound: true,
    });
    this.fireFunction = new CorralFunction(this, 'Fire', {
      entry: 'lambdas/deployment-fire/handler.ts',
      handler: 'handler',
      description: "Corral: starts a deployment's scheduled run (EventBridge Scheduler's target)",
      serviceName: props.serviceName,
      metricsNamespace: props.metricsNamespace,
      logRetention: props.logRetention,
      // One session create: as long as an API request may take.
      timeout: Duration.seconds(29),
      memorySize: 512,
      vpc: props.network.vpc,
      vpcSubnets: props.network.subnets,
      securityGroups: [this.securityGroup],
      environment: props.environment,
    });
    props.sessionLog.grantReadWrite(this.fireFunction);
    props.wakeQueue.grantSend(this.fireFunction);

    const stack = Stack.of(this);
    // Only EventBridge Scheduler of this account may assume it, and it may only invoke the fire function.
    this.schedulerRole = new iam.Role(this, 'SchedulerRole', {
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': stack.account } },
      }),
      description: "Corral: EventBridge Scheduler invokes the deployment-fire function with it",
    });
    this.fireFunction.grantInvoke(this.schedulerRole);

    this.environment = configEnvironment({
      scheduleGroup: this.group.ref,
      schedulerRoleArn: this.schedulerRole.roleArn,
      deploymentFireArn: this.fireFunction.functionArn,
    });
  }

  /** What the API function needs to create, change and delete the deployments' schedules. */
  grantManageSchedules(grantee: iam.IGrantable): void {
    const stack = Stack.of(this);
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['scheduler:CreateSchedule', 'scheduler:UpdateSchedule', 'scheduler:DeleteSchedule', 'scheduler:GetSchedule'],
        resources: [stack.formatArn({ service: 'scheduler', resource: 'schedule', resourceName: `${this.group.ref}/corral-*` })],
      }),
    );
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['iam:PassRole'],
        resources: [this.schedulerRole.roleArn],
        conditions: { StringEquals: { 'iam:PassedToService': 'scheduler.amazonaws.com' } },
      }),
    );
  }
}
