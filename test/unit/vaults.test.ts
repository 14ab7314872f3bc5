import { beforeEach, describe, expect, it } from 'vitest';
import { CredentialCreate, CredentialUpdate, VaultCreate, VaultUpdate } from '../../lambdas/core/api/schemas.js';
import { ConflictError, NotFoundError } from '../../lambdas/core/errors.js';
import type { SecretSink } from '../../lambdas/core/vault/secret-store.js';
import type { SecretFields } from '../../lambdas/core/vault/types.js';
import { CredentialProxyUnavailableError, VaultService } from '../../lambdas/core/vault/vaults.js';
import { MemoryStateTable } from './memory-store.js';

/**
 * Vaults and credentials on the in-memory store, with a stand-in for the credential proxy that
 * keeps secrets as the proxy does (a merge replaces the fields given and drops those set to '').
 * What is checked: secrets reach only the proxy, never the table or an answer; each rule is a
 * 400, 404 or 409 that names what is wrong.
 */
class MemorySink implements SecretSink {
  readonly secrets = new Map<string, SecretFields>();
  async storeSecret(ref: string, value: SecretFields, opts: { merge?: boolean } = {}) {
    const next: SecretFields = opts.merge ? { ...this.secrets.get(ref), ...value } : { ...value };
    for (const [k, v] of Object.entries(next)) if (v === '') delete next[k];
    this.secrets.set(ref, next);
  }
  async deleteSecret(ref: string) {
    this.secrets.delete(ref);
  }
  async copySecret(from: string, to: string) {
    this.secrets.set(to, { ...this.secrets.get(from)! });
  }
}

const T = 'tnt_v';
let table: MemoryStateTable;
let sink: MemorySink;
let vaults: VaultService;
const rejects = async (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e as Error);
const stored = () => JSON.stringify([...table.items.values()]);

beforeEach(() => {
  table = new MemoryStateTable();
  sink = new MemorySink();
  vaults = new VaultService(table, sink);
});

describe('vaults', () => {
  it('are created, renamed, listed per tenant, archived and deleted with their secrets', async () => {
    const v = await vaults.create(T, VaultCreate.parse({ display_name: 'prod', metadata: { team: 'infra' } }));
    expect(v).toMatchObject({ type: 'vault', display_name: 'prod', metadata: { team: 'infra' }, archived_at: null });
    expect((await vaults.update(T, v.id, VaultUpdate.parse({ display_name: 'prod2', metadata: { team: null } })))).toMatchObject({ display_name: 'prod2', metadata: {} });
    expect((await vaults.list(T, {})).data.map((x) => x.id)).toEqual([v.id]);
    expect((await vaults.list('tnt_other', {})).data).toEqual([]);
    expect(await rejects(vaults.get('tnt_other', v.id))).toBeInstanceOf(NotFoundError);

    const c = await vaults.createCredential(T, v.id, CredentialCreate.parse({ auth: { type: 'static_bearer', token: 'tok_secret_1', mcp_server_url: 'https://mcp.example.com/mcp' } }));
    expect(sink.secrets.size).toBe(1);
    await vaults.archive(T, v.id);
    expect(await rejects(vaults.update(T, v.id, VaultUpdate.parse({ display_name: 'x' })))).toMatchObject({ status: 400, message: `vault ${v.id} is archived` });
    expect(await rejects(vaults.createCredential(T, v.id, CredentialCreate.parse({ auth: { type: 'static_bearer', token: 'tok_2', mcp_server_url: 'https://b.example.com' } })))).toMatchObject({ status: 400 });
    expect((await vaults.list(T, {})).data).toEqual([]);
    expect(await vaults.delete(T, v.id)).toEqual({ id: v.id, type: 'vault_deleted' });
    expect(sink.secrets.size).toBe(0);
    expect(await rejects(vaults.getCredential(T, v.id, c.id))).toBeInstanceOf(NotFoundError);
  });

  it('are checked when a session names them: this tenant, not archived, each once', async () => {
    const v = await vaults.create(T, VaultCreate.parse({ display_name: 'a' }));
    await vaults.assertUsable(T, [v.id]);
    expect(await rejects(vaults.assertUsable(T, [v.id, v.id]))).toMatchObject({ status: 400, message: `vault_ids: ${v.id} is listed twice` });
    expect(await rejects(vaults.assertUsable('tnt_other', [v.id]))).toMatchObject({ status: 400, message: `vault_ids: vault ${v.id} not found` });
    await vaults.archive(T, v.id);
    expect(await rejects(vaults.assertUsable(T, [v.id]))).toMatchObject({ status: 400, message: `vault_ids: vault ${v.id} is archived` });
  });
});

