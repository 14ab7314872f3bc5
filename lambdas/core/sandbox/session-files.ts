/**
 * The session's files in its sandboxes, kept by the sandbox manager through the agent's API
 * (`SandboxFilesClient`); the sandbox never holds a credential and never names a path on a host:
 *
 * - **In**: before each tool call, the `file` resources of the session's current plan are handed
 *   to the sandbox (`PUT /files`, the bytes read from the blob store by the core) at their mount
 *   paths, where the agent keeps them read-only; ones removed from the session, or deleted from
 *   the Files API (one batched read of their heads, for a session that has file resources), are
 *   taken out (`DELETE /files`). The sandbox's record remembers what it holds (`files`: mount path → file
 *   id), so a file goes in once per sandbox, and a sandbox started later (or a replacement)
 *   gets all of them.
 * - **Out**: after each call of a tool that writes (`bash`, `write`, `edit`) whose answer carries
 *   a change marker of `/mnt/session/outputs` other than the one the sandbox's record holds (the
 *   agent's digest of the directory, `outputsMarker`; no marker: every time), the regular files
 *   there are catalogued as files scoped to the session: a new or changed
 *   one (by size and modification time) is copied into the blob store, keeping its file id as its
 *   content changes. Bounded: at most `MAX_OUTPUTS` files a session, each at most
 *   `MAX_FILE_BYTES` (larger ones are left out and the model is told), at most
 *   `MAX_COPIES_PER_CALL` copied after one call (the rest after the next). A file that leaves the
 *   directory stays catalogued. What stays in `/workspace` is never catalogued.
 */
import { MAX_FILE_BYTES, type OutputEntry } from '../resources/files.js';
import { SandboxFilesClient } from './client.js';
import type { PlannedFile } from './recipe.js';
import type { SandboxEndpoint } from './types.js';

/** In a record's `files`, before a file id: nothing is mounted there, the file is gone (the model was told). */
const GONE = '!';
/** Most files catalogued from one session's outputs. */
export const MAX_OUTPUTS = 100;
/** Most outputs copied after one tool call. */
export const MAX_COPIES_PER_CALL = 20;
/** Tools after which the outputs are looked at (the others do not write). */
export const WRITING_TOOLS: ReadonlySet<string> = new Set(['bash', 'write', 'edit']);

/** What the manager needs of the Files API (`FileService`). */
export interface SessionFileStore {
  /** A file's bytes, or null when the tenant has no such file any more. */
  read(tenant: string, fileId: string): Promise<Uint8Array | null>;
  /** Which of these files (at most 100) the tenant still has, unexpired; one batched read. @default - not checked: a file deleted while mounted stays mounted */
  present?(tenant: string, ids: readonly string[]): Promise<Set<string>>;
  /** The outputs catalogued for the session so far, by path. */
  outputs(tenant: string, sessionId: string): Promise<Map<string, { fileId: string; size: number; mtimeMs: number }>>;
  putOutput(tenant: string, sessionId: string, entry: OutputEntry, bytes: Uint8Array, existingId: string | undefined): Promise<unknown>;
}

/**
 * Bring the sandbox's uploads in line with the plan. Returns what it now holds and notes for the
 * model (a file that is gone). Throws `SandboxUnavailableError` when the sandbox cannot be reached.
 */
