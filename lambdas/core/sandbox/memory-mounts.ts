/**
 * The session's memory stores in its sandboxes, kept by the sandbox manager through the agent's
 * API (`/memory/*`, sandbox/agent/memory-mounts.ts). The sandbox never reaches a store: the core
 * reads and writes the state table, the agent only files under `/mnt/memory/<slug>/`.
 *
 * Around every tool call, for each `memory_store` resource of the session:
 * 1. **Out** (read-write stores): the agent lists the store's files as the tools' user with their
 *    SHA-256; every file whose hash differs from what the sandbox's record says it was handed is
 *    read and written to the store as a new memory version by a `session_actor` (created or
 *    modified), and every file that disappeared is deleted from the store. A path or a content
 *    the store refuses (`..`, control characters, more than 100 KB…) is not kept: the model is
 *    told. This runs *before* the call too, so a write the previous call made and a crash kept
 *    from being recorded is recorded now, never overwritten by step 2.
 * 2. **In**: the store's paths and hashes (no content) are compared with the record; a memory
 *    that is new or changed in the store (another session, the API) is written into the sandbox,
 *    one that is gone (deleted, or redacted and rewritten) is removed.
 * 3. After a writing call (bash, write, edit), step 1 again, before the tool's result is
 *    returned: the result the model sees, hence the `agent.tool_result` in the log, is never
 *    ahead of the store. A crash between the call and step 3 is caught by step 1 of the retried
 *    call (the agent's idempotency cache answers the retry, the files are still there).
 *
 * What the record holds per mount is what the sandbox and the store agreed on at the last sync,
 * so a write is sent once, and a repeated sync (a retried step) writes nothing twice: a memory
 * update that changes nothing adds no version.
 */
import { MemoryPathConflictError, sha256, type MemoryStoreService } from '../memory/store.js';
import { MAX_MEMORY_BYTES, memoryPathProblem } from '../memory/paths.js';
import { CorralError } from '../errors.js';
import { callAgent, type RawResponse } from './client.js';
import { SandboxUnavailableError, type SandboxEndpoint } from './types.js';
import type { PlannedMemoryStore } from '../memory/planned.js';

/** The agent's `/memory/*` calls. Failures to reach it are `SandboxUnavailableError`. */
class SandboxMemoryClient {
  constructor(readonly endpoint: SandboxEndpoint) {}

  private call(method: string, path: string, body?: Buffer): Promise<RawResponse> {
    return callAgent(this.endpoint, method, path, body);
  }

  root(root: string, access: string) {
    return this.call('POST', `/memory/root?path=${encodeURIComponent(root)}&access=${access}`);
  }
  put(file: string, access: string, content: string) {
    return this.call('PUT', `/memory/file?path=${encodeURIComponent(file)}&access=${access}`, Buffer.from(content, 'utf8'));
  }
  remove(file: string, access: string) {
    return this.call('DELETE', `/memory/file?path=${encodeURIComponent(file)}&access=${access}`);
  }
  async read(file: string): Promise<Buffer> {
    return (await this.call('GET', `/memory/file?path=${encodeURIComponent(file)}`)).bytes;
  }
  async list(root: string): Promise<{ files: Array<{ path: string; sha256: string }>; too_large: string[] }> {
    const body = JSON.parse((await this.call('GET', `/memory/list?path=${encodeURIComponent(root)}`)).body) as {
      files?: Array<{ path?: unknown; sha256?: unknown }>;
      too_large?: unknown[];
    };
    return {
      files: (body.files ?? []).filter((f) => typeof f.path === 'string' && typeof f.sha256 === 'string').map((f) => ({ path: f.path as string, sha256: f.sha256 as string })),
      too_large: (body.too_large ?? []).filter((p): p is string => typeof p === 'string'),
    };
  }
}

export type MemoryHeld = Record<string, Record<string, string>>;

/**
 * Record what the agent wrote in the session's read-write stores as memory versions. Returns the
 * new `held` map and notes for the model. Throws `SandboxUnavailableError` when the sandbox
 * cannot be reached.
 */
