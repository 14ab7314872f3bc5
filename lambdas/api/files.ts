import { Readable } from 'node:stream';
import { Hono, type Context } from 'hono';
import { InvalidRequestError } from '../core/errors.js';
import { MAX_FILE_BYTES } from '../core/resources/files.js';
import type { CorralServices } from '../core/services.js';
import { pathId, queryInt, queryList, queryPage, type Env } from './http.js';
import { ID_PATTERN, ID_RULE } from '../core/api/schemas.js';

/**
 * `/v1/files` (`client.beta.files`): upload (multipart/form-data, one `file` part of at most
 * `MAX_FILE_BYTES`, and `expires_in_seconds`), list (`scope_id`, `ids`), metadata, content, delete.
 * The SDK sends these with `anthropic-beta: files-api-2025-04-14` when asked to; any beta header
 * is accepted, as on every route. Filenames and content types are checked here, before anything
 * is stored (`core/resources/files.ts`).
 */

/** Largest upload request: the file and the multipart framing around it. */
export const MAX_UPLOAD_BODY_BYTES = MAX_FILE_BYTES + 64 * 1024;

/** Form fields of an upload; any other is a 400 naming it. */
const UPLOAD_FIELDS = new Set(['file', 'expires_in_seconds']);

function noWorkspace(c: Context) {
  if (c.req.header('anthropic-workspace-id') !== undefined) {
    throw new InvalidRequestError('anthropic-workspace-id: Corral has no workspaces; leave workspace_id out');
  }
}

async function parseUpload(c: Context): Promise<{ file: File; expiresInSeconds?: number }> {
  const type = c.req.header('content-type') ?? '';
  if (!/^multipart\/form-data\s*;/i.test(type)) throw new InvalidRequestError('body: an upload is multipart/form-data with a `file` part');
  let form: FormData;
  try {
    form = await c.req.raw.formData();
  } catch {
    throw new InvalidRequestError('body: not a valid multipart/form-data body');
  }
  const names = [...new Set([...form.keys()])];
  const unknown = names.filter((n) => !UPLOAD_FIELDS.has(n));
  if (unknown.length) throw new InvalidRequestError(`${unknown.map((n) => JSON.stringify(n.slice(0, 64))).join(', ')}: unknown form field${unknown.length > 1 ? 's' : ''}`);
  const files = form.getAll('file');
  if (files.length !== 1 || typeof files[0] === 'string') throw new InvalidRequestError('file: exactly one file part is required');
  const expires = form.getAll('expires_in_seconds');
  if (expires.length > 1 || (expires.length === 1 && (typeof expires[0] !== 'string' || !/^[0-9]{1,10}$/.test(expires[0])))) {
    throw new InvalidRequestError('expires_in_seconds: must be one integer');
  }
  return { file: files[0] as File, ...(expires.length ? { expiresInSeconds: Number(expires[0]) } : {}) };
}

/** `Content-Disposition` for a download: an ASCII fallback and the UTF-8 name (RFC 6266). */
function disposition(filename: string): string {
  const ascii = filename.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(filename)}`;
}

export function fileRoutes(s: CorralServices) {
  const app = new Hono<Env>();
  app.use('*', async (c, next) => {
    noWorkspace(c);
    await next();
  });
  app.post('/', async (c) => {
    const { file, expiresInSeconds } = await parseUpload(c);
    const bytes = new Uint8Array(await file.arrayBuffer());
    return c.json(await s.files.upload(c.get('tenant'), { filename: file.name, mimeType: file.type, bytes, expiresInSeconds }));
  });
  app.get('/', async (c) => {
    const scope = c.req.query('scope_id');
    if (scope !== undefined && !ID_PATTERN.test(scope)) throw new InvalidRequestError(`scope_id: ${ID_RULE}`);
    const ids = queryList(c, 'ids');
    for (const id of ids) if (!ID_PATTERN.test(id)) throw new InvalidRequestError(`ids: ${ID_RULE}`);
    return c.json(
      await s.files.list(c.get('tenant'), {
        limit: queryInt(c, 'limit'),
        page: queryPage(c),
        ...(scope ? { scope_id: scope } : {}),
        ...(ids.length ? { ids } : {}),
      }),
    );
  });
  app.get('/:id', async (c) => c.json(await s.files.get(c.get('tenant'), pathId(c, 'id'))));
  app.get('/:id/content', async (c) => {
    const { file, body, size } = await s.files.download(c.get('tenant'), pathId(c, 'id'));
    return c.body(Readable.toWeb(body) as ReadableStream, 200, {
      'content-type': file.mime_type,
      'content-length': String(size),
      'content-disposition': disposition(file.filename),
      'x-content-type-options': 'nosniff',
    });
  });
  app.delete('/:id', async (c) => c.json(await s.files.delete(c.get('tenant'), pathId(c, 'id'))));
  return app;
}
