import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileSecretStore } from '../../lambdas/adapters/local/file-secret-store.js';
import { generateApiKey } from '../../lambdas/core/resources/tenants.js';
import { credentialSecretRef } from '../../lambdas/core/vault/types.js';
import { createAgentAndEnvironment, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

/**
 * Vaults and credentials through the official SDK (`client.beta.vaults`, `.credentials`): the
 * shapes, per-tenant isolation, and secret fields that are write-only (no answer, not the state
 * table, not an error message) while the credential proxy's store does hold them.
 */
describe('vaults API', () => {
  let t: TestRuntime;
  let other: Anthropic;
  const SECRET = `s3cret-${Date.now()}-value`;

  beforeAll(async () => {
    t = await startTestRuntime();
    const key = generateApiKey();
    await t.runtime.services.tenants.addKey('tenant-b', key);
    other = new Anthropic({ baseURL: t.runtime.url, apiKey: key, maxRetries: 0 });
  });
  afterAll(() => t?.close());

  const store = () => new FileSecretStore(t.dataDir);

  it('creates, reads, lists, updates, archives and deletes vaults', async () => {
    const v = await t.client.beta.vaults.create({ display_name: 'Prod', metadata: { team: 'infra' } });
    expect(v).toMatchObject({ type: 'vault', display_name: 'Prod', metadata: { team: 'infra' }, archived_at: null });
    expect(v.id).toMatch(/^vlt_/);
    expect(await t.client.beta.vaults.retrieve(v.id)).toEqual(v);
    const updated = await t.client.beta.vaults.update(v.id, { display_name: 'Production', metadata: { team: null, env: 'prod' } });
    expect(updated).toMatchObject({ display_name: 'Production', metadata: { env: 'prod' } });
    const ids: string[] = [];
    for await (const x of t.client.beta.vaults.list({ limit: 1 })) ids.push(x.id);
    expect(ids).toContain(v.id);
    const archived = await t.client.beta.vaults.archive(v.id);
    expect(archived.archived_at).not.toBeNull();
    const listed: string[] = [];
    for await (const x of t.client.beta.vaults.list()) listed.push(x.id);
    expect(listed).not.toContain(v.id);
    const all: string[] = [];
    for await (const x of t.client.beta.vaults.list({ include_archived: true })) all.push(x.id);
    expect(all).toContain(v.id);
    expect(await t.client.beta.vaults.delete(v.id)).toEqual({ id: v.id, type: 'vault_deleted' });
    await expect(t.client.beta.vaults.retrieve(v.id)).rejects.toMatchObject({ status: 404 });
  });

  it('credentials of every type: secret fields are write-only, and only the proxy holds them', async () => {
    const v = await t.client.beta.vaults.create({ display_name: 'creds' });
    const bearer = await t.client.beta.vaults.credentials.create(v.id, {
      auth: { type: 'static_bearer', token: SECRET, mcp_server_url: 'https://mcp.example.com/mcp' },
      display_name: 'bearer',
      metadata: { k: 'v' },
    });
    expect(bearer).toMatchObject({
      type: 'vault_credential',
      vault_id: v.id,
      display_name: 'bearer',
      metadata: { k: 'v' },
      auth: { type: 'static_bearer', mcp_server_url: 'https://mcp.example.com/mcp' },
      archived_at: null,
    });
    const oauth = await t.client.beta.vaults.credentials.create(v.id, {
      auth: {
        type: 'mcp_oauth',
        access_token: `${SECRET}-access`,
        mcp_server_url: 'https://oauth.example.com/mcp',
        expires_at: '2030-01-01T00:00:00Z',
        refresh: {
          client_id: 'client-1',
          refresh_token: `${SECRET}-refresh`,
          token_endpoint: 'https://oauth.example.com/token',
          token_endpoint_auth: { type: 'client_secret_post', client_secret: `${SECRET}-client` },
          scope: 'read',
        },
      },
    });
    expect(oauth.auth).toEqual({
      type: 'mcp_oauth',
      mcp_server_url: 'https://oauth.example.com/mcp',
      expires_at: '2030-01-01T00:00:00Z',
      refresh: { client_id: 'client-1', token_endpoint: 'https://oauth.example.com/token', token_endpoint_auth: { type: 'client_secret_post' }, resource: null, scope: 'read' },
    });
    const envVar = await t.client.beta.vaults.credentials.create(v.id, {
      auth: { type: 'environment_variable', secret_name: 'API_KEY', secret_value: `${SECRET}-env`, networking: { type: 'limited', allowed_hosts: ['api.example.com'] } },
    });
    expect(envVar.auth).toEqual({
      type: 'environment_variable',
      secret_name: 'API_KEY',
      injection_location: { body: false, header: true },
      networking: { type: 'limited', allowed_hosts: ['api.example.com'] },
    });

    // updates: a new token, and a partial oauth update (only the refresh token)
    const rotated = await t.client.beta.vaults.credentials.update(bearer.id, { vault_id: v.id, auth: { type: 'static_bearer', token: `${SECRET}-2` } });
    await t.client.beta.vaults.credentials.update(oauth.id, { vault_id: v.id, auth: { type: 'mcp_oauth', refresh: { refresh_token: `${SECRET}-refresh-2` } } });
    await expect(
      t.client.beta.vaults.credentials.update(bearer.id, { vault_id: v.id, auth: { type: 'mcp_oauth', access_token: 'x' } }),
    ).rejects.toMatchObject({ status: 400 });

    const answers = [
      bearer, oauth, envVar, rotated,
      await t.client.beta.vaults.credentials.retrieve(oauth.id, { vault_id: v.id }),
      await t.client.beta.vaults.credentials.list(v.id),
    ];
    expect(JSON.stringify(answers)).not.toContain(SECRET);
    expect(JSON.stringify(await t.runtime.services.table.scanPrefix(''))).not.toContain(SECRET);

    // the proxy's store has them (and merged the partial update)
    expect(await store().get(credentialSecretRef('local', v.id, bearer.id))).toEqual({ token: `${SECRET}-2` });
    expect(await store().get(credentialSecretRef('local', v.id, oauth.id))).toEqual({
      access_token: `${SECRET}-access`,
      refresh_token: `${SECRET}-refresh-2`,
      client_secret: `${SECRET}-client`,
    });

    // one usable credential per server and vault
    await expect(
      t.client.beta.vaults.credentials.create(v.id, { auth: { type: 'static_bearer', token: 'x', mcp_server_url: 'https://mcp.example.com/mcp/' } }),
    ).rejects.toMatchObject({ status: 409 });

    // archive removes the secret at once; delete removes record and secret
    const archived = await t.client.beta.vaults.credentials.archive(bearer.id, { vault_id: v.id });
    expect(archived.archived_at).not.toBeNull();
    expect(await store().get(credentialSecretRef('local', v.id, bearer.id))).toBeUndefined();
    expect(await t.client.beta.vaults.credentials.delete(envVar.id, { vault_id: v.id })).toEqual({ id: envVar.id, type: 'vault_credential_deleted' });
    expect(await store().get(credentialSecretRef('local', v.id, envVar.id))).toBeUndefined();
    const left: string[] = [];
    for await (const c of t.client.beta.vaults.credentials.list(v.id)) left.push(c.id);
    expect(left).toEqual([oauth.id]);
    // deleting the vault removes the rest
    await t.client.beta.vaults.delete(v.id);
    expect(await store().get(credentialSecretRef('local', v.id, oauth.id))).toBeUndefined();
  });

  it('never echoes a secret in an error message', async () => {
    const v = await t.client.beta.vaults.create({ display_name: 'errors' });
    const bad = [
      { auth: { type: 'static_bearer', token: SECRET, mcp_server_url: 'not a url' } },
      { auth: { type: 'static_bearer', token: SECRET, mcp_server_url: 'ftp://x.example.com' } },
      { auth: { type: 'static_bearer', token: SECRET, mcp_server_url: 'https://x.example.com', extra: SECRET } },
      { auth: { type: 'environment_variable', secret_name: SECRET, secret_value: SECRET, networking: { type: 'unrestricted' } } },
      { auth: { type: 'bogus', token: SECRET } },
      { auth: { type: 'static_bearer', token: 12345, mcp_server_url: 'https://x.example.com' }, [SECRET.slice(0, 3)]: 1 },
    ];
    for (const body of bad) {
      const res = await fetch(`${t.runtime.url}/v1/vaults/${v.id}/credentials`, {
        method: 'POST',
        headers: { 'x-api-key': t.runtime.apiKey, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      expect(res.status).toBe(400);
      const answer = await res.text();
      expect(answer).not.toContain(SECRET);
      expect(answer).not.toContain('12345');
    }
  });

  it('isolates tenants', async () => {
    const v = await t.client.beta.vaults.create({ display_name: 'mine' });
    const c = await t.client.beta.vaults.credentials.create(v.id, { auth: { type: 'static_bearer', token: 'x', mcp_server_url: 'https://a.example.com' } });
    await expect(other.beta.vaults.retrieve(v.id)).rejects.toMatchObject({ status: 404 });
    await expect(other.beta.vaults.update(v.id, { display_name: 'theirs' })).rejects.toMatchObject({ status: 404 });
    await expect(other.beta.vaults.delete(v.id)).rejects.toMatchObject({ status: 404 });
    await expect(other.beta.vaults.credentials.retrieve(c.id, { vault_id: v.id })).rejects.toMatchObject({ status: 404 });
    await expect(other.beta.vaults.credentials.list(v.id)).rejects.toMatchObject({ status: 404 });
    await expect(
      other.beta.vaults.credentials.create(v.id, { auth: { type: 'static_bearer', token: 'y', mcp_server_url: 'https://b.example.com' } }),
    ).rejects.toMatchObject({ status: 404 });
    const theirs: string[] = [];
    for await (const x of other.beta.vaults.list()) theirs.push(x.id);
    expect(theirs).not.toContain(v.id);
  });

  it('sessions: vault_ids must name usable vaults of the tenant', async () => {
    const { agent, environment } = await createAgentAndEnvironment(t.client);
    const mine = await t.client.beta.vaults.create({ display_name: 'attach me' });
    const session = await t.client.beta.sessions.create({ agent: agent.id, environment_id: environment.id, vault_ids: [mine.id] });
    expect(session.vault_ids).toEqual([mine.id]);

    const theirs = await other.beta.vaults.create({ display_name: 'not yours' });
    const archived = await t.client.beta.vaults.create({ display_name: 'old' });
    await t.client.beta.vaults.archive(archived.id);
    for (const [ids, why] of [
      [['vlt_nope'], /vault vlt_nope not found/],
      [[theirs.id], /not found/],
      [[archived.id], /archived/],
      [[mine.id, mine.id], /twice/],
    ] as const) {
      await expect(t.client.beta.sessions.create({ agent: agent.id, environment_id: environment.id, vault_ids: [...ids] })).rejects.toMatchObject({
        status: 400,
        message: expect.stringMatching(why),
      });
    }
    // and they cannot change later
    await expect(t.client.beta.sessions.update(session.id, { vault_ids: [] } as never)).rejects.toMatchObject({ status: 400 });
  });

  it('a repository token is write-only: never in the session, its resources, or the state table', async () => {
    const { agent, environment } = await createAgentAndEnvironment(t.client);
    const session = await t.client.beta.sessions.create({
      agent: agent.id,
      environment_id: environment.id,
      resources: [{ type: 'github_repository', url: 'https://git.example.com/org/repo.git', authorization_token: `${SECRET}-git`, checkout: { type: 'branch', name: 'dev' } }],
    });
    expect(session.resources).toEqual([
      {
        id: expect.stringMatching(/^sesrsc_/),
        type: 'github_repository',
        url: 'https://git.example.com/org/repo.git',
        mount_path: '/workspace/repo',
        checkout: { type: 'branch', name: 'dev' },
        created_at: expect.any(String),
        updated_at: expect.any(String),
      },
    ]);
    const fork = (await t.client.post(`/v1/sessions/${session.id}/fork`, { body: {} })) as { id: string };
    const seen = [
      session,
      fork,
      await t.client.beta.sessions.retrieve(session.id),
      await t.client.beta.sessions.resources.list(session.id),
      await t.client.beta.sessions.list(),
    ];
    expect(JSON.stringify(seen)).not.toContain(SECRET);
    expect(JSON.stringify(await t.runtime.services.table.scanPrefix(''))).not.toContain(SECRET);
    // a token needs an http(s) url; the url of a public resource may be anything git takes
    await expect(
      t.client.beta.sessions.create({
        agent: agent.id,
        environment_id: environment.id,
        resources: [{ type: 'github_repository', url: '/srv/repo.git', authorization_token: SECRET }],
      }),
    ).rejects.toMatchObject({ status: 400, message: expect.not.stringContaining(SECRET) });
    // deleting the session removes its token from the proxy's store; the fork has its own copy
    const refOf = async (id: string) =>
      ((await t.runtime.services.table.get(`session#${id}`, 'head'))!.git_credentials as Array<{ secret_ref: string }>)[0].secret_ref;
    const ref = await refOf(session.id);
    const forkRef = await refOf(fork.id);
    expect(forkRef).not.toBe(ref);
    expect(await store().get(ref)).toEqual({ token: `${SECRET}-git` });
    await t.client.beta.sessions.delete(session.id);
    expect(await store().get(ref)).toBeUndefined();
    expect(await store().get(forkRef)).toEqual({ token: `${SECRET}-git` });
    await t.client.beta.sessions.delete(fork.id);
    expect(await store().get(forkRef)).toBeUndefined();
  });
});
