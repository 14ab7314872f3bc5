/**
 * Memory stores (`client.beta.memoryStores`): named containers of text memories, each addressed by
 * a path, every change kept as an immutable memory version until it is redacted.
 *
 * Storage: the state table, one partition per store (`memoryKeys`): the store's head (in the
 * tenant's index), each memory (`mem#`), each memory's path (`path#`, which makes paths unique
 * and orders listings, and carries the content's hash and size so a sandbox sync reads no
 * content it already has), each version (`ver#`) and a memory count. Contents are at most
 * 100 KB, so they live inline in their items (well under DynamoDB's 400 KB), never in the blob
 * store. The table has no transactions (dynalite neither), so each write is ordered so that a
 * crash between its items leaves nothing a read shows wrong: the version first, then the memory,
 * then its path; a path whose memory is missing is free.
 *
 * Redaction overwrites the version's item without its content, path, hash and size: the text is
 * gone from the table (not hidden), from every read of the API and from every sandbox that mounts
 * the store afterwards. The current version of a live memory cannot be redacted (409): update or
 * delete the memory first, so that no read of the memory itself can still show the text.
 */
import { createHash } from 'node:crypto';
import { ConflictError, CorralError, InvalidRequestError, NotFoundError } from '../errors.js';
import { newId } from '../ids.js';
import { assertRecordFits, nowIso, patchMetadata } from '../resources/common.js';
import { clampLimit, collectPage, decodeCursor, encodeCursor, type ListResult } from '../resources/paging.js';
import type { Item, StateTable } from '../store.js';
import { HEAD_SK, MEMORY_PATH_PREFIX, MEMORY_VERSION_PREFIX, memoryKeys } from '../storage/keys.js';
import { MAX_MEMORIES_PER_STORE, MAX_MEMORY_BYTES, memoryPathProblem, pathPrefixProblem, pathsOverlap } from './paths.js';

export const MEMORY_STORE_ID_PREFIX = 'memstore';
export const MEMORY_ID_PREFIX = 'mem';
export const MEMORY_VERSION_ID_PREFIX = 'memver';

export interface MemoryStore {
  id: string;
  type: 'memory_store';
  name: string;
  description: string;
  metadata: Record<string, string>;
  created_at: string;
  updated_at: string;
  archived_at: string | null;
}

export interface Memory {
  id: string;
  type: 'memory';
  memory_store_id: string;
  path: string;
  content: string | null;
  content_sha256: string;
  content_size_bytes: number;
  memory_version_id: string;
  created_at: string;
  updated_at: string;
}

/** Who made a change: the API (Corral does not record which key) or a session's agent. */
export type MemoryActor = { type: 'session_actor'; session_id: string } | null;

export interface MemoryVersion {
  id: string;
  type: 'memory_version';
  memory_id: string;
  memory_store_id: string;
  operation: 'created' | 'modified' | 'deleted';
  path: string | null;
  content: string | null;
  content_sha256: string | null;
  content_size_bytes: number | null;
  created_at: string;
  created_by: MemoryActor;
  redacted_at: string | null;
  redacted_by: MemoryActor;
}

export type View = 'basic' | 'full';

/** 409 in the shape the SDK declares for a path taken or overlapping another memory's. */
export class MemoryPathConflictError extends CorralError {
  constructor(
    readonly conflictingPath: string,
    readonly conflictingMemoryId: string,
  ) {
    super('invalid_request_error', 409, `path ${conflictingPath} is used by memory ${conflictingMemoryId || '(unknown)'} or overlaps its path`);
    this.name = 'MemoryPathConflictError';
  }
}

/** 409 when a `content_sha256` precondition does not hold. */
export class MemoryPreconditionFailedError extends CorralError {
  constructor(message: string) {
    super('invalid_request_error', 409, message);
    this.name = 'MemoryPreconditionFailedError';
  }
}

/** Sorts after every character (in UTF-8, as DynamoDB compares keys): a key past a whole directory. */
const PAST = String.fromCodePoint(0x10ffff);

