/**
 * Workspace snapshots on the sandbox's side: the agent packs its workspace into a gzipped tar
 * (GNU tar reads it), unpacks one into a fresh agent, and refuses hostile tarballs (path
 * traversal, absolute paths, writing through a link, links out of the workspace, hard links,
 * too many bytes or entries, a gzip bomb) without touching anything outside the workspace or
 * the workspace itself. Real agent processes over their HTTP API.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkspaceTransferError, fetchWorkspaceSnapshot, restoreWorkspace, type WorkspaceLimits } from '../../lambdas/core/sandbox/client.js';
import { entryHeader } from '../../sandbox/agent/workspace-archive.js';
import { startAgent, tempDir, type AgentHandle } from './helpers.js';

const LIMITS: WorkspaceLimits = { maxBytes: 64 * 1024 * 1024, maxEntries: 10_000 };

/** A gzipped tarball of `entries` (built by hand, so it can be as hostile as a test needs). */
function tarball(entries: Array<{ name: string; type?: '0' | '5' | '2' | '1' | '3'; data?: Buffer | string; link?: string; size?: number }>): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.data === undefined ? Buffer.alloc(0) : Buffer.from(e.data);
    parts.push(entryHeader(e.name, e.type ?? '0', e.size ?? data.length, 0o644, 1_700_000_000, e.link ?? ''));
    if (data.length) parts.push(data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return zlib.gzipSync(Buffer.concat(parts));
}

const root = tempDir('corral-archive-');
/** A directory beside the workspaces that no tarball may write into. */
const outside = path.join(root, 'outside');
fs.mkdirSync(outside);
let source: AgentHandle;
let target: AgentHandle;

beforeAll(async () => {
  source = await startAgent({ root: path.join(root, 'a'), workspace: path.join(root, 'a', 'workspace') });
  target = await startAgent({ root: path.join(root, 'b'), workspace: path.join(root, 'b', 'workspace') });
});
afterAll(async () => {
  await source?.stop();
  await target?.stop();
  fs.rmSync(root, { recursive: true, force: true });
});

async function snapshotOf(agent: AgentHandle, limits = LIMITS): Promise<Buffer> {
  const stream = await fetchWorkspaceSnapshot(agent.endpoint, limits);
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const restore = (agent: AgentHandle, data: Buffer, limits = LIMITS) => restoreWorkspace(agent.endpoint, Readable.from([data]), limits);

/** Every path under `dir`, with what it is (and a link's target, a file's content). */
function listing(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = fs.lstatSync(path.join(dir, r));
      if (st.isSymbolicLink()) out[r] = `link -> ${fs.readlinkSync(path.join(dir, r))}`;
      else if (st.isDirectory()) {
        out[r] = `dir ${(st.mode & 0o777).toString(8)}`;
        walk(r);
      } else out[r] = `file ${(st.mode & 0o777).toString(8)} ${fs.readFileSync(path.join(dir, r)).toString('base64').slice(0, 40)} ${st.size}`;
    }
  };
  walk('');
  return out;
}

