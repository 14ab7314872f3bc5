import { describe, expect, it } from 'vitest';
import {
  assertDeliverable,
  fitRecipe,
  loadRecipePlan,
  mountPathOf,
  planRecipe,
  type RecipeSupport,
} from '../../lambdas/core/sandbox/recipe.js';
import { DELIVERS_EVERYTHING } from './recipe-support.js';
import { systemPrincipal } from '../../lambdas/core/storage/principal.js';

/**
 * The sandbox recipe planned once, in the core: what a session's sandboxes start with (which
 * repositories, where, at which checkout, through which channel; which packages; which files),
 * and, for a provider's support, what it is handed and what is skipped or refused.
 */
const repo = (url: string, extra: Record<string, unknown> = {}) => ({ id: 'sesrsc_1', type: 'github_repository', url, ...extra });
const plan = (resources: unknown[], opts: { config?: unknown; credentials?: Array<{ url: string }> } = {}) =>
  planRecipe({ session: { environment_id: 'env_1', resources }, environment: { config: opts.config ?? { type: 'cloud' } }, credentials: opts.credentials ?? [] });

const FARGATE_LIKE: RecipeSupport = {
  label: 'a remote sandbox',
  packages: { managers: ['apt', 'pip', 'npm'], otherwise: 'its image has no other installer' },
  publicRepositories: { supported: true },
  credentialedRepositories: { supported: false, reason: 'it has no git channel' },
};
const LOCAL_LIKE: RecipeSupport = {
  label: 'a local sandbox',
  packages: { managers: [], otherwise: 'it uses the tools of the host' },
  publicRepositories: { supported: true },
  credentialedRepositories: { supported: true },
};

