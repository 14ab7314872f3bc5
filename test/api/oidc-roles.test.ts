import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_TENANT } from '../../local-runtime/runtime.js';
import type { OidcIssuer } from '../../lambdas/core/auth/oidc.js';
import { foreignKey, startOidcIssuer, type OidcIssuerFixture } from '../fixtures/oidc-issuer.js';
import { isIdle, startTestRuntime, waitFor, type TestRuntime } from '../helpers/runtime.js';

/**
 * Sign-in with roles (issue 19 item 2), through the official SDK: tokens of a local issuer (keys
 * made here, tokens signed here) against the local runtime.
 */
describe('OIDC bearer tokens and roles', () => {
  let t: TestRuntime;
  let idp: OidcIssuerFixture;
  let other: OidcIssuerFixture;
  let stranger: OidcIssuerFixture;
  const roles = { 'corral-admins': 'admin', eng: 'developer', staff: 'user' } as const;
  const as = (token: string) => new Anthropic({ baseURL: t.runtime.url, authToken: token, apiKey: null, maxRetries: 0 });
  const token = (groups: string[], extra: Record<string, unknown> = {}, fixture = idp) => fixture.sign({ sub: 'ana', aud: 'corral', groups, ...extra });

  beforeAll(async () => {
    [idp, other, stranger] = await Promise.all([startOidcIssuer(), startOidcIssuer(), startOidcIssuer()]);
    const issuers: OidcIssuer[] = [
      { issuer: idp.url, audiences: ['corral'], tenant: LOCAL_TENANT, groupsClaim: 'groups', roles, clientId: 'corral-cli', scopes: ['openid', 'offline_access'], clockSkewSeconds: 30 },
      { issuer: other.url, audiences: ['corral'], tenant: 'tenant-b', groupsClaim: 'groups', roles, clientId: null, scopes: ['openid'], clockSkewSeconds: 30 },
    ];
    t = await startTestRuntime({ runtime: { oidcIssuers: issuers } });
  });
  afterAll(async () => {
    await t?.close();
    await Promise.all([idp, other, stranger].map((f) => f?.close()));
  });

  it('a user token cannot create an agent (403), a developer token can', async () => {
    const user = as(token(['staff']));
    const err = await user.beta.agents.create({ name: 'nope', model: 'claude-sonnet-4-6' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.PermissionDeniedError);
    expect((err as InstanceType<typeof Anthropic.PermissionDeniedError>).error).toMatchObject({ type: 'error', error: { type: 'permission_error', message: expect.stringMatching(/user.*needs developer/) } });
    await expect(user.beta.environments.create({ name: 'nope' })).rejects.toMatchObject({ status: 403 });
    await expect(user.beta.vaults.create({ display_name: 'nope' })).rejects.toMatchObject({ status: 403 });

    const dev = as(token(['staff', 'eng']));
    const agent = await dev.beta.agents.create({ name: 'made-by-dev', model: 'claude-sonnet-4-6' });
    expect(agent.name).toBe('made-by-dev');
    // the user may not change it either
    await expect(user.beta.agents.update(agent.id, { version: agent.version, name: 'x' })).rejects.toMatchObject({ status: 403 });
    await expect(user.beta.agents.archive(agent.id)).rejects.toMatchObject({ status: 403 });
    // nothing the refused calls tried was made: only the developer's agent is there (API key view)
    const names: string[] = [];
    for await (const a of t.client.beta.agents.list()) names.push(a.name);
    expect(names).toEqual(['made-by-dev']);
  });

  it('a user runs and watches a session of an agent a developer made', async () => {
    const dev = as(token(['eng'], {}, idp));
    const agent = await dev.beta.agents.create({ name: 'runner', model: 'claude-sonnet-4-6' });
    const environment = await dev.beta.environments.create({ name: 'env', config: { type: 'cloud' } });
    // an ES256 token, this time
    const user = as(idp.sign({ sub: 'bo', aud: ['other-api', 'corral'], groups: 'staff' }, { alg: 'ES256' }));
    const session = await user.beta.sessions.create({ agent: agent.id, environment_id: environment.id });
    await user.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'hi' }] }] });
    const events = await waitFor(async () => {
      const seen = [];
      for await (const e of user.beta.sessions.events.list(session.id)) seen.push(e);
      return seen.some(isIdle) && seen.some((e) => e.type === 'agent.message') ? seen : undefined;
    }, 'the turn');
    expect(events.map((e) => e.type)).toContain('user.message');
    await expect(user.beta.sessions.archive(session.id)).rejects.toMatchObject({ status: 403 });
  });

  it('an expired, forged, foreign-issuer or otherwise bad token gets 401, never echoing it', async () => {
    const bad: Record<string, string> = {
      expired: idp.sign({ sub: 'ana', aud: 'corral', groups: ['corral-admins'] }, { expiresIn: -120 }),
      foreignIssuer: token(['corral-admins'], {}, stranger),
      forged: idp.sign({ sub: 'ana', aud: 'corral', groups: ['corral-admins'] }, { key: foreignKey() }),
      wrongAudience: token(['corral-admins'], { aud: 'someone-else' }),
      algNone: idp.sign({ sub: 'ana', aud: 'corral', groups: ['corral-admins'] }, { alg: 'none', kid: null }),
      // the algorithm-confusion attack: HMAC keyed with the issuer's public key
      hmacWithPublicKey: idp.sign({ sub: 'ana', aud: 'corral', groups: ['corral-admins'] }, { alg: 'HS256', hmacSecret: JSON.stringify(idp.publicJwks()[0]) }),
      notYetValid: token(['corral-admins'], { nbf: Math.floor(Date.now() / 1000) + 3600 }),
      issuerClaimSwapped: token(['corral-admins'], { iss: other.url }),
    };
    const why: Record<string, RegExp> = {
      expired: /expired/,
      foreignIssuer: /issuer is not trusted/,
      forged: /bad signature/,
      wrongAudience: /audience/,
      algNone: /"none" is not accepted/,
      hmacWithPublicKey: /"HS256" is not accepted/,
      notYetValid: /nbf/,
      issuerClaimSwapped: /no key of its issuer/,
    };
    for (const [what, jwt] of Object.entries(bad)) {
      const res = await fetch(`${t.runtime.url}/v1/agents`, { headers: { authorization: `Bearer ${jwt}` } });
      const text = await res.text();
      expect(res.status, what).toBe(401);
      expect(JSON.parse(text), what).toMatchObject({ type: 'error', error: { type: 'authentication_error', message: expect.stringMatching(why[what]) } });
      expect(text, what).not.toContain(jwt.split('.')[2] || jwt.split('.')[1]);
    }
    await expect(as(bad.expired).beta.agents.list()).rejects.toBeInstanceOf(Anthropic.AuthenticationError);
    await expect(as(bad.foreignIssuer).beta.agents.list()).rejects.toBeInstanceOf(Anthropic.AuthenticationError);
  });

  it('a valid token whose groups have no role gets 403', async () => {
    await expect(as(token(['visitors'])).beta.agents.list()).rejects.toMatchObject({ status: 403, error: { error: { type: 'permission_error' } } });
  });

  it('keeps tenants apart: each issuer acts in its own tenant', async () => {
    const a = as(token(['eng']));
    const b = as(token(['corral-admins'], {}, other));
    const mine = await a.beta.agents.create({ name: 'tenant-a-only', model: 'claude-sonnet-4-6' });
    await expect(b.beta.agents.retrieve(mine.id)).rejects.toMatchObject({ status: 404 });
    const seen: string[] = [];
    for await (const x of b.beta.agents.list()) seen.push(x.id);
    expect(seen).not.toContain(mine.id);
    const theirs = await b.beta.agents.create({ name: 'tenant-b-only', model: 'claude-sonnet-4-6' });
    await expect(a.beta.agents.retrieve(theirs.id)).rejects.toMatchObject({ status: 404 });
    // the local API key is the local tenant's: it sees a's agent, not b's
    await expect(t.client.beta.agents.retrieve(mine.id)).resolves.toMatchObject({ name: 'tenant-a-only' });
    await expect(t.client.beta.agents.retrieve(theirs.id)).rejects.toMatchObject({ status: 404 });
  });

  it('API keys keep working beside tokens', async () => {
    await expect(t.client.beta.environments.create({ name: 'by-key' })).resolves.toMatchObject({ name: 'by-key' });
    const res = await fetch(`${t.runtime.url}/v1/agents`, { headers: { authorization: `Bearer ${t.runtime.apiKey}` } });
    expect(res.status).toBe(200);
  });

  it('GET /corral/auth tells clients how to sign in, without a credential', async () => {
    const res = await fetch(`${t.runtime.url}/corral/auth`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      api_key: true,
      oidc: [
        { issuer: idp.url, client_id: 'corral-cli', scopes: ['openid', 'offline_access'] },
        { issuer: other.url, client_id: null, scopes: ['openid'] },
      ],
    });
  });
});
