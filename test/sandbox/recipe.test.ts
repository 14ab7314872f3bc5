import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ProcessSandboxProvider } from '../../lambdas/adapters/local/process-sandbox.js';
import { SandboxClient } from '../../lambdas/core/sandbox/client.js';
import { SandboxManager } from '../../lambdas/core/sandbox/manager.js';
import { SandboxSetupError } from '../../lambdas/core/sandbox/types.js';
import { decodeRecipe, encodeRecipe, redactUrls, repositoryName, resolveMount, toWireRecipe, wireRecipeOf } from '../../sandbox/recipe.js';
import { MemoryStateTable } from '../unit/memory-store.js';
import { makeGitFixture, planFor, processAlive, recipeFor, tempDir, type GitFixture } from './helpers.js';

let root: string;
let repo: GitFixture;
const providers: ProcessSandboxProvider[] = [];
const quiet = { warn: () => {} };

function provider(extra: Partial<ConstructorParameters<typeof ProcessSandboxProvider>[0]> = {}) {
  const p = new ProcessSandboxProvider({ dataDir: path.join(root, `p${providers.length}`), logger: quiet, ...extra });
  providers.push(p);
  return p;
}

const config = (packages: Record<string, string[]> = {}) => ({ type: 'cloud', networking: { type: 'unrestricted' }, packages: { type: 'packages', ...packages } });

beforeAll(() => {
  root = tempDir('corral-recipe-');
  repo = makeGitFixture(root);
});

afterEach(async () => {
  await Promise.all(providers.splice(0).map((p) => p.close()));
});

