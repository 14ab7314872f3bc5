import { Hono, type Context } from 'hono';
import * as z from 'zod';
import { MemoryCreate, MemoryStoreCreate, MemoryStoreUpdate, MemoryUpdate } from '../core/api/memory-schemas.js';
import { InvalidRequestError } from '../core/errors.js';
import type { MemoryStoreService, View } from '../core/memory/store.js';
import { parseBody, pathId, queryBool, queryId, queryInt, queryPage, type Env } from './http.js';

/**
 * `/v1/memory_stores` (`client.beta.memoryStores`, `.memories`, `.memoryVersions`): stores, their
 * memories by path, and every memory's versions, redactable. See core/memory/store.ts.
 */
export function memoryStoreRoutes(s: { memoryStores: MemoryStoreService }) {
  const m = s.memoryStores;
  const app = new Hono<Env>();
  const t = (c: Context<Env>) => c.get('tenant');
  app.post('/', async (c) => c.json(await m.create(t(c), await parseBody(c, MemoryStoreCreate))));
  app.get('/', async (c) =>
    c.json(
      await m.list(t(c), {
        limit: queryInt(c, 'limit'),
        page: queryPage(c),
        include_archived: queryBool(c, 'include_archived'),
        created_gte: queryTime(c, 'created_at[gte]'),
        created_lte: queryTime(c, 'created_at[lte]'),
      }),
    ),
  );
  app.get('/:id', async (c) => c.json(await m.get(t(c), pathId(c, 'id'))));
  app.post('/:id', async (c) => c.json(await m.update(t(c), pathId(c, 'id'), await parseBody(c, MemoryStoreUpdate))));
  app.delete('/:id', async (c) => c.json(await m.delete(t(c), pathId(c, 'id'))));
  app.post('/:id/archive', async (c) => c.json(await m.archive(t(c), pathId(c, 'id'))));

  app.post('/:id/memories', async (c) => c.json(await m.createMemory(t(c), pathId(c, 'id'), await parseBody(c, MemoryCreate), view(c, 'basic'))));
  app.get('/:id/memories', async (c) =>
    c.json(
      await m.listMemories(t(c), pathId(c, 'id'), {
        limit: queryInt(c, 'limit'),
        page: queryPage(c),
        path_prefix: c.req.query('path_prefix'),
        depth: queryInt(c, 'depth', { max: 20 }),
        view: view(c, 'basic'),
      }),
    ),
  );
  app.get('/:id/memories/:memory_id', async (c) => c.json(await m.getMemory(t(c), pathId(c, 'id'), pathId(c, 'memory_id'), view(c, 'full'))));
  app.post('/:id/memories/:memory_id', async (c) =>
    c.json(await m.updateMemory(t(c), pathId(c, 'id'), pathId(c, 'memory_id'), await parseBody(c, MemoryUpdate), view(c, 'basic'))),
  );
  app.delete('/:id/memories/:memory_id', async (c) => {
    const sha = c.req.query('expected_content_sha256');
    if (sha !== undefined && !/^[0-9a-f]{64}$/.test(sha)) throw new InvalidRequestError('expected_content_sha256: must be 64 lowercase hexadecimal characters');
    return c.json(await m.deleteMemory(t(c), pathId(c, 'id'), pathId(c, 'memory_id'), sha));
  });

  app.get('/:id/memory_versions', async (c) => {
    const op = c.req.query('operation');
    if (op !== undefined && !['created', 'modified', 'deleted'].includes(op)) throw new InvalidRequestError('operation: must be created, modified or deleted');
    return c.json(
      await m.listVersions(t(c), pathId(c, 'id'), {
        limit: queryInt(c, 'limit'),
        page: queryPage(c),
        memory_id: queryId(c, 'memory_id'),
        session_id: queryId(c, 'session_id'),
        operation: op as 'created' | undefined,
        created_gte: queryTime(c, 'created_at[gte]'),
        created_lte: queryTime(c, 'created_at[lte]'),
        view: view(c, 'basic'),
      }),
    );
  });
  app.get('/:id/memory_versions/:version_id', async (c) => c.json(await m.getVersion(t(c), pathId(c, 'id'), pathId(c, 'version_id'), view(c, 'full'))));
  app.post('/:id/memory_versions/:version_id/redact', async (c) => {
    await parseOptionalEmptyBody(c);
    return c.json(await m.redactVersion(t(c), pathId(c, 'id'), pathId(c, 'version_id')));
  });
  return app;
}

function view(c: Context, fallback: View): View {
  const v = c.req.query('view');
  if (v === undefined) return fallback;
  if (v !== 'basic' && v !== 'full') throw new InvalidRequestError('view: must be basic or full');
  return v;
}

function queryTime(c: Context, name: string): string | undefined {
  const v = c.req.query(name);
  if (v === undefined) return undefined;
  if (!z.iso.datetime({ offset: true }).safeParse(v).success) throw new InvalidRequestError(`${name}: must be an RFC 3339 timestamp`);
  return v;
}

/** Redact takes no body; the SDK sends none (or `{}`). */
async function parseOptionalEmptyBody(c: Context): Promise<void> {
  const text = await c.req.text();
  if (!text.trim()) return;
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new InvalidRequestError('body: not valid JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body) || Object.keys(body).length) {
    throw new InvalidRequestError(`body: redact takes no fields (${Object.keys(body as object).join(', ')})`);
  }
}
