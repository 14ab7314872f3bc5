import { Hono } from 'hono';
import { InvalidRequestError } from '../core/errors.js';
import { readHistory } from '../core/session/history.js';
import { isEventType } from '../core/session/events.js';
import type { CorralServices } from '../core/services.js';
import { ThreadService, type ThreadStatus } from '../core/threads/threads.js';
import { streamEvents, type LogNotifier, type StreamOptions } from './stream.js';
import { pathId, queryInt, queryList, queryOrder, queryPage, type Env } from './http.js';

const STATUSES = new Set(['rescheduling', 'running', 'idle', 'terminated']);

/**
 * `client.beta.sessions.threads` (mounted at /v1/sessions): a coordinator session's threads,
 * each thread's own events and its stream. A thread's log is the log of its own record
 * (core/threads/threads.ts), read exactly as a session's is.
 */
export function threadRoutes(s: CorralServices, notifier?: LogNotifier, streamOptions?: StreamOptions) {
  const app = new Hono<Env>();
  const threads = new ThreadService(s.table, s.events, s.sessions);
  app.get('/:id/threads', async (c) => {
    const statuses = queryList(c, 'statuses');
    for (const st of statuses) if (!STATUSES.has(st)) throw new InvalidRequestError(`statuses: unknown status ${st}`);
    return c.json(await threads.list(c.get('tenant'), pathId(c, 'id'), { limit: queryInt(c, 'limit'), page: queryPage(c), statuses: statuses as ThreadStatus[] }));
  });
  app.get('/:id/threads/:thread_id', async (c) => c.json(await threads.get(c.get('tenant'), pathId(c, 'id'), pathId(c, 'thread_id'))));
  app.post('/:id/threads/:thread_id/archive', async (c) => c.json(await threads.archive(c.get('tenant'), pathId(c, 'id'), pathId(c, 'thread_id'))));
  app.get('/:id/threads/:thread_id/events', async (c) => {
    const threadId = pathId(c, 'thread_id');
    const types = queryList(c, 'types').map((t) => {
      if (!isEventType(t)) throw new InvalidRequestError(`types: unknown event type ${JSON.stringify(t.slice(0, 100))}`);
      return t;
    });
    await threads.get(c.get('tenant'), pathId(c, 'id'), threadId);
    return c.json(await readHistory(s.events, threadId, { limit: queryInt(c, 'limit'), page: queryPage(c), order: queryOrder(c), types }));
  });
  app.get('/:id/threads/:thread_id/stream', async (c) => {
    const threadId = pathId(c, 'thread_id');
    await threads.get(c.get('tenant'), pathId(c, 'id'), threadId);
    return streamEvents(c, s, threadId, notifier, streamOptions);
  });
  return app;
}
