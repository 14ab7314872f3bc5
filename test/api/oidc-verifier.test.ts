import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OidcVerifier, type OidcIssuer } from '../../lambdas/core/auth/oidc.js';
import { startOidcIssuer, type OidcIssuerFixture } from '../fixtures/oidc-issuer.js';

/** The token verifier against the local issuer: the keys' cache, its bounded refetch, the clock checks. */
describe('OidcVerifier', () => {
  let idp: OidcIssuerFixture;
  let config: OidcIssuer;
  beforeAll(async () => {
    idp = await startOidcIssuer();
    config = { issuer: idp.url, audiences: ['corral'], tenant: 't1', groupsClaim: 'roles_of', roles: { a: 'admin', u: 'user' }, clientId: null, scopes: ['openid'], clockSkewSeconds: 60 };
  });
  afterAll(() => idp.close());

  const clockAt = (start: number) => {
    const c = { now: start };
    return { c, now: () => c.now };
  };

  it('reads the groups claim configured, keeping the highest role', async () => {
    const v = new OidcVerifier([config]);
    await expect(v.verify(idp.sign({ sub: 's', aud: 'corral', roles_of: ['u', 'a', 'zzz'] }))).resolves.toEqual({ tenant: 't1', role: 'admin', issuer: idp.url, subject: 's' });
    await expect(v.verify(idp.sign({ sub: 's', aud: 'corral', groups: ['a'] }))).rejects.toMatchObject({ status: 403 });
  });

  it('fetches the keys once, and an unknown kid refetches at most once per interval', async () => {
    const { c, now } = clockAt(Date.now());
    const v = new OidcVerifier([config], { now, minRefetchMs: 60_000 });
    const before = idp.hits.get('/jwks') ?? 0;
    for (let i = 0; i < 3; i++) await v.verify(idp.sign({ sub: 's', aud: 'corral', roles_of: 'u' }));
    expect((idp.hits.get('/jwks') ?? 0) - before).toBe(1);

    // The issuer rotates: a token with the new kid triggers one refetch and verifies.
    const kid = idp.rotate('RS256');
    c.now += 60_000;
    const rotated = idp.sign({ sub: 's', aud: 'corral', roles_of: 'u' }, { kid });
    await expect(v.verify(rotated)).resolves.toMatchObject({ role: 'user' });
    expect((idp.hits.get('/jwks') ?? 0) - before).toBe(2);

    // A flood of unknown kids within the interval fetches nothing more.
    const flood = Array.from({ length: 50 }, (_, i) => idp.sign({ sub: 's', aud: 'corral', roles_of: 'u' }, { kid: `nope-${i}` }));
    for (const jwt of flood) await expect(v.verify(jwt)).rejects.toMatchObject({ message: expect.stringMatching(/no key of its issuer/) });
    expect((idp.hits.get('/jwks') ?? 0) - before).toBe(2);
    c.now += 60_000;
    await expect(v.verify(flood[0])).rejects.toMatchObject({ status: 401 });
    expect((idp.hits.get('/jwks') ?? 0) - before).toBe(3);
  });

  it('allows the clock skew configured on exp, nbf and iat, and no more', async () => {
    const t0 = Math.floor(Date.now() / 1000);
    const at = (seconds: number) => new OidcVerifier([config], { now: () => seconds * 1000 });
    const jwt = idp.sign({ sub: 's', aud: 'corral', roles_of: 'u', iat: t0, nbf: t0, exp: t0 + 100 });
    await expect(at(t0 + 159).verify(jwt)).resolves.toMatchObject({ role: 'user' });
    await expect(at(t0 + 161).verify(jwt)).rejects.toMatchObject({ message: expect.stringMatching(/expired/) });
    await expect(at(t0 - 59).verify(jwt)).resolves.toMatchObject({ role: 'user' });
    await expect(at(t0 - 61).verify(jwt)).rejects.toMatchObject({ message: expect.stringMatching(/nbf/) });
    const noExp = idp.sign({ sub: 's', aud: 'corral', roles_of: 'u', exp: undefined });
    await expect(at(t0).verify(noExp)).rejects.toMatchObject({ message: expect.stringMatching(/no exp/) });
  });

  it('keeps the keys it has when the issuer is down', async () => {
    const { c, now } = clockAt(Date.now());
    const v = new OidcVerifier([config], { now, minRefetchMs: 1000, maxKeyAgeMs: 10_000 });
    const jwt = idp.sign({ sub: 's', aud: 'corral', roles_of: 'u' });
    await v.verify(jwt);
    const down = new OidcVerifier([config], { now, fetch: async () => new Response('no', { status: 503 }) });
    await expect(down.verify(jwt)).rejects.toMatchObject({ message: expect.stringMatching(/could not be fetched/) });
    // the first verifier's keys are old now, and its refetch fails: it keeps using them
    (v as unknown as { fetch: typeof fetch }).fetch = async () => new Response('no', { status: 503 });
    c.now += 20_000;
    await expect(v.verify(jwt)).resolves.toMatchObject({ role: 'user' });
  });
});
