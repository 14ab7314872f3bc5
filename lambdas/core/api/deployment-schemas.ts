import * as z from 'zod';
import { CronError, parseCron } from '../deployments/cron.js';
import { Budget, Id, MAX_INT, Metadata, MetadataPatch, SessionCreate, SystemMessageEvent, UserDefineOutcomeEvent, UserMessageEvent, unsupportedVariant } from './schemas.js';

/**
 * Request schemas of `client.beta.deployments` (`DeploymentCreateParams`, `DeploymentUpdateParams`).
 * A deployment is a session template plus a schedule, so its template fields are the session
 * create schema's own (`SessionCreate.shape`): whatever a session refuses, a deployment refuses at
 * creation rather than at each fire.
 */

/** `agent`: an id (pins the latest version) or `{type: 'agent', id, version}`; no overrides. */
const DeploymentAgent = z.union([
  Id,
  z.strictObject({ type: z.literal('agent'), id: Id, version: z.number().int().positive().max(MAX_INT).optional() }),
]);

/**
 * A session's resources, minus repository tokens: a deployment would have to keep the token to
 * hand it to every session it starts, and Corral keeps no secret in a resource record. A vault
 * (`vault_ids`) supplies credentials to a deployment's sessions instead.
 */
const DeploymentResources = SessionCreate.shape.resources.unwrap().superRefine((resources, ctx) => {
  resources.forEach((r, i) => {
    if (r.type === 'github_repository' && r.authorization_token !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: [i, 'authorization_token'],
        message: "a deployment's repository resource cannot carry authorization_token (Corral keeps no secret in a deployment); put the token in a vault and list it in vault_ids",
      });
    }
  });
});

/** `initial_events`: at least one, at most 50. `system.message` is refused: a session's `initial_events` takes none yet. */
const DeploymentInitialEvents = z
  .array(
    z.discriminatedUnion('type', [
      UserMessageEvent,
      UserDefineOutcomeEvent,
      unsupportedVariant(SystemMessageEvent.shape.type.value, "a system.message in a deployment's initial_events"),
    ]),
  )
  .min(1)
  .max(50);

/** A 5-field cron expression in an IANA time zone, checked by the cron module (so `0 0 30 2 *` is a 400). */
export const ScheduleParams = z
  .strictObject({
    type: z.literal('cron'),
    expression: z.string().min(1).max(256),
    timezone: z.string().min(1).max(64),
  })
  .superRefine((s, ctx) => {
    try {
      parseCron(s.expression, s.timezone);
    } catch (err) {
      if (!(err instanceof CronError)) throw err;
      const field = err.message.startsWith('timezone') ? 'timezone' : 'expression';
      ctx.addIssue({ code: 'custom', path: [field], message: err.message.replace(/^(timezone|expression): /, '') });
    }
  });
export type ScheduleParams = z.infer<typeof ScheduleParams>;

export const DeploymentCreate = z.strictObject({
  name: z.string().min(1).max(256),
  description: z.string().max(2048).nullish(),
  agent: DeploymentAgent,
  environment_id: Id,
  initial_events: DeploymentInitialEvents,
  metadata: Metadata.optional(),
  resources: DeploymentResources.optional(),
  vault_ids: SessionCreate.shape.vault_ids,
  budget: Budget.nullish(),
  schedule: ScheduleParams.nullish(),
});
export type DeploymentCreate = z.infer<typeof DeploymentCreate>;

export const DeploymentUpdate = z.strictObject({
  name: z.string().min(1).max(256).optional(),
  description: z.string().max(2048).nullish(),
  agent: DeploymentAgent.optional(),
  environment_id: Id.optional(),
  initial_events: DeploymentInitialEvents.optional(),
  metadata: MetadataPatch.nullish(),
  resources: DeploymentResources.nullish(),
  vault_ids: SessionCreate.shape.vault_ids.unwrap().nullish(),
  budget: Budget.nullish(),
  schedule: ScheduleParams.nullish(),
});
export type DeploymentUpdate = z.infer<typeof DeploymentUpdate>;

/** The body of pause, unpause, archive and run: the SDK sends none. */
export const DeploymentAction = z.strictObject({});

/** Response shapes, for the OpenAPI document (`lambdas/api/openapi.ts`). */
export const DeploymentResponse = z
  .looseObject({ id: z.string(), type: z.literal('deployment'), status: z.enum(['active', 'paused']), schedule: z.looseObject({}).nullable() })
  .meta({ description: 'A deployment (`BetaManagedAgentsDeployment`): a session template and an optional cron schedule.' });
export const DeploymentRunResponse = z
  .looseObject({ id: z.string(), type: z.literal('deployment_run'), deployment_id: z.string(), session_id: z.string().nullable() })
  .meta({ description: 'A deployment run (`BetaManagedAgentsDeploymentRun`): the session it started, or the error that stopped it.' });
