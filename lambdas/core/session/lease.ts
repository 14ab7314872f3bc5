import { ConditionFailedError, type Item, type StateTable } from '../store.js';
import { leaseRecords, type LeaseFields } from '../storage/items.js';
import { versionField } from '../storage/schema.js';

export interface Lease {
  sessionId: string;
  owner: string;
  /** Fencing token: grows by one with every acquisition, so a stale holder can be told apart. */
  fence: number;
  until: number;
  /**
   * The lease was taken from a holder that never released it (it crashed, or stalled past its
   * expiry and may still be running). The new holder must fence it off before writing.
   */
  takeover: boolean;
}

/**
 * One harness at a time per session. A lease is a conditional write on the session's lease item:
 * a harness takes it when it is free or expired, renews it while it works and gives it back at the
 * end. Two harnesses woken at once: one wins, the other backs off without writing to the log.
 */
export class LeaseManager {
  constructor(
    private readonly table: StateTable,
    private readonly ttlMs = 60_000,
    /** The time leases are judged by (tests move it forward to expire a dead holder's lease). */
    private readonly clock: () => number = Date.now,
  ) {}

  /** How often a holder should renew: a third of the lease's life. */
  get renewEveryMs(): number {
    return Math.max(10, Math.floor(this.ttlMs / 3));
  }

  async acquire(sessionId: string, owner: string, now = this.clock()): Promise<Lease | null> {
    return this.acquireFrom(sessionId, owner, await leaseRecords.get(this.table, sessionId), now);
  }

  /** The lease item's key, for a caller that reads it in a batch with other items (`LeaseManager.read`). */
  key(sessionId: string): { pk: string; sk: string } {
    return leaseRecords.key(sessionId);
  }

  /** The lease in an item read by `key` (undefined: never taken). */
  read(item: Item | undefined): LeaseFields | undefined {
    return leaseRecords.fromItem(item);
  }

  /**
   * `acquire` from the lease as the caller read it (`key`, `read`): one conditional write. The
   * condition is on the fence read, so a lease that changed since is not taken (null, as when
   * another holder has it).
   */
  async acquireFrom(sessionId: string, owner: string, current: LeaseFields | undefined, now = this.clock()): Promise<Lease | null> {
    if (current && current.until > now && current.owner !== owner) return null;
    const fence = current ? current.fence + 1 : 1;
    const takeover = !!current && current.until !== 0 && current.owner !== owner;
    const lease: Lease = { sessionId, owner, fence, until: now + this.ttlMs, takeover };
    try {
      await leaseRecords.put(this.table, sessionId, { owner, fence, until: lease.until }, current ? { ifEquals: { fence: current.fence } } : { ifNotExists: true });
      return lease;
    } catch (err) {
      if (err instanceof ConditionFailedError) return null;
      throw err;
    }
  }

  /**
   * `acquire` in one conditional write, with no read first: the fence goes up by one and the
   * holder is set, only where the lease is free, expired or already `owner`'s; the lease as it
   * was comes back with the write, and tells whether this was a takeover.
   */
  async acquireAtOnce(sessionId: string, owner: string, now = this.clock()): Promise<Lease | null> {
    const until = now + this.ttlMs;
    const k = leaseRecords.key(sessionId);
    try {
      const before = leaseRecords.fromItem(
        await this.table.incrementIf(k.pk, k.sk, 'fence', 1, { owner, until, ...versionField('lease') }, { absent: true, atMost: { name: 'until', value: now }, equals: { owner } }),
      );
      const takeover = !!before && before.until !== 0 && before.owner !== owner;
      return { sessionId, owner, fence: (before?.fence ?? 0) + 1, until, takeover };
    } catch (err) {
      if (err instanceof ConditionFailedError) return null;
      throw err;
    }
  }

  /** Extend the lease; false when it was lost (taken over after expiry). */
  async renew(lease: Lease, now = this.clock()): Promise<boolean> {
    const until = now + this.ttlMs;
    try {
      await leaseRecords.put(this.table, lease.sessionId, { owner: lease.owner, fence: lease.fence, until }, { ifEquals: { fence: lease.fence, owner: lease.owner } });
      lease.until = until;
      return true;
    } catch (err) {
      if (err instanceof ConditionFailedError) return false;
      throw err;
    }
  }

  async release(lease: Lease): Promise<void> {
    try {
      await leaseRecords.put(this.table, lease.sessionId, { owner: lease.owner, fence: lease.fence, until: 0 }, { ifEquals: { fence: lease.fence, owner: lease.owner } });
    } catch (err) {
      if (!(err instanceof ConditionFailedError)) throw err;
    }
  }

  /**
   * End whatever lease a session has, keeping its fence. Only for a holder known to be dead: the
   * local runtime at start, when the process that held it was killed (one process owns a data dir).
   */
  async expire(sessionId: string): Promise<void> {
    const current = await leaseRecords.get(this.table, sessionId);
    if (!current || current.until === 0) return;
    try {
      await leaseRecords.put(this.table, sessionId, { ...current, until: 0 }, { ifEquals: { fence: current.fence } });
    } catch (err) {
      if (!(err instanceof ConditionFailedError)) throw err;
    }
  }

  /** Milliseconds until the current lease expires (0 when free). */
  async remainingMs(sessionId: string, now = this.clock()): Promise<number> {
    return this.remainingOf(await leaseRecords.get(this.table, sessionId), now);
  }

  /** Milliseconds until a lease as read (`read`) expires (0 when free). */
  remainingOf(current: LeaseFields | undefined, now = this.clock()): number {
    return current ? Math.max(0, current.until - now) : 0;
  }
}
