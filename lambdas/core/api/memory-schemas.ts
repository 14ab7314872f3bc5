import * as z from 'zod';
import { Metadata, MetadataPatch } from './schemas.js';

/**
 * Request and response shapes of `/v1/memory_stores` (`client.beta.memoryStores`), as the SDK's
 * `memory-stores/*.d.ts` declare them. Limits on paths and contents are checked by the store
 * (`core/memory/paths.ts`), which also checks what an agent writes through a sandbox mount.
 */

// Names: 1 to 255 characters without control characters.
const StoreName = z.string().min(1).max(255).regex(/^[^\p{Cc}]*$/u, 'must not contain control characters');

export const MemoryStoreCreate = z.strictObject({
  name: StoreName,
  description: z.string().max(1024).optional(),
  metadata: Metadata.optional(),
});
export type MemoryStoreCreate = z.infer<typeof MemoryStoreCreate>;

export const MemoryStoreUpdate = z.strictObject({
  name: StoreName.nullish(),
  description: z.string().max(1024).nullish(),
  metadata: MetadataPatch.nullish(),
});
export type MemoryStoreUpdate = z.infer<typeof MemoryStoreUpdate>;

export const MemoryCreate = z.strictObject({
  path: z.string().min(1),
  content: z.string().nullable(),
});

const Precondition = z.strictObject({
  type: z.literal('content_sha256'),
  content_sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hexadecimal characters').optional(),
});

export const MemoryUpdate = z.strictObject({
  path: z.string().min(1).nullish(),
  content: z.string().nullish(),
  precondition: Precondition.optional(),
});

export const MemoryStoreResponse = z
  .looseObject({ id: z.string(), type: z.literal('memory_store'), name: z.string() })
  .meta({ description: 'A memory store (`BetaManagedAgentsMemoryStore`).' });
export const MemoryResponse = z
  .looseObject({ id: z.string(), type: z.enum(['memory', 'memory_prefix']), path: z.string() })
  .meta({ description: 'A memory (`BetaManagedAgentsMemory`), or a `memory_prefix` in a list with `depth`.' });
export const MemoryVersionResponse = z
  .looseObject({ id: z.string(), type: z.literal('memory_version'), memory_id: z.string() })
  .meta({ description: 'A memory version (`BetaManagedAgentsMemoryVersion`); a redacted one has no content, path, hash or size.' });
export const MemoryDeletedResponse = z.looseObject({ id: z.string(), type: z.enum(['memory_store_deleted', 'memory_deleted']) });
