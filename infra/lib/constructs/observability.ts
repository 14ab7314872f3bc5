import { Aws, Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { HARNESS_METRICS } from '../../../lambdas/adapters/aws/metrics.js';

export interface ObservabilityProps {
  /** The namespace and `service` dimension the harness publishes its EMF metrics under. */
  readonly metricsNamespace: string;
  readonly serviceName: string;
  readonly wakeQueue: sqs.IQueue;
  readonly deadLetterQueue: sqs.IQueue;
  readonly harnessFunction: lambda.IFunction;
  /** The API's functions, by the label they get on the dashboard. */
  readonly apiFunctions: Record<string, lambda.IFunction>;
  /** The p95 time to first token above which the latency alarm fires, in ms. @default 10000 */
  readonly timeToFirstTokenP95ThresholdMs?: number;
  /** Where alarms notify (e.g. an SNS topic with an email subscription). @default - nowhere */
  readonly alarmTopic?: sns.ITopic;
}

const PERCENTILES = ['p50', 'p95', 'p99'] as const;

/**
 * What an operator watches: a dashboard with p50/p95/p99 of every harness timing (time to first
 * token, model latency, harness overhead, sandbox provisioning, tool latency, step duration),
 * errors, the wake queue's backlog and the functions' health; an alarm on p95 time to first token
 * and one on any message in the dead-letter queue.
 */
export class Observability extends Construct {
  readonly dashboard: cloudwatch.Dashboard;
  readonly timeToFirstTokenAlarm: cloudwatch.Alarm;
  readonly deadLetterAlarm: cloudwatch.Alarm;

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    const metric = (metricName: string, statistic: string, label?: string) =>
      new cloudwatch.Metric({
        namespace: props.metricsNamespace,
        metricName,
        dimensionsMap: { service: props.serviceName },
        statistic,
        period: Duration.minutes(5),
        label,
      });
    const latencyWidget = (title: string, metricName: string) =>
      new cloudwatch.GraphWidget({
        title: `${title} (ms)`,
        left: PERCENTILES.map((p) => metric(metricName, p, p)),
        width: 8,
        leftYAxis: { min: 0, showUnits: false },
      });

    const ttftThreshold = props.timeToFirstTokenP95ThresholdMs ?? 10_000;
    this.timeToFirstTokenAlarm = new cloudwatch.Alarm(this, 'TimeToFirstTokenP95', {
      alarmDescription: `p95 time to first token above ${ttftThreshold} ms in 2 of the last 3 five-minute periods`,
      metric: metric(HARNESS_METRICS.timeToFirstToken, 'p95'),
      threshold: ttftThreshold,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 3,
      datapointsToAlarm: 2,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    this.deadLetterAlarm = new cloudwatch.Alarm(this, 'DeadLetters', {
      alarmDescription: 'A wake message was moved to the dead-letter queue: a session may be stuck (see the harness logs for its id)',
      metric: props.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(1), statistic: 'Maximum' }),
      threshold: 0,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    if (props.alarmTopic) {
      for (const alarm of [this.timeToFirstTokenAlarm, this.deadLetterAlarm]) {
        alarm.addAlarmAction(new actions.SnsAction(props.alarmTopic));
        alarm.addOkAction(new actions.SnsAction(props.alarmTopic));
      }
    }

    const allFunctions: Record<string, lambda.IFunction> = { harness: props.harnessFunction, ...props.apiFunctions };
    const fnMetrics = (fns: Record<string, lambda.IFunction>, name: 'metricErrors' | 'metricThrottles') =>
      Object.entries(fns).map(([label, fn]) => fn[name]({ period: Duration.minutes(5), label: `${label} ${name === 'metricErrors' ? 'errors' : 'throttles'}` }));

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      defaultInterval: Duration.hours(3),
      widgets: [
        [
          new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: [this.timeToFirstTokenAlarm, this.deadLetterAlarm], width: 24, height: 3 }),
        ],
        [
          latencyWidget('Time to first token', HARNESS_METRICS.timeToFirstToken),
          latencyWidget('Model latency', HARNESS_METRICS.modelLatency),
          latencyWidget('Harness overhead', HARNESS_METRICS.harnessOverhead),
        ],
        [
          latencyWidget('Sandbox provisioning time', HARNESS_METRICS.sandboxProvisioningTime),
          latencyWidget('Tool latency', HARNESS_METRICS.toolLatency),
          latencyWidget('Step duration', HARNESS_METRICS.stepDuration),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Errors',
            left: [metric(HARNESS_METRICS.errors, 'Sum', 'harness errors'), ...fnMetrics(allFunctions, 'metricErrors')],
            right: fnMetrics(allFunctions, 'metricThrottles'),
            width: 8,
          }),
          new cloudwatch.GraphWidget({
            title: 'Wake queue',
            left: [
              props.wakeQueue.metricApproximateNumberOfMessagesVisible({ label: 'waiting', statistic: 'Maximum' }),
              props.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ label: 'dead letters', statistic: 'Maximum' }),
            ],
            right: [props.wakeQueue.metricApproximateAgeOfOldestMessage({ label: 'oldest (s)', statistic: 'Maximum' })],
            width: 8,
          }),
          new cloudwatch.GraphWidget({
            title: 'Harness invocations',
            left: [props.harnessFunction.metricInvocations({ label: 'invocations' })],
            right: [props.harnessFunction.metricDuration({ label: 'p95 duration', statistic: 'p95' })],
            width: 8,
          }),
        ],
      ],
    });
  }

  /** The dashboard in the CloudWatch console. */
  get dashboardUrl(): string {
    return `https://${Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region=${Aws.REGION}#dashboards:name=${this.dashboard.dashboardName}`;
  }
}
