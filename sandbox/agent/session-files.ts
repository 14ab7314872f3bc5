/**
 * The session's files inside the sandbox, under `/mnt/session`:
 *
 * - `uploads/`: the session's `file` resources, written here by the agent when the core hands
 *   them over (`PUT /files`), never by the tools. The directory and everything in it belongs to
 *   the agent's user, files 0444 and directories 0755: where the tools run as a user of their own
 *   (the Fargate image; a local sandbox when Corral runs as root) they can read them and can
 *   neither change, replace nor remove them. Nothing the tools can write is ever on these paths,
 *   so the agent never follows a link the tools made.
 * - `outputs/`: the tools' user's; what the agent writes there is catalogued by the core as files
 *   of the session (`GET /outputs`, `GET /outputs/content`). The agent lists and reads it *as the
 *   tools' user* (find and cat under the same confinement as a tool), so a link the tools planted
 *   there reaches nothing the tools could not read themselves.
 *
 * A mount path is checked here again (the API checked it first): absolute, normalized, strictly
 * under `/mnt/session/uploads/`, no `.` or `..`, no control characters. `sessionDir` is where
 * `/mnt/session` really is (itself in the image and under bubblewrap; a directory of the host in
 * a local sandbox without isolation).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Confinement } from './confinement.js';
import { HttpError } from './server.js';

export const SESSION_MOUNT = '/mnt/session';
export const UPLOADS_MOUNT = `${SESSION_MOUNT}/uploads`;
export const OUTPUTS_MOUNT = `${SESSION_MOUNT}/outputs`;
/** Largest file handed in or read out (the core's `MAX_FILE_BYTES`). */
export const MAX_SESSION_FILE_BYTES = 4 * 1024 * 1024;
/** Most outputs one listing returns. */
export const MAX_OUTPUT_ENTRIES = 100;
/**
 * Most entries the outputs' change marker looks at (and deepest directory); past either the
 * marker is null, and the core lists the outputs after every writing call, as without a marker.
 */
export const MAX_MARKER_ENTRIES = 500;
const MAX_MARKER_DEPTH = 32;
const MAX_PATH_BYTES = 1024;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/;

/** The path under `uploads/` a mount path names, or a 400. */
export function uploadRelative(mountPath: string): string {
  if (typeof mountPath !== 'string' || Buffer.byteLength(mountPath) > MAX_PATH_BYTES || CONTROL.test(mountPath)) {
    throw new HttpError(400, 'mount path is not valid');
  }
  const rel = mountPath.startsWith(`${UPLOADS_MOUNT}/`) ? mountPath.slice(UPLOADS_MOUNT.length + 1) : null;
  if (!rel || rel.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    throw new HttpError(400, `mount path must be a normalized path under ${UPLOADS_MOUNT}/`);
  }
  return rel;
}

/** A path relative to `outputs/` as listed, or a 400. */
function outputRelative(rel: string): string {
  if (typeof rel !== 'string' || !rel || Buffer.byteLength(rel) > MAX_PATH_BYTES || CONTROL.test(rel) || rel.startsWith('/') || rel.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    throw new HttpError(400, 'output path is not valid');
  }
  return rel;
}

export interface OutputListing {
  path: string;
  size: number;
  mtime_ms: number;
}

export class SessionFiles {
  constructor(
    private readonly sessionDir: string,
    private readonly confinement: Confinement,
  ) {}

  private get uploads() {
    return path.join(this.sessionDir, 'uploads');
  }

  /** Write a file resource at its mount path, read-only; replaces what was there. */
  async mount(mountPath: string, bytes: Buffer): Promise<void> {
    const rel = uploadRelative(mountPath);
    if (bytes.length > MAX_SESSION_FILE_BYTES) throw new HttpError(413, `file larger than ${MAX_SESSION_FILE_BYTES} bytes`);
    let dir = this.uploads;
    await fsp.mkdir(dir, { recursive: true, mode: 0o755 });
    const parts = rel.split('/');
    for (const part of parts.slice(0, -1)) {
      dir = path.join(dir, part);
      const st = await fsp.lstat(dir).catch(() => null);
      if (!st) await fsp.mkdir(dir, { mode: 0o755 });
      else if (!st.isDirectory()) throw new HttpError(409, `${mountPath}: a file is mounted on a directory of this path`);
    }
    const target = path.join(dir, parts.at(-1)!);
    const existing = await fsp.lstat(target).catch(() => null);
    if (existing && !existing.isFile()) throw new HttpError(409, `${mountPath}: a directory of other mounts is there`);
    const tmp = path.join(dir, `.${parts.at(-1)}.${crypto.randomBytes(6).toString('hex')}.part`);
    await fsp.writeFile(tmp, bytes, { flag: 'wx', mode: 0o444 });
    await fsp.chmod(tmp, 0o444); // whatever the umask left
    await fsp.rename(tmp, target);
  }

