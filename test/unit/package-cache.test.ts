import { describe, expect, it } from 'vitest';
import { packageCacheKey } from '../../lambdas/core/sandbox/package-cache.js';
import { wireRecipeOf } from '../../sandbox/recipe.js';

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
