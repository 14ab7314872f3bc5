import { Hono } from 'hono';
import { AgentCreate, AgentUpdate } from '../core/api/schemas.js';
import type { CorralServices } from '../core/services.js';
import { parseBody, pathId, queryPage, queryBool, queryInt, type Env } from './http.js';

export function agentRoutes(s: CorralServices) {
  const app = new Hono<Env>();
  app.post('/', async (c) => c.json(await s.agents.create(c.get('tenant'), await parseBody(c, AgentCreate))));
  app.get('/', async (c) =>
    c.json(
      await s.agents.list(c.get('tenant'), {
        limit: queryInt(c, 'limit'),
        page: queryPage(c),
        include_archived: queryBool(c, 'include_archived'),
      }),
    ),
  );
  app.get('/:id', async (c) => c.json(await s.agents.get(c.get('tenant'), pathId(c, 'id'), queryInt(c, 'version', { min: 1 }))));
  app.post('/:id', async (c) =>
    c.json(await s.agents.update(c.get('tenant'), pathId(c, 'id'), await parseBody(c, AgentUpdate))),
  );
  app.post('/:id/archive', async (c) => c.json(await s.agents.archive(c.get('tenant'), pathId(c, 'id'))));
  app.get('/:id/versions', async (c) =>
    c.json(
      await s.agents.listVersions(c.get('tenant'), pathId(c, 'id'), { limit: queryInt(c, 'limit'), page: queryPage(c) }),
    ),
  );
  return app;
}
