/**
 * The state table's items: their shapes, and the only code that reads or writes them. Services
 * (resources, vaults, sessions, leases, sandboxes, rate limits, API keys) and the credential
 * proxy go through these; none of them builds a key or reads an attribute by name.
 *
 * Readers of tenant-owned items (resource heads, agent versions, vault credentials) take a
 * `Principal` and answer "absent" for another tenant's item, exactly as for a missing one, so a
 * caller cannot tell the two apart and cannot skip the check. Items that belong to a session
 * (its cursor, lease and sandbox records) carry no tenant: whoever reaches them has already read
 * the session through a principal, or is the harness.
 *
 * The attribute layout is the on-disk format of deployed tables (see `keys.ts`); it is kept as it
 * was when this module was made. Derived records (usage, leases, sandbox records, signals,
 * previews, task states, counters) carry a schema version, and each reader here says what it
 * does with an older or a newer one (the table in `schema.ts`).
 */
import { ConditionFailedError, type Item, type Page, type PutOptions, type QueryOptions, type StateTable } from '../store.js';
import { AGENT_VERSION_PREFIX, CREDENTIAL_PREFIX, SANDBOX_PREFIX, SESSION_FILE_PREFIX, SESSION_PARTITION_PREFIX, HEAD_SK, keys, type HeadKind } from './keys.js';
import { isSystem, mayRead, type Principal, type SystemPrincipal } from './principal.js';
import { NewerRecordError, ageOf, versionField, versionOf } from './schema.js';

/** A page of items, with the ones the principal may not read left out (`last` still moves on). */
function readable<T extends Item>(page: Page<Item>, who: Principal): Page<T> {
  return { items: page.items.filter((i) => mayRead(who, i.tenant)) as T[], last: page.last };
}

// --- resource heads: agents, environments, vaults, sessions ----------------------------------------

/** The head item of a tenant-owned resource: the resource as the API returns it, in `data`. */
export type HeadItem<T, X extends object = object> = Item & {
  tenant: string;
  data: T;
  /** `<tenant>#<kind>s`: the tenant's list of this kind. */
  gsi1pk: string;
  gsi1sk: string;
} & X;

/** What an agent's head keeps beside the agent: its latest version, for conditional updates. */
export interface AgentHeadFields {
  version: number;
}

/** A repository token of a session, as its head records it: which resource, and the secret's name. */
export interface RepositoryCredentialRef {
  resource_id: string;
  /** normalized with `normalizeRepositoryUrl` */
  url: string;
  secret_ref: string;
}

/** What a session's head keeps beside the session: a revision for conditional updates, its token refs. */
export interface SessionHeadFields {
  rev: number;
  git_credentials?: RepositoryCredentialRef[];
}

/** Reader and writer of one kind of resource head. `T` is the resource, `X` what is kept beside it. */
export class HeadRecords<T extends { id: string }, X extends object = object> {
  constructor(readonly kind: HeadKind) {}

  /** The head, if it exists and `who` may read it. */
  async get(table: StateTable, who: Principal, id: string): Promise<HeadItem<T, X> | undefined> {
    const k = keys.head(this.kind, id);
    const item = await table.get(k.pk, k.sk);
    return item && mayRead(who, item.tenant) ? (item as HeadItem<T, X>) : undefined;
  }

  /** Several heads in one round trip (at most 100 ids), each undefined when missing or not `who`'s to read. */
  async getMany(table: StateTable, who: Principal, ids: readonly string[]): Promise<Array<HeadItem<T, X> | undefined>> {
    const items = await table.getMany(ids.map((id) => keys.head(this.kind, id)));
    return items.map((item) => (item && mayRead(who, item.tenant) ? (item as HeadItem<T, X>) : undefined));
  }

  /** Write the head of `data` (its id is the resource's) for `tenant`. */
  put(table: StateTable, tenant: string, data: T, fields: X, opts?: PutOptions): Promise<void> {
    return table.put(
      { ...keys.head(this.kind, data.id), tenant, ...fields, data, gsi1pk: keys.tenantIndex(this.kind, tenant), gsi1sk: data.id },
      opts,
    );
  }

  /** Write back a head read with `get`, with `changes` applied (its key and tenant cannot change). */
  replace(table: StateTable, item: HeadItem<T, X>, changes: Partial<{ data: T } & X>, opts?: PutOptions): Promise<void> {
    return table.put({ ...item, ...changes, pk: item.pk, sk: item.sk, tenant: item.tenant }, opts);
  }

