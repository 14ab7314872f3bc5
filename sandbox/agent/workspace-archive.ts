/**
 * Workspace snapshots, the sandbox's side: packing the workspace into a gzipped tar stream, and
 * unpacking one into it. The core stores the stream (it never reaches the sandbox's own storage
 * credentials, which it has none of) and streams it back into the next sandbox of the session
 * (lambdas/core/sandbox/workspaces.ts, docs/WORKSPACES.md).
 *
 * Both run as the tools' user, in a child process of the agent (`--pack-workspace`,
 * `--unpack-workspace`), under the sandbox limits: a snapshot can hold only what that user can
 * read, and a restore can write only what that user could have written anyway.
 *
 * The tarball is model-controlled data (the model made the workspace, and a sandbox it controls
 * produced the stream), so unpacking trusts nothing in it:
 * - only regular files, directories and symbolic links; no hard links, devices or fifos;
 * - every path relative, without `..`, `.` or empty segments, and bounded in length and depth;
 * - nothing is ever written through a symbolic link: an entry whose path passes through a link
 *   (or through a file) refuses the whole tarball;
 * - a symbolic link whose target leaves the workspace is not created (and is reported);
 * - at most `maxBytes` of file content and `maxEntries` entries, checked from the headers before
 *   anything is written, and the decompressed stream is cut at the same bound (a gzip bomb stops);
 * - it is unpacked into a staging directory first: a refused tarball leaves the workspace as it
 *   was; an accepted one replaces the workspace's contents.
 *
 * The format is POSIX ustar with pax extended headers for long names (what GNU and BSD tar read).
 * Node built-ins only (the agent is bundled on its own).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';

export interface ArchiveLimits {
  /** Most bytes of file content. */
  maxBytes: number;
  /** Most entries (files, directories and links together). */
  maxEntries: number;
}

/** What a pack or an unpack did. */
export interface ArchiveSummary {
  files: number;
  dirs: number;
  links: number;
  bytes: number;
  /** Entries left out: unreadable files, sockets and fifos (pack); links leaving the workspace (unpack). */
  skipped: number;
  /** Up to 20 of the skipped paths, with why. */
  skippedExamples: string[];
}

/** A tarball that is refused, or a workspace too large to pack: the whole operation fails. */
export class ArchiveRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArchiveRefused';
  }
}

const BLOCK = 512;
const MAX_PATH_BYTES = 4096;
const MAX_DEPTH = 256;
const MAX_PAX_BYTES = 64 * 1024;
/** Where entries go before they replace the workspace's contents: a name no pack produces. */
const STAGING_PREFIX = '.corral-restore-';

function emptySummary(): ArchiveSummary {
  return { files: 0, dirs: 0, links: 0, bytes: 0, skipped: 0, skippedExamples: [] };
}

function skip(summary: ArchiveSummary, what: string): void {
  summary.skipped++;
  if (summary.skippedExamples.length < 20) summary.skippedExamples.push(what);
}

// --- writing -------------------------------------------------------------------------------------

function octal(buf: Buffer, offset: number, length: number, value: number): void {
  buf.write(value.toString(8).padStart(length - 1, '0') + '\0', offset, length, 'ascii');
}

function paxRecord(key: string, value: string): Buffer {
  const body = ` ${key}=${value}\n`;
  const bytes = Buffer.byteLength(body);
  // The length counts its own digits.
  let len = bytes + 1;
  while (String(len).length + bytes !== len) len = String(len).length + bytes;
  return Buffer.from(`${len}${body}`, 'utf8');
}

export function header(name: string, type: string, size: number, mode: number, mtime: number, linkname = ''): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, 'utf8');
  octal(h, 100, 8, mode & 0o7777);
  octal(h, 108, 8, 0);
  octal(h, 116, 8, 0);
  octal(h, 124, 12, size);
  octal(h, 136, 12, Math.max(0, Math.floor(mtime)));
  h.write('        ', 148, 8, 'ascii');
  h.write(type, 156, 1, 'ascii');
  h.write(linkname, 157, 100, 'utf8');
  h.write('ustar\0', 257, 6, 'ascii');
  h.write('00', 263, 2, 'ascii');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return h;
}

/**
 * The header blocks of one entry: a pax header first when a name does not fit ustar's fields.
 * (Exported for tests, which build hostile tarballs with it.)
 */
