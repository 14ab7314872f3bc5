/**
 * The harness's cursor: its fold of a session's log (`TurnState`, harness/state.ts) up to a
 * position, saved so that a wake reads only the events after it. It is derived: the log alone
 * rebuilds it (`foldEvents` from `initialState`).
 *
 * Stored as `{ position, v, state }`. `v` is the shape of `state`: a cursor written by code with
 * another `CURSOR_VERSION` (or by code from before versions, with no `v`) is not read at all,
 * and the harness folds the log again from the start, rather than misreading fields that were
 * added, renamed or retyped since. Bump `CURSOR_VERSION` whenever `TurnState` changes shape
 * (`test/unit/storage-cursor.test.ts` fails when its fields change and the version does not).
 */
import { ConditionFailedError, type Item, type StateTable } from '../store.js';
import { keys } from './keys.js';
import { reportNewer } from './schema.js';

/** The shape of the saved `state`; see the module comment before changing `TurnState`. */
export const CURSOR_VERSION = 3;

/** The cursor item beside its key. `position` is top level so that saves can be conditional on it. */
export interface CursorFields<S> {
  position: number;
  v: number;
  state: S;
}

/**
 * The saved state, or undefined when there is none or it was saved in another shape (another
 * version, or the unversioned form of earlier releases): the caller folds from the start then.
 */
export async function readCursor<S>(table: StateTable, sessionId: string): Promise<S | undefined> {
  const k = keys.cursor(sessionId);
  return cursorFromItem<S>(await table.get(k.pk, k.sk));
}

/** The cursor item's key, for a caller that reads it in a batch with other items. */
export const cursorKey = (sessionId: string) => keys.cursor(sessionId);

/** The saved state in a cursor item read by `cursorKey`, as `readCursor` answers it. */
export function cursorFromItem<S>(item: Item | undefined): S | undefined {
  if (!item) return undefined;
  // A newer cursor (a rollback) is no more read than an older one; it is logged, then replaced.
  if (item.v !== undefined && (typeof item.v !== 'number' || item.v > CURSOR_VERSION)) reportNewer('cursor', Number(item.v), item, 'the log is folded again');
  if (item.v !== CURSOR_VERSION || item.state === undefined) return undefined;
  return item.state as S;
}

/**
 * Save the state folded up to `position`. With `onlyForward`, only over a cursor at an earlier
 * position, so a stale harness cannot move it back: returns false when that refused the write.
 * Without it the write replaces whatever is there (the first save of a wake that found no
 * readable cursor, which also replaces one of another version).
 */
export async function writeCursor<S>(table: StateTable, sessionId: string, position: number, state: S, onlyForward: boolean): Promise<boolean> {
  const item: CursorFields<S> = { position, v: CURSOR_VERSION, state };
  try {
    await table.put({ ...keys.cursor(sessionId), ...item }, onlyForward ? { ifBelow: { name: 'position', value: position } } : {});
    return true;
  } catch (err) {
    if (err instanceof ConditionFailedError) return false;
    throw err;
  }
}
