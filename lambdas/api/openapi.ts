import { Hono } from 'hono';
import { WEBHOOK_OPERATIONS } from './webhook-openapi.js';
import * as z from 'zod';
import {
  AgentCreate,
  AgentResponse,
  AgentUpdate,
  apiSchemas,
  CredentialCreate,
  CredentialResponse,
  CredentialUpdate,
  CredentialValidate,
  CredentialValidationResponse,
  DeletedResponse,
  EnvironmentCreate,
  EnvironmentResponse,
  EnvironmentUpdate,
  ErrorResponse,
  EventsSend,
  EventsSendResponse,
  FileDeletedResponse,
  FileMetadataResponse,
  FileUpload,
  FileResourceParam,
  SessionResourceDeletedResponse,
  namedSchemas,
  pageOf,
  SessionCreate,
  SessionEventResponse,
  SessionFork,
  SessionImport,
  SessionResourceResponse,
  SessionResourceUpdate,
  SessionResponse,
  SessionUpdate,
  VaultCreate,
  VaultResponse,
  VaultUpdate,
} from '../core/api/schemas.js';
import { DeploymentCreate, DeploymentResponse, DeploymentRunResponse, DeploymentUpdate } from '../core/api/deployment-schemas.js';
import { SandboxHandoff } from './sandboxes.js';
import { MEMORY_STORE_OPERATIONS } from './memory-openapi.js';
import { SessionThreadResponse } from '../core/api/thread-schemas.js';
import { EVENT_TYPES } from '../core/session/events.js';
import { PREVIEW_TYPES, type PreviewType } from '../core/session/previews.js';

/**
 * The OpenAPI 3.1 description of the API, generated from the zod schemas that validate requests
 * (`lambdas/core/api/schemas.ts`) with `z.toJSONSchema`; only the list of operations below is
 * written here. Served at `GET /openapi.json` without an API key.
 *
 * Query parameters are parsed by small helpers in `http.ts`, not by zod; the zod schemas given for
 * them here describe what those helpers accept.
 */

type Method = 'get' | 'post' | 'delete';

export interface Operation {
  method: Method;
  /** OpenAPI path, `{id}` for path parameters. */
  path: string;
  operationId: string;
  summary: string;
  tag: string;
  body?: z.ZodType;
  /** The body is multipart/form-data (a file upload), described by `body`. */
  multipart?: boolean;
  /** JSON response of a 200; `stream` for SSE, `html` for a page, `binary` for a file's bytes. */
  response: z.ZodType | 'stream' | 'html' | 'openapi' | 'health' | 'binary';
  query?: Record<string, { schema: z.ZodType; description: string }>;
  /** No API key (public assets and probes). */
  public?: boolean;
  /** Not in the Managed Agents API: a Corral extension. */
  extension?: boolean;
  description?: string;
}

// Shapes of the sandbox extension's answers (`lambdas/api/sandboxes.ts`), for this document only.
const SandboxResponse = z
  .looseObject({ type: z.literal('sandbox'), name: z.string(), state: z.string() })
  .meta({ description: 'A sandbox of a session (never its address or capability).' });
const SandboxHandoffResponse = z.looseObject({
  type: z.literal('sandbox_handoff'),
  sandbox: SandboxResponse,
  from: z.looseObject({ session_id: z.string(), sandbox: z.string(), event_id: z.string() }),
  to: z.looseObject({ session_id: z.string(), sandbox: z.string(), event_id: z.string() }),
});

const limit = (max: number) => ({ schema: z.number().int().min(1).max(max), description: `Page size, 1 to ${max}.` });
const page = { schema: z.string(), description: 'The `next_page` cursor of the previous page.' };
const includeArchived = { schema: z.boolean(), description: 'Include archived resources.' };
const order = { schema: z.enum(['asc', 'desc']), description: 'Order of the list.' };
const createdAt = (what: string, bounds: Array<'gt' | 'gte' | 'lt' | 'lte'>) =>
  Object.fromEntries(
    bounds.map((b) => [
      `created_at[${b}]`,
      { schema: z.iso.datetime(), description: `Only ${what} ${{ gt: 'after', gte: 'at or after', lt: 'before', lte: 'at or before' }[b]} this time.` },
    ]),
  );

