import { createHash, randomBytes } from 'node:crypto';
import { AuthenticationError } from '../errors.js';
import type { StateTable } from '../store.js';
import { apiKeyRecords } from '../storage/items.js';

/** Only a hash of an API key is stored; the key itself is shown once, when it is made. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

export function generateApiKey(): string {
  return `sk-corral-${randomBytes(24).toString('base64url')}`;
}

/**
 * How long an API instance trusts a key it has verified without looking it up again: the bound
 * on how long a key revoked elsewhere (another API instance, or the table directly) keeps
 * working on an instance that verified it just before. The instance that revokes a key refuses it
 * at once. With it, a tenant's requests after the first cost no read of the key.
 */
export const API_KEY_CACHE_MS = 30_000;

/** API keys, each belonging to one tenant. */
export class TenantService {
  /** Verified keys by hash: the tenant, and when the key was last looked up. */
  private readonly cache = new Map<string, { tenant: string; at: number }>();
  /**
   * Hashes of keys that verified on this instance in the last day (the most recent 10,000), so
   * that their holders keep getting in while failed authentications are being limited.
   */
  private readonly verified = new Map<string, number>();

  constructor(
    private readonly table: StateTable,
    private readonly cacheMs = API_KEY_CACHE_MS,
    private readonly clock: () => number = Date.now,
  ) {}

  async addKey(tenant: string, key: string, now = new Date()): Promise<void> {
    await apiKeyRecords.put(this.table, hashApiKey(key), { tenant, created_at: now.toISOString() });
  }

  async revokeKey(key: string): Promise<void> {
    const hash = hashApiKey(key);
    this.cache.delete(hash);
    this.verified.delete(hash);
    await apiKeyRecords.delete(this.table, hash);
  }

  /** The tenant a key belongs to; `AuthenticationError` for an unknown key. */
  async authenticate(key: string | undefined | null): Promise<string> {
    if (!key) throw new AuthenticationError('missing API key: send it in x-api-key or Authorization: Bearer');
    const hash = hashApiKey(key);
    const hit = this.cache.get(hash);
    if (hit && this.clock() - hit.at < this.cacheMs) return hit.tenant;
    const item = await apiKeyRecords.get(this.table, hash);
    if (!item) {
      this.cache.delete(hash);
      throw new AuthenticationError('invalid API key');
    }
    this.cache.set(hash, { tenant: item.tenant, at: this.clock() });
    // Keys that stop being used are dropped once the cache holds many (a lookup brings one back).
    if (this.cache.size > 10_000) for (const [h, e] of this.cache) if (this.clock() - e.at >= this.cacheMs) this.cache.delete(h);
    this.verified.delete(hash);
    this.verified.set(hash, this.clock());
    if (this.verified.size > 10_000) this.verified.delete(this.verified.keys().next().value!);
    return item.tenant;
  }

  /** Whether `key` verified on this instance within the last day (it may have been revoked since). */
  verifiedRecently(key: string | undefined | null): boolean {
    if (!key) return false;
    const at = this.verified.get(hashApiKey(key));
    return at !== undefined && this.clock() - at < 24 * 3600_000;
  }
}