export const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

interface PathItem extends Item {
  memory_id: string;
  sha: string;
  size: number;
}

/** One memory as a sandbox sync sees it: no content. */
export interface MemoryEntry {
  id: string;
  path: string;
  sha: string;
  size: number;
}

export interface MemoryCreate {
  path: string;
  content: string | null;
}
export interface MemoryUpdate {
  path?: string | null;
  content?: string | null;
  precondition?: { type: 'content_sha256'; content_sha256?: string };
}

export class MemoryStoreService {
  constructor(private readonly table: StateTable) {}

  // --- stores ------------------------------------------------------------------------------------

  async create(tenant: string, params: { name: string; description?: string; metadata?: Record<string, string> }, now = new Date()): Promise<MemoryStore> {
    const store: MemoryStore = {
      id: newId(MEMORY_STORE_ID_PREFIX, now.getTime()),
      type: 'memory_store',
      name: params.name,
      description: params.description ?? '',
      metadata: params.metadata ?? {},
      created_at: nowIso(now),
      updated_at: nowIso(now),
      archived_at: null,
    };
    assertRecordFits('memory store', store);
    await this.putHead(tenant, store, true);
    return store;
  }

  private putHead(tenant: string, store: MemoryStore, fresh = false) {
    return this.table.put(
      { ...memoryKeys.head(store.id), tenant, data: store, gsi1pk: memoryKeys.tenantIndex(tenant), gsi1sk: store.id },
      fresh ? { ifNotExists: true } : undefined,
    );
  }

  /** The store, if it is the tenant's (another tenant's is not found, as a missing one). */
  async get(tenant: string, id: string): Promise<MemoryStore> {
    const k = memoryKeys.head(id);
    const item = await this.table.get(k.pk, k.sk);
    if (!item || item.tenant !== tenant) throw new NotFoundError(`memory store ${id} not found`);
    return item.data as MemoryStore;
  }

  async update(
    tenant: string,
    id: string,
    params: { name?: string | null; description?: string | null; metadata?: Record<string, string | null> | null },
    now = new Date(),
  ): Promise<MemoryStore> {
    const current = await this.get(tenant, id);
    if (current.archived_at) throw new InvalidRequestError(`memory store ${id} is archived`);
    const metadata = patchMetadata(current.metadata, params.metadata);
    if (Object.keys(metadata).length > 16) throw new InvalidRequestError('metadata: a memory store has at most 16 pairs');
    const next: MemoryStore = {
      ...current,
      name: params.name ?? current.name,
      description: params.description ?? current.description,
      metadata,
      updated_at: nowIso(now),
    };
    assertRecordFits('memory store', next);
    await this.putHead(tenant, next);
    return next;
  }

  async archive(tenant: string, id: string, now = new Date()): Promise<MemoryStore> {
    const current = await this.get(tenant, id);
    if (current.archived_at) return current;
    const next = { ...current, archived_at: nowIso(now), updated_at: nowIso(now) };
    await this.putHead(tenant, next);
    return next;
  }

  /** The store and everything in it: memories, paths, versions (their contents with them). */
  async delete(tenant: string, id: string): Promise<{ id: string; type: 'memory_store_deleted' }> {
    await this.get(tenant, id);
    const pk = memoryKeys.partition(id);
    // Children first, the head last: a crash leaves a store that can be deleted again.
    for (;;) {
      const page = await this.table.query(pk, { limit: 100 });
      const children = page.items.filter((i) => i.sk !== HEAD_SK);
      for (const item of children) await this.table.delete(item.pk, item.sk);
      if (page.last === null || page.items.length === 0 || children.length === 0) break;
    }
    await this.table.delete(pk, HEAD_SK);
    return { id, type: 'memory_store_deleted' };
  }