  delete(table: StateTable, id: string): Promise<void> {
    const k = keys.head(this.kind, id);
    return table.delete(k.pk, k.sk);
  }

  /** A page of the tenant's heads of this kind, in id order (the index's sort key is the id). */
  async page(table: StateTable, tenant: string, q: QueryOptions): Promise<Page<HeadItem<T, X>>> {
    return readable(await table.queryIndex(keys.tenantIndex(this.kind, tenant), q), { kind: 'tenant', id: tenant });
  }

  /** Every head of this kind, of every tenant (start-up recovery; a scan). */
  async all(table: StateTable, who: SystemPrincipal): Promise<Array<HeadItem<T, X>>> {
    if (!isSystem(who)) throw new TypeError('reading every tenant\'s items needs the system principal');
    if (this.kind !== 'session') throw new TypeError('only sessions are scanned');
    const items = await table.scanPrefix(SESSION_PARTITION_PREFIX);
    return items.filter((i) => i.sk === HEAD_SK) as Array<HeadItem<T, X>>;
  }
}

// --- session heads and usage ----------------------------------------------------------------------

/**
 * A session's usage item: the session's fields that change with every model call, kept out of the
 * head (a smaller head is a cheaper write; the usage item, like the head, is in no index). Where it
 * exists, its `usage` and `stats` are the session's (the head's copy may be older).
 */
export interface SessionUsageFields {
  usage: unknown;
  stats: unknown;
  updated_at: string;
}

/**
 * The usage in a usage item. Release 0's has the same fields; a newer one is absent (the head's
 * copy stands in until the next model call rewrites it).
 */
function usageFromItem(item: Item | undefined): SessionUsageFields | undefined {
  if (!item || ageOf('session_usage', item, 'the head\'s usage is used') === 'newer') return undefined;
  return { usage: item.usage, stats: item.stats, updated_at: String(item.updated_at) };
}

/** A session head as a listing returns it: with its usage item, read in the same batch. */
export type ListedSessionHead<T, X extends object = object> = HeadItem<T, X> & { listed_usage?: SessionUsageFields };

/**
 * Session heads, which also read and write the usage item beside each, and the session's listing
 * item.
 *
 * The tenant's sessions are listed through the index (`gsi1`, partition `<tenant>#sessions`), one
 * partition per tenant. A head in that index would write the partition with every status change
 * (two a turn: running, idle), which at 100,000 sessions of one tenant is more than a partition's
 * 1,000 writes a second. So the head is in no index: the index holds a listing item per session
 * (`keys.sessionListing`), written once at creation and deleted with the session; nothing in it
 * ever changes. A listing reads a page of listing items and batch-gets their heads (and usage
 * items), strongly consistent, so a listed session is as current as a `get` of it.
 *
 * Heads written before the listing item existed still carry the index key and are listed
 * directly (each such session is in the index once: its head; it gets no listing item), so
 * listings span both until those sessions end.
 */
export class SessionHeadRecords<T extends { id: string }, X extends object = object> extends HeadRecords<T, X> {
  constructor() {
    super('session');
  }

  /**
   * Write a new session's head, then its listing item: until the head is there, no reader finds
   * the session, and a listing item whose head is missing is skipped. If the listing item cannot
   * be written the head is removed again, so a session is never created unlisted.
   */
  override async put(table: StateTable, tenant: string, data: T, fields: X, opts?: PutOptions): Promise<void> {
    await table.put({ ...keys.head(this.kind, data.id), tenant, ...fields, data }, opts);
    try {
      await table.put({ ...keys.sessionListing(data.id), tenant, gsi1pk: keys.tenantIndex(this.kind, tenant), gsi1sk: data.id });
    } catch (err) {
      const k = keys.head(this.kind, data.id);
      await table.delete(k.pk, k.sk).catch(() => undefined);
      throw err;
    }
  }

