import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'; // Crockford base32: sortable, unambiguous

function encodeTime(ms: number, length: number): string {
  let out = '';
  for (let i = length - 1; i >= 0; i--) {
    out = ALPHABET[ms % 32] + out;
    ms = Math.floor(ms / 32);
  }
  return out;
}

function encodeRandom(length: number): string {
  const bytes = randomBytes(length);
  let out = '';
  for (let i = 0; i < length; i++) out += ALPHABET[bytes[i] % 32];
  return out;
}

/**
 * A new identifier `<prefix>_<time><random>`. Ids sort by creation time (10 characters of
 * millisecond time, then 16 random characters), so a DynamoDB range key over them lists
 * resources oldest first without a separate timestamp index.
 */
export function newId(prefix: string, now: number = Date.now()): string {
  return `${prefix}_${encodeTime(now, 10)}${encodeRandom(16)}`;
}

/** Id prefixes, matching the hosted API's look. */
export const ID_PREFIX = {
  agent: 'agent',
  environment: 'env',
  session: 'sesn',
  event: 'sevt',
  tenant: 'tnt',
  file: 'file',
  outcome: 'outc',
} as const;
