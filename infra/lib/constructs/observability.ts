import { Aws, Duration } from 'aws-cdk-lib';
import type * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { HARNESS_METRICS } from '../../../lambdas/adapters/aws/metrics.js';

/** A function whose errors, throttles and durations are alarmed on. */
export interface WatchedFunction {
  readonly function: lambda.IFunction;
  readonly timeout: Duration;
  /**
   * Longest invocation that is still healthy: the near-timeout alarm fires when the maximum
   * duration goes above it. A function designed to run up to a planned end before its timeout
   * (the harness yields a safety margin before it, the event stream ends 10 s before it) sets it
   * between that end and the timeout.
   * @default 90% of the timeout
   */
  readonly durationThreshold?: Duration;
}

export interface ObservabilityProps {
  /** The namespace and `service` dimension the harness publishes its EMF metrics under. */
  readonly metricsNamespace: string;
  readonly serviceName: string;
  readonly wakeQueue: sqs.IQueue;
  readonly deadLetterQueue: sqs.IQueue;
  readonly harnessFunction: lambda.IFunction;
  /** Every function of the stack, by the label it gets on the dashboard and in alarm names. */
  readonly functions: Record<string, WatchedFunction>;
  /** The API's stage, whose 5XX rate is alarmed on. */
  readonly apiStage: apigw.Stage;
  /** Share of the stage's requests answered with a 5XX, in percent, above which the alarm fires. @default 5 */
  readonly api5xxRatePercent?: number;
  /** The p95 time to first token above which the latency alarm fires, in ms. @default 10000 */
  readonly timeToFirstTokenP95ThresholdMs?: number;
  /** The p99 time to first token above which the tail latency alarm fires, in ms. @default 20000 */
  readonly timeToFirstTokenP99ThresholdMs?: number;
  /** Where alarms notify (e.g. an SNS topic with an email subscription). @default - nowhere */
  readonly alarmTopic?: sns.ITopic;
}

const PERCENTILES = ['p50', 'p95', 'p99'] as const;
const FIVE_MINUTES = Duration.minutes(5);

const titleCase = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

/**
 * What an operator watches: a dashboard with p50/p95/p99 of every harness timing (time to first
 * token, model latency, harness overhead, sandbox provisioning, tool latency, step duration),
 * errors, the wake queue's backlog and the functions' health, and alarms on what is real trouble:
 *
 * - p95 and p99 time to first token above their thresholds (2 of 3 five-minute periods);
 * - any message in the dead-letter queue;
 * - the API stage's 5XX rate above its threshold (2 of 3 five-minute periods);
 * - for every function: any error (a crash, an init failure, a timeout), any throttle, and a
 *   maximum duration above its healthy longest (by default 90% of its timeout).
 *
 * Every alarm is on the dashboard's alarm widget and notifies the alarm topic, when there is one,
 * both when it fires and when it clears.
 */
export class Observability extends Construct {
  readonly dashboard: cloudwatch.Dashboard;
  readonly timeToFirstTokenAlarm: cloudwatch.Alarm;
  readonly timeToFirstTokenP99Alarm: cloudwatch.Alarm;
  readonly deadLetterAlarm: cloudwatch.Alarm;
  readonly api5xxAlarm: cloudwatch.Alarm;
  /** Per function label: its errors, throttles and near-timeout alarms. */
  readonly functionAlarms: Record<string, { errors: cloudwatch.Alarm; throttles: cloudwatch.Alarm; duration: cloudwatch.Alarm }> = {};
  /** Every alarm above. */
  readonly alarms: cloudwatch.Alarm[] = [];

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    const metric = (metricName: string, statistic: string, label?: string) =>
      new cloudwatch.Metric({
        namespace: props.metricsNamespace,
        metricName,
        dimensionsMap: { service: props.serviceName },
        statistic,
        period: FIVE_MINUTES,
        label,
      });
    const latencyWidget = (title: string, metricName: string) =>
      new cloudwatch.GraphWidget({
        title: `${title} (ms)`,
        left: PERCENTILES.map((p) => metric(metricName, p, p)),
        width: 8,
        leftYAxis: { min: 0, showUnits: false },
      });
    const alarm = (alarmId: string, p: cloudwatch.AlarmProps) => {
      const a = new cloudwatch.Alarm(this, alarmId, {
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        ...p,
      });
      this.alarms.push(a);
      return a;
    };

