/**
 * A session's `memory_store` resources (`BetaManagedAgentsMemoryStoreResource`): checked and
 * snapshotted when the session is created (the store's name, description and mount path), read
 * by the sandbox manager on every tool call (`core/sandbox/memory-mounts.ts`).
 */
import { InvalidRequestError, NotFoundError } from '../errors.js';
import { memoryMountPath, MEMORY_MOUNT_ROOT } from './paths.js';
import type { MemoryStore } from './store.js';

/** A session resource as stored (resources/sessions.ts's `SessionResource`, which imports this module). */
type SessionResource = { id: string; type: string; created_at: string; updated_at: string; [k: string]: unknown };

/** Most memory stores one session mounts. */
export const MAX_MEMORY_STORES_PER_SESSION = 8;

/** What the session service needs of the memory stores. */
export interface MemoryStoreSource {
  get(tenant: string, id: string): Promise<MemoryStore>;
  /** Why this deployment's sandboxes cannot mount memory stores, if they cannot. */
  refusal?(): Promise<string | undefined>;
}

/** A `memory_store` resource of a session, as stored. */
export interface MemoryStoreResource extends SessionResource {
  type: 'memory_store';
  memory_store_id: string;
  access: 'read_write' | 'read_only';
  name: string;
  description: string;
  instructions: string | null;
  mount_path: string;
}

export function isMemoryStoreResource(r: { type: unknown }): r is MemoryStoreResource {
  const mountPath = (r as { mount_path?: unknown }).mount_path;
  return r.type === 'memory_store' && typeof mountPath === 'string' && mountPath.startsWith(`${MEMORY_MOUNT_ROOT}/`);
}

/** The resource as stored: the store must be the tenant's and not archived, and mounted once. */
export async function memoryStoreResource(
  source: MemoryStoreSource | undefined,
  tenant: string,
  r: SessionResource,
  taken: readonly SessionResource[],
  now: Date,
): Promise<MemoryStoreResource> {
  const storeId = String(r.memory_store_id);
  if (!source) throw new InvalidRequestError('resources: this deployment has no memory stores');
  const refused = await source.refusal?.();
  if (refused) throw new InvalidRequestError(`resources: memory_store resources are not available: ${refused}`);
  const stores = taken.filter((t) => t.type === 'memory_store');
  if (stores.length >= MAX_MEMORY_STORES_PER_SESSION) throw new InvalidRequestError(`resources: a session mounts at most ${MAX_MEMORY_STORES_PER_SESSION} memory stores`);
  if (stores.some((t) => t.memory_store_id === storeId)) throw new InvalidRequestError(`resources: memory store ${storeId} is attached twice`);
  const store = await source.get(tenant, storeId).catch((err) => {
    if (err instanceof NotFoundError) throw new NotFoundError(`resources: memory store ${storeId} not found`);
    throw err;
  });
  if (store.archived_at) throw new InvalidRequestError(`resources: memory store ${storeId} is archived and cannot be attached`);
  const mountPath = memoryMountPath(store.name, new Set(stores.map((t) => String(t.mount_path))));
  return {
    id: r.id,
    type: 'memory_store',
    memory_store_id: store.id,
    access: r.access === 'read_only' ? 'read_only' : 'read_write',
    name: store.name,
    description: store.description,
    instructions: typeof r.instructions === 'string' ? r.instructions : null,
    mount_path: mountPath,
    created_at: nowOf(r, now),
    updated_at: nowOf(r, now),
  };
}

const nowOf = (r: SessionResource, now: Date) => (typeof r.created_at === 'string' ? r.created_at : now.toISOString());

/**
 * The memory section of the agent's system prompt: each mounted store, where it is, whether the
 * agent may write it, its description and the attachment's instructions.
 */
export function memoryPrompt(resources: readonly unknown[]): string | null {
  const stores = resources.filter((r): r is MemoryStoreResource => typeof r === "object" && r !== null && isMemoryStoreResource(r as { type: unknown }));
  if (!stores.length) return null;
  const lines = [
    'Memory stores are mounted in your sandbox. They persist across sessions: read them before you start, and keep what you learn there.',
  ];
  for (const s of stores) {
    lines.push(
      `- ${s.mount_path} (${s.access === 'read_only' ? 'read-only' : 'read-write'}): "${s.name}"${s.description ? `: ${s.description}` : ''}${s.instructions ? `\n  Instructions: ${s.instructions}` : ''}`,
    );
  }
  return lines.join('\n');
}

/** The agent's system prompt with the memory section after it (the agent's prompt alone when no store is mounted). */
export function withMemoryPrompt(system: string | null | undefined, resources: readonly unknown[] | undefined): string | undefined {
  const memory = memoryPrompt(resources ?? []);
  if (!memory) return system ?? undefined;
  return system ? `${system}\n\n${memory}` : memory;
}