export function entryHeader(name: string, type: string, size: number, mode: number, mtime: number, linkname = ''): Buffer {
  const long = Buffer.byteLength(name) > 99 || Buffer.byteLength(linkname) > 99;
  if (!long) return header(name, type, size, mode, mtime, linkname);
  const records = Buffer.concat([paxRecord('path', name), ...(linkname ? [paxRecord('linkpath', linkname)] : [])]);
  const pad = Buffer.alloc((BLOCK - (records.length % BLOCK)) % BLOCK);
  return Buffer.concat([header('PaxHeader', 'x', records.length, 0o644, mtime), records, pad, header(name.slice(0, 99), type, size, mode, mtime, linkname.slice(0, 99))]);
}

interface PackEntry {
  rel: string;
  kind: 'file' | 'dir' | 'link';
  mode: number;
  mtime: number;
  size: number;
}

/**
 * Everything under `workspace` that goes into a snapshot, parents before children, without
 * following a link. Counted against `limits` as it is found, so a workspace that is too large is
 * refused before anything is written.
 */
async function listWorkspace(workspace: string, limits: ArchiveLimits, summary: ArchiveSummary): Promise<PackEntry[]> {
  const out: PackEntry[] = [];
  let bytes = 0;
  const walk = async (rel: string, depth: number) => {
    let names: string[];
    try {
      names = (await fsp.readdir(rel ? path.join(workspace, rel) : workspace)).sort();
    } catch {
      if (rel) skip(summary, `${rel}/ (not readable)`);
      return;
    }
    for (const name of names) {
      const r = rel ? `${rel}/${name}` : name;
      if (!rel && name.startsWith(STAGING_PREFIX)) continue;
      let st: fs.Stats;
      try {
        st = await fsp.lstat(path.join(workspace, r));
      } catch {
        continue; // gone meanwhile
      }
      const entry = (kind: PackEntry['kind'], size: number): PackEntry => ({ rel: r, kind, mode: st.mode & 0o777, mtime: st.mtimeMs / 1000, size });
      if (st.isDirectory()) {
        if (depth >= MAX_DEPTH) {
          skip(summary, `${r}/ (nested deeper than ${MAX_DEPTH})`);
          continue;
        }
        out.push(entry('dir', 0));
      } else if (st.isFile()) {
        bytes += st.size;
        if (bytes > limits.maxBytes) throw new ArchiveRefused(`the workspace holds more than ${limits.maxBytes} bytes of files, the most a snapshot may hold`);
        out.push(entry('file', st.size));
      } else if (st.isSymbolicLink()) {
        out.push(entry('link', 0));
      } else {
        skip(summary, `${r} (not a file, directory or link)`);
        continue;
      }
      if (out.length > limits.maxEntries) throw new ArchiveRefused(`the workspace holds more than ${limits.maxEntries} entries, the most a snapshot may hold`);
      if (st.isDirectory()) await walk(r, depth + 1);
    }
  };
  await walk('', 0);
  return out;
}

/** Writes `size` bytes of the file at `p` (opened without following a link) to `out`, padded to the block. */
async function* fileBlocks(p: string, size: number): AsyncGenerator<Buffer> {
  const fh = await fsp.open(p, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  try {
    let left = size;
    const buf = Buffer.alloc(Math.min(1024 * 1024, Math.max(BLOCK, size)));
    while (left > 0) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, left), null);
      // A file that shrank meanwhile: the header promised `size` bytes, the rest are zeros.
      if (bytesRead === 0) {
        yield Buffer.alloc(left);
        break;
      }
      yield Buffer.from(buf.subarray(0, bytesRead));
      left -= bytesRead;
    }
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (pad) yield Buffer.alloc(pad);
  } finally {
    await fh.close();
  }
}

/**
 * Packs `workspace` into `out` as a gzipped tar. Throws `ArchiveRefused` before writing anything
 * when the workspace is over `limits`. Files it cannot read are left out and reported.
 */
export async function packWorkspace(workspace: string, out: Writable, limits: ArchiveLimits): Promise<ArchiveSummary> {
  const summary = emptySummary();
  const entries = await listWorkspace(workspace, limits, summary);
  // Unreadable files are found out before the first byte, so the headers never promise them.
  const readable: PackEntry[] = [];
  for (const e of entries) {
    if (e.kind === 'file') {
      try {
        await fsp.access(path.join(workspace, e.rel), fs.constants.R_OK);
      } catch {
        skip(summary, `${e.rel} (not readable)`);
        continue;
      }
    }
    readable.push(e);
  }
  async function* blocks(): AsyncGenerator<Buffer> {
    for (const e of readable) {
      const p = path.join(workspace, e.rel);
      if (e.kind === 'dir') {
        summary.dirs++;
        yield entryHeader(`${e.rel}/`, '5', 0, e.mode, e.mtime);
      } else if (e.kind === 'link') {
        let target: string;
        try {
          target = await fsp.readlink(p);
        } catch {
          continue;
        }
        summary.links++;
        yield entryHeader(e.rel, '2', 0, 0o777, e.mtime, target);
      } else {
        summary.files++;
        summary.bytes += e.size;
        yield entryHeader(e.rel, '0', e.size, e.mode, e.mtime);
        yield* fileBlocks(p, e.size);
      }
    }
    yield Buffer.alloc(BLOCK * 2);
  }
  await pipeline(blocks, zlib.createGzip({ level: 1 }), out);
  return summary;
}