  /** Remove a file resource from its mount path (a missing one is not an error). */
  async unmount(mountPath: string): Promise<void> {
    const target = path.join(this.uploads, uploadRelative(mountPath));
    const st = await fsp.lstat(target).catch(() => null);
    if (st?.isFile()) await fsp.rm(target, { force: true });
  }

  /** The regular files under `outputs/` (not following links), at most `MAX_OUTPUT_ENTRIES`, sorted by path. */
  async listOutputs(): Promise<{ files: OutputListing[]; truncated: boolean }> {
    const dir = path.join(this.sessionDir, 'outputs');
    const st = await fsp.lstat(dir).catch(() => null);
    if (!st?.isDirectory()) return { files: [], truncated: false };
    const r = await this.confinement.capture(['find', dir, '-xdev', '-type', 'f', '-printf', '%s %T@ %P\\0'], 1024 * 1024);
    const files: OutputListing[] = [];
    for (const entry of r.stdout.toString('utf8').split('\0')) {
      const m = /^([0-9]+) ([0-9.]+) (.+)$/s.exec(entry);
      if (!m) continue;
      files.push({ path: m[3], size: Number(m[1]), mtime_ms: Math.floor(Number(m[2]) * 1000) });
    }
    files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    return { files: files.slice(0, MAX_OUTPUT_ENTRIES), truncated: r.overflowed || files.length > MAX_OUTPUT_ENTRIES };
  }

  /**
   * A cheap marker of what is under `outputs/` (sent with every `/execute` answer): a digest of
   * each entry's path and, for a regular file, its size, modification and change times and inode.
   * It moves whenever a file there is created, changed, renamed or removed, by a tool or by a
   * background process, so the core lists and copies the outputs only when it moved. A walk of
   * lstat calls by the agent itself (no process, no request), bounded by `MAX_MARKER_ENTRIES` and
   * `MAX_MARKER_DEPTH` (null past them: the core then lists every time). Links are not followed;
   * a directory the tools swap for a link during the walk may be read through once, which
   * reveals nothing: only the digest leaves the agent, and only to the core.
   */
  outputsMarker(): string | null {
    const root = path.join(this.sessionDir, 'outputs');
    const hash = crypto.createHash('sha256');
    let seen = 0;
    const walk = (dir: string, rel: string, depth: number): boolean => {
      let entries: fs.Dirent[];
      try {
        entries = fs.readdirSync(dir, { withFileTypes: true });
      } catch (err) {
        hash.update(`!${rel}\0${(err as NodeJS.ErrnoException).code ?? 'error'}\n`);
        return true;
      }
      entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const e of entries) {
        if (++seen > MAX_MARKER_ENTRIES) return false;
        const r = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) {
          if (depth >= MAX_MARKER_DEPTH) return false;
          hash.update(`d${r}\n`);
          if (!walk(path.join(dir, e.name), r, depth + 1)) return false;
        } else if (e.isFile()) {
          const st = fs.lstatSync(path.join(dir, e.name), { throwIfNoEntry: false });
          hash.update(st ? `f${r}\0${st.size}\0${st.mtimeMs}\0${st.ctimeMs}\0${st.ino}\n` : `f${r}\0gone\n`);
        } else hash.update(`o${r}\n`);
      }
      return true;
    };
    const st = fs.lstatSync(root, { throwIfNoEntry: false });
    if (!st?.isDirectory()) return 'none';
    return walk(root, '', 0) ? hash.digest('base64url') : null;
  }

  /** The bytes of an output, read as the tools' user; 413 past the file limit, 404 when it is not a readable file. */
  async readOutput(rel: string): Promise<Buffer> {
    const file = path.join(this.sessionDir, 'outputs', outputRelative(rel));
    const r = await this.confinement.capture(['cat', '--', file], MAX_SESSION_FILE_BYTES);
    if (r.overflowed) throw new HttpError(413, `output larger than ${MAX_SESSION_FILE_BYTES} bytes`);
    if (r.code !== 0) throw new HttpError(404, 'output not readable');
    return r.stdout;
  }
}
