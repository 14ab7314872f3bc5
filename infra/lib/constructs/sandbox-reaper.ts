import { Duration } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import type * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { configEnvironment } from '../../../lambdas/core/config.js';
import { CorralFunction } from './corral-function.js';
import type { Network } from './network.js';
import type { Sandboxes } from './sandboxes.js';
import type { SessionLog } from './session-log.js';

export interface SandboxReaperProps {
  readonly sessionLog: SessionLog;
  readonly sandboxes: Sandboxes;
  /** The VPC the sandboxes run in: the reaper asks their agents for their workspaces from there. */
  readonly network: Network;
  readonly serviceName: string;
  readonly metricsNamespace: string;
  readonly logRetention?: logs.RetentionDays;
  /**
   * A sandbox no tool call used for this long is stopped.
   * @default Duration.minutes(15)
   */
  readonly idleTimeout?: Duration;
  /**
   * How often the reaper looks.
   * @default Duration.minutes(5)
   */
  readonly schedule?: Duration;
}

/**
 * The idle sandbox reaper: a function on a schedule that stops sandbox tasks no tool call has
 * used for `idleTimeout` (`lambdas/sandbox-reaper/handler.ts`), so an abandoned session costs
 * nothing. It reads the state table's index of ready sandboxes, marks reaped ones released, and
 * may only stop tasks of the sandbox clusters.
 *
 * The same function records the sandbox clusters' task state change events (a second rule,
 * `Sandboxes.recordTaskEvents`) in the state table, where a harness starting a task waits on them.
 *
 * Before stopping a sandbox it keeps its workspace (docs/WORKSPACES.md): it runs in the private
 * subnets, in a security group of its own that the sandboxes admit on the agent's port, opens
 * the sandbox's sealed capability (KMS decrypt only: it never seals one), streams the agent's
 * snapshot into the blob bucket (`BlobBucket.grantSnapshotWrite`, given by the stack) and deletes
 * the older one.
 */
export class SandboxReaper extends Construct {
  readonly function: CorralFunction;
  readonly rule: events.Rule;
  /** The sandbox cluster's task state change events, recorded by the same function. */
  readonly taskEventsRule: events.Rule;
  readonly securityGroup: ec2.SecurityGroup;

  constructor(scope: Construct, id: string, props: SandboxReaperProps) {
    super(scope, id);
    this.securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.network.vpc,
      description: 'Corral sandbox reaper: AWS APIs, and sandbox agents (workspace snapshots)',
      allowAllOutbound: true,
    });
    this.function = new CorralFunction(this, 'Function', {
      entry: 'lambdas/sandbox-reaper/handler.ts',
      handler: 'handler',
      description: 'Corral: stops sandboxes nobody has used for a while, keeping their workspaces',
      serviceName: props.serviceName,
      metricsNamespace: props.metricsNamespace,
      logRetention: props.logRetention,
      // Snapshots stream one after another; a run cut short leaves the rest for the next one
      // (their records are unchanged), and the schedule's next tick may overlap this run safely.
      timeout: Duration.minutes(5),
      memorySize: 256,
      vpc: props.network.vpc,
      vpcSubnets: props.network.subnets,
      securityGroups: [this.securityGroup],
      environment: configEnvironment({
        stateTable: props.sessionLog.state.tableName,
        sandboxCluster: props.sandboxes.clusterArns,
        sandboxIdleMs: String((props.idleTimeout ?? Duration.minutes(15)).toMilliseconds()),
      }),
    });
    props.sessionLog.state.grant(this.function, 'dynamodb:Query', 'dynamodb:GetItem', 'dynamodb:PutItem');
    props.sandboxes.grantRelease(this.function);
    props.sandboxes.grantCapabilityOpening(this.function);
    props.sandboxes.allowAgentAccessFrom(this.securityGroup, 'the reaper takes workspace snapshots');
    this.rule = new events.Rule(this, 'Schedule', {
      description: 'Corral: run the idle sandbox reaper',
      schedule: events.Schedule.rate(props.schedule ?? Duration.minutes(5)),
      targets: [new targets.LambdaFunction(this.function, { retryAttempts: 0 })],
    });
    // A few retries: a lost event only costs the harness one DescribeTasks (its fallback).
    this.taskEventsRule = props.sandboxes.recordTaskEvents(this, new targets.LambdaFunction(this.function, { retryAttempts: 2, maxEventAge: Duration.minutes(5) }));
  }
}
