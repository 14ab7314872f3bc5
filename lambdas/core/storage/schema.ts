/**
 * Schema versions of the state table's derived records: what lets a newer Corral read what an
 * older one wrote, and an older one (after a rollback) never misread what a newer one wrote.
 *
 * Every derived record carries its kind's version in `sv` (the harness cursor keeps its own `v`,
 * cursor.ts). A record without one was written before versions existed (release 0, which wrote
 * the same fields as version 1). On read, each record is one of:
 * - current: read as it is;
 * - older (or unversioned): migrated on read (`migrate`) or discarded and rebuilt (`rebuild`),
 *   as the table below decides per kind;
 * - newer: written by a Corral this code does not know. It is never read as if it were current:
 *   the kind's `newer` rule says what happens instead (`absent`: treated as missing; `refuse`:
 *   the operation that needs it fails with `NewerRecordError`; `frozen`: only the fields every
 *   version keeps with the same meaning are read), and it is logged (`newer_record`).
 *
 * | record              | version | older       | newer    | why |
 * |---------------------|---------|-------------|----------|-----|
 * | harness cursor      | v 1     | rebuild     | absent   | derived: the log is folded again (cursor.ts) |
 * | harness lease       | 1       | migrate     | frozen   | `owner`, `fence`, `until` are the fencing protocol old and new harnesses share during a deploy |
 * | sandbox record      | 1       | migrate     | refuse   | it names a running task and the workspace snapshot; forgetting it would leak both |
 * | session usage       | 1       | migrate     | absent   | derived from the log's spans; the head keeps a copy, the next model call rewrites it |
 * | interrupt signal    | 1       | migrate     | absent   | a hint: the harness finds the interrupt in the log at its next read |
 * | preview chunk/watch | 1       | migrate     | absent   | seconds-lived previews; the events themselves still stream |
 * | sandbox task state  | 1       | migrate     | absent   | ECS's next task state change event rewrites it |
 * | rate-limit, auth-failure counters | 1 | migrate | frozen | `count` keeps its meaning; a counter lives one window |
 * | git channel         | 1       | migrate     | absent   | a closed channel is safe: the sandbox's git requests are refused until it is opened again |
 *
 * Version 1 of every kind has exactly the fields release 0 wrote, so its migration is the
 * identity. A later change of a record's shape bumps its version here and adds the step from the
 * previous version in `migrate` of its reader (or makes it `rebuild`); a change to a `frozen`
 * field needs a new key instead (keys.ts), since two versions read the record at once.
 *
 * Source-of-truth records (agents, agent versions, environments, vaults, credentials, sessions,
 * files, API keys) carry no schema version: the API resource in their `data` evolves additively
 * (a new field is optional, and its reader supplies the default when it is missing), as the
 * Managed Agents API itself does. A change that cannot be additive is a major upgrade
 * (docs/OPERATIONS.md).
 */
import { jsonLogger, type Logger } from '../logger.js';
import type { Item } from '../store.js';

/** The attribute that holds a derived record's schema version. */
export const SCHEMA_ATTRIBUTE = 'sv';

export type DerivedKind = 'lease' | 'sandbox' | 'session_usage' | 'interrupt_signal' | 'preview_chunk' | 'preview_watch' | 'task_state' | 'counter' | 'git_channel' | 'egress_grant';

/** The current version of each kind (see the table above). */
export const SCHEMA_VERSIONS: Readonly<Record<DerivedKind, number>> = {
  lease: 1,
  sandbox: 1,
  session_usage: 1,
  interrupt_signal: 1,
  preview_chunk: 1,
  preview_watch: 1,
  task_state: 1,
  counter: 1,
  git_channel: 1,
  egress_grant: 1,
};

/** The fields to write with a record of `kind`: its version. */
export const versionField = (kind: DerivedKind): Record<string, number> => ({ [SCHEMA_ATTRIBUTE]: SCHEMA_VERSIONS[kind] });

export type SchemaAge = 'current' | 'older' | 'newer';

/** A record of a newer schema was needed and this code cannot read it (a `refuse` kind). */
export class NewerRecordError extends Error {
  constructor(
    readonly kind: DerivedKind | 'cursor',
    readonly version: number,
  ) {
    super(`a ${kind} record of schema version ${version} was written by a newer Corral (this one knows version ${kind === 'cursor' ? 'its own' : SCHEMA_VERSIONS[kind]}); it is left as it is`);
    this.name = 'NewerRecordError';
  }
}

let sink: Logger = jsonLogger({ service: 'corral' });

/** Where `newer_record` warnings go (tests capture them). Returns the previous sink. */
export function setSchemaLogger(logger: Logger): Logger {
  const before = sink;
  sink = logger;
  return before;
}

/** Log a record of a newer schema (its key, kind and version; never its contents). */
export function reportNewer(kind: DerivedKind | 'cursor', version: number, key: { pk?: unknown; sk?: unknown }, action: string): void {
  sink.warn('newer_record', { kind, version, pk: String(key.pk), sk: String(key.sk), action });
}

/**
 * The version a stored item was written with: 0 when it has none (release 0). A version this code
 * cannot parse can only come from a later release: it counts as newer than any.
 */
export function versionOf(item: Item): number {
  const v = item[SCHEMA_ATTRIBUTE];
  if (v === undefined || v === null) return 0;
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : Number.MAX_SAFE_INTEGER;
}

/**
 * How old `item` is against this code's version of `kind`; a newer one is logged with `action`
 * (what the reader does instead of reading it).
 */
export function ageOf(kind: DerivedKind, item: Item, action: string): SchemaAge {
  const v = versionOf(item);
  const current = SCHEMA_VERSIONS[kind];
  if (v === current) return 'current';
  if (v < current) return 'older';
  reportNewer(kind, v, item, action);
  return 'newer';
}
