/**
 * The Files API (`client.beta.files`): files a tenant uploads, and files a session's agent wrote
 * under `/mnt/session/outputs` (scoped to that session). Metadata in the state table (a head per
 * file, listed per tenant; a copy in the session's partition for a session's files), bytes in the
 * blob store under `files/<tenant>/<file id>` (`storage/blob-keys.ts`).
 *
 * Bounds (each is a limit of the deployed shape, see docs/FILES.md):
 * - a file is at most `MAX_FILE_BYTES` (4 MiB): an upload reaches the API's Lambda as base64 inside
 *   a 6 MB invocation payload (API Gateway itself takes 10 MB), and a download leaves it the same
 *   way, as base64 in a buffered response of at most 6 MB;
 * - a filename is one path component of at most 255 bytes, without control characters;
 * - a MIME type is `type/subtype` (with parameters), at most 255 characters.
 */
import path from 'node:path';
import type { Readable } from 'node:stream';
import { CorralError, InvalidRequestError, NotFoundError } from '../errors.js';
import { ID_PREFIX, newId } from '../ids.js';
import type { StateTable } from '../store.js';
import type { BlobStore } from '../storage/blob-store.js';
import { blobKeys } from '../storage/blob-keys.js';
import { FileHeadRecords, SessionFileRecords, fileExpiryRecords } from '../storage/items.js';
import { tenantPrincipal, type Principal } from '../storage/principal.js';
import { nowIso } from './common.js';
import { collectPage, type ListParams, type ListResult } from './paging.js';

/** Largest file, in bytes (see the module comment for why). */
export const MAX_FILE_BYTES = 4 * 1024 * 1024;
/** Largest filename, in bytes of UTF-8. */
export const MAX_FILENAME_BYTES = 255;
/** `expires_in_seconds`: from one hour to ninety days (as the SDK documents it). */
export const MIN_EXPIRY_SECONDS = 3600;
export const MAX_EXPIRY_SECONDS = 7_776_000;
/** Most expired files whose bytes one sweep deletes (the next sweep takes the rest). */
export const SWEEP_BATCH = 25;
/** Most files of a session deleted with it (more than its catalogue ever holds: 100). */
const MAX_SESSION_FILES_DELETED = 1000;

/** A file's metadata as the API returns it (`BetaFileMetadata`). */
export interface FileMetadata {
  id: string;
  type: 'file';
  filename: string;
  mime_type: string;
  size_bytes: number;
  created_at: string;
  downloadable: boolean;
  expires_at: string | null;
  scope: { type: 'session'; id: string } | null;
}

/** A file store is not configured on this deployment (no blob store). */
export class FilesUnavailableError extends CorralError {
  constructor() {
    super('api_error', 503, 'this deployment has no file storage configured');
  }
}

const TOKEN = "[A-Za-z0-9!#$&^_.+-]+";
const MIME = new RegExp(`^${TOKEN}/${TOKEN}(\\s*;\\s*${TOKEN}=(${TOKEN}|"[^"\\\\\\x00-\\x1f\\x7f]*"))*$`);
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/;

/** Extensions for a file with no name, by MIME type (`unnamed.<ext>`). */
const EXTENSIONS: Record<string, string> = {
  'text/plain': 'txt', 'text/csv': 'csv', 'text/markdown': 'md', 'text/html': 'html', 'application/json': 'json',
  'application/pdf': 'pdf', 'image/png': 'png', 'image/jpeg': 'jpg', 'image/gif': 'gif', 'image/webp': 'webp',
};

/** A MIME type as given (lower-cased), or 400. Empty: `application/octet-stream`. */
export function checkMimeType(given: string | undefined, field = 'file'): string {
  const t = (given ?? '').trim();
  if (!t) return 'application/octet-stream';
  if (t.length > 255 || !MIME.test(t)) throw new InvalidRequestError(`${field}: content type ${JSON.stringify(t.slice(0, 100))} is not a MIME type (type/subtype)`);
  return t.toLowerCase();
}

