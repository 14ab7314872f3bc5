/**
 * Workspaces that outlive their sandbox (docs/WORKSPACES.md). When the idle reaper stops a
 * sandbox, its workspace is first fetched from the sandbox agent as a gzipped tar stream (through
 * its capability-authorized API: the sandbox holds no storage credential) and kept in the blob
 * store under `workspaces/<tenant>/<session>/<snapshot id>`; the next sandbox of that session and
 * name is restored from it before its first tool call runs. A fork can start from its source's
 * snapshot. The same path on every provider: nothing here knows Fargate from a local process.
 *
 * A snapshot's id is derived from the sandbox (`ref`) and the last use the reaper saw
 * (`lastUsedAt`): a reaper that runs twice, or two at once, writes the same key with the same
 * workspace, so one stop makes one snapshot. Only the latest snapshot of a sandbox name is kept
 * (its record points at it); older ones are deleted once a newer one is recorded, and all of them
 * when the session is deleted.
 */
import crypto from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import type { BlobStore } from '../storage/blob-store.js';
import { HeadRecords } from '../storage/items.js';
import type { SystemPrincipal } from '../storage/principal.js';
import type { StateTable } from '../store.js';
import {
  fetchWorkspaceSnapshot,
  restoreWorkspace,
  WorkspaceTransferError,
  type RestoreSummary,
  type WorkspaceLimits,
} from './client.js';
import type { CapabilitySealer } from './sealing.js';
import type { SandboxEndpoint, SandboxOwner } from './types.js';

/** The latest snapshot of a sandbox name's workspace, as its sandbox record keeps it. */
export interface WorkspaceSnapshotRef {
  id: string;
  /** The blob key (`workspaces/<tenant>/<session>/<id>`). */
  key: string;
  /** Stored (compressed) size. */
  bytes: number;
  takenAt: string;
  /** The sandbox it was taken of: only a replacement of that sandbox is restored from it. */
  ofRef: string;
}

/** Default bounds of a snapshot: 1 GiB of files, 200,000 entries. */
export const DEFAULT_WORKSPACE_LIMITS: WorkspaceLimits = { maxBytes: 1024 * 1024 * 1024, maxEntries: 200_000 };

export interface WorkspaceSnapshotOptions {
  blobs: BlobStore;
  /** @default DEFAULT_WORKSPACE_LIMITS (`CORRAL_WORKSPACE_SNAPSHOT_MAX_BYTES`, `..._MAX_ENTRIES`) */
  limits?: Partial<WorkspaceLimits>;
}

const sessionHeads = new HeadRecords<{ id: string }>('session');
const SNAPSHOT_TYPE = 'application/gzip';

/** A blob-key segment from an id: key characters kept, anything else escaped (`=XX`). */
function segment(id: string): string {
  return id.replace(/[^A-Za-z0-9_.-]/g, (c) => `=${Buffer.from(c).toString('hex')}`);
}

/** Where a snapshot is kept: built here only, never from a request or the sandbox. */
export function workspaceSnapshotKey(tenant: string, sessionId: string, snapshotId: string): string {
  return `workspaces/${segment(tenant)}/${segment(sessionId)}/${segment(snapshotId)}`;
}

/** The id of the snapshot taken of sandbox `ref` (of `name`) as last used at `lastUsedAt`. */
export function snapshotIdOf(name: string, ref: string, lastUsedAt: string): string {
  return `${name}.${crypto.createHash('sha256').update(`${ref}\0${lastUsedAt}`).digest('hex').slice(0, 24)}`;
}

/** Counts bytes on the way to the store and cuts the stream past `max`. */
export function bounded(max: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      if (seen > max) done(new WorkspaceTransferError(`the snapshot stream passed ${max} bytes`, true));
      else done(null, chunk);
    },
  });
}

export class WorkspaceSnapshots {
  readonly limits: WorkspaceLimits;
  private readonly blobs: BlobStore;

  constructor(
    opts: WorkspaceSnapshotOptions,
    private readonly table: StateTable,
    private readonly sealer?: CapabilitySealer,
  ) {
    this.blobs = opts.blobs;
    this.limits = { ...DEFAULT_WORKSPACE_LIMITS, ...opts.limits };
  }

  /** The session's tenant, or undefined when the session is gone (nothing to keep). Read by a part that acts for every tenant. */
  async tenantOf(who: SystemPrincipal, sessionId: string): Promise<string | undefined> {
    return (await sessionHeads.get(this.table, who, sessionId))?.tenant;
  }

  /** The capability of a stored (possibly sealed) endpoint, or null when it cannot be opened. */
  async openEndpoint(owner: SandboxOwner, endpoint: SandboxEndpoint): Promise<SandboxEndpoint | null> {
    if (!this.sealer) return endpoint;
    const capability = await this.sealer.open(owner, endpoint.capability);
    return capability === null ? null : { ...endpoint, capability };
  }

  /**
   * Fetches the workspace of the sandbox at `endpoint` and keeps it under `key`. Throws
   * `WorkspaceTransferError` (`refused`: over the limits) or the sandbox's or store's error; a
   * stream cut midway is never stored.
   */
  async take(endpoint: SandboxEndpoint, key: string, opts: { signal?: AbortSignal } = {}): Promise<{ bytes: number }> {
    const stream = await fetchWorkspaceSnapshot(endpoint, this.limits, opts);
    // Compressed, a snapshot is no larger than its files plus the tar's headers.
    const counter = bounded(this.limits.maxBytes + this.limits.maxEntries * 1024 + 1024 * 1024);
    stream.on('error', (err) => counter.destroy(err));
    const head = await this.blobs.put(key, stream.pipe(counter), { contentType: SNAPSHOT_TYPE });
    return { bytes: head.size };
  }

  /** Streams the snapshot at `key` into the workspace of the sandbox at `endpoint`. */
  async restore(endpoint: SandboxEndpoint, key: string, opts: { signal?: AbortSignal } = {}): Promise<RestoreSummary> {
    const blob = await this.blobs.get(key);
    if (!blob) throw new WorkspaceTransferError('the snapshot is no longer in the store', true);
    return restoreWorkspace(endpoint, blob.body as Readable, this.limits, opts);
  }

  /** Copies a snapshot to another key (a fork's own copy, which its deletion may remove). */
  async copy(fromKey: string, toKey: string): Promise<{ bytes: number } | null> {
    const blob = await this.blobs.get(fromKey);
    if (!blob) return null;
    const head = await this.blobs.put(toKey, blob.body, { contentType: SNAPSHOT_TYPE, size: blob.head.size });
    return { bytes: head.size };
  }

  /** Deletes a snapshot; a missing one is not an error. */
  delete(key: string): Promise<void> {
    return this.blobs.delete(key);
  }
}

/** Bytes as people read them. */
export function describeBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}
