/**
 * A session's `memory_store` resource as a sandbox plan carries it (sandbox/recipe.ts), for the
 * sandbox manager's sync (sandbox/memory-mounts.ts).
 */
export interface PlannedMemoryStore {
  storeId: string;
  mountPath: string;
  access: 'read_write' | 'read_only';
}

/** A `memory_store` resource as the plan needs it, or null when it is not a mountable one. */
export function plannedMemoryStore(r: Record<string, unknown>): PlannedMemoryStore | null {
  if (typeof r.memory_store_id !== 'string' || typeof r.mount_path !== 'string' || !/^\/mnt\/memory\/[a-z0-9][a-z0-9-]{0,69}$/.test(r.mount_path)) return null;
  return { storeId: r.memory_store_id, mountPath: r.mount_path, access: r.access === 'read_only' ? 'read_only' : 'read_write' };
}
