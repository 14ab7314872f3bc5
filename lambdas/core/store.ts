/**
 * The state table the core keeps its resources in (agents, environments, sessions, API keys,
 * leases, sandbox records): items addressed by a partition key and a sort key, with one
 * secondary index (`gsi1pk`, `gsi1sk`) for per-tenant listing. The DynamoDB adapter implements
 * it; the core only speaks this interface, and only through `storage/` (which owns the keys and
 * the item shapes).
 */
export type Item = Record<string, unknown> & { pk: string; sk: string };

export interface PutOptions {
  /** Fail with `ConditionFailedError` if the item exists. */
  ifNotExists?: boolean;
  /** Fail with `ConditionFailedError` unless every listed attribute currently has this value. */
  ifEquals?: Record<string, unknown>;
  /** Fail with `ConditionFailedError` unless the numeric attribute is below this value (or absent). */
  ifBelow?: { name: string; value: number };
}

/** When a conditional update may go ahead: when any one of the given holds. */
export interface UpdateWhen {
  /** The item does not exist. */
  absent?: boolean;
  /** The numeric attribute is at most this value. */
  atMost?: { name: string; value: number };
  /** Every listed attribute has this value. */
  equals?: Record<string, unknown>;
}

export interface QueryOptions {
  /** Only sort keys that start with this. */
  prefix?: string;
  /** Resume after this sort key (exclusive). */
  after?: string;
  limit?: number;
  reverse?: boolean;
}

export interface Page<T> {
  items: T[];
  /** Sort key of the last item returned when more may follow, else null. */
  last: string | null;
}

export interface StateTable {
  get(pk: string, sk: string): Promise<Item | undefined>;
  /**
   * Several items by key in one round trip (at most 100), each `undefined` when missing, in the
   * order of `keys`. Strongly consistent, as `get`.
   */
  getMany(keys: ReadonlyArray<{ pk: string; sk: string }>): Promise<Array<Item | undefined>>;
  put(item: Item, opts?: PutOptions): Promise<void>;
  delete(pk: string, sk: string): Promise<void>;
  query(pk: string, opts?: QueryOptions): Promise<Page<Item>>;
  /** Query the secondary index by `gsi1pk`; `after` and `prefix` refer to `gsi1sk`. */
  queryIndex(gsi1pk: string, opts?: QueryOptions): Promise<Page<Item>>;
  /**
   * Atomically add `by` to a numeric attribute (created at 0), setting `extra` attributes too;
   * returns the new value.
   */
  increment(pk: string, sk: string, attribute: string, by: number, extra?: Record<string, unknown>): Promise<number>;
  /**
   * `increment`, only `when` the item allows it (else `ConditionFailedError`), in one conditional
   * write; returns the item as it was before (undefined: it did not exist).
   */
  incrementIf(pk: string, sk: string, attribute: string, by: number, extra: Record<string, unknown>, when: UpdateWhen): Promise<Item | undefined>;
  /** Every item whose partition key starts with `pkPrefix` (start-up recovery only; a scan). */
  scanPrefix(pkPrefix: string): Promise<Item[]>;
}

export class ConditionFailedError extends Error {
  constructor(message = 'condition failed') {
    super(message);
    this.name = 'ConditionFailedError';
  }
}
