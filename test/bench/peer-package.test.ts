/**
 * The benchmark peer's own package (`bench/lib/peer-package.ts`): when it counts as installed, and
 * that a failed on-demand install is an error saying what failed and how to go on without the
 * peer. Run against package directories made here (the real one takes minutes to install), and
 * the real `npm`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ensurePeerPackage, loadLangGraphPeer, PEER_DIR, peerPackageStatus } from '../../bench/lib/peer-package.js';

let dir: string;

const write = (file: string, value: unknown) => {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, typeof value === 'string' ? value : JSON.stringify(value));
};
/** A package pinning better-sqlite3 and one scoped package, and (optionally) what is installed of them. */
function makePackage(installed?: { core?: string; sqlite?: string; binding?: boolean }) {
  write(path.join(dir, 'package.json'), { name: 'peer-under-test', private: true, dependencies: { '@langchain/core': '1.4.0', 'better-sqlite3': '12.11.1' } });
  if (!installed) return;
  const modules = path.join(dir, 'node_modules');
  if (installed.core) write(path.join(modules, '@langchain', 'core', 'package.json'), { name: '@langchain/core', version: installed.core });
  if (installed.sqlite) write(path.join(modules, 'better-sqlite3', 'package.json'), { name: 'better-sqlite3', version: installed.sqlite });
  if (installed.binding) write(path.join(modules, 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node'), 'not really a binding');
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-peer-package-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('the peer package', () => {
  it('is bench/peers, a private package of its own with every dependency pinned to an exact version and a lock', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(PEER_DIR, 'package.json'), 'utf8')) as { private?: boolean; dependencies: Record<string, string>; allowScripts?: Record<string, boolean> };
    expect(pkg.private).toBe(true);
    expect(Object.keys(pkg.dependencies)).toEqual(expect.arrayContaining(['@langchain/langgraph', '@langchain/langgraph-checkpoint-sqlite', 'better-sqlite3']));
    for (const [name, version] of Object.entries(pkg.dependencies)) expect(version, name).toMatch(/^\d+\.\d+\.\d+$/);
    expect(pkg.allowScripts).toMatchObject({ 'better-sqlite3': true });
    const lock = JSON.parse(fs.readFileSync(path.join(PEER_DIR, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string }> };
    for (const [name, version] of Object.entries(pkg.dependencies)) expect(lock.packages[`node_modules/${name}`]?.version, name).toBe(version);
    // The root package does not declare it: the root npm ci (CI) never installs it.
    const root = JSON.parse(fs.readFileSync(path.join(PEER_DIR, '..', '..', 'package.json'), 'utf8')) as Record<string, Record<string, string> | undefined>;
    for (const field of ['dependencies', 'devDependencies', 'optionalDependencies']) {
      for (const name of Object.keys(pkg.dependencies)) if (name !== 'zod') expect(root[field]?.[name], `${field}.${name}`).toBeUndefined();
    }
  });

  it('counts as installed only with every pinned version present and better-sqlite3 built', () => {
    makePackage();
    expect(peerPackageStatus(dir)).toMatchObject({ installed: false, reason: expect.stringMatching(/node_modules does not exist/) });
    makePackage({ sqlite: '12.11.1', binding: true });
    expect(peerPackageStatus(dir)).toMatchObject({ installed: false, reason: expect.stringMatching(/@langchain\/core is missing/) });
    makePackage({ core: '1.3.9', sqlite: '12.11.1', binding: true });
    expect(peerPackageStatus(dir)).toMatchObject({ installed: false, reason: expect.stringMatching(/@langchain\/core 1\.3\.9, the package pins 1\.4\.0/) });
    fs.rmSync(path.join(dir, 'node_modules'), { recursive: true });
    makePackage({ core: '1.4.0', sqlite: '12.11.1' });
    expect(peerPackageStatus(dir)).toMatchObject({ installed: false, reason: expect.stringMatching(/native binding was not built/) });
    makePackage({ core: '1.4.0', sqlite: '12.11.1', binding: true });
    expect(peerPackageStatus(dir)).toEqual({ installed: true, versions: { '@langchain/core': '1.4.0', 'better-sqlite3': '12.11.1' } });
  });

  it('is not installed again when it is installed', async () => {
    makePackage({ core: '1.4.0', sqlite: '12.11.1', binding: true });
    const logged: string[] = [];
    // npm ci would fail here (there is no lock): reaching it would reject.
    await expect(ensurePeerPackage({ dir, quiet: true, log: (m) => logged.push(m) })).resolves.toBeNull();
    expect(logged).toEqual([]);
  });

  it('a failed install is an error naming the command, its exit, npm\'s last lines and how to leave the peer out', async () => {
    makePackage(); // no lock: npm ci refuses at once, without the network
    const logged: string[] = [];
    const err = (await ensurePeerPackage({ dir, quiet: true, log: (m) => logged.push(m) }).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toContain('npm ci --prefix bench/peers');
    expect(err.message).toMatch(/exited with code [1-9]/);
    expect(err.message).toMatch(/--only/);
    expect(err.message).toMatch(/npm's first errors:\n[^]*package-lock/);
    expect(logged[0]).toMatch(/^peer: installing/);
    expect(peerPackageStatus(dir).installed).toBe(false);
  });

  it('refuses to load the peer when it is not installed', async () => {
    makePackage();
    await expect(loadLangGraphPeer(dir)).rejects.toThrow(/the peer is not installed: .*node_modules does not exist/);
  });
});
