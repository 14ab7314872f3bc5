import { describe, expect, it } from 'vitest';
import { packageCacheKey } from '../../lambdas/core/sandbox/package-cache.js';
import { wireRecipeOf } from '../../sandbox/recipe.js';
import { packageIndexEnvironment, parsePackageIndexes } from '../../lambdas/adapters/local/process-sandbox.js';

/** The package cache's key: one entry per environment version and pip/npm lists, nothing else. */
describe('packageCacheKey', () => {
  const base = { environmentId: 'env_abc', environmentVersion: '2026-01-01T00:00:00.000Z', packages: { pip: ['requests'], npm: ['left-pad'] } };

  it('is under packages/<environment id>/ and the same for the same version and lists', () => {
    const key = packageCacheKey(base)!;
    expect(key).toMatch(/^packages\/env_abc\/[0-9a-f]{40}\.tar\.gz$/);
    expect(packageCacheKey({ ...base, packages: { npm: ['left-pad'], pip: ['requests'] } })).toBe(key);
    // apt is not in an entry: changing it keeps the key.
    expect(packageCacheKey({ ...base, packages: { ...base.packages, apt: ['jq'] } })).toBe(key);
  });

  it('changes with the version, the lists and the environment', () => {
    const key = packageCacheKey(base);
    expect(packageCacheKey({ ...base, environmentVersion: '2026-02-01T00:00:00.000Z' })).not.toBe(key);
    expect(packageCacheKey({ ...base, packages: { pip: ['requests', 'rich'], npm: ['left-pad'] } })).not.toBe(key);
    expect(packageCacheKey({ ...base, packages: { pip: ['left-pad'], npm: ['requests'] } })).not.toBe(key);
    expect(packageCacheKey({ ...base, environmentId: 'env_other' })).not.toBe(key);
  });

  it('is none without pip or npm packages, and keeps an environment id that is not an id out of the key', () => {
    expect(packageCacheKey({ ...base, packages: { apt: ['jq'] } })).toBeUndefined();
    expect(packageCacheKey({ ...base, packages: {} })).toBeUndefined();
    expect(packageCacheKey({ ...base, environmentId: '../../etc' })).toMatch(/^packages\/other\/[0-9a-f]{40}\.tar\.gz$/);
  });

  it('travels to the sandbox as packages_cached on the wire recipe (both providers send wireRecipeOf)', () => {
    expect(wireRecipeOf({ packages: { pip: ['x'] }, repositories: [], packagesCached: true })).toEqual({ v: 1, packages: { pip: ['x'] }, resources: [], packages_cached: true });
    expect(wireRecipeOf({ packages: { pip: ['x'] }, repositories: [] })).not.toHaveProperty('packages_cached');
  });
});

describe('CORRAL_PACKAGE_INDEXES (parsePackageIndexes)', () => {
  it('reads pip and npm indexes, either or both, and nothing when unset', () => {
    expect(parsePackageIndexes(undefined)).toEqual({});
    expect(parsePackageIndexes('pip=https://mirror.example/pypi/simple/, npm=https://mirror.example/npm/')).toEqual({ pip: 'https://mirror.example/pypi/simple/', npm: 'https://mirror.example/npm/' });
    expect(parsePackageIndexes('npm=http://registry.internal:4873/')).toEqual({ npm: 'http://registry.internal:4873/' });
  });

  it('refuses other managers, repeats, non-http URLs and credentials in the URL', () => {
    expect(() => parsePackageIndexes('apt=https://deb.example/')).toThrow(/expected pip=<url> or npm=<url>/);
    expect(() => parsePackageIndexes('pip=https://a/,pip=https://b/')).toThrow(/given twice/);
    expect(() => parsePackageIndexes('pip=file:///srv/simple')).toThrow(/http or https/);
    expect(() => parsePackageIndexes('npm=https://user:token@registry.example/')).toThrow(/must not hold credentials/);
  });

  it('points pip and npm at them; pip trusts an http index by name only', () => {
    expect(packageIndexEnvironment({ pip: 'http://pypi.internal:8080/simple/', npm: 'https://npm.example/' })).toEqual({
      PIP_INDEX_URL: 'http://pypi.internal:8080/simple/',
      PIP_TRUSTED_HOST: 'pypi.internal',
      npm_config_registry: 'https://npm.example/',
    });
    expect(packageIndexEnvironment({ pip: 'https://pypi.example/simple/' })).toEqual({ PIP_INDEX_URL: 'https://pypi.example/simple/' });
  });
});