/**
 * The name a file is stored under: the final path component of what was given (`/` and `\`
 * both separate), or `unnamed` (plus an extension for a known MIME type) when there is none.
 * A name with control characters, longer than 255 bytes, or `.`/`..` is a 400.
 */
export function checkFilename(given: string | undefined, mimeType: string, field = 'file'): string {
  const last = (given ?? '').split(/[/\\]/).pop() ?? '';
  if (!last) {
    const ext = EXTENSIONS[mimeType.split(';')[0].trim()];
    return ext ? `unnamed.${ext}` : 'unnamed';
  }
  if (CONTROL.test(last)) throw new InvalidRequestError(`${field}: filename contains control characters`);
  if (last === '.' || last === '..') throw new InvalidRequestError(`${field}: filename ${JSON.stringify(last)} is not a file name`);
  if (Buffer.byteLength(last, 'utf8') > MAX_FILENAME_BYTES) throw new InvalidRequestError(`${field}: filename is longer than ${MAX_FILENAME_BYTES} bytes`);
  return last;
}

const heads = new FileHeadRecords<FileMetadata>();
const sessionFiles = new SessionFileRecords<FileMetadata>();

/** An output the session's agent wrote, as the sandbox listed it. */
export interface OutputEntry {
  /** Relative to `/mnt/session/outputs`. */
  path: string;
  size: number;
  mtimeMs: number;
}

export class FileService {
  constructor(
    private readonly table: StateTable,
    private readonly blobs: BlobStore | undefined,
  ) {}

  private store(): BlobStore {
    if (!this.blobs) throw new FilesUnavailableError();
    return this.blobs;
  }

  /** Whether this deployment keeps files at all. */
  get available(): boolean {
    return this.blobs !== undefined;
  }

  async upload(
    tenant: string,
    params: { filename?: string; mimeType?: string; bytes: Uint8Array; expiresInSeconds?: number },
    now = new Date(),
  ): Promise<FileMetadata> {
    const store = this.store();
    if (params.bytes.byteLength > MAX_FILE_BYTES) throw new CorralError('request_too_large', 413, `file: larger than ${MAX_FILE_BYTES} bytes`);
    const mimeType = checkMimeType(params.mimeType);
    const filename = checkFilename(params.filename, mimeType);
    const e = params.expiresInSeconds;
    if (e !== undefined && (!Number.isInteger(e) || e < MIN_EXPIRY_SECONDS || e > MAX_EXPIRY_SECONDS)) {
      throw new InvalidRequestError(`expires_in_seconds: must be an integer from ${MIN_EXPIRY_SECONDS} to ${MAX_EXPIRY_SECONDS}`);
    }
    const id = newId(ID_PREFIX.file, now.getTime());
    const file: FileMetadata = {
      id,
      type: 'file',
      filename,
      mime_type: mimeType,
      size_bytes: params.bytes.byteLength,
      created_at: nowIso(now),
      downloadable: true,
      expires_at: e === undefined ? null : nowIso(new Date(now.getTime() + e * 1000)),
      scope: null,
    };
    // The bytes first: a head never names bytes that are not there. The expiry before the head,
    // so bytes of an upload that failed halfway are swept all the same.
    await store.put(blobKeys.file(tenant, id), params.bytes, { contentType: mimeType, size: params.bytes.byteLength });
    if (file.expires_at) await fileExpiryRecords.put(this.table, tenant, id, file.expires_at);
    await heads.put(this.table, tenant, file, {}, { ifNotExists: true });
    return file;
  }

  /** The file, if `who` may read it; 404 otherwise (another tenant's file is as absent as a missing one). */
  async get(who: Principal | string, id: string): Promise<FileMetadata> {
    const principal = typeof who === 'string' ? tenantPrincipal(who) : who;
    const item = await heads.get(this.table, principal, id);
    if (!item) throw new NotFoundError(`file ${id} not found`);
    return item.data;
  }