  /**
   * A page of the tenant's sessions in id order: a page of the index (listing items, and heads of
   * the former layout), then one batch get of each listed session's head and usage item. A
   * session deleted since its entry was read is left out (`last` still moves on). Each returned
   * head carries the index's `gsi1sk` (its id) as the page's sort key.
   */
  override async page(table: StateTable, tenant: string, q: QueryOptions): Promise<Page<ListedSessionHead<T, X>>> {
    const who: Principal = { kind: 'tenant', id: tenant };
    const entries = readable(await table.queryIndex(keys.tenantIndex(this.kind, tenant), q), who);
    const ids = entries.items.map((e) => String(e.gsi1sk));
    const found: Array<Item | undefined> = [];
    // Two keys a session, 100 keys a batch; the batches in parallel.
    const batches: string[][] = [];
    for (let i = 0; i < ids.length; i += 50) batches.push(ids.slice(i, i + 50));
    const results = await Promise.all(batches.map((b) => table.getMany(b.flatMap((id) => [keys.head(this.kind, id), keys.sessionUsage(id)]))));
    for (const r of results) found.push(...r);
    const items: Array<ListedSessionHead<T, X>> = [];
    ids.forEach((id, i) => {
      const head = found[2 * i];
      const usage = usageFromItem(found[2 * i + 1]);
      if (!head || !mayRead(who, head.tenant)) return;
      items.push({
        ...(head as HeadItem<T, X>),
        gsi1pk: keys.tenantIndex(this.kind, tenant),
        gsi1sk: id,
        ...(usage ? { listed_usage: usage } : {}),
      });
    });
    return { items, last: entries.last };
  }

  /**
   * The head (if `who` may read it) and its usage item, in one round trip: a batch get of the two
   * keys (a query of the partition's `head` prefix costs the same on DynamoDB, and twice the CPU
   * on dynalite, where every harness step reads the session).
   */
  async getWithUsage(
    table: StateTable,
    who: Principal,
    id: string,
    /** Other items read in the same round trip (the harness's cursor and lease), returned in `extra`. */
    extraKeys: ReadonlyArray<{ pk: string; sk: string }> = [],
  ): Promise<{ head: HeadItem<T, X>; usage?: SessionUsageFields; extra: Array<Item | undefined> } | undefined> {
    const [head, usage, ...extra] = await table.getMany([keys.head('session', id), keys.sessionUsage(id), ...extraKeys]);
    if (!head || !mayRead(who, head.tenant)) return undefined;
    return { head: head as HeadItem<T, X>, usage: usageFromItem(usage), extra };
  }

  /** The usage item alone, through its schema version check. */
  async usage(table: StateTable, id: string): Promise<SessionUsageFields | undefined> {
    const k = keys.sessionUsage(id);
    return usageFromItem(await table.get(k.pk, k.sk));
  }

  /** Write the usage item (the harness, which alone holds the session's lease, is its writer). */
  putUsage(table: StateTable, id: string, fields: SessionUsageFields): Promise<void> {
    return table.put({ ...keys.sessionUsage(id), ...versionField('session_usage'), usage: fields.usage, stats: fields.stats, updated_at: fields.updated_at });
  }

  /** Remove the head, the listing item, the usage item and the interrupt signal. */
  override async delete(table: StateTable, id: string): Promise<void> {
    await super.delete(table, id);
    for (const k of [keys.sessionListing(id), keys.sessionUsage(id), keys.interruptSignal(id)]) await table.delete(k.pk, k.sk);
  }
}

// --- agent versions --------------------------------------------------------------------------------

/** One immutable version of an agent. */
export type AgentVersionItem<T> = Item & { tenant: string; data: T };

export class AgentVersionRecords<T extends { id: string; version: number }> {
  async get(table: StateTable, who: Principal, id: string, version: number): Promise<AgentVersionItem<T> | undefined> {
    const k = keys.agentVersion(id, version);
    const item = await table.get(k.pk, k.sk);
    return item && mayRead(who, item.tenant) ? (item as AgentVersionItem<T>) : undefined;
  }

  put(table: StateTable, tenant: string, data: T, opts?: PutOptions): Promise<void> {
    return table.put({ ...keys.agentVersion(data.id, data.version), tenant, data }, opts);
  }

  delete(table: StateTable, id: string, version: number): Promise<void> {
    const k = keys.agentVersion(id, version);
    return table.delete(k.pk, k.sk);
  }

  /** A page of the agent's versions, oldest first (the sort key orders them). */
  async page(table: StateTable, who: Principal, id: string, q: QueryOptions): Promise<Page<AgentVersionItem<T>>> {
    return readable(await table.query(keys.partition('agent', id), { ...q, prefix: AGENT_VERSION_PREFIX }), who);
  }
}

// --- vault credentials -----------------------------------------------------------------------------