  async list(
    tenant: string,
    params: { limit?: number; page?: string; include_archived?: boolean; created_gte?: string; created_lte?: string },
  ): Promise<ListResult<MemoryStore>> {
    const gte = params.created_gte ? Date.parse(params.created_gte) : -Infinity;
    const lte = params.created_lte ? Date.parse(params.created_lte) : Infinity;
    return collectPage(
      (q) => this.table.queryIndex(memoryKeys.tenantIndex(tenant), q),
      params,
      (item) => String(item.gsi1sk),
      (item) => {
        const s = item.data as MemoryStore;
        const at = Date.parse(s.created_at);
        return item.tenant === tenant && (params.include_archived === true || !s.archived_at) && at >= gte && at <= lte;
      },
      (item) => item.data as MemoryStore,
    );
  }

  // --- memories ----------------------------------------------------------------------------------

  private async writable(tenant: string, storeId: string): Promise<MemoryStore> {
    const store = await this.get(tenant, storeId);
    if (store.archived_at) throw new InvalidRequestError(`memory store ${storeId} is archived: its memories cannot be created or changed`);
    return store;
  }

  private async memoryItem(storeId: string, memoryId: string): Promise<Memory | undefined> {
    const k = memoryKeys.memory(storeId, memoryId);
    return (await this.table.get(k.pk, k.sk))?.data as Memory | undefined;
  }

  /** The memory at `path`, if there is one (a path whose memory is gone is free). */
  private async atPath(storeId: string, path: string): Promise<PathItem | undefined> {
    const k = memoryKeys.path(storeId, path);
    const item = (await this.table.get(k.pk, k.sk)) as PathItem | undefined;
    if (!item) return undefined;
    return (await this.memoryItem(storeId, item.memory_id)) ? item : undefined;
  }

  /** 409 when `path` is taken by or overlaps another memory's path (`except`: the memory being renamed). */
  private async assertPathFree(storeId: string, path: string, except?: string): Promise<void> {
    const segments = path.slice(1).split('/');
    for (let n = 1; n <= segments.length; n++) {
      const p = `/${segments.slice(0, n).join('/')}`;
      const hit = await this.atPath(storeId, p);
      if (hit && hit.memory_id !== except) throw new MemoryPathConflictError(p, hit.memory_id);
    }
    const below = await this.table.query(memoryKeys.partition(storeId), { prefix: `${MEMORY_PATH_PREFIX}${path}/`, limit: 5 });
    for (const item of below.items as PathItem[]) {
      if (item.memory_id !== except && (await this.memoryItem(storeId, item.memory_id))) {
        throw new MemoryPathConflictError(item.sk.slice(MEMORY_PATH_PREFIX.length), item.memory_id);
      }
    }
  }

  private checkPath(field: string, path: string) {
    const problem = memoryPathProblem(path);
    if (problem) throw new InvalidRequestError(`${field}: ${problem}`);
  }

  private checkContent(field: string, content: string) {
    if (Buffer.byteLength(content, 'utf8') > MAX_MEMORY_BYTES) throw new InvalidRequestError(`${field}: must be at most ${MAX_MEMORY_BYTES} bytes of UTF-8`);
  }

  private async putVersion(
    storeId: string,
    memoryId: string,
    op: MemoryVersion['operation'],
    state: { path: string; content: string } | null,
    actor: MemoryActor,
    now: Date,
  ): Promise<MemoryVersion> {
    const version: MemoryVersion = {
      id: newId(MEMORY_VERSION_ID_PREFIX, now.getTime()),
      type: 'memory_version',
      memory_id: memoryId,
      memory_store_id: storeId,
      operation: op,
      // A deleted version keeps the path it was deleted at; its content is null.
      path: state?.path ?? null,
      content: op === 'deleted' ? null : (state?.content ?? null),
      content_sha256: op === 'deleted' || !state ? null : sha256(state.content),
      content_size_bytes: op === 'deleted' || !state ? null : Buffer.byteLength(state.content, 'utf8'),
      created_at: nowIso(now),
      created_by: actor,
      redacted_at: null,
      redacted_by: null,
    };
    const k = memoryKeys.version(storeId, version.id);
    await this.table.put({ ...k, memory_id: memoryId, session_id: actor?.session_id ?? null, data: version }, { ifNotExists: true });
    return version;
  }