// --- reading -------------------------------------------------------------------------------------

/** Reads exact byte counts from a stream. */
class BlockReader {
  private readonly it: AsyncIterator<Buffer>;
  private buffered: Buffer[] = [];
  private length = 0;
  private total = 0;

  /** Refuses the stream once more than `max` bytes came out of it (a gzip bomb stops there). */
  constructor(
    stream: AsyncIterable<Buffer>,
    private readonly max: number,
  ) {
    this.it = stream[Symbol.asyncIterator]();
  }

  /** Exactly `n` bytes, or fewer only at the end of the stream. */
  async read(n: number): Promise<Buffer> {
    while (this.length < n) {
      const next = await this.it.next();
      if (next.done) break;
      this.total += next.value.length;
      if (this.total > this.max) throw new ArchiveRefused(`the tarball unpacks to more than ${this.max} bytes`);
      this.buffered.push(next.value);
      this.length += next.value.length;
    }
    const all = this.buffered.length === 1 ? this.buffered[0]! : Buffer.concat(this.buffered);
    const take = all.subarray(0, Math.min(n, all.length));
    const rest = all.subarray(take.length);
    this.buffered = rest.length ? [rest] : [];
    this.length = rest.length;
    return take;
  }
}

function readString(buf: Buffer, offset: number, length: number): string {
  const field = buf.subarray(offset, offset + length);
  const nul = field.indexOf(0);
  return field.subarray(0, nul === -1 ? field.length : nul).toString('utf8');
}

function readOctal(buf: Buffer, offset: number, length: number, what: string): number {
  const field = buf.subarray(offset, offset + length);
  if (field[0]! & 0x80) throw new ArchiveRefused(`a header's ${what} is in base-256, which is not accepted`);
  const text = readString(buf, offset, length).trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new ArchiveRefused(`a header's ${what} is not an octal number`);
  return parseInt(text, 8);
}

function parsePax(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < data.length) {
    const space = data.indexOf(0x20, i);
    if (space === -1) throw new ArchiveRefused('a pax header is malformed');
    const len = Number(data.subarray(i, space).toString('ascii'));
    if (!Number.isInteger(len) || len <= space - i || i + len > data.length) throw new ArchiveRefused('a pax header is malformed');
    const record = data.subarray(space + 1, i + len - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq === -1) throw new ArchiveRefused('a pax header is malformed');
    out[record.slice(0, eq)] = record.slice(eq + 1);
    i += len;
  }
  return out;
}

/** The entry's path as a relative path of plain segments, or a refusal. */
export function checkEntryPath(raw: string): string {
  let p = raw.replace(/\/+$/, '');
  while (p.startsWith('./')) p = p.slice(2);
  if (p === '' || p === '.') throw new ArchiveRefused('an entry has an empty path');
  if (p.includes('\0')) throw new ArchiveRefused('an entry path holds a NUL byte');
  if (p.startsWith('/')) throw new ArchiveRefused(`entry ${JSON.stringify(p.slice(0, 200))} has an absolute path`);
  if (Buffer.byteLength(p) > MAX_PATH_BYTES) throw new ArchiveRefused(`an entry path is longer than ${MAX_PATH_BYTES} bytes`);
  const segments = p.split('/');
  if (segments.length > MAX_DEPTH) throw new ArchiveRefused(`an entry is nested deeper than ${MAX_DEPTH} directories`);
  for (const s of segments) {
    if (s === '..') throw new ArchiveRefused(`entry ${JSON.stringify(p.slice(0, 200))} climbs out with ".."`);
    if (s === '' || s === '.') throw new ArchiveRefused(`entry ${JSON.stringify(p.slice(0, 200))} has an empty or "." segment`);
  }
  return p;
}