afterAll(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

describe('the recipe on the wire', () => {
  it('keeps what a sandbox applies and drops credentials', () => {
    const wire = toWireRecipe({
      config: { type: 'cloud', packages: { type: 'packages', apt: ['jq'], pip: [], npm: ['left-pad'] } },
      resources: [
        { type: 'github_repository', url: 'https://github.com/o/r.git', authorization_token: 'ghp_secret', checkout: { type: 'branch', name: 'dev' }, mount_path: '/workspace/x' },
        { type: 'file', file_id: 'file_1', mount_path: '/mnt/f' },
        { type: 'memory_store', memory_store_id: 'm' },
      ],
    });
    expect(wire).toEqual({
      v: 1,
      packages: { apt: ['jq'], npm: ['left-pad'] },
      resources: [
        { type: 'github_repository', url: 'https://github.com/o/r.git', mount_path: '/workspace/x', checkout: { type: 'branch', name: 'dev' } },
        { type: 'file', file_id: 'file_1', mount_path: '/mnt/f' },
        { type: 'memory_store' },
      ],
    });
    const text = encodeRecipe({ config: {}, resources: [{ type: 'github_repository', url: 'u', authorization_token: 'ghp_secret' }] });
    expect(text).not.toContain('ghp_secret');
    expect(decodeRecipe(text).resources).toHaveLength(1);
    expect(() => decodeRecipe('{')).toThrow(/not valid JSON/);
  });

  it('carries a planned recipe as version 1: packages, and each repository with its mount path and checkout', () => {
    const wire = wireRecipeOf({
      packages: { apt: ['jq'], pip: [] },
      repositories: [
        { url: 'https://github.com/o/r.git', mountPath: '/workspace/r', checkout: { type: 'commit', sha: 'abc123' } },
        { url: 'https://github.com/o/s.git', mountPath: '/src/s', checkout: null },
      ],
    });
    expect(wire).toEqual({
      v: 1,
      packages: { apt: ['jq'] },
      resources: [
        { type: 'github_repository', url: 'https://github.com/o/r.git', mount_path: '/workspace/r', checkout: { type: 'commit', sha: 'abc123' } },
        { type: 'github_repository', url: 'https://github.com/o/s.git', mount_path: '/src/s' },
      ],
    });
    // what the agent reads back is what was sent
    expect(decodeRecipe(JSON.stringify(wire))).toEqual(wire);
  });

  it('names repositories, places mount paths and redacts credentials in URLs', () => {
    expect(repositoryName('https://github.com/org/repo.git')).toBe('repo');
    expect(repositoryName('git@github.com:org/thing')).toBe('thing');
    expect(repositoryName('/srv/git/demo.git/')).toBe('demo');
    const ws = '/data/ws';
    expect(resolveMount('/workspace/a', { workspace: ws, mode: 'image' })).toEqual({ shown: '/workspace/a', dir: '/data/ws/a' });
    expect(resolveMount('/mnt/b', { workspace: ws, mode: 'image' })).toEqual({ shown: '/mnt/b', dir: '/mnt/b' });
    expect(resolveMount('/mnt/b', { workspace: ws, mode: 'local' }).dir).toBe('/data/ws/mnt/b');
    expect(resolveMount('rel', { workspace: ws, mode: 'local' }).dir).toBe('/data/ws/rel');
    expect(() => resolveMount('/workspace/../etc', { workspace: ws, mode: 'image' })).toThrow(/not a usable directory/);
    expect(redactUrls('fatal: https://user:tok@host/x failed')).toBe('fatal: https://***@host/x failed');
  });
});

describe('local sandboxes apply the recipe with real git', () => {
  it('never clones on the host: local paths and file:// are refused, and remote repositories need the credential proxy', async () => {
    // A provider with a git channel (that must never be asked for one): the URL is refused first.
    const opened: string[][] = [];
    const p = provider({ gitChannels: { open: async (req) => (opened.push(req.repositories), Promise.reject(new Error('not here'))), close: async () => undefined } });
    for (const url of [repo.url, `file://${repo.url}`, path.join(root, 'nope.git')]) {
      const recipe = recipeFor(p.recipeSupport, { resources: [{ type: 'github_repository', url }] });
      expect(recipe.repositories).toHaveLength(1);
      const err = await p.provision({ sessionId: 'sesn_local', name: 'default', recipe }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SandboxSetupError);
      expect(err).toMatchObject({ type: 'repository_clone_error', message: expect.stringMatching(/is not a remote http\(s\) repository/) });
    }
    expect(opened).toEqual([]);
    // A runtime without a proxy: no sandbox of a session with a repository starts.
    const bare = provider();
    const remote = await new SandboxManager(bare, new MemoryStateTable()).execute(
      'sesn_remote',
      'default',
      planFor({ resources: [{ type: 'github_repository', url: 'https://git.example.com/org/x.git' }] }),
      'bash',
      { command: 'true' },
    );
    expect(remote).toMatchObject({ isError: true, setupError: { type: 'repository_clone_error', message: expect.stringMatching(/through the credential proxy/) } });
    // Nothing was cloned into the workspace on the host.
    expect(fs.readdirSync(p.workspaceDir('sesn_local', 'default'))).toEqual([]);
    expect(fs.existsSync(bare.workspaceDir('sesn_remote', 'default'))).toBe(false);
  });

  it('skips files it cannot mount and the packages it does not install (apt, cargo) with notes, installing nothing on the host', async () => {
    const manager = new SandboxManager(provider(), new MemoryStateTable());
    const plan = planFor({
      resources: [{ type: 'file', file_id: 'file_abc', mount_path: '/mnt/data.csv' }],
      config: config({ apt: ['definitely-not-installed-pkg'], cargo: ['ripgrep'] }),
    });
    const out = await manager.execute('sesn_notes', 'default', plan, 'bash', { command: 'command -v definitely-not-installed-pkg || echo absent' });
    expect(out.output.split('\n')).toEqual([
      expect.stringMatching(/^\[corral\] sandbox "default": the environment's packages \(apt: definitely-not-installed-pkg; cargo: ripgrep\) are not installed in a local sandbox; a local sandbox installs only pip and npm packages/),
      '[corral] sandbox "default": file resource file_abc was not mounted: mount_path must be an absolute path under /mnt/session/uploads/',
      'absent',
      '',
    ]);
    expect(out.isError).toBe(false);
  });

});

describe('ProcessSandboxProvider.transfer (handoff)', () => {
  it('moves ownership: the old owner can neither release it nor reuse its directory', async () => {
    const p = provider();
    const sb = await p.provision({ sessionId: 'sesn_from', name: 'default', recipe: recipeFor(p.recipeSupport) });
    const c = new SandboxClient(sb.endpoint);
    await c.execute('write', { file_path: 'work.txt', content: 'done' });
    const dir = p.workspaceDir('sesn_from', 'default');
    await p.transfer({ sessionId: 'sesn_from', name: 'default' }, { sessionId: 'sesn_to', name: 'impl' }, sb.ref);
    expect(p.workspaceDir('sesn_to', 'impl')).toBe(dir);

    // the old owner's release and releaseAll leave it alone
    await p.release('sesn_from', 'default', sb.ref);
    await p.releaseAll('sesn_from');
    expect(processAlive(Number(sb.ref))).toBe(true);

    // the old owner's next sandbox of that name starts elsewhere, without the handed-off files
    const fresh = await p.provision({ sessionId: 'sesn_from', name: 'default', recipe: recipeFor(p.recipeSupport) });
    expect(processAlive(Number(sb.ref))).toBe(true);
    expect(p.workspaceDir('sesn_from', 'default')).not.toBe(dir);
    expect((await new SandboxClient(fresh.endpoint).execute('bash', { command: 'ls' })).output).toBe('');
    expect((await c.execute('bash', { command: 'cat work.txt' })).output).toBe('done');

    // the new owner releases it
    await p.release('sesn_to', 'impl', sb.ref);
    expect(processAlive(Number(sb.ref))).toBe(false);
    await expect(p.transfer({ sessionId: 'sesn_to', name: 'impl' }, { sessionId: 'x', name: 'y' }, sb.ref)).rejects.toThrow(/not a running sandbox/);
  });
});
