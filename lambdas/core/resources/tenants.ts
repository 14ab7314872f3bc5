import { createHash, randomBytes } from 'node:crypto';
import { AuthenticationError } from '../errors.js';
import type { StateTable } from '../store.js';

/** Only a hash of an API key is stored; the key itself is shown once, when it is made. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

export function generateApiKey(): string {
  return `sk-corral-${randomBytes(24).toString('base64url')}`;
}

const keyItem = (hash: string) => ({ pk: `apikey#${hash}`, sk: 'key' });

/** API keys, each belonging to one tenant. */
export class TenantService {
  private readonly cache = new Map<string, { tenant: string; at: number }>();
  /**
   * Hashes of keys that verified on this instance in the last day (the most recent 10,000), so
   * that their holders keep getting in while failed authentications are being limited.
   */
  private readonly verified = new Map<string, number>();

  constructor(
    private readonly table: StateTable,
    private readonly cacheMs = 30_000,
  ) {}

  async addKey(tenant: string, key: string, now = new Date()): Promise<void> {
    await this.table.put({ ...keyItem(hashApiKey(key)), tenant, created_at: now.toISOString() });
  }

  async revokeKey(key: string): Promise<void> {
    const hash = hashApiKey(key);
    this.cache.delete(hash);
    this.verified.delete(hash);
    await this.table.delete(keyItem(hash).pk, 'key');
  }

  /** The tenant a key belongs to; `AuthenticationError` for an unknown key. */
  async authenticate(key: string | undefined | null): Promise<string> {
    if (!key) throw new AuthenticationError('missing API key: send it in x-api-key or Authorization: Bearer');
    const hash = hashApiKey(key);
    const hit = this.cache.get(hash);
    if (hit && Date.now() - hit.at < this.cacheMs) return hit.tenant;
    const item = await this.table.get(keyItem(hash).pk, 'key');
    if (!item) throw new AuthenticationError('invalid API key');
    this.cache.set(hash, { tenant: String(item.tenant), at: Date.now() });
    this.verified.delete(hash);
    this.verified.set(hash, Date.now());
    if (this.verified.size > 10_000) this.verified.delete(this.verified.keys().next().value!);
    return String(item.tenant);
  }

  /** Whether `key` verified on this instance within the last day (it may have been revoked since). */
  verifiedRecently(key: string | undefined | null): boolean {
    if (!key) return false;
    const at = this.verified.get(hashApiKey(key));
    return at !== undefined && Date.now() - at < 24 * 3600_000;
  }
}