/** Whether a link at `rel` pointing at `target` stays inside the workspace (`workspace` is its real path). */
function linkStaysInside(rel: string, target: string, workspace: string): boolean {
  if (target.startsWith('/')) {
    const t = path.posix.normalize(target);
    return t === workspace || t.startsWith(`${workspace}/`);
  }
  const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(rel), target));
  return resolved !== '..' && !resolved.startsWith('../') && !resolved.startsWith('/');
}

/**
 * Unpacks the gzipped tar `input` into `workspace`, replacing its contents, under `limits`.
 * Throws `ArchiveRefused` (and leaves the workspace as it was) for a tarball it does not accept.
 */
export async function unpackWorkspace(workspace: string, input: Readable, limits: ArchiveLimits): Promise<ArchiveSummary> {
  const summary = emptySummary();
  const root = await fsp.realpath(workspace);
  const staging = path.join(root, `${STAGING_PREFIX}${crypto.randomBytes(6).toString('hex')}`);
  await fsp.mkdir(staging, { mode: 0o700 });
  try {
    await extract(root, staging, input, limits, summary);
    // Accepted: the workspace's contents give way to the snapshot's.
    for (const name of await fsp.readdir(root)) {
      const p = path.join(root, name);
      if (p !== staging) await fsp.rm(p, { recursive: true, force: true });
    }
    for (const name of await fsp.readdir(staging)) await fsp.rename(path.join(staging, name), path.join(root, name));
    await fsp.rmdir(staging);
    return summary;
  } catch (err) {
    await fsp.rm(staging, { recursive: true, force: true }).catch(() => {});
    throw err;
  }
}

async function extract(root: string, staging: string, input: Readable, limits: ArchiveLimits, summary: ArchiveSummary): Promise<void> {
  const gunzip = zlib.createGunzip();
  try {
    await extractEntries(root, staging, input, gunzip, limits, summary);
  } catch (err) {
    if (err instanceof ArchiveRefused) throw err;
    // zlib's own errors: the stream is not gzip, or it is cut or corrupt.
    if (typeof (err as NodeJS.ErrnoException)?.code === 'string' && (err as NodeJS.ErrnoException).code!.startsWith('Z_')) {
      throw new ArchiveRefused(`the snapshot is not a readable gzip stream (${(err as Error).message})`);
    }
    throw err;
  } finally {
    gunzip.destroy();
  }
}

