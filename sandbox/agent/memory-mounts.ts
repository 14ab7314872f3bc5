/**
 * The session's memory stores inside the sandbox, under `/mnt/memory/<slug>/` (see
 * docs/MEMORY.md). The core keeps them in line with the stores through these calls; the sandbox
 * never reaches a store itself.
 *
 * - A **read-only** store's directory and files are the agent's (files 0444, directories 0755):
 *   where the tools run as a user of their own (the Fargate image; a local sandbox when Corral
 *   runs as root) they can read them and can neither change, add nor remove anything.
 * - A **read-write** store's directory is open to the tools (0777), and every file of it is
 *   written, read and removed *as the tools' user* (under the same confinement as a tool): a link
 *   the tools planted there reaches nothing the tools could not reach themselves.
 *
 * Listing (`GET /memory/list`) walks a store as the tools' user without following links
 * (`find -P -type f`), hashing each regular file of at most the memory limit; larger ones are
 * named so the model can be told. Every path is checked here again: strictly under
 * `/mnt/memory/<slug>/`, no empty, `.` or `..` segment, no control characters.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Confinement } from './confinement.js';
import { HttpError } from './server.js';

export const MEMORY_MOUNT = '/mnt/memory';
/** Largest memory (the core's `MAX_MEMORY_BYTES`). */
export const MAX_MEMORY_FILE_BYTES = 102_400;
/** Most files one listing returns. */
export const MAX_MEMORY_LIST = 1000;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/;
const SLUG = /^[a-z0-9][a-z0-9-]{0,69}$/;

export type MemoryAccess = 'read_only' | 'read_write';

/** `{slug, rel}` of a path `/mnt/memory/<slug>[/<rel>]`, or a 400. */
export function memoryTarget(p: string, needFile: boolean): { slug: string; rel: string } {
  if (typeof p !== 'string' || Buffer.byteLength(p) > 1200 || CONTROL.test(p) || !p.startsWith(`${MEMORY_MOUNT}/`)) {
    throw new HttpError(400, `path must be under ${MEMORY_MOUNT}/`);
  }
  const [slug, ...rest] = p.slice(MEMORY_MOUNT.length + 1).split('/');
  if (!SLUG.test(slug) || rest.some((s) => s === '' || s === '.' || s === '..') || (needFile && rest.length === 0)) {
    throw new HttpError(400, 'path is not a normalized path of a memory store');
  }
  return { slug, rel: rest.join('/') };
}

export function parseAccess(v: string | null): MemoryAccess {
  if (v === 'read_only' || v === 'read_write') return v;
  throw new HttpError(400, 'access must be read_only or read_write');
}

export class MemoryMounts {
  constructor(
    /** Where `/mnt/memory` really is (itself in the image and under bubblewrap). */
    private readonly memoryDir: string,
    private readonly confinement: Confinement,
  ) {}

  private real(slug: string, rel = '') {
    return rel ? path.join(this.memoryDir, slug, rel) : path.join(this.memoryDir, slug);
  }

  /** The store's directory, made if missing: the agent's for a read-only store, open to the tools for a read-write one. */
  async ensureRoot(slug: string, access: MemoryAccess): Promise<void> {
    await fsp.mkdir(this.memoryDir, { recursive: true, mode: 0o755 });
    const root = this.real(slug);
    const st = await fsp.lstat(root).catch(() => null);
    if (st && !st.isDirectory()) throw new HttpError(409, 'the store\'s mount is not a directory');
    if (!st) await fsp.mkdir(root, { mode: 0o755 });
    await fsp.chmod(root, access === 'read_write' ? 0o777 : 0o755);
  }

