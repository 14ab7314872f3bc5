import { Hono } from 'hono';
import { z } from 'zod';
import { Id } from '../core/api/schemas.js';
import { InvalidRequestError } from '../core/errors.js';
import { SANDBOX_NAME } from '../core/sandbox/manager.js';
import { handOffSandbox, publicSandbox } from '../core/sandbox/handoff.js';
import type { CorralServices } from '../core/services.js';
import { parseBody, pathId, type Env } from './http.js';

/**
 * Corral extension, mounted under `/v1/sessions/{id}/sandboxes` (a path the Managed Agents API
 * does not use):
 *
 *   GET  /v1/sessions/{id}/sandboxes                  the session's sandboxes (never an address or capability)
 *   POST /v1/sessions/{id}/sandboxes/{name}/handoff   {"to_session_id": "...", "as"?: "<name in the target>"}
 */
export const SandboxHandoff = z.strictObject({
  to_session_id: Id,
  as: z.string().regex(SANDBOX_NAME, 'must be 1-64 letters, digits, - or _').optional(),
});

export function sandboxRoutes(s: CorralServices) {
  const app = new Hono<Env>();
  app.get('/', async (c) => {
    const id = pathId(c, 'id');
    await s.sessions.get(c.get('tenant'), id);
    // One page: a record is a few hundred bytes, so even thousands of sandboxes fit the page budget.
    const records = await s.sandboxes.list(id);
    return c.json({ data: records.map(publicSandbox), next_page: null });
  });
  app.post('/:name/handoff', async (c) => {
    const body = await parseBody(c, SandboxHandoff);
    const sessionId = pathId(c, 'id');
    const name = c.req.param('name');
    if (!SANDBOX_NAME.test(name)) throw new InvalidRequestError('name: must be 1-64 letters, digits, - or _');
    const result = await handOffSandbox(s, c.get('tenant'), { sessionId, name, toSessionId: body.to_session_id, as: body.as });
    return c.json({
      type: 'sandbox_handoff',
      sandbox: publicSandbox(result.record),
      from: { session_id: sessionId, sandbox: name, event_id: result.sent.id },
      to: { session_id: body.to_session_id, sandbox: result.record.name, event_id: result.received.id },
    });
  });
  return app;
}
