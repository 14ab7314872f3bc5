import { Hono } from 'hono';
import { EnvironmentCreate, EnvironmentUpdate } from '../core/api/schemas.js';
import type { CorralServices } from '../core/services.js';
import { parseBody, pathId, queryPage, queryBool, queryInt, type Env } from './http.js';

export function environmentRoutes(s: CorralServices) {
  const app = new Hono<Env>();
  app.post('/', async (c) => c.json(await s.environments.create(c.get('tenant'), await parseBody(c, EnvironmentCreate))));
  app.get('/', async (c) =>
    c.json(
      await s.environments.list(c.get('tenant'), {
        limit: queryInt(c, 'limit'),
        page: queryPage(c),
        include_archived: queryBool(c, 'include_archived'),
      }),
    ),
  );
  app.get('/:id', async (c) => c.json(await s.environments.get(c.get('tenant'), pathId(c, 'id'))));
  app.post('/:id', async (c) =>
    c.json(await s.environments.update(c.get('tenant'), pathId(c, 'id'), await parseBody(c, EnvironmentUpdate))),
  );
  app.delete('/:id', async (c) => c.json(await s.environments.delete(c.get('tenant'), pathId(c, 'id'))));
  app.post('/:id/archive', async (c) => c.json(await s.environments.archive(c.get('tenant'), pathId(c, 'id'))));
  return app;
}