describe('credentials', () => {
  let vaultId: string;
  beforeEach(async () => {
    vaultId = (await vaults.create(T, VaultCreate.parse({ display_name: 'v' }))).id;
  });

  it('hand their secrets to the proxy and show only the rest', async () => {
    const c = await vaults.createCredential(
      T,
      vaultId,
      CredentialCreate.parse({
        display_name: 'docs',
        auth: {
          type: 'mcp_oauth',
          access_token: 'at_secret',
          mcp_server_url: 'https://mcp.example.com/mcp',
          refresh: { client_id: 'cid', refresh_token: 'rt_secret', token_endpoint: 'https://auth.example.com/token', token_endpoint_auth: { type: 'client_secret_post', client_secret: 'cs_secret' } },
        },
      }),
    );
    expect(c.auth).toEqual({
      type: 'mcp_oauth',
      mcp_server_url: 'https://mcp.example.com/mcp',
      expires_at: null,
      refresh: { client_id: 'cid', token_endpoint: 'https://auth.example.com/token', token_endpoint_auth: { type: 'client_secret_post' }, resource: null, scope: null },
    });
    expect([...sink.secrets.values()]).toEqual([{ access_token: 'at_secret', refresh_token: 'rt_secret', client_secret: 'cs_secret' }]);
    for (const s of ['at_secret', 'rt_secret', 'cs_secret']) {
      expect(stored()).not.toContain(s);
      expect(JSON.stringify(c)).not.toContain(s);
    }
    expect(await vaults.getCredential(T, vaultId, c.id)).toEqual(c);

    const env = await vaults.createCredential(
      T,
      vaultId,
      CredentialCreate.parse({ auth: { type: 'environment_variable', secret_name: 'API_TOKEN', secret_value: 'ev_secret', networking: { type: 'limited', allowed_hosts: ['api.example.com'] } } }),
    );
    expect(env.auth).toEqual({ type: 'environment_variable', secret_name: 'API_TOKEN', injection_location: { body: false, header: true }, networking: { type: 'limited', allowed_hosts: ['api.example.com'] } });
    expect((await vaults.listCredentials(T, vaultId, {})).data.map((x) => x.id).sort()).toEqual([c.id, env.id].sort());
  });

  it('allow one usable credential per MCP server and vault', async () => {
    const first = await vaults.createCredential(T, vaultId, CredentialCreate.parse({ auth: { type: 'static_bearer', token: 't1', mcp_server_url: 'https://mcp.example.com/mcp' } }));
    const again = await rejects(vaults.createCredential(T, vaultId, CredentialCreate.parse({ auth: { type: 'static_bearer', token: 't2', mcp_server_url: 'https://MCP.example.com/mcp' } })));
    expect(again).toBeInstanceOf(ConflictError);
    expect(again?.message).toMatch(new RegExp(`^vault ${vaultId} already has credential ${first.id} for `));
    expect(again?.message).not.toContain('t2');
    await vaults.archiveCredential(T, vaultId, first.id);
    expect(sink.secrets.size).toBe(0);
    await vaults.createCredential(T, vaultId, CredentialCreate.parse({ auth: { type: 'static_bearer', token: 't2', mcp_server_url: 'https://mcp.example.com/mcp' } }));
    expect((await vaults.listCredentials(T, vaultId, {})).data).toHaveLength(1);
    expect((await vaults.listCredentials(T, vaultId, { include_archived: true })).data).toHaveLength(2);
  });

  it('update: secret fields go to the proxy as a patch; the type cannot change', async () => {
    const c = await vaults.createCredential(
      T,
      vaultId,
      CredentialCreate.parse({
        auth: {
          type: 'mcp_oauth',
          access_token: 'at1',
          mcp_server_url: 'https://mcp.example.com/mcp',
          refresh: { client_id: 'cid', refresh_token: 'rt1', token_endpoint: 'https://auth.example.com/token', token_endpoint_auth: { type: 'client_secret_basic', client_secret: 'cs1' } },
        },
      }),
    );
    const ref = [...sink.secrets.keys()][0];
    await vaults.updateCredential(T, vaultId, c.id, CredentialUpdate.parse({ auth: { type: 'mcp_oauth', access_token: 'at2', refresh: { scope: 'read' } }, display_name: 'renamed' }));
    expect(sink.secrets.get(ref)).toEqual({ access_token: 'at2', refresh_token: 'rt1', client_secret: 'cs1' });
    const got = await vaults.getCredential(T, vaultId, c.id);
    expect(got).toMatchObject({ display_name: 'renamed', auth: { refresh: { scope: 'read', client_id: 'cid' } } });
    // dropping the refresh settings removes their secrets too
    await vaults.updateCredential(T, vaultId, c.id, CredentialUpdate.parse({ auth: { type: 'mcp_oauth', refresh: null } }));
    expect(sink.secrets.get(ref)).toEqual({ access_token: 'at2' });
    expect((await vaults.getCredential(T, vaultId, c.id)).auth).toMatchObject({ refresh: null });
    expect(await rejects(vaults.updateCredential(T, vaultId, c.id, CredentialUpdate.parse({ auth: { type: 'static_bearer', token: 'x' } })))).toMatchObject({
      status: 400,
      message: `auth.type: credential ${c.id} is mcp_oauth; its type cannot change`,
    });

    const e = await vaults.createCredential(T, vaultId, CredentialCreate.parse({ auth: { type: 'environment_variable', secret_name: 'K', secret_value: 'v1', networking: { type: 'unrestricted' } } }));
    const updated = await vaults.updateCredential(T, vaultId, e.id, CredentialUpdate.parse({ auth: { type: 'environment_variable', secret_value: 'v2', injection_location: { body: true } } }));
    expect(updated.auth).toMatchObject({ injection_location: { body: true, header: true }, networking: { type: 'unrestricted' } });
    expect([...sink.secrets.values()]).toContainEqual({ secret_value: 'v2' });
    await vaults.deleteCredential(T, vaultId, e.id);
    expect([...sink.secrets.values()]).not.toContainEqual({ secret_value: 'v2' });
  });

  it('validation needs an mcp_oauth credential and a proxy that can validate', async () => {
    const c = await vaults.createCredential(T, vaultId, CredentialCreate.parse({ auth: { type: 'static_bearer', token: 't', mcp_server_url: 'https://mcp.example.com' } }));
    expect(await rejects(vaults.validateMcpOAuth(T, vaultId, c.id))).toMatchObject({ status: 400, message: `credential ${c.id} is a static_bearer credential; only mcp_oauth credentials can be validated` });
    const o = await vaults.createCredential(T, vaultId, CredentialCreate.parse({ auth: { type: 'mcp_oauth', access_token: 'a', mcp_server_url: 'https://other.example.com' } }));
    expect(await rejects(vaults.validateMcpOAuth(T, vaultId, o.id))).toBeInstanceOf(CredentialProxyUnavailableError);
  });

  it('without a credential proxy, no secret can be stored', async () => {
    const bare = new VaultService(table, undefined);
    const v = await bare.create(T, VaultCreate.parse({ display_name: 'x' }));
    const err = await rejects(bare.createCredential(T, v.id, CredentialCreate.parse({ auth: { type: 'static_bearer', token: 'tok_nowhere', mcp_server_url: 'https://m.example.com' } })));
    expect(err).toBeInstanceOf(CredentialProxyUnavailableError);
    expect(err).toMatchObject({ status: 503, message: 'no credential proxy is configured on this deployment: secrets cannot be stored' });
    expect(stored()).not.toContain('tok_nowhere');
    expect(await rejects(bare.getCredential(T, v.id, 'vcrd_nope'))).toBeInstanceOf(NotFoundError);
  });
});