  /** The bytes of a file the tenant may read: 404 when missing, expired or gone from the store. */
  async download(who: Principal | string, id: string, now = new Date()): Promise<{ file: FileMetadata; body: Readable; size: number }> {
    const store = this.store();
    const principal = typeof who === 'string' ? tenantPrincipal(who) : who;
    const item = await heads.get(this.table, principal, id);
    if (!item) throw new NotFoundError(`file ${id} not found`);
    if (item.data.expires_at && Date.parse(item.data.expires_at) <= now.getTime()) {
      await store.delete(blobKeys.file(item.tenant, id));
      throw new NotFoundError(`file ${id} expired at ${item.data.expires_at}; its bytes are gone`);
    }
    const blob = await store.get(blobKeys.file(item.tenant, id));
    if (!blob) throw new NotFoundError(`file ${id} has no content`);
    return { file: item.data, body: blob.body, size: blob.head.size };
  }

  async delete(tenant: string, id: string): Promise<{ id: string; type: 'file_deleted' }> {
    const item = await heads.get(this.table, tenantPrincipal(tenant), id);
    if (!item) throw new NotFoundError(`file ${id} not found`);
    await this.remove(tenant, id, item.session_id, item.data.expires_at);
    return { id, type: 'file_deleted' };
  }

  /** A file's bytes, head, session copy and expiry; each step idempotent, the bytes first. */
  private async remove(tenant: string, id: string, sessionId: string | undefined, expiresAt: string | null): Promise<void> {
    await this.store().delete(blobKeys.file(tenant, id));
    await heads.delete(this.table, id);
    if (expiresAt) await fileExpiryRecords.delete(this.table, id, expiresAt);
    // Last: while it is there, a retry (of a session's deletion) still finds the file.
    if (sessionId) await sessionFiles.delete(this.table, sessionId, id);
  }

  /**
   * Delete the files scoped to a session (its outputs), metadata and bytes, when the session is
   * deleted. Idempotent (what a failed run left is found again by the next), and bounded: at most
   * `MAX_SESSION_FILES_DELETED`, far more than a session's catalogue holds. Returns how many.
   */
  async deleteSessionFiles(tenant: string, sessionId: string): Promise<number> {
    if (!this.blobs) return 0; // no file storage: no session ever had files
    let n = 0;
    while (n < MAX_SESSION_FILES_DELETED) {
      const page = await sessionFiles.page(this.table, tenantPrincipal(tenant), sessionId, { limit: 100 });
      if (!page.items.length) break;
      for (const i of page.items) await this.remove(tenant, i.data.id, sessionId, i.data.expires_at);
      n += page.items.length;
    }
    return n;
  }

  /**
   * Delete the bytes of files past their `expires_at` (their metadata stays, and their download
   * is a 404), at most `limit` in one run, soonest expired first; the next run takes the rest.
   * Run by the local runtime on a timer and after a listing of files (`list`). Returns how many.
   */
  async sweepExpired(now = new Date(), limit = SWEEP_BATCH): Promise<number> {
    if (!this.blobs) return 0;
    const due = await fileExpiryRecords.due(this.table, nowIso(now), limit);
    for (const f of due) {
      await this.blobs.delete(blobKeys.file(f.tenant, f.fileId));
      await fileExpiryRecords.delete(this.table, f.fileId, f.expiresAt);
    }
    return due.length;
  }