export async function collectMemoryWrites(
  endpoint: SandboxEndpoint,
  stores: MemoryStoreService,
  tenant: string,
  sessionId: string,
  planned: readonly PlannedMemoryStore[],
  held: MemoryHeld,
): Promise<{ held: MemoryHeld; notes: string[]; changed: boolean }> {
  const client = new SandboxMemoryClient(endpoint);
  const next: MemoryHeld = { ...held };
  const notes: string[] = [];
  let changed = false;
  const actor = { type: 'session_actor' as const, session_id: sessionId };
  for (const m of planned) {
    // Only what this sandbox was handed can have been changed by it; a store never synced in is not read out.
    if (m.access !== 'read_write' || !(m.mountPath in held)) continue;
    const mine = { ...held[m.mountPath] };
    const listing = await client.list(m.mountPath);
    for (const p of listing.too_large) notes.push(`${m.mountPath}${p} is larger than ${MAX_MEMORY_BYTES} bytes and was not kept in the memory store`);
    const inSandbox = new Map(listing.files.map((f) => [f.path, f.sha256]));
    const current = new Map((await stores.entries(tenant, m.storeId)).map((e) => [e.path, e]));
    for (const [path, sha] of inSandbox) {
      if (mine[path] === sha) continue;
      const problem = memoryPathProblem(path);
      if (problem) {
        notes.push(`${m.mountPath}${path} was not kept in the memory store: its path ${problem}`);
        continue;
      }
      let content: string;
      try {
        const bytes = await client.read(`${m.mountPath}${path}`);
        content = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
      } catch (err) {
        if (err instanceof SandboxUnavailableError) throw err;
        notes.push(`${m.mountPath}${path} was not kept in the memory store: ${(err as { status?: number }).status === undefined ? 'it is not UTF-8 text' : (err as Error).message}`);
        continue;
      }
      if (sha256(content) !== sha) continue; // changed again meanwhile: the next sync takes it
      try {
        const existing = current.get(path);
        if (existing) await stores.updateMemory(tenant, m.storeId, existing.id, { content }, 'basic', actor);
        else await stores.createMemory(tenant, m.storeId, { path, content }, 'basic', actor);
        mine[path] = sha;
        changed = true;
      } catch (err) {
        if (!(err instanceof CorralError)) throw err;
        const why = err instanceof MemoryPathConflictError ? `it overlaps ${err.conflictingPath}` : err.message;
        notes.push(`${m.mountPath}${path} was not kept in the memory store: ${why}`);
      }
    }
    for (const path of Object.keys(mine)) {
      if (inSandbox.has(path)) continue;
      const existing = current.get(path);
      // Removed in the sandbox: removed from the store, unless the store changed it since (that change wins and comes back in).
      if (existing && existing.sha === mine[path]) await stores.deleteMemory(tenant, m.storeId, existing.id, existing.sha, actor).catch(() => undefined);
      delete mine[path];
      changed = true;
    }
    next[m.mountPath] = mine;
  }
  return { held: next, notes, changed };
}

/** Bring every mounted store in the sandbox in line with the store. */
export async function mountMemory(
  endpoint: SandboxEndpoint,
  stores: MemoryStoreService,
  tenant: string,
  planned: readonly PlannedMemoryStore[],
  held: MemoryHeld,
): Promise<{ held: MemoryHeld; notes: string[]; changed: boolean }> {
  const client = new SandboxMemoryClient(endpoint);
  const next: MemoryHeld = {};
  const notes: string[] = [];
  let changed = Object.keys(held).some((k) => !planned.some((m) => m.mountPath === k));
  for (const m of planned) {
    const mine = { ...(held[m.mountPath] ?? {}) };
    let entries;
    try {
      entries = await stores.entries(tenant, m.storeId);
    } catch (err) {
      if (!(err instanceof CorralError)) throw err;
      notes.push(`memory store ${m.storeId} is not available (${err.message}); ${m.mountPath} was left as it was`);
      next[m.mountPath] = mine;
      continue;
    }
    // A store mounted for the first time gets its directory, even empty: the agent may write there.
    if (!(m.mountPath in held)) await client.root(m.mountPath, m.access);
    const wanted = new Map(entries.map((e) => [e.path, e]));
    for (const path of Object.keys(mine)) {
      if (wanted.get(path)?.sha === mine[path]) continue;
      if (!wanted.has(path)) {
        await client.remove(`${m.mountPath}${path}`, m.access);
        delete mine[path];
        changed = true;
      }
    }
    for (const [path, e] of wanted) {
      if (mine[path] === e.sha) continue;
      const memory = await stores.getMemory(tenant, m.storeId, e.id, 'full').catch(() => null);
      if (!memory || memory.content === null) continue;
      try {
        await client.put(`${m.mountPath}${path}`, m.access, memory.content);
      } catch (err) {
        if ((err as { status?: number }).status === undefined) throw err;
        notes.push(`memory ${path} of ${m.mountPath} could not be written into the sandbox: ${(err as Error).message}`);
        continue;
      }
      mine[path] = memory.content_sha256;
      changed = true;
    }
    if (!(m.mountPath in held)) changed = true;
    next[m.mountPath] = mine;
  }
  return { held: next, notes, changed };
}
