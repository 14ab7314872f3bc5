import { Hono } from 'hono';
import { MAX_INT, EventsSend, FileResourceParam, SessionCreate, SessionFork, SessionResourceUpdate, SessionUpdate } from '../core/api/schemas.js';
import { InvalidRequestError } from '../core/errors.js';
import { isEventType, type SessionStatus } from '../core/session/events.js';
import { readHistory } from '../core/session/history.js';
import type { CorralServices } from '../core/services.js';
import { tenantPrincipal } from '../core/storage/principal.js';
import { streamEvents, type LogNotifier, type StreamOptions } from './stream.js';
import { parseBody, pathId, queryBool, queryId, queryInt, queryList, queryOrder, queryPage, type Env } from './http.js';
import { sandboxRoutes } from './sandboxes.js';

/** Highest log position a query may name (one below the largest safe integer, so `+ 1` stays exact). */
const MAX_POSITION = MAX_INT - 1;
const STATUSES = new Set(['rescheduling', 'running', 'idle', 'terminated']);

export function sessionRoutes(s: CorralServices, notifier?: LogNotifier, streamOptions?: StreamOptions) {
  const app = new Hono<Env>();
  app.post('/', async (c) => c.json(await s.sessions.create(c.get('tenant'), await parseBody(c, SessionCreate))));
  app.get('/', async (c) => {
    const statuses = queryList(c, 'statuses');
    for (const st of statuses) if (!STATUSES.has(st)) throw new InvalidRequestError(`statuses: unknown status ${st}`);
    const page = await s.sessions.list(c.get('tenant'), {
      limit: queryInt(c, 'limit'),
      page: queryPage(c),
      order: queryOrder(c),
      include_archived: queryBool(c, 'include_archived'),
      agent_id: queryId(c, 'agent_id'),
      agent_version: queryInt(c, 'agent_version', { min: 1 }),
      statuses: statuses as SessionStatus[],
      created_at: {
        gt: c.req.query('created_at[gt]'),
        gte: c.req.query('created_at[gte]'),
        lt: c.req.query('created_at[lt]'),
        lte: c.req.query('created_at[lte]'),
      },
    });
    return c.json(page);
  });
  app.get('/:id', async (c) => c.json(await s.sessions.get(tenantPrincipal(c.get('tenant')), pathId(c, 'id'))));
  app.post('/:id', async (c) =>
    c.json(await s.sessions.update(c.get('tenant'), pathId(c, 'id'), await parseBody(c, SessionUpdate))),
  );
  app.delete('/:id', async (c) =>
    c.json(await s.sessions.delete(c.get('tenant'), pathId(c, 'id'), (id) => s.sandboxes.releaseAll(id))),
  );
  // Corral extension: fork a session at a position of its log.
  app.post('/:id/fork', async (c) => {
    const body = await parseBody(c, SessionFork);
    const source = pathId(c, 'id');
    // Its sandboxes start from copies of the source's workspaces (a failed copy is logged and
    // told to the model at the fork's first tool call: it never fails the fork), seeded before
    // the fork is first woken.
    const fork = await s.sessions.fork(c.get('tenant'), source, {
      upTo: body.up_to_position,
      title: body.title,
      seed: (forkId) => s.sandboxes.seedFork(c.get('tenant'), source, forkId),
    });
    return c.json(fork);
  });
  app.post('/:id/archive', async (c) => c.json(await s.sessions.archive(c.get('tenant'), pathId(c, 'id'))));
  app.route('/:id/sandboxes', sandboxRoutes(s)); // Corral extension: list and hand off sandboxes
  // Resources: never their authorization_token; a POST rotates it (write-only).
  app.get('/:id/resources', async (c) => c.json(await s.sessions.listResources(c.get('tenant'), pathId(c, 'id'))));
  // `resources.add`: a file (the only kind the SDK adds), mounted read-only at its mount_path.
  app.post('/:id/resources', async (c) =>
    c.json(await s.sessions.addResource(c.get('tenant'), pathId(c, 'id'), await parseBody(c, FileResourceParam))),
  );
  app.delete('/:id/resources/:resource_id', async (c) =>
    c.json(await s.sessions.deleteResource(c.get('tenant'), pathId(c, 'id'), pathId(c, 'resource_id'))),
  );
  app.get('/:id/resources/:resource_id', async (c) =>
    c.json(await s.sessions.getResource(c.get('tenant'), pathId(c, 'id'), pathId(c, 'resource_id'))),
  );
  app.post('/:id/resources/:resource_id', async (c) =>
    c.json(
      await s.sessions.updateResource(c.get('tenant'), pathId(c, 'id'), pathId(c, 'resource_id'), await parseBody(c, SessionResourceUpdate)),
    ),
  );

  app.get('/:id/events', async (c) => {
    const id = pathId(c, 'id');
    const types = queryList(c, 'types').map((t) => {
      if (!isEventType(t)) throw new InvalidRequestError(`types: unknown event type ${JSON.stringify(t.slice(0, 100))}`);
      return t;
    });
    await s.sessions.get(tenantPrincipal(c.get('tenant')), id);
    return c.json(
      await readHistory(s.events, id, {
        limit: queryInt(c, 'limit'),
        page: queryPage(c),
        order: queryOrder(c),
        types,
        createdAt: {
          gt: c.req.query('created_at[gt]'),
          gte: c.req.query('created_at[gte]'),
          lt: c.req.query('created_at[lt]'),
          lte: c.req.query('created_at[lte]'),
        },
        // Corral extension: a positional slice of the log (positions as in the stream's `id:` lines).
        positions: { from: queryInt(c, 'from_position', { max: MAX_POSITION }), to: queryInt(c, 'to_position', { max: MAX_POSITION }) },
      }),
    );
  });
  app.post('/:id/events', async (c) => {
    const body = await parseBody(c, EventsSend);
    return c.json({ data: await s.sessions.send(c.get('tenant'), pathId(c, 'id'), body.events) });
  });
  app.get('/:id/events/stream', async (c) => {
    const id = pathId(c, 'id');
    await s.sessions.get(tenantPrincipal(c.get('tenant')), id);
    return streamEvents(c, s, id, notifier, streamOptions);
  });
  return app;
}
