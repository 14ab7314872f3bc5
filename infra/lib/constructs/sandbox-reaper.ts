import { Duration } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import type * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { configEnvironment } from '../../../lambdas/core/config.js';
import { CorralFunction } from './corral-function.js';
import type { Sandboxes } from './sandboxes.js';
import type { SessionLog } from './session-log.js';

export interface SandboxReaperProps {
  readonly sessionLog: SessionLog;
  readonly sandboxes: Sandboxes;
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
 * may only stop tasks of the sandbox cluster.
 */
export class SandboxReaper extends Construct {
  readonly function: CorralFunction;
  readonly rule: events.Rule;

  constructor(scope: Construct, id: string, props: SandboxReaperProps) {
    super(scope, id);
    this.function = new CorralFunction(this, 'Function', {
      entry: 'lambdas/sandbox-reaper/handler.ts',
      handler: 'handler',
      description: 'Corral: stops sandboxes nobody has used for a while',
      serviceName: props.serviceName,
      metricsNamespace: props.metricsNamespace,
      logRetention: props.logRetention,
      timeout: Duration.minutes(2),
      memorySize: 256,
      environment: configEnvironment({
        stateTable: props.sessionLog.state.tableName,
        sandboxCluster: props.sandboxes.cluster.clusterArn,
        sandboxIdleMs: String((props.idleTimeout ?? Duration.minutes(15)).toMilliseconds()),
      }),
    });
    props.sessionLog.state.grant(this.function, 'dynamodb:Query', 'dynamodb:GetItem', 'dynamodb:PutItem');
    props.sandboxes.grantRelease(this.function);
    this.rule = new events.Rule(this, 'Schedule', {
      description: 'Corral: run the idle sandbox reaper',
      schedule: events.Schedule.rate(props.schedule ?? Duration.minutes(5)),
      targets: [new targets.LambdaFunction(this.function, { retryAttempts: 0 })],
    });
  }
}