  private async putMemory(storeId: string, memory: Memory): Promise<void> {
    const k = memoryKeys.memory(storeId, memory.id);
    await this.table.put({ ...k, data: { ...memory, content: memory.content ?? '' } });
    const p = memoryKeys.path(storeId, memory.path);
    await this.table.put({ ...p, memory_id: memory.id, sha: memory.content_sha256, size: memory.content_size_bytes });
  }

  async createMemory(tenant: string, storeId: string, params: MemoryCreate, view: View = 'basic', actor: MemoryActor = null, now = new Date()): Promise<Memory> {
    await this.writable(tenant, storeId);
    this.checkPath('path', params.path);
    const content = params.content ?? '';
    this.checkContent('content', content);
    await this.assertPathFree(storeId, params.path);
    const count = memoryKeys.count(storeId);
    const current = Number((await this.table.get(count.pk, count.sk))?.n ?? 0);
    if (current >= MAX_MEMORIES_PER_STORE) throw new InvalidRequestError(`memory store ${storeId} already holds ${MAX_MEMORIES_PER_STORE} memories, the most a store may hold`);
    const id = newId(MEMORY_ID_PREFIX, now.getTime());
    // The path is claimed first, conditionally: of two creates at one path only one wins.
    const p = memoryKeys.path(storeId, params.path);
    const stale = await this.table.get(p.pk, p.sk);
    try {
      await this.table.put(
        { ...p, memory_id: id, sha: sha256(content), size: Buffer.byteLength(content, 'utf8') },
        stale ? { ifEquals: { memory_id: stale.memory_id } } : { ifNotExists: true },
      );
    } catch {
      const hit = await this.atPath(storeId, params.path);
      throw new MemoryPathConflictError(params.path, hit?.memory_id ?? '');
    }
    const version = await this.putVersion(storeId, id, 'created', { path: params.path, content }, actor, now);
    const memory: Memory = {
      id,
      type: 'memory',
      memory_store_id: storeId,
      path: params.path,
      content,
      content_sha256: sha256(content),
      content_size_bytes: Buffer.byteLength(content, 'utf8'),
      memory_version_id: version.id,
      created_at: nowIso(now),
      updated_at: nowIso(now),
    };
    await this.putMemory(storeId, memory);
    await this.table.increment(count.pk, count.sk, 'n', 1);
    return shown(memory, view);
  }

  async getMemory(tenant: string, storeId: string, memoryId: string, view: View = 'full'): Promise<Memory> {
    await this.get(tenant, storeId);
    const memory = await this.memoryItem(storeId, memoryId);
    if (!memory) throw new NotFoundError(`memory ${memoryId} not found in memory store ${storeId}`);
    return shown(memory, view);
  }

  async updateMemory(tenant: string, storeId: string, memoryId: string, params: MemoryUpdate, view: View = 'basic', actor: MemoryActor = null, now = new Date()): Promise<Memory> {
    await this.writable(tenant, storeId);
    const current = await this.memoryItem(storeId, memoryId);
    if (!current) throw new NotFoundError(`memory ${memoryId} not found in memory store ${storeId}`);
    const path = params.path ?? current.path;
    const content = params.content ?? current.content ?? '';
    if (params.path != null) this.checkPath('path', params.path);
    if (params.content != null) this.checkContent('content', params.content);
    const unchanged = path === current.path && content === current.content;
    if (params.precondition?.type === 'content_sha256' && params.precondition.content_sha256 !== undefined) {
      if (params.precondition.content_sha256 !== current.content_sha256 && !unchanged) {
        throw new MemoryPreconditionFailedError(`memory ${memoryId} no longer has content_sha256 ${params.precondition.content_sha256}; retrieve it and retry`);
      }
    }
    if (unchanged) return shown(current, view); // no change, no version
    if (path !== current.path) await this.assertPathFree(storeId, path, memoryId);
    const version = await this.putVersion(storeId, memoryId, 'modified', { path, content }, actor, now);
    const next: Memory = {
      ...current,
      path,
      content,
      content_sha256: sha256(content),
      content_size_bytes: Buffer.byteLength(content, 'utf8'),
      memory_version_id: version.id,
      updated_at: nowIso(now),
    };
    await this.putMemory(storeId, next);
    if (path !== current.path) {
      const old = memoryKeys.path(storeId, current.path);
      await this.table.delete(old.pk, old.sk);
    }
    return shown(next, view);
  }

