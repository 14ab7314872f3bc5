import { PositionConflictError } from '../../lambdas/core/errors.js';
import { isEventType, type SessionEvent, type StoredEvent } from '../../lambdas/core/session/events.js';
import type { EventLog, GetEventsOptions } from '../../lambdas/core/session/log.js';
import { ConditionFailedError, type Item, type Page, type PutOptions, type QueryOptions, type StateTable, type UpdateWhen } from '../../lambdas/core/store.js';

/**
 * In-memory stand-ins for the core's two storage interfaces, so the unit project can run the
 * core's services without dynalite. They follow the contracts of lambdas/core/store.ts and
 * lambdas/core/session/log.ts as the DynamoDB adapters implement them (conditional writes,
 * exclusive `after` cursors, `last` only when more may follow, positional appends that conflict);
 * those adapters are tested against dynalite and DynamoDB Local in the integration project.
 * Items are copied in and out, as a database would, so a caller cannot change what is stored.
 */
const copy = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

export class MemoryStateTable implements StateTable {
  readonly items = new Map<string, Item>();
  private key = (pk: string, sk: string) => `${pk}\u0000${sk}`;

  async get(pk: string, sk: string): Promise<Item | undefined> {
    const item = this.items.get(this.key(pk, sk));
    return item && copy(item);
  }

  async getMany(keys: ReadonlyArray<{ pk: string; sk: string }>): Promise<Array<Item | undefined>> {
    return Promise.all(keys.map((k) => this.get(k.pk, k.sk)));
  }

  async put(item: Item, opts: PutOptions = {}): Promise<void> {
    const current = this.items.get(this.key(item.pk, item.sk));
    const fail = () => {
      throw new ConditionFailedError(`conditional write on ${item.pk}/${item.sk} failed`);
    };
    if (opts.ifNotExists && current) fail();
    for (const [name, value] of Object.entries(opts.ifEquals ?? {})) {
      if (!current || JSON.stringify(current[name]) !== JSON.stringify(value)) fail();
    }
    if (opts.ifBelow && current && typeof current[opts.ifBelow.name] === 'number' && !((current[opts.ifBelow.name] as number) < opts.ifBelow.value)) fail();
    this.items.set(this.key(item.pk, item.sk), copy(item));
  }

  async delete(pk: string, sk: string): Promise<void> {
    this.items.delete(this.key(pk, sk));
  }

  async increment(pk: string, sk: string, attribute: string, by: number, extra: Record<string, unknown> = {}): Promise<number> {
    const current: Item = this.items.get(this.key(pk, sk)) ?? { pk, sk };
    const value = ((current[attribute] as number | undefined) ?? 0) + by;
    this.items.set(this.key(pk, sk), copy({ ...current, ...extra, [attribute]: value }));
    return value;
  }

  async incrementIf(pk: string, sk: string, attribute: string, by: number, extra: Record<string, unknown>, when: UpdateWhen): Promise<Item | undefined> {
    const before = this.items.get(this.key(pk, sk));
    const ok =
      (!when.absent && !when.atMost && !when.equals) ||
      (when.absent && !before) ||
      (when.atMost !== undefined && before !== undefined && (before[when.atMost.name] as number) <= when.atMost.value) ||
      (when.equals !== undefined && before !== undefined && Object.entries(when.equals).every(([k, v]) => before[k] === v));
    if (!ok) throw new ConditionFailedError(`conditional update of ${pk}/${sk} failed`);
    await this.increment(pk, sk, attribute, by, extra);
    return before && copy(before);
  }

  query(pk: string, opts: QueryOptions = {}): Promise<Page<Item>> {
    return this.page([...this.items.values()].filter((i) => i.pk === pk), 'sk', opts);
  }

  queryIndex(gsi1pk: string, opts: QueryOptions = {}): Promise<Page<Item>> {
    return this.page([...this.items.values()].filter((i) => i.gsi1pk === gsi1pk), 'gsi1sk', opts);
  }

