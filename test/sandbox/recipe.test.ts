import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ProcessSandboxProvider } from '../../lambdas/adapters/local/process-sandbox.js';
import { SandboxClient } from '../../lambdas/core/sandbox/client.js';
import { SandboxSetupError, type SandboxRecipe } from '../../lambdas/core/sandbox/types.js';
import { decodeRecipe, encodeRecipe, redactUrls, repositoryName, resolveMount, toWireRecipe } from '../../sandbox/recipe.js';
import { makeGitFixture, processAlive, tempDir, type GitFixture } from './helpers.js';

let root: string;
let repo: GitFixture;
const providers: ProcessSandboxProvider[] = [];
const quiet = { warn: () => {} };

function provider() {
  const p = new ProcessSandboxProvider({ dataDir: path.join(root, `p${providers.length}`), logger: quiet });
  providers.push(p);
  return p;
}

const recipe = (resources: unknown[], packages: Record<string, string[]> = {}): SandboxRecipe => ({
  environmentId: 'env_test',
  config: { type: 'cloud', networking: { type: 'unrestricted' }, packages: { type: 'packages', ...packages } },
  resources,
});

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
    const p = provider();
    for (const url of [repo.url, `file://${repo.url}`, path.join(root, 'nope.git')]) {
      const err = await p.provision({ sessionId: 'sesn_local', name: 'default', recipe: recipe([{ type: 'github_repository', url }]) }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SandboxSetupError);
      expect(err).toMatchObject({ type: 'repository_clone_error', message: expect.stringMatching(/is not a remote http\(s\) repository/) });
    }
    const remote = await p
      .provision({ sessionId: 'sesn_remote', name: 'default', recipe: recipe([{ type: 'github_repository', url: 'https://git.example.com/org/x.git' }]) })
      .catch((e: unknown) => e);
    expect(remote).toMatchObject({ type: 'repository_clone_error', message: expect.stringMatching(/through the credential proxy/) });
    // Nothing was cloned into the workspace on the host.
    expect(fs.readdirSync(p.workspaceDir('sesn_local', 'default'))).toEqual([]);
  });

  it('skips file resources and packages with notes instead of installing anything on the host', async () => {
    const p = provider();
    const sb = await p.provision({
      sessionId: 'sesn_notes',
      name: 'default',
      recipe: recipe([{ type: 'file', file_id: 'file_abc', mount_path: '/mnt/data.csv' }], { apt: ['definitely-not-installed-pkg'], pip: ['requests'] }),
    });
    expect(sb.notes).toEqual([
      expect.stringMatching(/packages \(apt: definitely-not-installed-pkg; pip: requests\) are not installed in a local sandbox/),
      'file resource file_abc (/mnt/data.csv) was not mounted: the Files API is not in Corral yet',
    ]);
    const out = await new SandboxClient(sb.endpoint).execute('bash', { command: 'command -v definitely-not-installed-pkg || echo absent' });
    expect(out.output).toBe('absent\n');
  });

});

describe('ProcessSandboxProvider.transfer (handoff)', () => {
  it('moves ownership: the old owner can neither release it nor reuse its directory', async () => {
    const p = provider();
    const sb = await p.provision({ sessionId: 'sesn_from', name: 'default', recipe: recipe([]) });
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
    const fresh = await p.provision({ sessionId: 'sesn_from', name: 'default', recipe: recipe([]) });
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
