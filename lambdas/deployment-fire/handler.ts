/**
 * Lambda entry of a deployment's scheduled run: the target of the deployments' EventBridge
 * Scheduler schedules (infra/lib/constructs/deployments.ts), invoked as the scheduler role with
 * `{"deployment_id": "depl_…", "scheduled_at": "<aws.scheduler.scheduled-time>"}`. It starts the
 * run of that scheduled time (`DeploymentService.fire`): at most one per time, however often
 * EventBridge delivers it, and none when the time is not an occurrence of the deployment's current
 * schedule or the deployment is paused or archived.
 *
 * Environment: the API function's (`createAwsServices`: the tables, the wake queue, the sandbox
 * settings a session create checks, the credential proxy for vault checks). Permissions: what a
 * session create needs (dynamodb on both tables, sqs:SendMessage on the wake queue), no model key.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { createAwsServices } from '../adapters/aws/services.js';
import type { CorralServices } from '../core/services.js';

const logger = new Logger();

/** The event as EventBridge Scheduler sends it. */
export interface FireEvent {
  deployment_id: string;
  scheduled_at: string;
}

const ID = /^[A-Za-z0-9_-]{1,128}$/;

/** The event, validated: anything else is refused before it reaches the table. */
export function parseFireEvent(event: unknown): FireEvent {
  const e = event as Partial<Record<keyof FireEvent, unknown>> | null;
  if (!e || typeof e !== 'object') throw new TypeError('deployment fire: the event must be an object');
  if (typeof e.deployment_id !== 'string' || !ID.test(e.deployment_id)) throw new TypeError('deployment fire: deployment_id must be an id');
  if (typeof e.scheduled_at !== 'string' || e.scheduled_at.length > 40 || Number.isNaN(Date.parse(e.scheduled_at))) {
    throw new TypeError('deployment fire: scheduled_at must be an ISO 8601 time');
  }
  return { deployment_id: e.deployment_id, scheduled_at: e.scheduled_at };
}

/** What one invocation answers (and logs): the run of that time, and whether this invocation started it. */
export async function fireDeployment(services: Pick<CorralServices, 'deployments'>, event: unknown) {
  const e = parseFireEvent(event);
  const result = await services.deployments.fire(e.deployment_id, e.scheduled_at);
  return result
    ? { deployment_id: e.deployment_id, scheduled_at: e.scheduled_at, run_id: result.run.id, started: result.started, session_id: result.run.session_id, error: result.run.error?.type ?? null }
    : { deployment_id: e.deployment_id, scheduled_at: e.scheduled_at, run_id: null, started: false, session_id: null, error: null };
}

let services: Promise<CorralServices> | undefined;

export async function handler(event: unknown) {
  services ??= createAwsServices().then(
    (s) => s.services,
    (err) => {
      services = undefined; // the next invocation tries again
      throw err;
    },
  );
  const out = await fireDeployment(await services, event);
  logger.info('deployment fire', out);
  return out;
}
