import { Hono, type Context } from 'hono';
import { DeploymentCreate, DeploymentUpdate } from '../core/api/deployment-schemas.js';
import { InvalidRequestError } from '../core/errors.js';
import type { CorralServices } from '../core/services.js';
import { parseBody, pathId, queryBool, queryId, queryInt, queryPage, type Env } from './http.js';

/** `created_at[...]` bounds of a list request, as sent. */
const createdAt = (c: Context) => ({
  gt: c.req.query('created_at[gt]'),
  gte: c.req.query('created_at[gte]'),
  lt: c.req.query('created_at[lt]'),
  lte: c.req.query('created_at[lte]'),
});

function queryEnum<T extends string>(c: Context, name: string, values: readonly T[]): T | undefined {
  const v = c.req.query(name);
  if (v === undefined) return undefined;
  if (!(values as readonly string[]).includes(v)) throw new InvalidRequestError(`${name}: must be one of ${values.join(', ')}`);
  return v as T;
}

/** `client.beta.deployments`: deployments, their schedules, and run now. */
export function deploymentRoutes(s: CorralServices) {
  const app = new Hono<Env>();
  app.post('/', async (c) => c.json(await s.deployments.create(c.get('tenant'), await parseBody(c, DeploymentCreate))));
  app.get('/', async (c) =>
    c.json(
      await s.deployments.list(c.get('tenant'), {
        limit: queryInt(c, 'limit'),
        page: queryPage(c),
        include_archived: queryBool(c, 'include_archived'),
        status: queryEnum(c, 'status', ['active', 'paused'] as const),
        agent_id: queryId(c, 'agent_id'),
        created_at: createdAt(c),
      }),
    ),
  );
  app.get('/:id', async (c) => c.json(await s.deployments.get(c.get('tenant'), pathId(c, 'id'))));
  app.post('/:id', async (c) => c.json(await s.deployments.update(c.get('tenant'), pathId(c, 'id'), await parseBody(c, DeploymentUpdate))));
  // The SDK sends these without a body.
  app.post('/:id/archive', async (c) => c.json(await s.deployments.archive(c.get('tenant'), pathId(c, 'id'))));
  app.post('/:id/pause', async (c) => c.json(await s.deployments.pause(c.get('tenant'), pathId(c, 'id'))));
  app.post('/:id/unpause', async (c) => c.json(await s.deployments.unpause(c.get('tenant'), pathId(c, 'id'))));
  app.post('/:id/run', async (c) => c.json(await s.deployments.run(c.get('tenant'), pathId(c, 'id'))));
  return app;
}

/** `client.beta.deploymentRuns`: the record of each run (its session, or its error). */
export function deploymentRunRoutes(s: CorralServices) {
  const app = new Hono<Env>();
  app.get('/', async (c) =>
    c.json(
      await s.deployments.listRuns(c.get('tenant'), {
        limit: queryInt(c, 'limit'),
        page: queryPage(c),
        deployment_id: queryId(c, 'deployment_id'),
        has_error: queryBool(c, 'has_error'),
        trigger_type: queryEnum(c, 'trigger_type', ['schedule', 'manual'] as const),
        created_at: createdAt(c),
      }),
    ),
  );
  app.get('/:id', async (c) => c.json(await s.deployments.getRun(c.get('tenant'), pathId(c, 'id'))));
  return app;
}