  /** Write one memory's content at its path in the store. */
  async put(p: string, access: MemoryAccess, bytes: Buffer): Promise<void> {
    const { slug, rel } = memoryTarget(p, true);
    if (bytes.length > MAX_MEMORY_FILE_BYTES) throw new HttpError(413, `memory larger than ${MAX_MEMORY_FILE_BYTES} bytes`);
    await this.ensureRoot(slug, access);
    const target = this.real(slug, rel);
    if (access === 'read_write') {
      const r = await this.confinement.capture(['sh', '-c', 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1"', 'sh', target], 0, bytes);
      if (r.code !== 0) throw new HttpError(409, `${p} could not be written`);
      return;
    }
    // Read-only: the agent's own files, never through anything the tools made (they make nothing here).
    let dir = this.real(slug);
    const parts = rel.split('/');
    for (const part of parts.slice(0, -1)) {
      dir = path.join(dir, part);
      const st = await fsp.lstat(dir).catch(() => null);
      if (!st) await fsp.mkdir(dir, { mode: 0o755 });
      else if (!st.isDirectory()) throw new HttpError(409, `${p}: a memory is where its directory would be`);
    }
    const existing = await fsp.lstat(target).catch(() => null);
    if (existing && !existing.isFile()) throw new HttpError(409, `${p}: a directory is there`);
    const tmp = path.join(dir, `.${parts.at(-1)}.part`);
    await fsp.rm(tmp, { force: true });
    await fsp.writeFile(tmp, bytes, { flag: 'wx', mode: 0o444 });
    await fsp.chmod(tmp, 0o444);
    await fsp.rename(tmp, target);
  }

  /** Remove one memory's file (missing is fine). */
  async remove(p: string, access: MemoryAccess): Promise<void> {
    const { slug, rel } = memoryTarget(p, true);
    const target = this.real(slug, rel);
    if (access === 'read_write') {
      await this.confinement.capture(['rm', '-f', '--', target], 0);
      return;
    }
    const st = await fsp.lstat(target).catch(() => null);
    if (st?.isFile()) await fsp.rm(target, { force: true });
  }

  /**
   * The regular files of a store as the tools' user: path (from the store's root, with a leading
   * `/`) and SHA-256 of those within the limit; the paths of larger ones.
   */
  async list(p: string): Promise<{ files: Array<{ path: string; sha256: string }>; too_large: string[]; truncated: boolean }> {
    const { slug } = memoryTarget(p, false);
    const root = this.real(slug);
    const st = await fsp.lstat(root).catch(() => null);
    if (!st?.isDirectory()) return { files: [], too_large: [], truncated: false };
    const script =
      'cd -- "$1" || exit 1; ' +
      `find . -xdev -type f -size -${MAX_MEMORY_FILE_BYTES + 1}c -print0 | xargs -0 -r sha256sum -z --; ` +
      `find . -xdev -type f -size +${MAX_MEMORY_FILE_BYTES}c -printf 'L %P\\0'`;
    const r = await this.confinement.capture(['sh', '-c', script, 'sh', root], 4 * 1024 * 1024);
    const files: Array<{ path: string; sha256: string }> = [];
    const tooLarge: string[] = [];
    for (const entry of r.stdout.toString('utf8').split('\0')) {
      if (entry.startsWith('L ')) {
        tooLarge.push(`/${entry.slice(2)}`);
        continue;
      }
      const m = /^([0-9a-f]{64}) [ *]\.\/(.+)$/s.exec(entry);
      if (!m) continue;
      files.push({ path: `/${m[2]}`, sha256: m[1] });
    }
    files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    return { files: files.slice(0, MAX_MEMORY_LIST), too_large: tooLarge, truncated: r.overflowed || files.length > MAX_MEMORY_LIST };
  }

  /** One file's bytes, read as the tools' user; 404 when it is not readable, 413 past the limit. */
  async read(p: string): Promise<Buffer> {
    const { slug, rel } = memoryTarget(p, true);
    const r = await this.confinement.capture(['cat', '--', this.real(slug, rel)], MAX_MEMORY_FILE_BYTES);
    if (r.overflowed) throw new HttpError(413, `memory larger than ${MAX_MEMORY_FILE_BYTES} bytes`);
    if (r.code !== 0) throw new HttpError(404, 'memory not readable');
    return r.stdout;
  }
}
