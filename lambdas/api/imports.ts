import { Hono } from 'hono';
import { SessionImport } from '../core/api/schemas.js';
import type { SessionEvent } from '../core/session/events.js';
import type { CorralServices } from '../core/services.js';
import { parseBody, type Env } from './http.js';

/**
 * Corral extension: imports (`corral import`), under `/v1/corral/`, a path the Managed Agents API
 * does not use. Behind the same key check, rate limits and body limit as every `/v1` route.
 *
 * `POST /v1/corral/imports/sessions`: a session log from `corral export`, written as an archived,
 * read-only copy with a new id in the caller's account (`SessionService.importArchived`). The
 * caller cannot reach another tenant through it: the agent and environment are looked up as the
 * caller's, and the copy's ids are all new. It is bounded by the body limit (4 MB by default) and
 * `MAX_IMPORT_EVENTS`.
 */
export function importRoutes(s: CorralServices) {
  const app = new Hono<Env>();
  app.post('/sessions', async (c) => {
    const body = await parseBody(c, SessionImport);
    const session = await s.sessions.importArchived(c.get('tenant'), {
      agent_id: body.agent_id,
      agent_version: body.agent_version,
      environment_id: body.environment_id,
      title: body.title ?? null,
      metadata: body.metadata ?? {},
      source: body.source,
      events: body.events as unknown as SessionEvent[],
    });
    return c.json(session);
  });
  return app;
}