describe('packing and unpacking a workspace', () => {
  it('round-trips files, directories, modes, long names, binary content and links inside the workspace', async () => {
    const ws = source.workspace;
    const long = `${'d'.repeat(60)}/${'e'.repeat(60)}/${'f'.repeat(80)}.txt`;
    fs.mkdirSync(path.join(ws, 'src/nested'), { recursive: true });
    fs.writeFileSync(path.join(ws, 'src/main.py'), 'print("hi")\n');
    fs.writeFileSync(path.join(ws, 'src/nested/blob.bin'), Buffer.from([0, 1, 2, 255, 254, 0, 10]));
    fs.writeFileSync(path.join(ws, 'empty'), '');
    fs.writeFileSync(path.join(ws, 'run.sh'), '#!/bin/sh\necho ok\n', { mode: 0o755 });
    fs.chmodSync(path.join(ws, 'run.sh'), 0o755);
    fs.mkdirSync(path.dirname(path.join(ws, long)), { recursive: true });
    fs.writeFileSync(path.join(ws, long), 'deep');
    fs.symlinkSync('src/main.py', path.join(ws, 'main-link'));
    fs.writeFileSync(path.join(ws, 'big.dat'), Buffer.alloc(3 * 1024 * 1024 + 7, 'x'));
    const before = listing(ws);

    const snapshot = await snapshotOf(source);
    // GNU tar reads what the agent wrote.
    fs.writeFileSync(path.join(root, 'snap.tgz'), snapshot);
    const names = execFileSync('tar', ['-tzf', path.join(root, 'snap.tgz')], { encoding: 'utf8' }).split('\n');
    expect(names).toContain(long);
    expect(names).toContain('main-link');

    fs.writeFileSync(path.join(target.workspace, 'from-the-recipe'), 'replaced by the snapshot');
    const summary = await restore(target, snapshot);
    expect(summary).toMatchObject({ files: 6, links: 1, skipped: 0 });
    expect(listing(target.workspace)).toEqual(before);
    // The restored sandbox works on the restored files.
    const { SandboxClient } = await import('../../lambdas/core/sandbox/client.js');
    expect(await new SandboxClient(target.endpoint).execute('bash', { command: './run.sh && cat main-link' })).toEqual({ output: 'ok\nprint("hi")\n', isError: false });
  });

  it('refuses to pack a workspace over its limits, before sending anything', async () => {
    const err = await fetchWorkspaceSnapshot(source.endpoint, { maxBytes: 1024, maxEntries: 10_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkspaceTransferError);
    expect(err).toMatchObject({ refused: true, message: expect.stringMatching(/more than 1024 bytes/) });
    const many = await fetchWorkspaceSnapshot(source.endpoint, { maxBytes: LIMITS.maxBytes, maxEntries: 3 }).catch((e: unknown) => e);
    expect(many).toMatchObject({ refused: true, message: expect.stringMatching(/more than 3 entries/) });
  });

  it('needs the capability', async () => {
    const wrong = { ...source.endpoint, capability: 'x'.repeat(43) };
    await expect(fetchWorkspaceSnapshot(wrong, LIMITS)).rejects.toThrow(/capability rejected/);
    await expect(restoreWorkspace(wrong, Readable.from([tarball([{ name: 'a', data: 'a' }])]), LIMITS)).rejects.toThrow(/capability rejected/);
  });
});

describe('a hostile tarball', () => {
  const victim = () => path.join(outside, 'victim');
  const cases: Array<[string, Buffer, RegExp, WorkspaceLimits?]> = [
    ['climbs out with ..', tarball([{ name: 'ok', data: 'fine' }, { name: '../../outside/victim', data: 'pwned' }]), /climbs out with "\.\."/],
    ['names an absolute path', tarball([{ name: '/tmp/corral-absolute-victim', data: 'pwned' }]), /absolute path/],
    ['writes through a link it made (symlink escape)', tarball([{ name: 'esc', type: '2', link: outside }, { name: 'esc/victim', data: 'pwned' }]), /passes through a symbolic link/],
    ['writes through a relative link out', tarball([{ name: 'up', type: '2', link: '../../outside' }, { name: 'up/victim', data: 'pwned' }]), /passes through a symbolic link/],
    ['holds a hard link', tarball([{ name: 'h', type: '1', link: '../../outside/victim' }]), /hard link/],
    ['holds a device', tarball([{ name: 'dev', type: '3' }]), /a device/],
    ['holds more bytes than allowed', tarball([{ name: 'big', data: Buffer.alloc(2048, 'a') }]), /more than 1024 bytes/, { maxBytes: 1024, maxEntries: 100 }],
    ['claims a size it does not have', tarball([{ name: 'liar', size: 1 << 30 }]), /more than 1048576 bytes/, { maxBytes: 1 << 20, maxEntries: 100 }],
    ['holds too many entries', tarball(Array.from({ length: 20 }, (_, i) => ({ name: `f${i}`, data: 'x' }))), /more than 10 entries/, { maxBytes: 1 << 20, maxEntries: 10 }],
    ['is a gzip bomb', zlib.gzipSync(Buffer.concat([entryHeader('zeros', '0', 64 * 1024 * 1024, 0o644, 0), Buffer.alloc(64 * 1024 * 1024)])), /more than/, { maxBytes: 1 << 20, maxEntries: 100 }],
    ['is not gzip', Buffer.from('this is not a tarball'), /not a readable gzip stream/],
    ['has a bad checksum', (() => { const h = entryHeader('x', '0', 0, 0o644, 0); h[0] = 'y'.charCodeAt(0); return zlib.gzipSync(Buffer.concat([h, Buffer.alloc(1024)])); })(), /checksum/],
  ];

  it.each(cases)('is refused when it %s, and the workspace is left as it was', async (_what, bytes, message, limits) => {
    fs.rmSync(victim(), { force: true });
    const ws = target.workspace;
    fs.writeFileSync(path.join(ws, 'keep.txt'), 'still here');
    const before = listing(ws);
    const err = await restore(target, bytes, limits ?? LIMITS).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkspaceTransferError);
    expect((err as WorkspaceTransferError).refused).toBe(true);
    expect((err as Error).message).toMatch(message);
    expect(fs.existsSync(victim())).toBe(false);
    expect(fs.existsSync('/tmp/corral-absolute-victim')).toBe(false);
    expect(listing(ws)).toEqual(before);
  });

  it('restores the rest but not a link that points out of the workspace, and says so', async () => {
    const data = tarball([
      { name: 'etc-link', type: '2', link: '/etc/passwd' },
      { name: 'up-link', type: '2', link: '../../../outside' },
      { name: 'inside-link', type: '2', link: 'dir/../file' },
      { name: 'file', data: 'content' },
    ]);
    const summary = await restore(target, data);
    expect(summary).toMatchObject({ files: 1, links: 1, skipped: 2 });
    expect(summary.skippedExamples.join('\n')).toMatch(/etc-link -> \/etc\/passwd/);
    expect(listing(target.workspace)).toEqual({ file: expect.stringMatching(/^file /), 'inside-link': 'link -> dir/../file' });
  });
});