const SESSION_EVENT_QUERY = {
  limit: limit(1000),
  page,
  order: { ...order, description: 'Chronological (`asc`, the default) or newest first.' },
  'types[]': { schema: z.array(z.enum(EVENT_TYPES)), description: 'Only events of these types (an unknown type is a 400).' },
  ...createdAt('events processed', ['gt', 'gte', 'lt', 'lte']),
  from_position: {
    schema: z.number().int().min(0),
    description:
      'Corral extension: only events at this log position or later (positions are the `id:` lines of the stream, 1, 2, 3, …).',
  },
  to_position: {
    schema: z.number().int().min(0),
    description: 'Corral extension: only events at this log position or earlier (inclusive).',
  },
};

export const OPERATIONS: Operation[] = [
  // agents
  { method: 'post', path: '/v1/agents', operationId: 'createAgent', summary: 'Create an agent', tag: 'agents', body: AgentCreate, response: AgentResponse },
  {
    method: 'get', path: '/v1/agents', operationId: 'listAgents', summary: 'List agents', tag: 'agents',
    response: pageOf(AgentResponse),
    query: { limit: limit(100), page, include_archived: includeArchived, ...createdAt('agents created', ['gte', 'lte']) },
  },
  {
    method: 'get', path: '/v1/agents/{id}', operationId: 'getAgent', summary: 'Retrieve an agent (latest version, or `version`)', tag: 'agents',
    response: AgentResponse, query: { version: { schema: z.number().int().positive(), description: 'A specific version.' } },
  },
  {
    method: 'post', path: '/v1/agents/{id}', operationId: 'updateAgent', summary: 'Update an agent (makes a new version)', tag: 'agents',
    body: AgentUpdate, response: AgentResponse,
    description: '`version`, when given, must be the latest version, or the answer is 409.',
  },
  { method: 'post', path: '/v1/agents/{id}/archive', operationId: 'archiveAgent', summary: 'Archive an agent', tag: 'agents', response: AgentResponse },
  {
    method: 'get', path: '/v1/agents/{id}/versions', operationId: 'listAgentVersions', summary: 'List the versions of an agent', tag: 'agents',
    response: pageOf(AgentResponse), query: { limit: limit(100), page },
  },
  // environments
  { method: 'post', path: '/v1/environments', operationId: 'createEnvironment', summary: 'Create an environment', tag: 'environments', body: EnvironmentCreate, response: EnvironmentResponse },
  {
    method: 'get', path: '/v1/environments', operationId: 'listEnvironments', summary: 'List environments', tag: 'environments',
    response: pageOf(EnvironmentResponse), query: { limit: limit(100), page, include_archived: includeArchived },
  },
  { method: 'get', path: '/v1/environments/{id}', operationId: 'getEnvironment', summary: 'Retrieve an environment', tag: 'environments', response: EnvironmentResponse },
  { method: 'post', path: '/v1/environments/{id}', operationId: 'updateEnvironment', summary: 'Update an environment', tag: 'environments', body: EnvironmentUpdate, response: EnvironmentResponse },
  { method: 'delete', path: '/v1/environments/{id}', operationId: 'deleteEnvironment', summary: 'Delete an environment', tag: 'environments', response: DeletedResponse },
  { method: 'post', path: '/v1/environments/{id}/archive', operationId: 'archiveEnvironment', summary: 'Archive an environment', tag: 'environments', response: EnvironmentResponse },
  // sessions
  { method: 'post', path: '/v1/sessions', operationId: 'createSession', summary: 'Create a session', tag: 'sessions', body: SessionCreate, response: SessionResponse },
  {
    method: 'get', path: '/v1/sessions', operationId: 'listSessions', summary: 'List sessions', tag: 'sessions',
    response: pageOf(SessionResponse, { prevPage: true }),
    query: {
      limit: limit(100), page, order, include_archived: includeArchived,
      agent_id: { schema: z.string(), description: 'Only sessions of this agent.' },
      agent_version: { schema: z.number().int().positive(), description: 'Only sessions pinned to this version of the agent (with `agent_id`).' },
      ...createdAt('sessions created', ['gt', 'gte', 'lt', 'lte']),
      'statuses[]': { schema: z.array(z.enum(['rescheduling', 'running', 'idle', 'terminated'])), description: 'Only sessions in these states.' },
    },
  },
  { method: 'get', path: '/v1/sessions/{id}', operationId: 'getSession', summary: 'Retrieve a session', tag: 'sessions', response: SessionResponse },
  { method: 'post', path: '/v1/sessions/{id}', operationId: 'updateSession', summary: 'Update a session', tag: 'sessions', body: SessionUpdate, response: SessionResponse },
  {
    method: 'delete', path: '/v1/sessions/{id}', operationId: 'deleteSession', summary: 'Delete a session, its history and its sandboxes', tag: 'sessions',
    response: DeletedResponse,
  },
  { method: 'post', path: '/v1/sessions/{id}/archive', operationId: 'archiveSession', summary: 'Archive a session', tag: 'sessions', response: SessionResponse },
  {
    method: 'post', path: '/v1/sessions/{id}/fork', operationId: 'forkSession', summary: 'Fork a session at a log position', tag: 'sessions',
    body: SessionFork, response: SessionResponse, extension: true,
    description: 'Corral extension. The new session starts with a copy of the log (fresh event ids) and its own sandboxes.',
  },
  {
    method: 'post', path: '/v1/corral/imports/sessions', operationId: 'importSession', summary: 'Import a session log as an archived copy', tag: 'sessions',
    body: SessionImport, response: SessionResponse, extension: true,
    description: 'Corral extension (`corral import`). The log is written under a new session id, with new event ids, archived and read-only; the agent and environment must be the caller\'s. At most 10,000 events, within the body limit.',
  },
  {
    method: 'get', path: '/v1/sessions/{id}/sandboxes', operationId: 'listSessionSandboxes', summary: "List a session's sandboxes", tag: 'sessions',
    response: pageOf(SandboxResponse), extension: true, description: 'Corral extension.',
  },
  {
    method: 'post', path: '/v1/sessions/{id}/sandboxes/{name}/handoff', operationId: 'handOffSandbox', summary: 'Hand a sandbox over to another session', tag: 'sessions',
    body: SandboxHandoff, response: SandboxHandoffResponse, extension: true,
    description: 'Corral extension: the sandbox leaves this session and joins `to_session_id` (as `as`, or under its own name).',
  },
  {
    method: 'get', path: '/v1/sessions/{id}/resources', operationId: 'listSessionResources', summary: "List a session's resources", tag: 'sessions',
    response: pageOf(SessionResourceResponse), description: 'Never a repository\'s `authorization_token`.',
  },
  {
    method: 'post', path: '/v1/sessions/{id}/resources', operationId: 'addSessionResource', summary: 'Add a file to a session', tag: 'sessions',
    body: FileResourceParam, response: SessionResourceResponse,
    description: 'Mounted read-only at `mount_path` (under /mnt/session/uploads/) in the session\'s sandboxes from their next tool call on. An unknown file is a 404.',
  },
  {
    method: 'delete', path: '/v1/sessions/{id}/resources/{resource_id}', operationId: 'deleteSessionResource', summary: 'Remove a file resource from a session', tag: 'sessions',
    response: SessionResourceDeletedResponse, description: 'File resources only; the file stays in the Files API.',
  },
  { method: 'get', path: '/v1/sessions/{id}/resources/{resource_id}', operationId: 'getSessionResource', summary: 'Retrieve a session resource', tag: 'sessions', response: SessionResourceResponse },
  {
    method: 'post', path: '/v1/sessions/{id}/resources/{resource_id}', operationId: 'updateSessionResource', summary: "Rotate a repository resource's token", tag: 'sessions',
    body: SessionResourceUpdate, response: SessionResourceResponse,
    description: 'The token goes to the credential proxy (the vault); it is never returned.',
  },
  // vaults
  { method: 'post', path: '/v1/vaults', operationId: 'createVault', summary: 'Create a vault', tag: 'vaults', body: VaultCreate, response: VaultResponse },
  {
    method: 'get', path: '/v1/vaults', operationId: 'listVaults', summary: 'List vaults', tag: 'vaults',
    response: pageOf(VaultResponse), query: { limit: limit(100), page, include_archived: includeArchived },
  },
  { method: 'get', path: '/v1/vaults/{id}', operationId: 'getVault', summary: 'Retrieve a vault', tag: 'vaults', response: VaultResponse },
  { method: 'post', path: '/v1/vaults/{id}', operationId: 'updateVault', summary: 'Update a vault', tag: 'vaults', body: VaultUpdate, response: VaultResponse },
  {
    method: 'delete', path: '/v1/vaults/{id}', operationId: 'deleteVault', summary: 'Delete a vault, its credentials and their secrets', tag: 'vaults',
    response: DeletedResponse,
  },
  {
    method: 'post', path: '/v1/vaults/{id}/archive', operationId: 'archiveVault', summary: 'Archive a vault (its credentials are no longer used)', tag: 'vaults',
    response: VaultResponse,
  },
  {
    method: 'post', path: '/v1/vaults/{id}/credentials', operationId: 'createCredential', summary: 'Create a credential', tag: 'vaults',
    body: CredentialCreate, response: CredentialResponse,
    description: 'Secret fields are write-only: they go to the credential proxy and no answer ever contains them.',
  },
  {
    method: 'get', path: '/v1/vaults/{id}/credentials', operationId: 'listCredentials', summary: 'List the credentials of a vault', tag: 'vaults',
    response: pageOf(CredentialResponse), query: { limit: limit(100), page, include_archived: includeArchived },
  },
  {
    method: 'get', path: '/v1/vaults/{id}/credentials/{credential_id}', operationId: 'getCredential', summary: 'Retrieve a credential', tag: 'vaults',
    response: CredentialResponse,
  },
  {
    method: 'post', path: '/v1/vaults/{id}/credentials/{credential_id}', operationId: 'updateCredential', summary: 'Update a credential', tag: 'vaults',
    body: CredentialUpdate, response: CredentialResponse,
  },
  {
    method: 'delete', path: '/v1/vaults/{id}/credentials/{credential_id}', operationId: 'deleteCredential', summary: 'Delete a credential and its secret', tag: 'vaults',
    response: DeletedResponse,
  },
  {
    method: 'post', path: '/v1/vaults/{id}/credentials/{credential_id}/archive', operationId: 'archiveCredential', summary: 'Archive a credential (its secret is removed)', tag: 'vaults',
    response: CredentialResponse,
  },
  {
    method: 'post', path: '/v1/vaults/{id}/credentials/{credential_id}/mcp_oauth_validate', operationId: 'validateMcpOAuthCredential',
    summary: 'Validate an mcp_oauth credential against its MCP server', tag: 'vaults', body: CredentialValidate, response: CredentialValidationResponse,
    description:
      'The credential proxy connects to the MCP server with the stored access token (initialize, tools/list); on a 401 it exchanges the refresh token, ' +
      'stores the new tokens and probes again. No token is ever in the answer. An anthropic-workspace-id header is a 400 (Corral has no workspaces).',
  },
  // events
  {
    method: 'get', path: '/v1/sessions/{id}/events', operationId: 'listSessionEvents', summary: 'List the events of a session', tag: 'events',
    response: pageOf(SessionEventResponse), query: SESSION_EVENT_QUERY,
  },
  {
    method: 'post', path: '/v1/sessions/{id}/events', operationId: 'sendSessionEvents', summary: 'Send user events', tag: 'events',
    body: EventsSend, response: EventsSendResponse,
  },
  {
    method: 'get', path: '/v1/sessions/{id}/events/stream', operationId: 'streamSessionEvents', summary: 'Follow the events of a session (SSE)', tag: 'events',
    response: 'stream',
    query: {
      last_event_id: {
        schema: z.string().regex(/^[0-9]+$/),
        description: 'Corral extension: as the `Last-Event-ID` header, for clients that cannot set headers.',
      },
      'event_deltas[]': {
        schema: z.array(z.enum(PREVIEW_TYPES as [PreviewType, ...PreviewType[]])),
        description:
          'Also send best-effort previews of these event types while the model produces them (`event_start`, then `event_delta` ' +
          'fragments for `agent.message`; `agent.thinking` is start-only). Never stored; the stored event carries the same id and ' +
          'the complete content. Any other value is a 400.',
      },
    },
    description:
      'Server-Sent Events: `id: <log position>`, `event: <type>`, `data: <event JSON>`, and `event: ping` heartbeats. ' +
      'Without `Last-Event-ID` the stream starts at the end of the log; with it (Corral extension) it resumes right after that position. ' +
      'With `event_deltas`, also `event: event_start` / `event: event_delta` previews (no `id:` line; never in the log).',
  },
  // session threads (core/threads/)
  {
    method: 'get', path: '/v1/sessions/{id}/threads', operationId: 'listSessionThreads', summary: "List a coordinator session's threads", tag: 'threads',
    response: pageOf(SessionThreadResponse),
    query: { limit: limit(100), page, 'statuses[]': { schema: z.array(z.enum(['rescheduling', 'running', 'idle', 'terminated'])), description: 'Only threads in these states.' } },
  },
  { method: 'get', path: '/v1/sessions/{id}/threads/{thread_id}', operationId: 'getSessionThread', summary: 'Retrieve a session thread', tag: 'threads', response: SessionThreadResponse },
  {
    method: 'post', path: '/v1/sessions/{id}/threads/{thread_id}/archive', operationId: 'archiveSessionThread', summary: 'Archive a session thread', tag: 'threads',
    response: SessionThreadResponse, description: 'The thread is `terminated` from then on; the coordinator can no longer message it. Its events stay readable.',
  },
  {
    method: 'get', path: '/v1/sessions/{id}/threads/{thread_id}/events', operationId: 'listSessionThreadEvents', summary: "List the events of a thread's own log", tag: 'threads',
    response: pageOf(SessionEventResponse), query: { limit: limit(1000), page, order: SESSION_EVENT_QUERY.order, 'types[]': SESSION_EVENT_QUERY['types[]'] },
  },
  {
    method: 'get', path: '/v1/sessions/{id}/threads/{thread_id}/stream', operationId: 'streamSessionThreadEvents', summary: "Follow the events of a thread's own log (SSE)", tag: 'threads',
    response: 'stream',
    query: { last_event_id: { schema: z.string().regex(/^[0-9]+$/), description: 'Corral extension: as the `Last-Event-ID` header.' } },
    description: 'As the session stream, over the thread\'s own log.',
  },
  // files
  {
    method: 'post', path: '/v1/files', operationId: 'uploadFile', summary: 'Upload a file', tag: 'files',
    body: FileUpload, multipart: true, response: FileMetadataResponse,
    description: 'multipart/form-data; a file of at most 4 MiB (413 past it). The filename keeps its final path component; control characters or more than 255 bytes are a 400.',
  },
  {
    method: 'get', path: '/v1/files', operationId: 'listFiles', summary: 'List files', tag: 'files',
    response: pageOf(FileMetadataResponse),
    query: {
      limit: limit(100), page,
      scope_id: { schema: z.string(), description: 'Only the files of this session (written by its agent under /mnt/session/outputs).' },
      'ids[]': { schema: z.array(z.string()).max(100), description: 'Only these files, as one page (not with `page` or `limit`).' },
    },
  },
  { method: 'get', path: '/v1/files/{id}', operationId: 'getFileMetadata', summary: "Retrieve a file's metadata", tag: 'files', response: FileMetadataResponse },
  { method: 'get', path: '/v1/files/{id}/content', operationId: 'downloadFile', summary: "Download a file's content", tag: 'files', response: 'binary' },
  { method: 'delete', path: '/v1/files/{id}', operationId: 'deleteFile', summary: 'Delete a file and its content', tag: 'files', response: FileDeletedResponse },
  // deployments
  { method: 'post', path: '/v1/deployments', operationId: 'createDeployment', summary: 'Create a deployment', tag: 'deployments', body: DeploymentCreate, response: DeploymentResponse },
  {
    method: 'get', path: '/v1/deployments', operationId: 'listDeployments', summary: 'List deployments', tag: 'deployments',
    response: pageOf(DeploymentResponse),
    query: {
      limit: limit(100), page, include_archived: includeArchived,
      status: { schema: z.enum(['active', 'paused']), description: 'Only active or only paused deployments (not with include_archived).' },
      agent_id: { schema: z.string(), description: 'Only the deployments of this agent.' },
      'created_at[gte]': { schema: z.string(), description: 'Created at or after this time.' },
      'created_at[lte]': { schema: z.string(), description: 'Created at or before this time.' },
    },
  },
  { method: 'get', path: '/v1/deployments/{id}', operationId: 'getDeployment', summary: 'Retrieve a deployment', tag: 'deployments', response: DeploymentResponse },
  { method: 'post', path: '/v1/deployments/{id}', operationId: 'updateDeployment', summary: 'Update a deployment', tag: 'deployments', body: DeploymentUpdate, response: DeploymentResponse },
  { method: 'post', path: '/v1/deployments/{id}/archive', operationId: 'archiveDeployment', summary: 'Archive a deployment (its schedule stops)', tag: 'deployments', response: DeploymentResponse },
  { method: 'post', path: '/v1/deployments/{id}/pause', operationId: 'pauseDeployment', summary: 'Pause a deployment\'s schedule', tag: 'deployments', response: DeploymentResponse },
  { method: 'post', path: '/v1/deployments/{id}/unpause', operationId: 'unpauseDeployment', summary: 'Unpause a deployment\'s schedule', tag: 'deployments', response: DeploymentResponse },
  { method: 'post', path: '/v1/deployments/{id}/run', operationId: 'runDeployment', summary: 'Run a deployment now', tag: 'deployments', response: DeploymentRunResponse },
  {
    method: 'get', path: '/v1/deployment_runs', operationId: 'listDeploymentRuns', summary: 'List deployment runs', tag: 'deployments',
    response: pageOf(DeploymentRunResponse),
    query: {
      limit: limit(100), page,
      deployment_id: { schema: z.string(), description: 'Only the runs of this deployment.' },
      has_error: { schema: z.boolean(), description: 'true: runs that failed to start a session; false: runs that started one.' },
      trigger_type: { schema: z.enum(['schedule', 'manual']), description: 'Only scheduled or only manual runs.' },
      'created_at[gt]': { schema: z.string(), description: 'Created after this time.' },
      'created_at[gte]': { schema: z.string(), description: 'Created at or after this time.' },
      'created_at[lt]': { schema: z.string(), description: 'Created before this time.' },
      'created_at[lte]': { schema: z.string(), description: 'Created at or before this time.' },
    },
  },
  { method: 'get', path: '/v1/deployment_runs/{id}', operationId: 'getDeploymentRun', summary: 'Retrieve a deployment run', tag: 'deployments', response: DeploymentRunResponse },
  ...WEBHOOK_OPERATIONS,
  // Corral's own
  { method: 'get', path: '/health', operationId: 'health', summary: 'Readiness probe', tag: 'corral', response: 'health', public: true, extension: true },
  { method: 'get', path: '/openapi.json', operationId: 'openapi', summary: 'This document', tag: 'corral', response: 'openapi', public: true, extension: true },
  {
    method: 'get', path: '/corral/auth', operationId: 'authMethods', summary: 'How a client may sign in', tag: 'corral',
    response: z.object({
      api_key: z.boolean(),
      oidc: z.array(z.object({ issuer: z.string(), client_id: z.string().nullable(), scopes: z.array(z.string()) })),
    }),
    public: true, extension: true,
    description: 'API keys (always), and the OIDC issuers whose bearer tokens are accepted, each with the public client id for a device-code or PKCE login (null: none). See docs/SIGN-IN.md.',
  },
  {
    method: 'get', path: '/console', operationId: 'console', summary: 'Session console: the list of sessions (a web page)', tag: 'console',
    response: 'html', public: true, extension: true,
    description: 'A static page; it asks for the API key in the browser and reads and writes everything through the authenticated API. Its fragment picks the manage views: #agents, #agents/{id}, #environments, #vaults, #vaults/{id}, #new-session.',
  },
  {
    method: 'get', path: '/console/sessions/{id}', operationId: 'consoleSession', summary: 'Session console: one session as a live timeline (a web page)', tag: 'console',
    response: 'html', public: true, extension: true,
  },
  ...MEMORY_STORE_OPERATIONS,
];