async function extractEntries(root: string, staging: string, input: Readable, gunzip: zlib.Gunzip, limits: ArchiveLimits, summary: ArchiveSummary): Promise<void> {
  // The decompressed stream is cut a little past the largest tarball the limits allow.
  const maxTarBytes = limits.maxBytes + (limits.maxEntries + 16) * (BLOCK * 3) + 2 * MAX_PAX_BYTES;
  input.on('error', (err) => gunzip.destroy(err));
  input.pipe(gunzip);
  const reader = new BlockReader(gunzip, maxTarBytes);
  /** What this unpack made, by relative path: nothing else is ever written to or through. */
  const made = new Map<string, 'dir' | 'file' | 'link'>();
  const dirModes: Array<{ p: string; mode: number; mtime: number }> = [];
  let entries = 0;
  let pax: Record<string, string> = {};
  let zeroBlocks = 0;
  const ensureParents = async (rel: string) => {
    const segments = rel.split('/');
    for (let i = 1; i < segments.length; i++) {
      const parent = segments.slice(0, i).join('/');
      const kind = made.get(parent);
      if (kind === 'dir') continue;
      if (kind) throw new ArchiveRefused(`entry ${JSON.stringify(rel.slice(0, 200))} passes through ${kind === 'link' ? 'a symbolic link' : 'a file'} (${JSON.stringify(parent.slice(0, 200))})`);
      await fsp.mkdir(path.join(staging, parent), { mode: 0o700 });
      made.set(parent, 'dir');
      if (++entries > limits.maxEntries) throw new ArchiveRefused(`the tarball holds more than ${limits.maxEntries} entries`);
    }
  };
  for (;;) {
    const block = await reader.read(BLOCK);
    if (block.length === 0 && zeroBlocks > 0) break;
    if (block.length < BLOCK) throw new ArchiveRefused('the tarball ends in the middle of a header');
    if (block.every((b) => b === 0)) {
      if (++zeroBlocks >= 2) break;
      continue;
    }
    zeroBlocks = 0;
    const stored = readOctal(block, 148, 8, 'checksum');
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
    if (sum !== stored) throw new ArchiveRefused('a header checksum does not match');
    const type = String.fromCharCode(block[156]!);
    const size = readOctal(block, 124, 12, 'size');
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'x' || type === 'g') {
      if (size > MAX_PAX_BYTES) throw new ArchiveRefused(`a pax header is larger than ${MAX_PAX_BYTES} bytes`);
      const data = await reader.read(padded);
      if (data.length < padded) throw new ArchiveRefused('the tarball ends in the middle of a pax header');
      if (type === 'x') pax = parsePax(data.subarray(0, size));
      continue;
    }
    const prefix = readString(block, 345, 155);
    const name = pax.path ?? (prefix ? `${prefix}/${readString(block, 0, 100)}` : readString(block, 0, 100));
    const linkname = pax.linkpath ?? readString(block, 157, 100);
    pax = {};
    const rel = checkEntryPath(name);
    if (rel.split('/')[0]!.startsWith(STAGING_PREFIX)) throw new ArchiveRefused(`entry ${JSON.stringify(rel.slice(0, 200))} uses a reserved name`);
    const mode = readOctal(block, 100, 8, 'mode') & 0o777;
    const mtime = readOctal(block, 136, 12, 'mtime');
    if (type !== '0' && type !== '\0' && type !== '5' && type !== '2') {
      const what = type === '1' ? 'a hard link' : type === '3' || type === '4' ? 'a device' : type === '6' ? 'a fifo' : `of type ${JSON.stringify(type)}`;
      throw new ArchiveRefused(`entry ${JSON.stringify(rel.slice(0, 200))} is ${what}; only files, directories and symbolic links are accepted`);
    }
    if (type !== '0' && type !== '\0' && size !== 0) throw new ArchiveRefused(`entry ${JSON.stringify(rel.slice(0, 200))} has data but is not a file`);
    await ensureParents(rel);
    const existing = made.get(rel);
    if (existing && !(existing === 'dir' && type === '5')) throw new ArchiveRefused(`entry ${JSON.stringify(rel.slice(0, 200))} appears twice`);
    if (!existing && ++entries > limits.maxEntries) throw new ArchiveRefused(`the tarball holds more than ${limits.maxEntries} entries`);
    const target = path.join(staging, rel);
    if (type === '5') {
      if (!existing) await fsp.mkdir(target, { mode: 0o700 });
      made.set(rel, 'dir');
      dirModes.push({ p: target, mode, mtime });
      if (!existing) summary.dirs++;
    } else if (type === '2') {
      if (!linkname || linkname.includes('\0') || Buffer.byteLength(linkname) > MAX_PATH_BYTES) {
        throw new ArchiveRefused(`link ${JSON.stringify(rel.slice(0, 200))} has an unusable target`);
      }
      // Recorded even when not created: nothing later may go through it.
      made.set(rel, 'link');
      if (!linkStaysInside(rel, linkname, root)) {
        skip(summary, `${rel} -> ${linkname.slice(0, 200)} (a link out of the workspace)`);
        continue;
      }
      await fsp.symlink(linkname, target);
      summary.links++;
    } else {
      if (summary.bytes + size > limits.maxBytes) throw new ArchiveRefused(`the tarball holds more than ${limits.maxBytes} bytes of files`);
      made.set(rel, 'file');
      const fh = await fsp.open(target, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, mode | 0o200);
      try {
        let left = padded;
        let data = size;
        while (left > 0) {
          const chunk = await reader.read(Math.min(left, 1024 * 1024));
          if (chunk.length === 0) throw new ArchiveRefused(`the tarball ends in the middle of ${JSON.stringify(rel.slice(0, 200))}`);
          const useful = chunk.subarray(0, Math.min(chunk.length, data));
          if (useful.length) await fh.write(useful);
          data -= useful.length;
          left -= chunk.length;
        }
        await fh.chmod(mode);
        await fh.utimes(mtime, mtime);
      } finally {
        await fh.close();
      }
      summary.files++;
      summary.bytes += size;
    }
  }
  // Directory modes last (deepest first), so a read-only directory did not stop its own contents.
  for (const d of dirModes.reverse()) {
    await fsp.chmod(d.p, d.mode | 0o700);
    await fsp.utimes(d.p, d.mtime, d.mtime);
  }
}

/** Bounds as the agent's command line gives them (`--max-bytes`, `--max-entries`). */
export function parseArchiveLimits(maxBytes: string | undefined, maxEntries: string | undefined): ArchiveLimits {
  const bytes = Number(maxBytes);
  const count = Number(maxEntries);
  if (!Number.isSafeInteger(bytes) || bytes <= 0 || !Number.isSafeInteger(count) || count <= 0) {
    throw new Error('--max-bytes and --max-entries must be positive integers');
  }
  return { maxBytes: bytes, maxEntries: count };
}