/** A credential of a vault: what the API shows in `data`; the secret's name and its target beside. */
export type CredentialItem<T> = Item & {
  tenant: string;
  data: T;
  /** The name the proxy keeps the secret under. */
  secret_ref: string;
  /** The normalized MCP server URL the credential is for (none for environment variables). */
  target?: string;
};

export class CredentialRecords<T extends { id: string }> {
  async get(table: StateTable, who: Principal, vaultId: string, id: string): Promise<CredentialItem<T> | undefined> {
    const k = keys.credential(vaultId, id);
    const item = await table.get(k.pk, k.sk);
    return item && mayRead(who, item.tenant) ? (item as CredentialItem<T>) : undefined;
  }

  put(
    table: StateTable,
    tenant: string,
    vaultId: string,
    data: T,
    fields: { secret_ref: string; target?: string },
    opts?: PutOptions,
  ): Promise<void> {
    return table.put({ ...keys.credential(vaultId, data.id), tenant, data, ...fields }, opts);
  }

  replace(table: StateTable, item: CredentialItem<T>, changes: Partial<{ data: T; target: string | undefined }>, opts?: PutOptions): Promise<void> {
    return table.put({ ...item, ...changes, pk: item.pk, sk: item.sk, tenant: item.tenant }, opts);
  }

  delete(table: StateTable, item: CredentialItem<T>): Promise<void> {
    return table.delete(item.pk, item.sk);
  }

  /** A page of the vault's credentials that `who` may read, in id order. */
  async page(table: StateTable, who: Principal, vaultId: string, q: QueryOptions): Promise<Page<CredentialItem<T>>> {
    return readable(await table.query(keys.partition('vault', vaultId), { ...q, prefix: CREDENTIAL_PREFIX }), who);
  }

  /** Every credential of the vault that `who` may read. */
  async all(table: StateTable, who: Principal, vaultId: string): Promise<Array<CredentialItem<T>>> {
    const out: Array<CredentialItem<T>> = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.page(table, who, vaultId, { after, limit: 100 });
      out.push(...page.items);
      if (page.last === null) return out;
      after = page.last;
    }
  }
}

// --- leases ----------------------------------------------------------------------------------------

/** A session's harness lease (see session/lease.ts). */
export interface LeaseFields {
  owner: string;
  /** Fencing token: one more with every acquisition. */
  fence: number;
  /** Epoch ms it expires at; 0 once released. */
  until: number;
}

export const leaseRecords = {
  /** The lease item's key (the harness reads it with the session, in one batch). */
  key: (sessionId: string) => keys.lease(sessionId),
  /**
   * The lease in an item read by `key`. Every version keeps `owner`, `fence` and `until` with the
   * same meaning (old and new harnesses share them during a deploy), so a newer lease is read
   * through those three alone; release 0's has just those.
   */
  fromItem(item: Item | undefined): LeaseFields | undefined {
    if (!item) return undefined;
    ageOf('lease', item, 'read through owner, fence and until');
    return { owner: String(item.owner), fence: Number(item.fence), until: Number(item.until) };
  },
  async get(table: StateTable, sessionId: string): Promise<LeaseFields | undefined> {
    const k = keys.lease(sessionId);
    return leaseRecords.fromItem(await table.get(k.pk, k.sk));
  },
  put(table: StateTable, sessionId: string, lease: LeaseFields, opts?: PutOptions): Promise<void> {
    return table.put({ ...keys.lease(sessionId), ...versionField('lease'), owner: lease.owner, fence: lease.fence, until: lease.until }, opts);
  },
};

// --- sandbox records -------------------------------------------------------------------------------

/** What the table needs of a sandbox record (sandbox/manager.ts has the whole type). */
export interface SandboxRecordFields {
  sessionId: string;
  name: string;
  ref: string;
  state: string;
  lastUsedAt: string;
}

/**
 * The index spreads ready sandboxes over this many partitions, so no one partition is written hot.
 * Every tool call moves its sandbox in the index twice (marked busy, then used: `lastUsedAt` is
 * the index sort key, so each is a delete and a put of the index entry), and the partitions are
 * shared by every tenant: at 100,000 sessions with a tool call a minute that is about 6,700 index
 * writes a second, 105 a partition over 64 (833 over the 8 there were, near a partition's 1,000).
 * The reaper reads every shard, one query each, every five minutes.
 */
export const ACTIVE_SANDBOX_SHARDS = 64;

