import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AgentCreate, EnvironmentCreate, SessionCreate, VaultCreate } from '../../lambdas/core/api/schemas.js';
import { NotFoundError } from '../../lambdas/core/errors.js';
import { AgentService } from '../../lambdas/core/resources/agents.js';
import { EnvironmentService } from '../../lambdas/core/resources/environments.js';
import { SessionService } from '../../lambdas/core/resources/sessions.js';
import {
  AgentVersionRecords,
  CredentialRecords,
  HeadRecords,
  SandboxRecords,
  ACTIVE_SANDBOX_SHARDS,
  type SandboxRecordFields,
} from '../../lambdas/core/storage/items.js';
import { isSystem, mayRead, systemPrincipal, tenantPrincipal, type Principal, type SystemPrincipal } from '../../lambdas/core/storage/principal.js';
import { VaultService } from '../../lambdas/core/vault/vaults.js';
import { MemoryEventLog, MemoryStateTable } from './memory-store.js';
import { sourceFiles } from './source-files.js';

/**
 * Tenant-owned items are read through a principal: a tenant reads only its own; the system
 * principal, which only a few parts of Corral hold, reads any. Nothing (null, a forged
 * `{ kind: 'system' }`, an empty tenant) skips the check.
 */
const A = tenantPrincipal('tnt_a');
const B = tenantPrincipal('tnt_b');
const SYSTEM = systemPrincipal('harness');

describe('a principal', () => {
  it('reads its own tenant\'s items; the system principal any; anything else none', () => {
    expect(mayRead(A, 'tnt_a')).toBe(true);
    expect(mayRead(A, 'tnt_b')).toBe(false);
    expect(mayRead(SYSTEM, 'tnt_b')).toBe(true);
    for (const forged of [null, undefined, { kind: 'system' }, { kind: 'system', component: 'harness' }, { kind: 'tenant', id: '' }, { kind: 'tenant' }, 'tnt_a']) {
      expect(mayRead(forged as unknown as Principal, 'tnt_a')).toBe(false);
      expect(isSystem(forged)).toBe(false);
    }
    expect(mayRead({ kind: 'tenant', id: '' }, '')).toBe(false);
    expect(() => tenantPrincipal('')).toThrow(TypeError);
  });
});

