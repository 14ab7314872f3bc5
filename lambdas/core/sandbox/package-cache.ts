/**
 * The environment package cache: the pip and npm packages of one version of an environment,
 * installed once by the first sandbox that needs them, kept as a gzipped tar of the sandbox's
 * packages directory in the blob store (S3 on AWS, the data directory locally), and restored
 * into every later sandbox of that version instead of installing again. The same on every
 * provider: the sandbox manager moves the archive through the agent's `/packages/snapshot` and
 * `/packages/restore` (the packages directory's twins of the workspace snapshot's endpoints,
 * under the same checks of a model-controlled tarball: sandbox/agent/workspace-archive.ts).
 *
 * - The key is the environment id and a digest of its version (`updated_at`) and its pip and npm
 *   lists: a new version, or other packages, misses and installs again.
 * - Only a sandbox whose install succeeded is packed (a failed recipe never starts a sandbox), and
 *   only an archive under `maxBytes` of files and `maxEntries` entries is kept: past either, the
 *   agent refuses to pack and nothing is stored (each sandbox then installs).
 * - Concurrency: two sandboxes of one version that start together both miss and both install;
 *   each stores a whole archive under the same key with one atomic put (a rename in the file
 *   store, a PutObject in S3), so a reader sees one whole archive or none, never a part.
 * - apt packages are not cached: they go into the system's directories as root.
 */
import crypto from 'node:crypto';
import type { Readable } from 'node:stream';
import type { BlobStore } from '../storage/blob-store.js';
import { blobKeys } from '../storage/blob-keys.js';
import { fetchWorkspaceSnapshot, restoreWorkspace, type RestoreSummary, type WorkspaceLimits } from './client.js';
import type { SandboxEndpoint } from './types.js';
import type { PackageManager, SandboxRecipe } from './recipe.js';
import { bounded } from './workspaces.js';

/** The managers whose packages are cached: those installed into the packages directory. */
export const CACHED_MANAGERS: readonly PackageManager[] = ['pip', 'npm'];

/** Default bounds of one cache entry: 512 MiB of files, 100,000 entries. */
export const DEFAULT_PACKAGE_CACHE_LIMITS: WorkspaceLimits = { maxBytes: 512 * 1024 * 1024, maxEntries: 100_000 };

export interface PackageCacheOptions {
  blobs: BlobStore;
  /** @default DEFAULT_PACKAGE_CACHE_LIMITS */
  limits?: Partial<WorkspaceLimits>;
}

const ARCHIVE_TYPE = 'application/gzip';
/** Bumped when what is in an entry changes (its layout, the installers' flags): old entries are not read. */
const FORMAT = 1;

/**
 * Where a recipe's cached packages are kept, or undefined when it has none to cache. Built here
 * only: an environment id that is not an id (a hand-made plan) is hashed into the digest instead.
 */
export function packageCacheKey(recipe: Pick<SandboxRecipe, 'environmentId' | 'environmentVersion' | 'packages'>): string | undefined {
  const lists = CACHED_MANAGERS.filter((pm) => recipe.packages[pm]?.length).map((pm) => [pm, recipe.packages[pm]!] as const);
  if (!lists.length) return undefined;
  const id = /^[A-Za-z0-9_-]{1,128}$/.test(recipe.environmentId) ? recipe.environmentId : 'other';
  const digest = crypto
    .createHash('sha256')
    .update(JSON.stringify({ format: FORMAT, environment: recipe.environmentId, version: recipe.environmentVersion ?? null, lists }))
    .digest('hex')
    .slice(0, 40);
  return blobKeys.packageCache(id, digest);
}

export class PackageCache {
  readonly limits: WorkspaceLimits;
  private readonly blobs: BlobStore;

  constructor(opts: PackageCacheOptions) {
    this.blobs = opts.blobs;
    this.limits = { ...DEFAULT_PACKAGE_CACHE_LIMITS, ...opts.limits };
  }

  /** Whether an entry is kept under `key`. */
  async has(key: string): Promise<boolean> {
    return (await this.blobs.head(key)) !== null;
  }

  /** Restores the entry under `key` into the packages directory of the sandbox at `endpoint`. */
  async restore(endpoint: SandboxEndpoint, key: string, opts: { signal?: AbortSignal } = {}): Promise<RestoreSummary> {
    const blob = await this.blobs.get(key);
    if (!blob) throw new Error('the package cache entry is no longer in the store');
    return restoreWorkspace(endpoint, blob.body as Readable, this.limits, { ...opts, scope: 'packages' });
  }

  /**
   * Packs the packages directory of the sandbox at `endpoint` and keeps it under `key`. Throws
   * (and stores nothing) when the agent refuses (over the bounds) or the stream is cut.
   */
  async save(endpoint: SandboxEndpoint, key: string, opts: { signal?: AbortSignal } = {}): Promise<{ bytes: number }> {
    const stream = await fetchWorkspaceSnapshot(endpoint, this.limits, { ...opts, scope: 'packages' });
    const counter = bounded(this.limits.maxBytes + this.limits.maxEntries * 1024 + 1024 * 1024);
    stream.on('error', (err) => counter.destroy(err));
    const head = await this.blobs.put(key, stream.pipe(counter), { contentType: ARCHIVE_TYPE });
    return { bytes: head.size };
  }

  /** Forgets an entry (one that could not be restored). */
  delete(key: string): Promise<void> {
    return this.blobs.delete(key);
  }
}

/**
 * How a new sandbox got the environment's packages, as the session's `agent.tool_result` of the
 * call that started it reports it (`sandbox_packages`, a Corral extension).
 */
export interface SandboxPackagesReport {
  /**
   * `hit`: pip's and npm's packages were restored from the environment's package cache; `miss`:
   * they were installed (`stored`: and kept for the next sandbox); `off`: nothing to cache (only
   * apt packages) or no cache in this deployment.
   */
  cache: 'hit' | 'miss' | 'off';
  /** Milliseconds the restore from the cache took (with `hit`). */
  restore_ms?: number;
  /** Milliseconds each manager's install took in the sandbox, by manager. */
  install_ms: Partial<Record<PackageManager, number>>;
  /** With `miss`: whether the installed packages were stored in the cache. */
  stored?: boolean;
}