function shardOf(sessionId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < sessionId.length; i++) h = Math.imul(h ^ sessionId.charCodeAt(i), 0x01000193) >>> 0;
  return h % ACTIVE_SANDBOX_SHARDS;
}

/**
 * A sandbox record's item: the record, with `ref`, `state` and `lastUsedAt` also top level for
 * conditions. A ready sandbox is also in the index, ordered by last use, for the idle reaper.
 */
export function sandboxItem<R extends SandboxRecordFields>(record: R): Item & { record: R } {
  const item: Item & { record: R } = {
    ...keys.sandbox(record.sessionId, record.name),
    ...versionField('sandbox'),
    record,
    ref: record.ref,
    state: record.state,
    lastUsedAt: record.lastUsedAt,
  };
  if (record.state === 'ready') {
    item.gsi1pk = keys.activeSandboxes(shardOf(record.sessionId));
    item.gsi1sk = keys.activeSandboxOrder(record.lastUsedAt, record.sessionId, record.name);
  }
  return item;
}

/**
 * The record in a sandbox item. Release 0's is the same record. A newer one names a sandbox this
 * code may not understand: `get` refuses it (`NewerRecordError`: the tool call that needed it
 * fails, and the sandbox and its workspace snapshot are left to the newer code), listings skip it.
 */
function sandboxFromItem<R>(item: Item, action: string): R | undefined {
  return ageOf('sandbox', item, action) === 'newer' ? undefined : (item.record as R);
}

export class SandboxRecords<R extends SandboxRecordFields> {
  async get(table: StateTable, sessionId: string, name: string): Promise<R | undefined> {
    const k = keys.sandbox(sessionId, name);
    const item = await table.get(k.pk, k.sk);
    if (!item) return undefined;
    const record = sandboxFromItem<R>(item, 'refused');
    if (!record) throw new NewerRecordError('sandbox', versionOf(item));
    return record;
  }

  /**
   * Write a record; with `expect`, only if the stored one still has those top-level values.
   * Returns false when the condition failed.
   */
  async put(table: StateTable, record: R, expect?: { ref: string; state?: string; lastUsedAt?: string }): Promise<boolean> {
    try {
      const ifEquals = expect ? Object.fromEntries(Object.entries(expect).filter(([, v]) => v !== undefined)) : undefined;
      await table.put(sandboxItem(record), ifEquals ? { ifEquals } : {});
      return true;
    } catch (err) {
      if (err instanceof ConditionFailedError) return false;
      throw err;
    }
  }

  delete(table: StateTable, sessionId: string, name: string): Promise<void> {
    const k = keys.sandbox(sessionId, name);
    return table.delete(k.pk, k.sk);
  }

  /** The session's sandbox records. */
  async list(table: StateTable, sessionId: string): Promise<R[]> {
    const out: R[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await table.query(keys.partition('session', sessionId), { prefix: SANDBOX_PREFIX, after });
      for (const i of page.items) {
        const record = sandboxFromItem<R>(i, 'skipped');
        if (record) out.push(record);
      }
      if (page.last === null) return out;
      after = page.last;
    }
  }

  /**
   * A page of the ready sandboxes of every session in one index shard, least recently used first,
   * each with its index sort key (`order`). Reading every tenant's sandboxes needs the system
   * principal.
   */
  async activePage(table: StateTable, who: SystemPrincipal, shard: number, q: QueryOptions): Promise<Page<{ record: R; order: string }>> {
    if (!isSystem(who)) throw new TypeError('reading every tenant\'s sandboxes needs the system principal');
    const page = await table.queryIndex(keys.activeSandboxes(shard), q);
    const items: Array<{ record: R; order: string }> = [];
    for (const i of page.items) {
      const record = sandboxFromItem<R>(i, 'not reaped');
      if (record) items.push({ record, order: String(i.gsi1sk) });
    }
    return { items, last: page.last };
  }
}

// --- API keys --------------------------------------------------------------------------------------

/** An API key, by the hash of the key (the key itself is never stored). */
export interface ApiKeyFields {
  tenant: string;
  created_at: string;
}

export const apiKeyRecords = {
  async get(table: StateTable, hash: string): Promise<ApiKeyFields | undefined> {
    const k = keys.apiKey(hash);
    const item = await table.get(k.pk, k.sk);
    return item ? { tenant: String(item.tenant), created_at: String(item.created_at) } : undefined;
  },
  put(table: StateTable, hash: string, fields: ApiKeyFields): Promise<void> {
    return table.put({ ...keys.apiKey(hash), tenant: fields.tenant, created_at: fields.created_at });
  },
  delete(table: StateTable, hash: string): Promise<void> {
    const k = keys.apiKey(hash);
    return table.delete(k.pk, k.sk);
  },
};