  /**
   * A page of the tenant's files (oldest first), or of the files scoped to session `scope_id`,
   * or (`ids`) exactly those of the listed files the tenant may see, as one page.
   */
  async list(tenant: string, params: ListParams & { scope_id?: string; ids?: string[] }): Promise<ListResult<FileMetadata>> {
    const who = tenantPrincipal(tenant);
    // Housekeeping where a deployment has no timer of its own for it (the API on AWS): bounded,
    // and never a reason for the listing to fail.
    await this.sweepExpired().catch(() => 0);
    if (params.ids?.length) {
      if (params.page !== undefined || params.limit !== undefined) throw new InvalidRequestError('ids: cannot be combined with page or limit');
      const ids = [...new Set(params.ids)];
      if (ids.length > 100) throw new InvalidRequestError('ids: at most 100');
      const found = await Promise.all(ids.map((id) => heads.get(this.table, who, id)));
      const data = found.filter((i) => i !== undefined).map((i) => i!.data);
      return { data: data.filter((f) => !params.scope_id || f.scope?.id === params.scope_id), next_page: null };
    }
    if (params.scope_id) {
      const scope = params.scope_id;
      return collectPage((q) => sessionFiles.page(this.table, who, scope, q), params, (i) => i.sk, () => true, (i) => i.data);
    }
    return collectPage((q) => heads.page(this.table, tenant, q), params, (i) => i.gsi1sk, () => true, (i) => i.data);
  }

  /**
   * Of `ids` (at most 100), those the tenant still has and that have not expired: the sandbox
   * manager takes the others out of its sandboxes. One batched read.
   */
  async present(tenant: string, ids: readonly string[], now = new Date()): Promise<Set<string>> {
    const items = await heads.getMany(this.table, tenantPrincipal(tenant), ids);
    return new Set(
      items.filter((i) => i !== undefined && !(i.data.expires_at && Date.parse(i.data.expires_at) <= now.getTime())).map((i) => i!.data.id),
    );
  }

  /** A file's bytes for the sandbox manager (mounting a `file` resource), or null when it is gone. */
  async readBytes(tenant: string, id: string): Promise<Uint8Array | null> {
    try {
      const { body } = await this.download(tenant, id);
      const chunks: Buffer[] = [];
      for await (const c of body) chunks.push(c as Buffer);
      return Buffer.concat(chunks);
    } catch (err) {
      if (err instanceof NotFoundError) return null;
      throw err;
    }
  }

  // --- the session's outputs (the sandbox manager's catalogue, `sandbox/session-files.ts`) ------

  /** The outputs catalogued for a session of `tenant` so far, by path. */
  async outputs(tenant: string, sessionId: string): Promise<Map<string, { fileId: string; size: number; mtimeMs: number }>> {
    const items = await sessionFiles.all(this.table, tenantPrincipal(tenant), sessionId);
    return new Map(items.map((i) => [i.output_path, { fileId: i.data.id, size: i.data.size_bytes, mtimeMs: i.output_mtime_ms }]));
  }

  /**
   * Catalogue (or update) one output of a session: its bytes under the file id it already has
   * (a path keeps its id as its content changes), or under a new one.
   */
  async putOutput(
    tenant: string,
    sessionId: string,
    entry: OutputEntry,
    bytes: Uint8Array,
    existingId: string | undefined,
    now = new Date(),
  ): Promise<FileMetadata> {
    const store = this.store();
    const filename = entry.path;
    const ext = path.posix.extname(filename).slice(1).toLowerCase();
    const mimeType = Object.entries(EXTENSIONS).find(([, e]) => e === ext)?.[0] ?? (ext === 'txt' || ext === 'log' ? 'text/plain' : 'application/octet-stream');
    const id = existingId ?? newId(ID_PREFIX.file, now.getTime());
    const file: FileMetadata = {
      id,
      type: 'file',
      filename,
      mime_type: mimeType,
      size_bytes: bytes.byteLength,
      created_at: nowIso(now),
      downloadable: true,
      expires_at: null,
      scope: { type: 'session', id: sessionId },
    };
    await store.put(blobKeys.file(tenant, id), bytes, { contentType: mimeType, size: bytes.byteLength });
    await heads.put(this.table, tenant, file, { session_id: sessionId, output_path: entry.path, output_mtime_ms: entry.mtimeMs });
    await sessionFiles.put(this.table, tenant, sessionId, file, { output_path: entry.path, output_mtime_ms: entry.mtimeMs });
    return file;
  }
}