  async deleteMemory(tenant: string, storeId: string, memoryId: string, expectedSha?: string, actor: MemoryActor = null, now = new Date()): Promise<{ id: string; type: 'memory_deleted' }> {
    await this.get(tenant, storeId);
    const current = await this.memoryItem(storeId, memoryId);
    if (!current) throw new NotFoundError(`memory ${memoryId} not found in memory store ${storeId}`);
    if (expectedSha !== undefined && expectedSha !== current.content_sha256) {
      throw new MemoryPreconditionFailedError(`memory ${memoryId} no longer has content_sha256 ${expectedSha}; nothing was deleted`);
    }
    await this.putVersion(storeId, memoryId, 'deleted', { path: current.path, content: '' }, actor, now);
    const k = memoryKeys.memory(storeId, memoryId);
    await this.table.delete(k.pk, k.sk);
    const p = memoryKeys.path(storeId, current.path);
    await this.table.delete(p.pk, p.sk);
    const count = memoryKeys.count(storeId);
    await this.table.increment(count.pk, count.sk, 'n', -1);
    return { id: memoryId, type: 'memory_deleted' };
  }

  /**
   * The store's memories in path order under `path_prefix`; with `depth`, the memories more than
   * `depth` segments below it are rolled up into one `memory_prefix` item per directory.
   */
  async listMemories(
    tenant: string,
    storeId: string,
    params: { limit?: number; page?: string; path_prefix?: string; depth?: number; view?: View },
  ): Promise<ListResult<Memory | { type: 'memory_prefix'; path: string }>> {
    await this.get(tenant, storeId);
    const view = params.view ?? 'basic';
    const limit = clampLimit(params.limit, 20, view === 'full' ? 20 : 100);
    const prefix = params.path_prefix ?? '/';
    const problem = pathPrefixProblem(prefix);
    if (problem) throw new InvalidRequestError(`path_prefix: ${problem}`);
    const depth = params.depth ?? 0;
    const data: Array<Memory | { type: 'memory_prefix'; path: string }> = [];
    let after = decodeCursor(params.page);
    let cursor: string | null = null;
    const pk = memoryKeys.partition(storeId);
    outer: for (;;) {
      const page = await this.table.query(pk, { prefix: `${MEMORY_PATH_PREFIX}${prefix}`, ...(after ? { after } : {}), limit: 100 });
      for (const item of page.items as PathItem[]) {
        const path = item.sk.slice(MEMORY_PATH_PREFIX.length);
        const below = path.slice(prefix.length).split('/');
        if (depth > 0 && below.length > depth) {
          const dir = `${prefix}${below.slice(0, depth).join('/')}/`;
          data.push({ type: 'memory_prefix', path: dir });
          // Past every path of this directory: they are all in its marker.
          after = `${MEMORY_PATH_PREFIX}${dir}${PAST}`;
        } else {
          const memory = await this.memoryItem(storeId, item.memory_id);
          after = item.sk;
          if (!memory || memory.path !== path) continue; // a path left by a crash
          data.push(shown(memory, view));
        }
        if (data.length >= limit) {
          cursor = after;
          break outer;
        }
        if (depth > 0 && after.endsWith(PAST)) continue outer; // re-query past the directory
      }
      if (page.last === null) break;
      after = page.last;
    }
    return { data, next_page: cursor === null ? null : encodeCursor(cursor) };
  }