describe.skipIf(process.getuid?.() !== 0)('with the tools as another user (an agent run as root)', () => {
  const TOOLS_UID = 43_210;
  let agent: AgentHandle;
  beforeAll(async () => {
    const dir = path.join(root, 'runas');
    fs.mkdirSync(path.join(dir, 'workspace'), { recursive: true });
    fs.chownSync(path.join(dir, 'workspace'), TOOLS_UID, TOOLS_UID);
    fs.chmodSync(root, 0o755);
    fs.chmodSync(dir, 0o755);
    agent = await startAgent({ root: dir, workspace: path.join(dir, 'workspace'), args: ['--run-as-uid', String(TOOLS_UID), '--run-as-gid', String(TOOLS_UID)] });
  });
  afterAll(() => agent?.stop());

  it('packs and unpacks as that user: restored files are theirs, and a file only root could write is not written', async () => {
    const data = tarball([{ name: 'dir', type: '5' }, { name: 'dir/mine.txt', data: 'theirs' }]);
    expect(await restore(agent, data)).toMatchObject({ files: 1, dirs: 1 });
    const st = fs.statSync(path.join(agent.workspace, 'dir/mine.txt'));
    expect([st.uid, st.gid]).toEqual([TOOLS_UID, TOOLS_UID]);
    const { SandboxClient } = await import('../../lambdas/core/sandbox/client.js');
    expect((await new SandboxClient(agent.endpoint).execute('bash', { command: 'echo more >> dir/mine.txt && cat dir/mine.txt' })).output).toBe('theirsmore\n');
    // A file the tools' user cannot read stays out of the snapshot (root's, mode 0600).
    fs.writeFileSync(path.join(agent.workspace, 'roots.txt'), 'secret', { mode: 0o600 });
    const names = await snapshotOf(agent).then((b) => {
      fs.writeFileSync(path.join(root, 'runas.tgz'), b);
      return execFileSync('tar', ['-tzf', path.join(root, 'runas.tgz')], { encoding: 'utf8' });
    });
    expect(names.split('\n').sort()).toEqual(['', 'dir/', 'dir/mine.txt']);
  });
});