export async function mountFiles(
  endpoint: SandboxEndpoint,
  store: SessionFileStore,
  tenant: string,
  planned: readonly PlannedFile[],
  held: Readonly<Record<string, string>>,
): Promise<{ held: Record<string, string>; notes: string[]; changed: boolean }> {
  const client = new SandboxFilesClient(endpoint);
  const next: Record<string, string> = { ...held };
  const notes: string[] = [];
  let changed = false;
  // A file deleted from the Files API (or expired) since it was mounted leaves the sandbox at the
  // next call, as a removed resource does; its resource stays in the session.
  const ids = [...new Set(planned.map((f) => f.fileId))];
  const present = ids.length && store.present ? await store.present(tenant, ids) : undefined;
  const gone = (fileId: string) => present !== undefined && !present.has(fileId);
  // `held` also remembers, as `!<file id>`, a path where nothing is mounted because its file is
  // gone and the model was told so: it is told once, not at every call.
  const told = (fileId: string) => `${GONE}${fileId}`;
  const wanted = new Map(planned.map((f) => [f.mountPath, gone(f.fileId) ? told(f.fileId) : f.fileId]));
  for (const [mountPath, fileId] of Object.entries(held)) {
    if (wanted.get(mountPath) === fileId) continue;
    if (!fileId.startsWith(GONE)) await client.unmount(mountPath);
    delete next[mountPath];
    changed = true;
    if (gone(fileId)) {
      notes.push(`file ${fileId} was deleted from the Files API (or expired): it was removed from ${mountPath}`);
      if (wanted.get(mountPath) === told(fileId)) next[mountPath] = told(fileId);
    }
  }
  for (const f of planned) {
    if (next[f.mountPath] === f.fileId || next[f.mountPath] === told(f.fileId)) continue;
    if (gone(f.fileId)) {
      notes.push(`file ${f.fileId} is no longer in the Files API: nothing is mounted at ${f.mountPath}`);
      next[f.mountPath] = told(f.fileId);
      changed = true;
      continue;
    }
    const bytes = await store.read(tenant, f.fileId);
    if (!bytes) {
      notes.push(`file ${f.fileId} is no longer in the Files API: nothing is mounted at ${f.mountPath}`);
      continue;
    }
    try {
      await client.mount(f.mountPath, bytes);
    } catch (err) {
      if ((err as { status?: number }).status === undefined) throw err;
      notes.push(`file ${f.fileId} could not be mounted at ${f.mountPath}: ${(err as Error).message}`);
      continue;
    }
    next[f.mountPath] = f.fileId;
    changed = true;
  }
  return { held: next, notes, changed };
}

/**
 * Catalogue what the sandbox has under `/mnt/session/outputs`: notes for the model, and whether
 * the catalogue is `complete` (listing again now would copy nothing: no copy was left for the
 * next call, none failed), which lets the manager skip it until the agent's marker moves.
 */
export async function catalogueOutputs(
  endpoint: SandboxEndpoint,
  store: SessionFileStore,
  tenant: string,
  sessionId: string,
): Promise<{ notes: string[]; complete: boolean }> {
  const client = new SandboxFilesClient(endpoint);
  const listing = await client.listOutputs();
  const known = await store.outputs(tenant, sessionId);
  const notes: string[] = [];
  let copies = 0;
  let count = known.size;
  let complete = true;
  for (const entry of listing.files) {
    const had = known.get(entry.path);
    if (had && had.size === entry.size && had.mtimeMs === entry.mtimeMs) continue;
    if (entry.size > MAX_FILE_BYTES) {
      notes.push(`/mnt/session/outputs/${entry.path} is larger than ${MAX_FILE_BYTES} bytes and was not kept as a file of the session`);
      continue;
    }
    if (!had && count >= MAX_OUTPUTS) {
      notes.push(`the session already has ${MAX_OUTPUTS} output files; /mnt/session/outputs/${entry.path} was not kept`);
      continue;
    }
    if (copies >= MAX_COPIES_PER_CALL) {
      complete = false; // the next call's catalogue takes the rest
      break;
    }
    const bytes = await client.readOutput(entry.path).catch(() => null);
    if (!bytes || bytes.length > MAX_FILE_BYTES) {
      complete = false; // changed or gone meanwhile: the next pass sees it
      continue;
    }
    await store.putOutput(tenant, sessionId, { path: entry.path, size: bytes.length, mtimeMs: entry.mtimeMs }, bytes, had?.fileId);
    copies++;
    if (!had) count++;
  }
  return { notes, complete };
}