const REF = (id: string) => `#/components/schemas/${id}`;

/** JSON Schema of a zod schema, referring to the named components instead of repeating them. */
function schemaOf(schema: z.ZodType, components: Record<string, unknown>): unknown {
  const id = apiSchemas.get(schema)?.id;
  if (id && id in components) return { $ref: REF(id) };
  // A one-off schema (a page wrapper, a query parameter): convert it alone, with named parts as refs.
  const tmp = z.registry<{ id: string }>();
  for (const [key, s] of Object.entries(namedSchemas)) tmp.add(s, { id: key });
  tmp.add(schema, { id: '__this' });
  const out = z.toJSONSchema(tmp, { target: 'draft-2020-12', io: 'input', uri: REF }).schemas.__this as Record<string, unknown>;
  delete out.$schema;
  delete out.$id;
  return out;
}

const errorResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: REF('Error') } } },
});

/** Build the document. */
export function buildOpenApiDocument(): Record<string, unknown> {
  const generated = z.toJSONSchema(apiSchemas, { target: 'draft-2020-12', io: 'input', uri: REF }).schemas as Record<
    string,
    Record<string, unknown>
  >;
  const components: Record<string, unknown> = {};
  for (const [id, s] of Object.entries(generated)) {
    const { $schema: _s, $id: _id, ...rest } = s;
    components[id] = rest;
  }

  const paths: Record<string, Record<string, unknown>> = {};
  for (const op of OPERATIONS) {
    const parameters: unknown[] = [];
    for (const name of op.path.match(/\{(\w+)\}/g) ?? []) {
      parameters.push({ name: name.slice(1, -1), in: 'path', required: true, schema: { type: 'string' } });
    }
    for (const [name, q] of Object.entries(op.query ?? {})) {
      const isArray = name.endsWith('[]');
      parameters.push({
        name,
        in: 'query',
        required: false,
        description: q.description,
        schema: schemaOf(q.schema, components),
        ...(isArray ? { style: 'form', explode: true } : {}),
      });
    }
    if (op.response === 'stream') {
      parameters.push({
        name: 'Last-Event-ID',
        in: 'header',
        required: false,
        description: 'Resume right after this log position (Corral extension; `0` replays the whole log).',
        schema: { type: 'string', pattern: '^[0-9]+$' },
      });
    }
    const ok =
      op.response === 'stream'
        ? { description: 'An event stream', content: { 'text/event-stream': { schema: { type: 'string' }, 'x-event-schema': { $ref: REF('SessionEvent') } } } }
        : op.response === 'binary'
          ? { description: "The file's bytes, with its MIME type", content: { 'application/octet-stream': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } } } }
        : op.response === 'html'
          ? { description: 'A web page', content: { 'text/html': { schema: { type: 'string' } } } }
          : op.response === 'openapi'
            ? { description: 'This OpenAPI document', content: { 'application/json': { schema: { type: 'object' } } } }
            : op.response === 'health'
              ? {
                  description: 'Ready (503 with `starting` while not ready)',
                  content: { 'application/json': { schema: { type: 'object', properties: { status: { type: 'string', enum: ['ok', 'starting'] } } } } },
                }
              : { description: 'OK', content: { 'application/json': { schema: schemaOf(op.response, components) } } };
    const responses: Record<string, unknown> = { '200': ok };
    if (!op.public) {
      if (op.body) {
        responses['400'] = errorResponse('Malformed JSON or invalid fields');
        responses['413'] = errorResponse('Body over the size limit');
      }
      responses['401'] = errorResponse('Missing or unknown API key');
      responses['429'] = errorResponse("Over the tenant's rate limit (see the retry-after header)");
      if (op.path.includes('{id}')) responses['404'] = errorResponse('No such resource (for this tenant)');
      if (op.operationId === 'updateAgent') responses['409'] = errorResponse('`version` is not the latest');
    }
    (paths[op.path] ??= {})[op.method] = {
      operationId: op.operationId,
      summary: op.summary,
      ...(op.description ? { description: op.description } : {}),
      tags: [op.tag],
      ...(op.public ? { security: [] } : {}),
      ...(op.extension ? { 'x-corral-extension': true } : {}),
      ...(parameters.length ? { parameters } : {}),
      ...(op.body
        ? { requestBody: { required: true, content: { [op.multipart ? 'multipart/form-data' : 'application/json']: { schema: schemaOf(op.body, components) } } } }
        : {}),
      responses,
    };
  }

  return {
    openapi: '3.1.0',
    info: {
      title: 'Corral API',
      version: '0.1.0',
      description:
        'Compatible with the Claude Managed Agents API (the official SDK works unmodified, `client.beta.*`). ' +
        'Operations marked `x-corral-extension` are Corral\'s own. Generated from the schemas that validate requests.',
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    tags: [
      { name: 'agents' },
      { name: 'environments' },
      { name: 'sessions' },
      { name: 'events' },
      { name: 'threads', description: "A coordinator session's threads, each with its own event log" },
      { name: 'vaults', description: 'Vaults and credentials: secret fields are write-only' },
      { name: 'files', description: 'Files: uploads, and what sessions write under /mnt/session/outputs' },
      { name: 'deployments', description: 'Deployments: session templates started on a cron schedule or on demand, and their runs' },
      { name: 'memory_stores', description: 'Memory stores: memories by path, their versions, redaction' },
      { name: 'corral', description: 'Probes and this document' },
      { name: 'console', description: 'The session console (web pages)' },
      { name: 'webhooks', description: 'Webhook endpoints and their delivery logs (signing secrets shown once)' },
    ],
    security: [{ apiKey: [] }, { bearer: [] }],
    paths,
    components: {
      schemas: components,
      securitySchemes: {
        apiKey: { type: 'apiKey', in: 'header', name: 'x-api-key' },
        bearer: { type: 'http', scheme: 'bearer' },
      },
    },
  };
}

let cached: Record<string, unknown> | undefined;
export function openApiDocument(): Record<string, unknown> {
  return (cached ??= buildOpenApiDocument());
}

/** `GET /openapi.json`, no API key. */
export function openApiRoutes() {
  const app = new Hono();
  app.get('/openapi.json', (c) => c.json(openApiDocument(), 200, { 'Access-Control-Allow-Origin': '*' }));
  return app;
}