  async scanPrefix(pkPrefix: string): Promise<Item[]> {
    return [...this.items.values()].filter((i) => i.pk.startsWith(pkPrefix)).map(copy);
  }

  private async page(items: Item[], range: 'sk' | 'gsi1sk', opts: QueryOptions): Promise<Page<Item>> {
    const key = (i: Item) => String(i[range]);
    let sorted = items.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
    if (opts.reverse) sorted = sorted.reverse();
    if (opts.prefix !== undefined) sorted = sorted.filter((i) => key(i).startsWith(opts.prefix!));
    if (opts.after !== undefined) sorted = sorted.filter((i) => (opts.reverse ? key(i) < opts.after! : key(i) > opts.after!));
    const limit = opts.limit ?? 1000;
    const page = sorted.slice(0, limit).map(copy);
    return { items: page, last: sorted.length > limit ? key(page[page.length - 1]) : null };
  }
}

export class MemoryEventLog implements EventLog {
  readonly sessions = new Map<string, StoredEvent[]>();

  private log(sessionId: string): StoredEvent[] {
    let log = this.sessions.get(sessionId);
    if (!log) this.sessions.set(sessionId, (log = []));
    return log;
  }

  private putAt(sessionId: string, position: number, event: SessionEvent, rest?: SessionEvent[]): StoredEvent {
    // Every event the unit tests' harnesses and services write is checked against the union at
    // run time (the types say so at compile time; this catches a body built past them).
    for (const e of [event, ...(rest ?? [])]) {
      if (!isEventType(e.type)) throw new Error(`event ${e.id} has type ${JSON.stringify(e.type)}, which is not in EVENT_TYPES`);
    }
    const log = this.log(sessionId);
    if (position !== log.length + 1) {
      if (position <= log.length) throw new PositionConflictError(sessionId, position);
      throw new Error(`position ${position} of session ${sessionId} leaves a gap`);
    }
    const stored: StoredEvent = rest?.length ? { position, event: copy(event), rest: copy(rest) } : { position, event: copy(event) };
    log.push(stored);
    return copy(stored);
  }

  async emitEvent(sessionId: string, event: SessionEvent, opts: { position?: number } = {}): Promise<StoredEvent> {
    return this.putAt(sessionId, opts.position ?? this.log(sessionId).length + 1, event);
  }

  async appendBatch(
    sessionId: string,
    events: SessionEvent[],
    opts: { position: number; mayFollow?: (interloper: SessionEvent) => boolean; onHead?: (head: StoredEvent) => void },
  ): Promise<StoredEvent[]> {
    if (events.length === 0) return [];
    const [head, ...rest] = events;
    const out = [this.putAt(sessionId, opts.position, head, rest)];
    opts.onHead?.(copy([out[0]])[0]);
    for (const event of rest) {
      const log = this.log(sessionId);
      const taken = log.slice(out[out.length - 1].position);
      if (!taken.every((t) => (opts.mayFollow ?? (() => false))(t.event))) throw new PositionConflictError(sessionId, out[out.length - 1].position + 1);
      out.push(this.putAt(sessionId, log.length + 1, event));
    }
    return out;
  }

  async getEvents(sessionId: string, opts: GetEventsOptions = {}): Promise<StoredEvent[]> {
    const from = Math.max(1, opts.from ?? 1);
    const to = opts.to ?? Number.MAX_SAFE_INTEGER;
    let slice = this.log(sessionId).filter((e) => e.position >= from && e.position < to);
    if (opts.order === 'desc') slice = slice.reverse();
    if (opts.limit !== undefined) slice = slice.slice(0, Math.max(0, opts.limit));
    return copy(slice);
  }

  async lastPosition(sessionId: string): Promise<number> {
    return this.log(sessionId).length;
  }

  async deleteAll(sessionId: string): Promise<void> {
    this.sessions.delete(sessionId);
  }
}