    const ttft = (p: 'p95' | 'p99', threshold: number) =>
      alarm(p === 'p95' ? 'TimeToFirstTokenP95' : 'TimeToFirstTokenP99', {
        alarmDescription: `${p} time to first token above ${threshold} ms in 2 of the last 3 five-minute periods`,
        metric: metric(HARNESS_METRICS.timeToFirstToken, p),
        threshold,
        evaluationPeriods: 3,
        datapointsToAlarm: 2,
      });
    this.timeToFirstTokenAlarm = ttft('p95', props.timeToFirstTokenP95ThresholdMs ?? 10_000);
    this.timeToFirstTokenP99Alarm = ttft('p99', props.timeToFirstTokenP99ThresholdMs ?? 20_000);
    this.deadLetterAlarm = alarm('DeadLetters', {
      alarmDescription: 'A wake message was moved to the dead-letter queue: a session may be stuck (see the harness logs for its id)',
      metric: props.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(1), statistic: 'Maximum' }),
      threshold: 0,
      evaluationPeriods: 1,
    });
    // 5XXError is 1 for a request answered with a 5XX and 0 otherwise: its average is the rate.
    const rate = props.api5xxRatePercent ?? 5;
    this.api5xxAlarm = alarm('Api5xx', {
      alarmDescription: `More than ${rate}% of the API's requests answered with a 5XX in 2 of the last 3 five-minute periods (a throttled event stream counts too)`,
      metric: props.apiStage.metricServerError({ statistic: 'Average', period: FIVE_MINUTES }),
      threshold: rate / 100,
      evaluationPeriods: 3,
      datapointsToAlarm: 2,
    });

    for (const [label, watched] of Object.entries(props.functions)) {
      const fn = watched.function;
      const name = titleCase(label);
      const durationThreshold = watched.durationThreshold ?? Duration.millis(Math.floor(watched.timeout.toMilliseconds() * 0.9));
      if (durationThreshold.toMilliseconds() >= watched.timeout.toMilliseconds()) {
        throw new Error(`the ${label} duration alarm must fire before the function's timeout`);
      }
      this.functionAlarms[label] = {
        errors: alarm(`${name}Errors`, {
          alarmDescription: `The ${label} function failed (an exception it did not handle, an init failure or a timeout) in the last five minutes`,
          metric: fn.metricErrors({ statistic: 'Sum', period: FIVE_MINUTES }),
          threshold: 0,
          evaluationPeriods: 1,
        }),
        throttles: alarm(`${name}Throttles`, {
          alarmDescription: `The ${label} function was throttled (its reserved concurrency or the account's limit) in the last five minutes`,
          metric: fn.metricThrottles({ statistic: 'Sum', period: FIVE_MINUTES }),
          threshold: 0,
          evaluationPeriods: 1,
        }),
        duration: alarm(`${name}NearTimeout`, {
          alarmDescription: `An invocation of the ${label} function ran longer than ${durationThreshold.toMilliseconds() / 1000} s (its timeout is ${watched.timeout.toMilliseconds() / 1000} s)`,
          metric: fn.metricDuration({ statistic: 'Maximum', period: FIVE_MINUTES }),
          threshold: durationThreshold.toMilliseconds(),
          evaluationPeriods: 1,
        }),
      };
    }

    if (props.alarmTopic) {
      for (const a of this.alarms) {
        a.addAlarmAction(new actions.SnsAction(props.alarmTopic));
        a.addOkAction(new actions.SnsAction(props.alarmTopic));
      }
    }

    const functions = Object.entries(props.functions);
    const fnMetrics = (name: 'metricErrors' | 'metricThrottles') =>
      functions.map(([label, w]) => w.function[name]({ period: FIVE_MINUTES, label: `${label} ${name === 'metricErrors' ? 'errors' : 'throttles'}` }));

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      defaultInterval: Duration.hours(3),
      widgets: [
        [new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 24, height: 6 })],
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
            left: [metric(HARNESS_METRICS.errors, 'Sum', 'harness errors'), ...fnMetrics('metricErrors')],
            right: fnMetrics('metricThrottles'),
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
        [
          new cloudwatch.GraphWidget({
            title: 'API requests',
            left: [props.apiStage.metricCount({ label: 'requests', statistic: 'Sum', period: FIVE_MINUTES })],
            right: [
              props.apiStage.metricServerError({ label: '5XX rate', statistic: 'Average', period: FIVE_MINUTES }),
              props.apiStage.metricClientError({ label: '4XX rate', statistic: 'Average', period: FIVE_MINUTES }),
            ],
            width: 12,
          }),
          new cloudwatch.GraphWidget({
            title: 'Longest invocation, share of timeout (%)',
            left: functions.map(
              ([label, w], i) =>
                new cloudwatch.MathExpression({
                  expression: `100 * d${i} / ${w.timeout.toMilliseconds()}`,
                  usingMetrics: { [`d${i}`]: w.function.metricDuration({ statistic: 'Maximum', period: FIVE_MINUTES }) },
                  label,
                  period: FIVE_MINUTES,
                }),
            ),
            leftYAxis: { min: 0, max: 100, showUnits: false },
            width: 12,
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
