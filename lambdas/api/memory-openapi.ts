import * as z from 'zod';
import {
  MemoryCreate,
  MemoryDeletedResponse,
  MemoryResponse,
  MemoryStoreCreate,
  MemoryStoreResponse,
  MemoryStoreUpdate,
  MemoryUpdate,
  MemoryVersionResponse,
} from '../core/api/memory-schemas.js';
import { pageOf } from '../core/api/schemas.js';

/**
 * The operations of `/v1/memory_stores` for the OpenAPI document (openapi.ts spreads them into
 * its list; the strict query check reads what each declares).
 */
const limit = (max: number) => ({ schema: z.number().int().min(1).max(max), description: `Page size, 1 to ${max} (20 with view=full).` });
const page = { schema: z.string(), description: 'The `next_page` cursor of the previous page.' };
const view = { schema: z.enum(['basic', 'full']), description: 'Whether content is included (`full`) or null (`basic`).' };
const time = (what: string) => ({ schema: z.iso.datetime({ offset: true }), description: what });
const tag = 'memory_stores';

export const MEMORY_STORE_OPERATIONS = [
  { method: 'post', path: '/v1/memory_stores', operationId: 'createMemoryStore', summary: 'Create a memory store', tag, body: MemoryStoreCreate, response: MemoryStoreResponse },
  {
    method: 'get', path: '/v1/memory_stores', operationId: 'listMemoryStores', summary: 'List memory stores', tag, response: pageOf(MemoryStoreResponse),
    query: {
      limit: limit(100), page, include_archived: { schema: z.boolean(), description: 'Include archived stores.' },
      'created_at[gte]': time('Only stores created at or after this time.'), 'created_at[lte]': time('Only stores created at or before this time.'),
    },
  },
  { method: 'get', path: '/v1/memory_stores/{id}', operationId: 'getMemoryStore', summary: 'Retrieve a memory store', tag, response: MemoryStoreResponse },
  { method: 'post', path: '/v1/memory_stores/{id}', operationId: 'updateMemoryStore', summary: 'Update a memory store', tag, body: MemoryStoreUpdate, response: MemoryStoreResponse },
  { method: 'delete', path: '/v1/memory_stores/{id}', operationId: 'deleteMemoryStore', summary: 'Delete a memory store, its memories and versions', tag, response: MemoryDeletedResponse },
  { method: 'post', path: '/v1/memory_stores/{id}/archive', operationId: 'archiveMemoryStore', summary: 'Archive a memory store', tag, response: MemoryStoreResponse },
  { method: 'post', path: '/v1/memory_stores/{id}/memories', operationId: 'createMemory', summary: 'Create a memory', tag, body: MemoryCreate, response: MemoryResponse, query: { view } },
  {
    method: 'get', path: '/v1/memory_stores/{id}/memories', operationId: 'listMemories', summary: 'List memories by path', tag, response: pageOf(MemoryResponse),
    query: {
      limit: limit(100), page, view,
      path_prefix: { schema: z.string(), description: 'Only memories below this prefix (ends with /).' },
      depth: { schema: z.number().int().min(0).max(20), description: 'Segments below the prefix to list; deeper ones become memory_prefix items (0: all).' },
    },
  },
  { method: 'get', path: '/v1/memory_stores/{id}/memories/{memory_id}', operationId: 'getMemory', summary: 'Retrieve a memory', tag, response: MemoryResponse, query: { view } },
  { method: 'post', path: '/v1/memory_stores/{id}/memories/{memory_id}', operationId: 'updateMemory', summary: 'Update (or rename) a memory', tag, body: MemoryUpdate, response: MemoryResponse, query: { view } },
  {
    method: 'delete', path: '/v1/memory_stores/{id}/memories/{memory_id}', operationId: 'deleteMemory', summary: 'Delete a memory (its versions stay)', tag, response: MemoryDeletedResponse,
    query: { expected_content_sha256: { schema: z.string(), description: 'Delete only if the content still has this hash.' } },
  },
  {
    method: 'get', path: '/v1/memory_stores/{id}/memory_versions', operationId: 'listMemoryVersions', summary: 'List memory versions, newest first', tag, response: pageOf(MemoryVersionResponse),
    query: {
      limit: limit(100), page, view,
      memory_id: { schema: z.string(), description: 'Only versions of this memory.' },
      session_id: { schema: z.string(), description: 'Only versions written by this session.' },
      operation: { schema: z.enum(['created', 'modified', 'deleted']), description: 'Only versions of this kind.' },
      'created_at[gte]': time('Only versions at or after this time.'), 'created_at[lte]': time('Only versions at or before this time.'),
    },
  },
  { method: 'get', path: '/v1/memory_stores/{id}/memory_versions/{version_id}', operationId: 'getMemoryVersion', summary: 'Retrieve a memory version', tag, response: MemoryVersionResponse, query: { view } },
  { method: 'post', path: '/v1/memory_stores/{id}/memory_versions/{version_id}/redact', operationId: 'redactMemoryVersion', summary: 'Redact a memory version: its content is removed for good', tag, response: MemoryVersionResponse },
] as const;
