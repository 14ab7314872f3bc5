/**
 * The rules of memory paths and mount paths, shared by the API (requests), the store (what it
 * keeps) and the sandbox manager (what an agent wrote under `/mnt/memory/<slug>/`): a path from a
 * sandbox is hostile, so it passes the same check as one from a request before it names anything.
 */

/** Where every memory store is mounted inside a sandbox. */
export const MEMORY_MOUNT_ROOT = '/mnt/memory';
/** Largest memory content, in UTF-8 bytes (the hosted service's limit). */
export const MAX_MEMORY_BYTES = 102_400;
/** Longest memory path, in UTF-8 bytes. */
export const MAX_MEMORY_PATH_BYTES = 1024;
/** Most segments of a memory path. */
export const MAX_MEMORY_PATH_SEGMENTS = 20;
/** Most memories one store holds (Corral's limit: a store is copied into each sandbox that mounts it). */
export const MAX_MEMORIES_PER_STORE = 1000;

// Control (Cc) and format (Cf) characters, and the line and paragraph separators.
const FORBIDDEN = /[\p{Cc}\p{Cf}\u2028\u2029]/u;

/** Why `path` is not a valid memory path, or null. */
export function memoryPathProblem(path: unknown): string | null {
  if (typeof path !== 'string') return 'must be a string';
  if (!path.startsWith('/')) return 'must start with /';
  if (Buffer.byteLength(path, 'utf8') > MAX_MEMORY_PATH_BYTES) return `must be at most ${MAX_MEMORY_PATH_BYTES} bytes`;
  if (FORBIDDEN.test(path)) return 'must not contain control or format characters';
  if (path.normalize('NFC') !== path) return 'must be in Unicode Normalization Form C';
  const segments = path.slice(1).split('/');
  if (segments.length > MAX_MEMORY_PATH_SEGMENTS) return `must have at most ${MAX_MEMORY_PATH_SEGMENTS} segments`;
  if (segments.some((s) => s === '' || s === '.' || s === '..')) return 'must not have an empty, . or .. segment';
  return null;
}

/** Why `prefix` is not a valid `path_prefix` (a memory path's leading segments, ending in `/`), or null. */
export function pathPrefixProblem(prefix: string): string | null {
  if (prefix === '/') return null;
  if (!prefix.endsWith('/')) return 'must end with /';
  return memoryPathProblem(prefix.slice(0, -1));
}

/** Whether two memory paths overlap: equal, or one an ancestor directory of the other. */
export function pathsOverlap(a: string, b: string): boolean {
  return a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
}

/**
 * A store's directory name under `/mnt/memory/`: the name lowercased, every run of characters
 * other than ASCII letters and digits one hyphen (none at either end); `store` if nothing is left.
 */
export function storeSlug(name: string): string {
  const slug = name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 64)
    .replace(/-+$/, '');
  return slug || 'store';
}

/** The mount path of a store in a session, `-2`, `-3`… after the slug when another store of the session has it. */
export function memoryMountPath(name: string, taken: ReadonlySet<string>): string {
  const base = `${MEMORY_MOUNT_ROOT}/${storeSlug(name)}`;
  if (!taken.has(base)) return base;
  for (let n = 2; ; n++) if (!taken.has(`${base}-${n}`)) return `${base}-${n}`;
}
