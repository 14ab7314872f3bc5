import { CorralError } from '../errors.js';

/** Apply a metadata patch: a null value removes the key. */
export function patchMetadata(
  current: Record<string, string>,
  patch: Record<string, string | null> | null | undefined,
): Record<string, string> {
  if (patch === undefined) return current;
  if (patch === null) return {};
  const out = { ...current };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return out;
}

export function nowIso(now: Date = new Date()): string {
  return now.toISOString();
}

/**
 * Largest stored record, in bytes of its JSON: DynamoDB refuses items over 400 KB, so every
 * record a request shapes is measured before it is written and refused (413) well below that,
 * leaving room for the item's keys and bookkeeping attributes. JSON is never smaller than
 * DynamoDB's count of the same value, so a record that passes here fits there.
 */
export const MAX_RECORD_BYTES = 320 * 1024;
/** An agent is copied into every session that uses it, so it gets less than a session. */
export const MAX_AGENT_BYTES = 192 * 1024;

/** A record a request would make is larger than a record may be (413). */
export class RecordTooLargeError extends CorralError {
  constructor(message: string) {
    super('request_too_large', 413, message);
    this.name = 'RecordTooLargeError';
  }
}

const bytes = (v: unknown) => Buffer.byteLength(JSON.stringify(v) ?? '', 'utf8');
const kb = (n: number) => `${Math.ceil(n / 1024)} KB`;

/**
 * Refuse a record that would be stored larger than `limit`, naming the field that takes most of
 * it (one level into an object field: `agent.system`) and the limit.
 */
export function assertRecordFits(what: string, record: object, limit = MAX_RECORD_BYTES): void {
  const size = bytes(record);
  if (size <= limit) return;
  let path = '';
  let value: unknown = record;
  for (let level = 0; level < 2 && value && typeof value === 'object' && !Array.isArray(value); level++) {
    const entries = Object.entries(value as Record<string, unknown>);
    if (!entries.length) break;
    const [name, largest] = entries.reduce((a, b) => (bytes(b[1]) > bytes(a[1]) ? b : a));
    path = path ? `${path}.${name}` : name;
    value = largest;
  }
  throw new RecordTooLargeError(
    `${what} would be ${kb(size)} stored, more than the ${kb(limit)} a ${what} may be; most of it is ${path} (${kb(bytes(value))})`,
  );
}