  /** Every memory of the store as paths and hashes (a sandbox sync; no content read). */
  async entries(tenant: string, storeId: string): Promise<MemoryEntry[]> {
    await this.get(tenant, storeId);
    const out: MemoryEntry[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.table.query(memoryKeys.partition(storeId), { prefix: MEMORY_PATH_PREFIX, ...(after ? { after } : {}), limit: 500 });
      for (const item of page.items as PathItem[]) {
        out.push({ id: item.memory_id, path: item.sk.slice(MEMORY_PATH_PREFIX.length), sha: item.sha, size: item.size });
      }
      if (page.last === null || page.items.length === 0) break;
      after = page.last;
    }
    return out;
  }

  // --- versions ----------------------------------------------------------------------------------

  async getVersion(tenant: string, storeId: string, versionId: string, view: View = 'full'): Promise<MemoryVersion> {
    await this.get(tenant, storeId);
    const k = memoryKeys.version(storeId, versionId);
    const item = await this.table.get(k.pk, k.sk);
    if (!item) throw new NotFoundError(`memory version ${versionId} not found in memory store ${storeId}`);
    return shownVersion(item.data as MemoryVersion, view);
  }

  async listVersions(
    tenant: string,
    storeId: string,
    params: {
      limit?: number;
      page?: string;
      memory_id?: string;
      session_id?: string;
      operation?: MemoryVersion['operation'];
      created_gte?: string;
      created_lte?: string;
      view?: View;
    },
  ): Promise<ListResult<MemoryVersion>> {
    await this.get(tenant, storeId);
    const view = params.view ?? 'basic';
    const limit = clampLimit(params.limit, 20, view === 'full' ? 20 : 100);
    const gte = params.created_gte ? Date.parse(params.created_gte) : -Infinity;
    const lte = params.created_lte ? Date.parse(params.created_lte) : Infinity;
    // Newest first, as an audit log reads.
    return collectPage(
      (q) => this.table.query(memoryKeys.partition(storeId), { ...q, prefix: MEMORY_VERSION_PREFIX, reverse: true }),
      { limit, page: params.page },
      (item) => item.sk,
      (item) => {
        const v = item.data as MemoryVersion;
        const at = Date.parse(v.created_at);
        return (
          (!params.memory_id || v.memory_id === params.memory_id) &&
          (!params.session_id || v.created_by?.session_id === params.session_id) &&
          (!params.operation || v.operation === params.operation) &&
          at >= gte &&
          at <= lte
        );
      },
      (item) => shownVersion(item.data as MemoryVersion, view),
    );
  }

  /** Remove a version's content, path, hash and size from the table for good. */
  async redactVersion(tenant: string, storeId: string, versionId: string, now = new Date()): Promise<MemoryVersion> {
    await this.get(tenant, storeId);
    const k = memoryKeys.version(storeId, versionId);
    const item = await this.table.get(k.pk, k.sk);
    if (!item) throw new NotFoundError(`memory version ${versionId} not found in memory store ${storeId}`);
    const version = item.data as MemoryVersion;
    if (version.redacted_at) return shownVersion(version, 'full');
    const live = await this.memoryItem(storeId, version.memory_id);
    if (live?.memory_version_id === versionId) {
      throw new ConflictError(`memory version ${versionId} holds the current content of memory ${version.memory_id}: update or delete the memory first, then redact this version`);
    }
    const redacted: MemoryVersion = {
      ...version,
      content: null,
      path: null,
      content_sha256: null,
      content_size_bytes: null,
      redacted_at: nowIso(now),
      redacted_by: null,
    };
    // A put replaces the whole item: nothing of the old content stays in it.
    await this.table.put({ ...k, memory_id: version.memory_id, session_id: item.session_id ?? null, data: redacted });
    return redacted;
  }
}

function shown(memory: Memory, view: View): Memory {
  return { ...memory, content: view === 'full' ? (memory.content ?? '') : null };
}

function shownVersion(version: MemoryVersion, view: View): MemoryVersion {
  return view === 'full' ? version : { ...version, content: null };
}