describe('planRecipe', () => {
  it('plans a repository without a credential as public, and one the session holds a credential for through the credential proxy', () => {
    const p = plan([repo('https://github.com/o/pub.git'), repo('https://GitHub.com/o/priv', { mount_path: '/src/priv' })], {
      // refs as the session record keeps them: normalized, without `.git`
      credentials: [{ url: 'https://github.com/o/priv' }],
    });
    expect(p.repositories).toEqual([
      { url: 'https://github.com/o/pub.git', mountPath: '/workspace/pub', checkout: null, channel: 'public' },
      { url: 'https://GitHub.com/o/priv', mountPath: '/src/priv', checkout: null, channel: 'credential_proxy' },
    ]);
    expect(p.issues).toEqual([]);
  });

  it('holds no credential, whatever the resources carry', () => {
    const p = plan([repo('https://github.com/o/r.git', { authorization_token: 'ghp_never_in_a_plan' })], { credentials: [{ url: 'https://github.com/o/r' }] });
    expect(JSON.stringify(p)).not.toContain('ghp_never_in_a_plan');
    expect(p.repositories[0].channel).toBe('credential_proxy');
  });

  it('takes each checkout form, and refuses one that is not a branch name or a commit SHA', () => {
    const p = plan([
      repo('https://h.example/o/a.git', { checkout: { type: 'branch', name: 'feature/x' } }),
      repo('https://h.example/o/b.git', { checkout: { type: 'commit', sha: 'DEADbeef' } }),
      repo('https://h.example/o/c.git', { checkout: null }),
    ]);
    expect(p.repositories.map((r) => r.checkout)).toEqual([{ type: 'branch', name: 'feature/x' }, { type: 'commit', sha: 'DEADbeef' }, null]);

    const bad = plan([
      repo('https://h.example/o/a.git', { checkout: { type: 'branch', name: '--upload-pack=x' } }),
      repo('https://h.example/o/b.git', { checkout: { type: 'commit', sha: 'HEAD~1' } }),
      repo('https://h.example/o/c.git', { checkout: { type: 'tag', name: 'v1' } }),
    ]);
    expect(bad.repositories).toEqual([]);
    expect(bad.issues.map((i) => [i.outcome, 'errorType' in i ? i.errorType : null, i.message])).toEqual([
      ['refused', 'repository_checkout_error', 'branch name "--upload-pack=x" is not valid (repository https://h.example/o/a.git)'],
      ['refused', 'repository_checkout_error', 'commit "HEAD~1" is not a hexadecimal SHA (repository https://h.example/o/b.git)'],
      ['refused', 'repository_checkout_error', 'checkout type "tag" is not branch or commit (repository https://h.example/o/c.git)'],
    ]);
  });

  it('places mount paths under /workspace, refuses unusable ones and skips a taken one', () => {
    expect(mountPathOf('src/x/')).toBe('/workspace/src/x');
    expect(mountPathOf('/opt//tool/')).toBe('/opt/tool');
    expect(mountPathOf('/')).toBeNull();
    expect(mountPathOf('/workspace/../etc')).toBeNull();
    expect(mountPathOf('a\0b')).toBeNull();

    const p = plan([
      repo('https://h.example/o/a.git', { mount_path: 'code' }),
      repo('https://h.example/o/b.git', { mount_path: '/workspace/code/' }),
      repo('https://h.example/o/c.git', { mount_path: '/workspace/../etc' }),
      repo('-oProxyCommand=x'),
    ]);
    expect(p.repositories.map((r) => r.mountPath)).toEqual(['/workspace/code']);
    expect(p.issues).toEqual([
      {
        outcome: 'skipped',
        item: { kind: 'repository', url: 'https://h.example/o/b.git', mountPath: '/workspace/code' },
        message: 'repository https://h.example/o/b.git was not cloned: /workspace/code is taken by another repository of this session',
      },
      {
        outcome: 'refused',
        item: { kind: 'repository', url: 'https://h.example/o/c.git', mountPath: '/workspace/../etc' },
        errorType: 'invalid_recipe',
        message: 'mount_path "/workspace/../etc" of repository https://h.example/o/c.git is not a usable directory',
      },
      {
        outcome: 'refused',
        item: { kind: 'repository', url: '-oProxyCommand=x', mountPath: '/workspace/repository' },
        errorType: 'repository_clone_error',
        message: 'repository url "-oProxyCommand=x" is not valid',
      },
    ]);
  });

  it('takes the environment\'s non-empty package lists, and none without an environment', () => {
    const p = plan([], { config: { type: 'cloud', packages: { type: 'packages', apt: ['jq', 'ripgrep'], pip: [], cargo: ['bat'], npm: null } } });
    expect(p.packages).toEqual({ apt: ['jq', 'ripgrep'], cargo: ['bat'] });
    expect(planRecipe({ session: { environment_id: 'env_gone', resources: [] }, environment: null, credentials: [] })).toEqual({
      environmentId: 'env_gone',
      packages: {},
      repositories: [],
      files: [],
      networking: { type: 'unrestricted' },
      issues: [],
    });
  });

  it('lists files at their mount paths (default /mnt/session/uploads/<id>), and skips what it cannot use', () => {
    const p = plan([
      { type: 'file', file_id: 'file_1', mount_path: '/mnt/session/uploads/data.csv' },
      { type: 'file', file_id: 'file_2' },
      { type: 'file', file_id: 'file_3', mount_path: '/mnt/data.csv' },
      { type: 'memory_store', memory_store_id: 'mem_1' },
      { type: 'memory_store', memory_store_id: 'memstore_2', mount_path: '/mnt/memory/notes', access: 'read_only' },
      { type: 'memory_store', memory_store_id: 'memstore_3', mount_path: '/mnt/memory/../etc' },
      'junk',
    ]);
    expect(p.memory).toEqual([{ storeId: 'memstore_2', mountPath: '/mnt/memory/notes', access: 'read_only' }]);
    expect(p.files).toEqual([
      { fileId: 'file_1', mountPath: '/mnt/session/uploads/data.csv' },
      { fileId: 'file_2', mountPath: '/mnt/session/uploads/file_2' },
    ]);
    expect(p.issues).toEqual([
      {
        outcome: 'skipped',
        item: { kind: 'file', fileId: 'file_3', mountPath: '/mnt/data.csv' },
        message: 'file resource file_3 was not mounted: mount_path must be an absolute path under /mnt/session/uploads/',
      },
      { outcome: 'skipped', item: { kind: 'resource', type: 'memory_store' }, message: 'a memory_store resource without a memory store or mount path was skipped' },
      { outcome: 'skipped', item: { kind: 'resource', type: 'memory_store' }, message: 'a memory_store resource without a memory store or mount path was skipped' },
      { outcome: 'skipped', item: { kind: 'resource', type: 'unknown' }, message: 'a resource without a type was skipped' },
    ]);
  });
});