// --- interrupt signal -----------------------------------------------------------------------------

/** How long an interrupt signal outlives its last raise (DynamoDB's TTL removes it). */
const INTERRUPT_SIGNAL_TTL_S = 7 * 24 * 3600;

/**
 * The interrupt signal of a session: a counter the API adds one to after each `user.interrupt` it
 * appends. A running harness on AWS reads this one small item, not the log, to learn that an
 * interrupt may have arrived (see `harness/interrupts.ts`).
 */
export const interruptSignals = {
  raise(table: StateTable, sessionId: string, now = Date.now()): Promise<number> {
    const k = keys.interruptSignal(sessionId);
    return table.increment(k.pk, k.sk, 'count', 1, { expiresAt: Math.floor(now / 1000) + INTERRUPT_SIGNAL_TTL_S, ...versionField('interrupt_signal') });
  },
  /** The count; 0 for a newer signal (the harness then learns of an interrupt from the log). */
  async read(table: StateTable, sessionId: string): Promise<number> {
    const k = keys.interruptSignal(sessionId);
    const item = await table.get(k.pk, k.sk);
    if (!item || ageOf('interrupt_signal', item, 'read as none') === 'newer') return 0;
    return Number(item.count ?? 0);
  },
};

/**
 * Everything in a session's partition of the state table, for deleting a session: the head's
 * usage item, the harness's cursor and lease, the interrupt signal, sandbox records, session
 * files and preview chunks.
 */
export const sessionPartition = {
  /** Delete every item left in the partition; returns how many were deleted. */
  async sweep(table: StateTable, sessionId: string): Promise<number> {
    const pk = keys.partition('session', sessionId);
    let deleted = 0;
    // Each pass deletes what one query returned, so the next query starts from the front again;
    // bounded, in case a writer that has not yet seen the session gone keeps adding items.
    for (let pass = 0; pass < 100; pass++) {
      const page = await table.query(pk, { limit: 100 });
      for (const item of page.items) await table.delete(pk, item.sk);
      deleted += page.items.length;
      if (page.items.length === 0 || page.last === null) return deleted;
    }
    return deleted;
  },
};

// --- sandbox task state ---------------------------------------------------------------------------

/** How long a task's state outlives its last change (DynamoDB's TTL removes it). */
const TASK_STATE_TTL_S = 24 * 3600;

/**
 * A sandbox task's state as ECS last reported it in a task state change event: what the Fargate
 * provider waits on while the task starts, instead of calling DescribeTasks. `version` is the
 * event's own counter (ECS raises it with every change of the task), so an event delivered late
 * or twice never overwrites a newer state.
 */
export interface TaskStateFields {
  taskArn: string;
  version: number;
  lastStatus: string;
  desiredStatus?: string;
  /** The task's private IPv4 address, once its network interface is attached. */
  privateIp?: string;
  stoppedReason?: string;
  stopCode?: string;
  /** The sandbox container's exit code, once it has exited. */
  exitCode?: number;
  /** The container's own reason, if ECS gave one. */
  containerReason?: string;
  /** When ECS says the change happened (ISO 8601). */
  updatedAt?: string;
}

export const taskStateRecords = {
  /** Records `state` unless a newer (or the same) version is there already; false if one is. */
  async put(table: StateTable, taskId: string, state: TaskStateFields, now = Date.now()): Promise<boolean> {
    const k = keys.taskState(taskId);
    try {
      await table.put({ ...state, pk: k.pk, sk: k.sk, ...versionField('task_state'), expiresAt: Math.floor(now / 1000) + TASK_STATE_TTL_S }, { ifBelow: { name: 'version', value: state.version } });
      return true;
    } catch (err) {
      if (err instanceof ConditionFailedError) return false;
      throw err;
    }
  },
  async get(table: StateTable, taskId: string): Promise<TaskStateFields | undefined> {
    const item = await table.get(keys.taskState(taskId).pk, keys.taskState(taskId).sk);
    // A newer state is absent: the provider waits for the next change event (or asks ECS).
    if (!item || ageOf('task_state', item, 'read as absent') === 'newer') return undefined;
    const { pk: _pk, sk: _sk, expiresAt: _e, sv: _sv, ...fields } = item;
    return fields as unknown as TaskStateFields;
  },
};

