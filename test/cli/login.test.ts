import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_TENANT } from '../../local-runtime/runtime.js';
import { startOidcIssuer, type OidcIssuerFixture } from '../fixtures/oidc-issuer.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { cli } from './helpers.js';

/**
 * `corral login` against the local OIDC issuer: the device authorization grant (RFC 8628) with its
 * pending / slow_down / expired answers, the token kept 0600 in the CLI's config file and sent as
 * a bearer token, and a refresh when it runs out.
 */
describe('corral login', () => {
  let t: TestRuntime;
  let idp: OidcIssuerFixture;
  let dir: string;
  let env: Record<string, string>;
  beforeAll(async () => {
    idp = await startOidcIssuer();
    t = await startTestRuntime({
      runtime: {
        oidcIssuers: [{ issuer: idp.url, audiences: ['corral'], tenant: LOCAL_TENANT, groupsClaim: 'groups', roles: { staff: 'user', eng: 'developer' }, clientId: 'corral-cli', scopes: ['openid', 'offline_access'], clockSkewSeconds: 30 }],
      },
    });
    dir = mkdtempSync(join(tmpdir(), 'corral-login-'));
    env = { CORRAL_URL: t.runtime.url, CORRAL_CONFIG: join(dir, 'nested', 'config.json') };
  });
  afterAll(async () => {
    await t?.close();
    await idp?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Polls are answered at once; the waits asked for are recorded, and `onPoll` acts at the n-th. */
  const poller = (onPoll: (n: number) => void) => {
    const waits: number[] = [];
    return {
      waits,
      sleep: async (ms: number) => {
        waits.push(ms);
        onPoll(waits.length);
      },
    };
  };
  const pendingCode = () => [...idp.logins.keys()].at(-1)!;

  it('signs in with the device code, backing off on slow_down, and stores the token 0600', async () => {
    idp.slowDown(1);
    const p = poller((n) => {
      if (n === 3) idp.approve(pendingCode(), { sub: 'ana', aud: 'corral', groups: ['staff'] });
    });
    const r = await cli(['login'], { env, sleep: p.sleep });
    expect(r.stderr).toMatch(/Open http:\/\/127\.0\.0\.1:\d+\/device\?user_code=[0-9A-F]{4}-[0-9A-F]{4}\nand check that it shows the code/);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/signed in to .* as ana/);
    // interval 1 s; slow_down adds 5 s (RFC 8628 3.5), which stays for later polls
    expect(p.waits).toEqual([1000, 6000, 6000]);
    const stat = statSync(env.CORRAL_CONFIG);
    expect(stat.mode & 0o777).toBe(0o600);
    const stored = JSON.parse(readFileSync(env.CORRAL_CONFIG, 'utf8')).logins[t.runtime.url];
    expect(stored).toMatchObject({ issuer: idp.url, client_id: 'corral-cli', refresh_token: expect.stringMatching(/^rt-/) });
    // the output names no token
    expect(r.stdout + r.stderr).not.toContain(stored.token);
    expect(r.stdout + r.stderr).not.toContain(stored.refresh_token);

    // The CLI now acts as ana (a user): it may list, not create agents.
    const list = await cli(['agents', 'list', '--json'], { env });
    expect(list.code, list.stderr).toBe(0);
    const create = await cli(['agents', 'create', '--name', 'x'], { env });
    expect(create.code).toBe(1);
    expect(create.stderr).toMatch(/403 permission_error: your role \(user\)/);
  });

  it('refreshes a token about to expire with its refresh token', async () => {
    const file = JSON.parse(readFileSync(env.CORRAL_CONFIG, 'utf8'));
    const before = file.logins[t.runtime.url];
    // The stored token has run out (as far as the CLI knows); its refresh token is still good.
    file.logins[t.runtime.url] = { ...before, expires_at: Math.floor(Date.now() / 1000) - 10 };
    writeFileSync(env.CORRAL_CONFIG, JSON.stringify(file));
    const hits = idp.hits.get('/token') ?? 0;
    const r = await cli(['agents', 'list', '--json'], { env });
    expect(r.code, r.stderr).toBe(0);
    expect((idp.hits.get('/token') ?? 0) - hits).toBe(1);
    const after = JSON.parse(readFileSync(env.CORRAL_CONFIG, 'utf8')).logins[t.runtime.url];
    expect(after.refresh_token).not.toBe(before.refresh_token);
    expect(after.expires_at).toBeGreaterThan(Math.floor(Date.now() / 1000) + 60);
    expect(idp.refreshTokens.has(before.refresh_token)).toBe(false);
  });

  it('gives up when the issuer says the code expired (expired_token), or its lifetime has passed', async () => {
    const other = { ...env, CORRAL_CONFIG: join(dir, 'other.json') };
    const p = poller((n) => {
      if (n === 2) idp.expire(pendingCode());
    });
    const r = await cli(['login'], { env: other, sleep: p.sleep });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/corral: login: the code expired before it was approved \(expired_token\)/);
    expect(p.waits).toHaveLength(2);

    idp.deviceCodeTtl = 0;
    try {
      const late = await cli(['login'], { env: other, sleep: async () => {} });
      expect(late.code).toBe(1);
      expect(late.stderr).toMatch(/corral: login: the code expired before it was approved; run corral login again/);
    } finally {
      idp.deviceCodeTtl = 600;
    }
  });

  it('logs out, and an API key in CORRAL_API_KEY still goes first', async () => {
    const withKey = await cli(['agents', 'create', '--name', 'by-key', '--json'], { env: { ...env, CORRAL_API_KEY: t.runtime.apiKey } });
    expect(withKey.code, withKey.stderr).toBe(0);
    expect((await cli(['logout'], { env })).code).toBe(0);
    expect(JSON.parse(readFileSync(env.CORRAL_CONFIG, 'utf8')).logins).toEqual({});
  });
});
