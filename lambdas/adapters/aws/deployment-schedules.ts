/**
 * Deployments' schedules on AWS: one EventBridge Scheduler schedule per deployment (two when its
 * cron ORs day-of-month and day-of-week; see core/deployments/eventbridge-cron.ts), in Corral's
 * schedule group, in the deployment's time zone, targeting the deployment-fire function with
 * `{"deployment_id": …, "scheduled_at": "<aws.scheduler.scheduled-time>"}` as the scheduler role.
 * The API function keeps them in step with the deployments (`sync` after every change): an
 * active, scheduled, unarchived deployment has its schedules; any other has none. EventBridge
 * delivers at least once and retries; `DeploymentService.fire` claims each scheduled time, so a
 * repeated delivery starts nothing.
 *
 * Calls the Scheduler REST API through `SignedHttp` (a full SDK client for four calls is not worth
 * its bundle). Permissions: scheduler:CreateSchedule, UpdateSchedule, DeleteSchedule on
 * `schedule/<group>/corral-*`, and iam:PassRole of the scheduler role.
 */
import type { Deployment, DeploymentSchedules } from '../../core/deployments/deployments.js';
import { parseCron } from '../../core/deployments/cron.js';
import { eventBridgeExpressions } from '../../core/deployments/eventbridge-cron.js';
import { AwsServiceError, jsonError, readBody, SignedHttp, type SignedHttpOptions } from './signed-http.js';

export interface EventBridgeSchedulesOptions extends Omit<SignedHttpOptions, 'service'> {
  /** The schedule group (`CORRAL_SCHEDULE_GROUP`). */
  group: string;
  /** The function the schedules invoke (`CORRAL_DEPLOYMENT_FIRE_ARN`). */
  targetArn: string;
  /** The role EventBridge Scheduler assumes to invoke it (`CORRAL_SCHEDULER_ROLE_ARN`). */
  roleArn: string;
}

/** Name of a deployment's schedule: `corral-<id>`, and `corral-<id>-2` for the second expression. */
export const scheduleName = (deploymentId: string, index: number) => `corral-${deploymentId}${index ? `-${index + 1}` : ''}`;

/** How many schedules a deployment may have (the OR of the day fields makes two). */
const MAX_SCHEDULES = 2;

export class EventBridgeDeploymentSchedules implements DeploymentSchedules {
  private readonly http: SignedHttp;

  constructor(private readonly opts: EventBridgeSchedulesOptions) {
    const { group: _g, targetArn: _t, roleArn: _r, ...http } = opts;
    this.http = new SignedHttp({ service: 'scheduler', ...http });
  }

  /** The request body of one schedule (CreateSchedule and UpdateSchedule take the same). */
  scheduleBody(d: Deployment, expression: string) {
    return {
      GroupName: this.opts.group,
      ScheduleExpression: expression,
      ScheduleExpressionTimezone: d.schedule!.timezone,
      FlexibleTimeWindow: { Mode: 'OFF' },
      State: 'ENABLED',
      Description: `Corral deployment ${d.id}`,
      Target: {
        Arn: this.opts.targetArn,
        RoleArn: this.opts.roleArn,
        // EventBridge fills in the time this invocation was scheduled for (UTC, ISO 8601).
        Input: JSON.stringify({ deployment_id: d.id, scheduled_at: '<aws.scheduler.scheduled-time>' }),
        RetryPolicy: { MaximumRetryAttempts: 10, MaximumEventAgeInSeconds: 3600 },
      },
    };
  }

  async sync(d: Deployment): Promise<void> {
    const live = d.schedule !== null && d.status === 'active' && !d.archived_at;
    const expressions = live ? eventBridgeExpressions(parseCron(d.schedule!.expression, d.schedule!.timezone)) : [];
    for (let i = 0; i < MAX_SCHEDULES; i++) {
      const name = scheduleName(d.id, i);
      if (i < expressions.length) await this.upsert(name, this.scheduleBody(d, expressions[i]));
      else await this.remove(name);
    }
  }

  private async call(method: 'POST' | 'PUT' | 'DELETE', name: string, body?: unknown): Promise<void> {
    const bytes = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const a = await this.http.send(
      {
        method,
        path: `/schedules/${encodeURIComponent(name)}`,
        ...(method === 'DELETE' ? { query: { groupName: this.opts.group } } : {}),
        headers: { 'content-type': 'application/json', ...(bytes ? { 'content-length': String(bytes.length) } : {}) },
        ...(bytes ? { body: bytes } : {}),
      },
      jsonError,
    );
    await readBody(a.body);
  }

  /** Update the schedule, or create it when there is none (a create that lost a race updates). */
  private async upsert(name: string, body: unknown): Promise<void> {
    try {
      await this.call('PUT', name, body);
    } catch (err) {
      if (!(err instanceof AwsServiceError && err.name === 'ResourceNotFoundException')) throw err;
      try {
        await this.call('POST', name, body);
      } catch (e) {
        if (!(e instanceof AwsServiceError && e.name === 'ConflictException')) throw e;
        await this.call('PUT', name, body);
      }
    }
  }

  private async remove(name: string): Promise<void> {
    try {
      await this.call('DELETE', name);
    } catch (err) {
      if (!(err instanceof AwsServiceError && err.name === 'ResourceNotFoundException')) throw err;
    }
  }

  destroy(): void {
    this.http.destroy();
  }
}