// --- git channels -----------------------------------------------------------------------------------

/** An open git channel: the sandbox it was issued to, and when its capability expires. */
export interface GitChannelFields {
  id: string;
  sessionId: string;
  sandbox: string;
  /** Epoch ms the channel's capability expires at (and the item with it). */
  expiresAtMs: number;
}

export const gitChannelRecords = {
  put(table: StateTable, ch: GitChannelFields): Promise<void> {
    const k = keys.gitChannel(ch.sessionId, ch.id);
    return table.put({ pk: k.pk, sk: k.sk, sandbox: ch.sandbox, expiresAtMs: ch.expiresAtMs, ...versionField('git_channel'), expiresAt: Math.ceil(ch.expiresAtMs / 1000) });
  },
  /** The channel while it is open and unexpired (TTL deletes late, so the expiry is checked here). */
  async get(table: StateTable, sessionId: string, id: string, nowMs: number): Promise<GitChannelFields | undefined> {
    const k = keys.gitChannel(sessionId, id);
    const item = await table.get(k.pk, k.sk);
    if (!item || ageOf('git_channel', item, 'read as closed') === 'newer') return undefined;
    const expiresAtMs = Number(item.expiresAtMs);
    if (!(expiresAtMs > nowMs)) return undefined;
    return { id, sessionId, sandbox: String(item.sandbox), expiresAtMs };
  },
  delete(table: StateTable, sessionId: string, id: string): Promise<void> {
    const k = keys.gitChannel(sessionId, id);
    return table.delete(k.pk, k.sk);
  },
  /** Every channel of a session (a handful: one per sandbox that cloned a private repository). */
  async list(table: StateTable, sessionId: string): Promise<GitChannelFields[]> {
    const out: GitChannelFields[] = [];
    for (let after: string | undefined; ; ) {
      const page = await table.query(keys.gitChannels(sessionId), { after, limit: 100 });
      for (const i of page.items) out.push({ id: i.sk, sessionId, sandbox: String(i.sandbox), expiresAtMs: Number(i.expiresAtMs) });
      if (page.last === null) return out;
      after = page.last;
    }
  },
};

// --- counters (rate limits, failed authentications) ------------------------------------------------

/** A counter of one fixed window: `count`, and `expiresAt` (epoch seconds) for DynamoDB's TTL. */
export const counterRecords = {
  /** Add `by` (default one); returns the new count. */
  increment(table: StateTable, key: { pk: string; sk: string }, expiresAt: number, by = 1): Promise<number> {
    return table.increment(key.pk, key.sk, 'count', by, { expiresAt, ...versionField('counter') });
  },
  /** The count (`count` means the same in every version: a newer counter is read through it). */
  async count(table: StateTable, key: { pk: string; sk: string }): Promise<number> {
    const item = await table.get(key.pk, key.sk);
    if (!item) return 0;
    ageOf('counter', item, 'read through count');
    return Number(item.count ?? 0);
  },
};

// --- preview chunks (event_deltas) -------------------------------------------------------------------

/**
 * The chunks of a model request's preview (core/session/previews.ts), one item each, in the
 * session's partition, deleted by DynamoDB's TTL some time after `expiresAt` (epoch seconds). TTL
 * deletion is lazy (it may take days), so `read` skips an expired chunk itself.
 */
export const previewWatchRecords = {
  /** A stream with `event_deltas` is open until `untilMs` (an UpdateItem: the stream's only kind of write). */
  async watch(table: StateTable, sessionId: string, untilMs: number): Promise<void> {
    const k = keys.previewWatch(sessionId);
    await table.increment(k.pk, k.sk, 'refreshes', 1, { expiresAt: Math.ceil(untilMs / 1000), ...versionField('preview_watch') });
  },
  /** Whether a stream declared interest that has not expired at `nowMs`. */
  async watched(table: StateTable, sessionId: string, nowMs: number): Promise<boolean> {
    const k = keys.previewWatch(sessionId);
    const item = await table.get(k.pk, k.sk);
    if (item === undefined || ageOf('preview_watch', item, 'read as absent') === 'newer') return false;
    return Number(item.expiresAt) * 1000 > nowMs;
  },
};