describe('fitRecipe', () => {
  const session = plan(
    [
      repo('https://h.example/o/pub.git'),
      repo('https://h.example/o/priv.git', { checkout: { type: 'branch', name: 'dev' } }),
      { type: 'file', file_id: 'file_1' },
      { type: 'memory_store' },
    ],
    { config: { type: 'cloud', packages: { apt: ['jq'], cargo: ['bat'] } }, credentials: [{ url: 'https://h.example/o/priv' }] },
  );

  it('hands a provider only what it delivers; the rest is skipped or refused, packages first', () => {
    const { recipe, issues } = fitRecipe(session, FARGATE_LIKE);
    expect(recipe).toEqual({
      environmentId: 'env_1',
      packages: { apt: ['jq'] },
      repositories: [{ url: 'https://h.example/o/pub.git', mountPath: '/workspace/pub', checkout: null, channel: 'public' }],
      networking: { type: 'unrestricted' },
    });
    expect(issues.map((i) => [i.outcome, i.item.kind, i.message])).toEqual([
      ['skipped', 'packages', "the environment's packages (cargo: bat) are not installed in a remote sandbox; its image has no other installer"],
      ['skipped', 'resource', 'a memory_store resource without a memory store or mount path was skipped'],
      [
        'refused',
        'repository',
        "repository https://h.example/o/priv.git needs the credential this session holds for it, which reaches a sandbox only through the credential proxy's git channel, and it has no git channel",
      ],
    ]);
    // Files are no provider's: the sandbox manager hands them to the running agent.
    expect(session.files).toEqual([{ fileId: 'file_1', mountPath: '/mnt/session/uploads/file_1' }]);
    expect(issues.find((i) => i.outcome === 'refused')).toMatchObject({ errorType: 'repository_clone_error' });
  });

  it('gives another provider the same plan with its own answer', () => {
    const { recipe, issues } = fitRecipe(session, LOCAL_LIKE);
    expect(recipe.packages).toEqual({});
    expect(recipe.repositories.map((r) => [r.url, r.channel, r.checkout])).toEqual([
      ['https://h.example/o/pub.git', 'public', null],
      ['https://h.example/o/priv.git', 'credential_proxy', { type: 'branch', name: 'dev' }],
    ]);
    expect(issues.map((i) => i.outcome)).toEqual(['skipped', 'skipped']);
    expect(issues[0].message).toBe("the environment's packages (apt: jq; cargo: bat) are not installed in a local sandbox; it uses the tools of the host");
  });

  it('refuses public repositories to a provider that cannot clone any', () => {
    const none: RecipeSupport = { ...LOCAL_LIKE, publicRepositories: { supported: false, reason: 'it runs without a proxy' }, credentialedRepositories: { supported: false, reason: 'it runs without a proxy' } };
    const { recipe, issues } = fitRecipe(plan([repo('https://h.example/o/pub.git')]), none);
    expect(recipe.repositories).toEqual([]);
    expect(issues).toEqual([
      {
        outcome: 'refused',
        item: { kind: 'repository', url: 'https://h.example/o/pub.git', mountPath: '/workspace/pub' },
        errorType: 'repository_clone_error',
        message: 'it runs without a proxy, so repository https://h.example/o/pub.git cannot be cloned into a local sandbox',
      },
    ]);
  });

  it('lets a provider refuse a recipe it was handed without fitting', () => {
    expect(() => assertDeliverable(fitRecipe(session, FARGATE_LIKE).recipe, FARGATE_LIKE)).not.toThrow();
    expect(() => assertDeliverable(fitRecipe(session, DELIVERS_EVERYTHING).recipe, FARGATE_LIKE)).toThrow(
      /^a remote sandbox was handed a recipe it cannot deliver \(the environment's packages \(cargo: bat\)/,
    );
  });
});

describe('loadRecipePlan', () => {
  const session = { id: 'sesn_1', environment_id: 'env_1', resources: [repo('https://h.example/o/priv.git')] };
  const sources = (environment: () => Promise<{ config: unknown }>) => {
    const asked: string[] = [];
    return {
      asked,
      sessions: {
        recipeSources: async (_who: unknown, id: string) => (asked.push(`session ${id}`), { tenant: 'tnt_1', repositoryCredentials: [{ url: 'https://h.example/o/priv' }] }),
      },
      environments: { get: async (tenant: string, id: string) => (asked.push(`environment ${tenant}/${id}`), environment()) },
    };
  };

  it('reads the environment in the session\'s tenant and the session\'s credential refs', async () => {
    const s = sources(async () => ({ config: { type: 'cloud', packages: { pip: ['requests'] } } }));
    const p = await loadRecipePlan(s, systemPrincipal('harness'), session);
    expect(s.asked).toEqual(['session sesn_1', 'environment tnt_1/env_1']);
    expect(p).toMatchObject({ environmentId: 'env_1', packages: { pip: ['requests'] }, repositories: [{ channel: 'credential_proxy' }] });
  });

  it('plans a bare sandbox when the environment is gone', async () => {
    const p = await loadRecipePlan(sources(() => Promise.reject(new Error('environment env_1 not found'))), systemPrincipal('harness'), session);
    expect(p.packages).toEqual({});
    expect(p.repositories).toHaveLength(1);
  });
});