describe('each reader of tenant-owned items', () => {
  // Items of tenant A, read as A (found), as B (absent, as a missing item is) and as the system.
  async function seeded() {
    const table = new MemoryStateTable();
    const agents = new AgentService(table);
    const environments = new EnvironmentService(table);
    const vaults = new VaultService(table, { storeSecret: async () => undefined, deleteSecret: async () => undefined, copySecret: async () => undefined });
    const sessions = new SessionService(table, new MemoryEventLog(), agents, environments, { wake: async () => undefined }, { vaults });
    const agent = await agents.create('tnt_a', AgentCreate.parse({ name: 'a', model: 'claude-sonnet-4-6' }));
    const env = await environments.create('tnt_a', EnvironmentCreate.parse({ name: 'e' }));
    const vault = await vaults.create('tnt_a', VaultCreate.parse({ display_name: 'v' }));
    const credential = await vaults.createCredential('tnt_a', vault.id, {
      auth: { type: 'static_bearer', mcp_server_url: 'https://mcp.example.com/mcp', token: 'tok' },
    } as never);
    const session = await sessions.create('tnt_a', SessionCreate.parse({ agent: agent.id, environment_id: env.id, vault_ids: [vault.id] }));
    return { table, agents, environments, vaults, sessions, agent, env, vault, credential, session };
  }

  it('answers another tenant as if the item did not exist', async () => {
    const s = await seeded();
    const readers: Array<[string, (who: Principal) => Promise<unknown>]> = [
      ['agent head', (who) => new HeadRecords('agent').get(s.table, who, s.agent.id)],
      ['environment', (who) => new HeadRecords('environment').get(s.table, who, s.env.id)],
      ['vault', (who) => new HeadRecords('vault').get(s.table, who, s.vault.id)],
      ['session head', (who) => new HeadRecords('session').get(s.table, who, s.session.id)],
      ['agent version', (who) => new AgentVersionRecords().get(s.table, who, s.agent.id, 1)],
      ['credential', (who) => new CredentialRecords().get(s.table, who, s.vault.id, s.credential.id)],
      ['agent versions page', async (who) => (await new AgentVersionRecords().page(s.table, who, s.agent.id, {})).items[0]],
      ['credentials page', async (who) => (await new CredentialRecords().page(s.table, who, s.vault.id, {})).items[0]],
      ['all credentials', async (who) => (await new CredentialRecords().all(s.table, who, s.vault.id))[0]],
    ];
    for (const [name, read] of readers) {
      expect(await read(A), `${name} as its tenant`).toMatchObject({ tenant: 'tnt_a' });
      expect(await read(B), `${name} as another tenant`).toBeUndefined();
      expect(await read(SYSTEM), `${name} as the system`).toMatchObject({ tenant: 'tnt_a' });
      expect(await read({ kind: 'system' } as unknown as Principal), `${name} as a forged system principal`).toBeUndefined();
      expect(await read(null as unknown as Principal), `${name} as null`).toBeUndefined();
    }
    // the per-tenant lists: a tenant's index partition holds only its own
    for (const kind of ['agent', 'environment', 'vault', 'session'] as const) {
      expect((await new HeadRecords(kind).page(s.table, 'tnt_a', {})).items).toHaveLength(1);
      expect((await new HeadRecords(kind).page(s.table, 'tnt_b', {})).items).toHaveLength(0);
    }
  });

  it('through the services: another tenant gets 404 for every session, agent, environment and vault read', async () => {
    const s = await seeded();
    const rejects = (p: Promise<unknown>) => p.then(() => 'resolved', (err: unknown) => err);
    for (const read of [
      () => s.sessions.get(B, s.session.id),
      () => s.sessions.mutate(B, s.session.id, (x) => ({ ...x, title: 'taken' })),
      () => s.sessions.get({ kind: 'system' } as unknown as Principal, s.session.id),
      () => s.sessions.get(null as unknown as Principal, s.session.id),
      () => s.sessions.tenantOf({ kind: 'system' } as unknown as SystemPrincipal, s.session.id),
      () => s.sessions.fork('tnt_b', s.session.id),
      () => s.agents.get('tnt_b', s.agent.id),
      () => s.agents.get('tnt_b', s.agent.id, 1),
      () => s.agents.listVersions('tnt_b', s.agent.id, {}),
      () => s.environments.get('tnt_b', s.env.id),
      () => s.vaults.get('tnt_b', s.vault.id),
      () => s.vaults.getCredential('tnt_b', s.vault.id, s.credential.id),
    ]) {
      expect(await rejects(read())).toBeInstanceOf(NotFoundError);
    }
    expect((await s.sessions.get(SYSTEM, s.session.id)).title).toBeNull();
    expect(await s.sessions.tenantOf(SYSTEM, s.session.id)).toBe('tnt_a');
  });

  it('reads every tenant\'s sandboxes and sessions only with the system principal', async () => {
    const s = await seeded();
    const sandboxes = new SandboxRecords<SandboxRecordFields>();
    await sandboxes.put(s.table, { sessionId: s.session.id, name: 'default', ref: 'r1', state: 'ready', lastUsedAt: '2026-01-01T00:00:00.000Z' });
    const forged = { kind: 'system', component: 'sandbox-reaper' } as unknown as SystemPrincipal;
    for (let shard = 0; shard < 8; shard++) await expect(sandboxes.activePage(s.table, forged, shard, {})).rejects.toThrow(TypeError);
    const found = [];
    for (let shard = 0; shard < ACTIVE_SANDBOX_SHARDS; shard++) found.push(...(await sandboxes.activePage(s.table, SYSTEM, shard, {})).items);
    expect(found.map((f) => f.record.ref)).toEqual(['r1']);
    await expect(s.sessions.activeSessionIds(forged)).rejects.toThrow(TypeError);
    expect(await s.sessions.activeSessionIds(SYSTEM)).toEqual([s.session.id]);
  });
});

describe('the system principal', () => {
  /**
   * Where the source makes one, and for which part. A new place is a decision to let code read
   * every tenant's items: add it here with the reason, and to the list in principal.ts.
   */
  const ALLOWED: Record<string, { component: string; why: string }> = {
    'lambdas/core/harness/': { component: 'harness', why: 'runs every tenant\'s sessions' },
    'lambdas/harness-step/handler.ts': { component: 'harness', why: 'the harness Lambda (its metrics read the session)' },
    'lambdas/core/sandbox/reaper.ts': { component: 'sandbox-reaper', why: 'stops idle sandboxes of every session' },
    'lambdas/core/vault/proxy.ts': { component: 'credential-proxy', why: 'reads the session a call names, then vaults as its tenant' },
    'local-runtime/runtime.ts': { component: 'recovery', why: 'wakes every unfinished session at start' },
  };

  it('is made only in the places that act for every tenant', () => {
    const made: string[] = [];
    for (const file of sourceFiles()) {
      if (file === 'lambdas/core/storage/principal.ts') continue;
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/systemPrincipal\s*\(\s*(?:'([^']*)'|"([^"]*)"|([^)]*))\)/g)) {
        const component = m[1] ?? m[2] ?? `(not a literal: ${m[3]})`;
        const place = Object.keys(ALLOWED).find((p) => (p.endsWith('/') ? file.startsWith(p) : file === p));
        made.push(place && ALLOWED[place].component === component ? `${place}: ${component}` : `NOT ALLOWED ${file}: ${component}`);
      }
    }
    expect(made.filter((m) => m.startsWith('NOT ALLOWED'))).toEqual([]);
    // and each allowed place does make it (a stale entry would allow a place nobody checked)
    expect(new Set(made)).toEqual(new Set(Object.entries(ALLOWED).map(([p, a]) => `${p}: ${a.component}`)));
  });
});