export const previewChunkRecords = {
  put(table: StateTable, sessionId: string, chunk: { request: string; seq: number; frames: unknown[] }, expiresAtMs: number): Promise<void> {
    return table.put({
      ...keys.previewChunk(sessionId, chunk.request, chunk.seq),
      ...versionField('preview_chunk'),
      frames: chunk.frames,
      expiresAt: Math.ceil(expiresAtMs / 1000),
    });
  },
  /** Chunks of `request` after `afterSeq` (-1: all), unexpired at `nowMs`, in order; at most `limit`. */
  async read(table: StateTable, sessionId: string, request: string, afterSeq: number, nowMs: number, limit = 100) {
    const page = await table.query(keys.partition('session', sessionId), {
      prefix: keys.previewChunks(request),
      after: afterSeq >= 0 ? keys.previewChunk(sessionId, request, afterSeq).sk : undefined,
      limit,
    });
    const prefix = keys.previewChunks(request);
    return page.items
      .filter((i) => i.sk.startsWith(prefix) && Number(i.expiresAt) * 1000 > nowMs && ageOf('preview_chunk', i, 'skipped') !== 'newer')
      .map((i) => ({ request, seq: Number(i.sk.slice(prefix.length)), frames: i.frames as unknown[] }));
  },
};
// --- files (`client.beta.files`) and the files of a session ------------------------------------------

/**
 * What a file's head keeps beside the metadata the API shows: the session and path it was
 * written at, for a file the session's agent wrote (its catalogue entry), and its content's
 * size and modification time in the sandbox (so an unchanged output is not copied again).
 */
export interface FileHeadFields {
  session_id?: string;
  /** Path under `/mnt/session/outputs`. */
  output_path?: string;
  output_mtime_ms?: number;
}

/** The heads of files: tenant-owned, listed per tenant through the index. */
export class FileHeadRecords<T extends { id: string }> extends HeadRecords<T, FileHeadFields> {
  constructor() {
    super('file');
  }
}

/** A file scoped to a session: a copy of its metadata and where it was written, in the session's partition. */
export type SessionFileItem<T> = Item & { tenant: string; data: T; output_path: string; output_mtime_ms: number };

export class SessionFileRecords<T extends { id: string }> {
  put(table: StateTable, tenant: string, sessionId: string, data: T, fields: { output_path: string; output_mtime_ms: number }): Promise<void> {
    return table.put({ ...keys.sessionFile(sessionId, data.id), tenant, data, ...fields });
  }

  delete(table: StateTable, sessionId: string, fileId: string): Promise<void> {
    const k = keys.sessionFile(sessionId, fileId);
    return table.delete(k.pk, k.sk);
  }

  /** A page of the session's files that `who` may read, in id order. */
  async page(table: StateTable, who: Principal, sessionId: string, q: QueryOptions): Promise<Page<SessionFileItem<T>>> {
    return readable(await table.query(keys.partition('session', sessionId), { ...q, prefix: SESSION_FILE_PREFIX }), who);
  }

  /** Every file of the session that `who` may read (at most the catalogue's bound). */
  async all(table: StateTable, who: Principal, sessionId: string): Promise<Array<SessionFileItem<T>>> {
    const out: Array<SessionFileItem<T>> = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.page(table, who, sessionId, { after, limit: 100 });
      out.push(...page.items);
      if (page.last === null) return out;
      after = page.last;
    }
  }
}

/**
 * Files that expire, by expiry (`keys.fileExpiry`): the bytes of one past its `expires_at` are
 * deleted by the sweep, which then deletes its item. The tenant is kept to name the blob.
 */
export const fileExpiryRecords = {
  put(table: StateTable, tenant: string, fileId: string, expiresAt: string): Promise<void> {
    return table.put({ ...keys.fileExpiry(expiresAt, fileId), tenant, file_id: fileId });
  },
  delete(table: StateTable, fileId: string, expiresAt: string): Promise<void> {
    const k = keys.fileExpiry(expiresAt, fileId);
    return table.delete(k.pk, k.sk);
  },
  /** Up to `limit` files whose expiry is at or before `nowIso`, soonest first. */
  async due(table: StateTable, nowIso: string, limit: number): Promise<Array<{ tenant: string; fileId: string; expiresAt: string }>> {
    const page = await table.query(keys.fileExpiry('', '').pk, { limit });
    return page.items
      .map((i) => ({ tenant: String(i.tenant), fileId: String(i.file_id), expiresAt: i.sk.slice(0, i.sk.lastIndexOf('#')) }))
      .filter((f) => f.expiresAt <= nowIso);
  },
};
