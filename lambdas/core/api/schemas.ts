import * as z from 'zod';
import { MultiagentParam } from './thread-schemas.js';
import { parseHostPattern } from '../sandbox/egress.js';
import { INFERENCE_GEOS } from '../harness/model-options.js';
import { fileMountPathProblem } from '../sandbox/recipe.js';
import { EVENT_TYPES } from '../session/event-types.js';

/**
 * Request schemas of the public API, shaped after the official SDK's parameter types
 * (`@anthropic-ai/sdk/resources/beta/{agents,environments,sessions}`). They validate every
 * request; unknown fields are rejected so a typo is an error, not a silently ignored setting.
 * Every string, array and number a request carries is bounded here, so that no request can make
 * a record or key larger than DynamoDB takes (items 400 KB, keys 2 KB) or a number it cannot store.
 */

/**
 * What an id looks like: every id Corral makes is `<prefix>_<26 characters>`; this accepts any
 * 1-128 letters, digits, `_` and `-`, so a well-formed id that does not exist is a 404 and
 * anything else (a 10,000-character id, `../`, a NUL) is a 400 before it reaches a key.
 */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;
export const ID_RULE = 'must be an id: 1-128 letters, digits, _ or -';
export const Id = z.string().regex(ID_PATTERN, ID_RULE);

/** Largest integer a position, version or count may be (DynamoDB and JSON both hold it exactly). */
export const MAX_INT = Number.MAX_SAFE_INTEGER;
/** Versions and positions: positive safe integers. */
const Version = z.number().int().positive().max(MAX_INT);

/**
 * What the SDK can send and Corral does not implement: a 400 that names the field (zod's path) and
 * says so, never a setting stored and ignored. Accepts nothing; `.nullish()` on it lets a field
 * through only when it is left out or null (the SDK's way of asking for the default).
 */
export function notSupported(what: string) {
  return z.never({ error: `${what} is not supported by Corral` }).meta({ description: `Not supported by Corral: ${what}.` });
}

/**
 * A member of a discriminated union that Corral does not implement (`{type: 'auto'}`): it is
 * recognised by its `type`, so the 400 names it instead of listing the members that do exist.
 */
export function unsupportedVariant<T extends string>(type: T, what: string) {
  const schema = z
    .looseObject({ type: z.literal(type) })
    .refine(() => false, { message: `${what} is not supported by Corral` })
    .meta({ description: `Not supported by Corral: ${what}.` });
  // Nothing ever parses as this member, so the union's type leaves it out.
  return schema as typeof schema & z.ZodType<never>;
}

export const Metadata = z
  .record(z.string().min(1).max(64), z.string().max(512))
  .refine((m) => Object.keys(m).length <= 16, { message: 'metadata may hold at most 16 pairs' })
  // The refinement above, as JSON Schema says it (for the OpenAPI document; validation is unchanged).
  .meta({ maxProperties: 16, description: 'At most 16 pairs; keys up to 64 characters, values up to 512.' });

/** Metadata patch: a null value removes the key. */
export const MetadataPatch = z
  .record(z.string().min(1).max(64), z.string().max(512).nullable())
  .refine((m) => Object.keys(m).length <= 16, { message: 'metadata may hold at most 16 pairs' })
  .meta({ maxProperties: 16, description: 'Keys to set; a null value removes the key.' });

const Policy = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('always_allow') }),
  z.strictObject({ type: z.literal('always_ask') }),
  unsupportedVariant('auto', "the 'auto' permission policy"),
]);
export type PermissionPolicy = z.infer<typeof Policy>;

export const AGENT_TOOL_NAMES = ['bash', 'edit', 'read', 'write', 'glob', 'grep', 'web_fetch', 'web_search'] as const;

const SANDBOX_TOOL_NAMES = ['bash', 'edit', 'read', 'write', 'glob', 'grep'] as const;

// The sandbox tools' configs have nothing else: a field beyond these is refused, not stored.
const SandboxToolConfig = z.strictObject({
  name: z.enum(SANDBOX_TOOL_NAMES),
  type: z.enum(SANDBOX_TOOL_NAMES).optional(),
  enabled: z.boolean().nullish(),
  permission_policy: Policy.nullish(),
});

/** A domain list of a web tool: 1 to 64 plain host names (an empty list is refused: omit the field). */
const DomainList = z
  .array(
    z
      .string()
      .min(1)
      .max(253)
      .regex(/^[A-Za-z0-9.-]+(?:\/[^\s]*)?$/, 'must be a plain host name like docs.example.com (no scheme or port)'),
  )
  .min(1)
  .max(64);

const UserLocation = z.strictObject({
  type: z.literal('approximate'),
  city: z.string().min(1).max(255).nullish(),
  country: z.string().min(2).max(2).nullish(),
  region: z.string().min(1).max(255).nullish(),
  timezone: z.string().min(1).max(255).nullish(),
});

/** `web_search`, which the model provider runs (the Messages API's `web_search_20250305` server tool). */
const WebSearchToolConfig = z.strictObject({
  name: z.literal('web_search'),
  type: z.literal('web_search').optional(),
  enabled: z.boolean().nullish(),
  permission_policy: Policy.nullish(),
  allowed_domains: DomainList.optional(),
  blocked_domains: DomainList.optional(),
  user_location: UserLocation.nullish(),
});

const ToolReference = z.strictObject({ type: z.literal('tool_reference'), name: z.string().min(1).max(128) });
const UrlSourceAllOrNone = z.union([
  z.enum(['all', 'none']),
  z.strictObject({ type: z.literal('all') }),
  z.strictObject({ type: z.literal('none') }),
]);
const UrlSourceToolFilter = z.union([
  UrlSourceAllOrNone,
  z.strictObject({ type: z.literal('only'), tools: z.array(ToolReference).min(1).max(128) }),
  z.strictObject({ type: z.literal('except'), tools: z.array(ToolReference).min(1).max(128) }),
]);
const UrlSources = z.strictObject({
  client_tool_results: UrlSourceToolFilter.nullish(),
  server_tool_results: UrlSourceToolFilter.nullish(),
  user_input: UrlSourceAllOrNone.nullish(),
});

/** `web_fetch`, which the model provider runs (the Messages API's `web_fetch_20250910` server tool). */
const WebFetchToolConfig = z.strictObject({
  name: z.literal('web_fetch'),
  type: z.literal('web_fetch').optional(),
  enabled: z.boolean().nullish(),
  permission_policy: Policy.nullish(),
  allowed_domains: DomainList.optional(),
  blocked_domains: DomainList.optional(),
  max_content_tokens: z.number().int().positive().max(1_000_000).nullish(),
  url_sources: UrlSources.nullish(),
});

const AgentToolConfig = z
  .discriminatedUnion('name', [SandboxToolConfig, WebSearchToolConfig, WebFetchToolConfig])
  .superRefine((c, ctx) => {
    if ('allowed_domains' in c && c.allowed_domains && 'blocked_domains' in c && c.blocked_domains) {
      ctx.addIssue({ code: 'custom', path: ['blocked_domains'], message: 'cannot be combined with allowed_domains' });
    }
    if (c.name === 'web_fetch' && c.url_sources) {
      const none = (v: unknown) => v === 'none' || (typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'none');
      const u = c.url_sources;
      if (none(u.client_tool_results) && none(u.server_tool_results) && none(u.user_input)) {
        ctx.addIssue({ code: 'custom', path: ['url_sources'], message: 'setting every source to "none" leaves web_fetch nothing to fetch; disable the tool instead' });
      }
    }
  });

const DefaultConfig = z.strictObject({ enabled: z.boolean().nullish(), permission_policy: Policy.nullish() });

const AgentToolset = z.strictObject({
  type: z.literal('agent_toolset_20260401'),
  configs: z.array(AgentToolConfig).max(64).optional(),
  default_config: DefaultConfig.nullish(),
});

const McpToolset = z.strictObject({
  type: z.literal('mcp_toolset'),
  mcp_server_name: z.string().min(1).max(128),
  configs: z
    .array(z.strictObject({ name: z.string().min(1).max(256), enabled: z.boolean().nullish(), permission_policy: Policy.nullish() }))
    .max(512)
    .optional(),
  default_config: DefaultConfig.nullish(),
});

const CustomTool = z.strictObject({
  type: z.literal('custom'),
  name: z
    .string()
    .regex(/^[a-zA-Z0-9_-]{1,128}$/, 'custom tool names use letters, digits, _ and -, at most 128 characters'),
  description: z.string().max(10_000),
  input_schema: z.looseObject({ type: z.literal('object') }),
});

export const AgentTool = z.discriminatedUnion('type', [AgentToolset, McpToolset, CustomTool]);

const ModelConfig = z.strictObject({
  id: z.string().min(1).max(256),
  effort: z
    .union([
      z.enum(['low', 'medium', 'high', 'xhigh', 'max']),
      z.strictObject({ type: z.enum(['low', 'medium', 'high', 'xhigh', 'max']) }),
    ])
    .nullish(),
  // The geographies the Messages API serves: another value could never be honoured, so it is
  // refused here rather than failing each of the session's model calls.
  inference_geo: z
    .enum(INFERENCE_GEOS, {
      error: (i) =>
        `inference_geo ${JSON.stringify(i.input).slice(0, 80)} is not supported: the Messages API serves ${INFERENCE_GEOS.map((g) => `"${g}"`).join(' and ')}`,
    })
    .nullish(),
  speed: z.enum(['standard', 'fast']).nullish(),
});
export const ModelParam = z.union([z.string().min(1).max(256), ModelConfig]);

const McpServer = z.strictObject({ name: z.string().min(1).max(128), type: z.literal('url'), url: z.url().max(2048) });
/** Skills: none is loaded into a sandbox yet, so any skill is refused (an empty list is fine). */
const Skill = notSupported('skills');
/** `execution_identity`: runs carry no customer-named principal; only the default is accepted. */
const ExecutionIdentity = z
  .discriminatedUnion('type', [
    z.strictObject({ type: z.literal('service_account') }),
    unsupportedVariant('aws_role', "an 'aws_role' execution identity"),
  ])
  .nullish();
/** Multiagent orchestration: the coordinator roster (thread-schemas.ts). */
const Multiagent = MultiagentParam;

export const AgentCreate = z.strictObject({
  name: z.string().min(1).max(256),
  model: ModelParam,
  description: z.string().max(2048).nullish(),
  system: z.string().max(100_000).nullish(),
  tools: z.array(AgentTool).max(128).optional(),
  mcp_servers: z.array(McpServer).max(20).optional(),
  skills: z.array(Skill).max(20).optional(),
  metadata: Metadata.optional(),
  execution_identity: ExecutionIdentity,
  multiagent: Multiagent,
});
export type AgentCreate = z.infer<typeof AgentCreate>;

export const AgentUpdate = z.strictObject({
  version: Version.optional(),
  name: z.string().min(1).max(256).optional(),
  model: ModelParam.optional(),
  description: z.string().max(2048).nullish(),
  system: z.string().max(100_000).nullish(),
  tools: z.array(AgentTool).max(128).nullish(),
  mcp_servers: z.array(McpServer).max(20).nullish(),
  skills: z.array(Skill).max(20).nullish(),
  metadata: MetadataPatch.nullish(),
  execution_identity: ExecutionIdentity,
  multiagent: Multiagent,
});
export type AgentUpdate = z.infer<typeof AgentUpdate>;

/** An `allowed_hosts` entry: a host name, `*.domain` or an IP address, with an optional `:port` (see core/sandbox/egress.ts). */
const AllowedHost = z
  .string()
  .min(1)
  .max(255)
  .superRefine((v, ctx) => {
    const parsed = parseHostPattern(v);
    if ('error' in parsed) ctx.addIssue({ code: 'custom', message: parsed.error });
  });
const Networking = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('unrestricted') }),
  z.strictObject({
    type: z.literal('limited'),
    allow_mcp_servers: z.boolean().nullish(),
    allow_package_managers: z.boolean().nullish(),
    allowed_hosts: z.array(AllowedHost).max(256).nullish(),
  }),
]);
/** A package list: at most 256 names (with version pins) of up to 256 characters. */
const PackageList = z.array(z.string().min(1).max(256)).max(256).nullish();
/** A package manager the sandbox image has no toolchain for: an empty list only. */
const UnsupportedPackageList = (manager: string) => z.array(notSupported(`${manager} packages`)).nullish();
const Packages = z.strictObject({
  type: z.literal('packages').optional(),
  apt: PackageList,
  cargo: UnsupportedPackageList('cargo'),
  gem: UnsupportedPackageList('gem'),
  go: UnsupportedPackageList('go'),
  npm: PackageList,
  pip: PackageList,
});
export const EnvironmentConfig = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('cloud'), networking: Networking.nullish(), packages: Packages.nullish() }),
  unsupportedVariant('self_hosted', 'a self_hosted environment'),
]);
/** Environment scope: a tenant's environments are visible to all of its keys ('organization'). */
const Scope = z
  .enum(['organization', 'account'])
  .refine((v) => v !== 'account', { message: "scope 'account' is not supported by Corral" })
  .nullish();

export const EnvironmentCreate = z.strictObject({
  name: z.string().min(1).max(256),
  config: EnvironmentConfig.nullish(),
  description: z.string().max(2048).nullish(),
  metadata: Metadata.optional(),
  scope: Scope,
});
export type EnvironmentCreate = z.infer<typeof EnvironmentCreate>;

export const EnvironmentUpdate = z.strictObject({
  name: z.string().min(1).max(256).nullish(),
  config: EnvironmentConfig.nullish(),
  description: z.string().max(2048).nullish(),
  metadata: MetadataPatch.optional(),
  scope: Scope,
});
export type EnvironmentUpdate = z.infer<typeof EnvironmentUpdate>;

const TextBlock = z.strictObject({ type: z.literal('text'), text: z.string() });
// Sources as the SDK declares them (`BetaManagedAgents{Base64,URL,File,PlainText}*Source`): the
// stored event is the SDK's, and the model is later sent these blocks, so a malformed one is
// refused here rather than failing every model request of the session after it.
const Base64Source = z.strictObject({ type: z.literal('base64'), data: z.string(), media_type: z.string().min(1).max(255) });
const UrlSource = z.strictObject({ type: z.literal('url'), url: z.string().min(1).max(2048) });
const FileSource = z.strictObject({ type: z.literal('file'), file_id: z.string().min(1).max(256) });
const PlainTextSource = z.strictObject({ type: z.literal('text'), data: z.string(), media_type: z.literal('text/plain') });
const ImageBlock = z.strictObject({ type: z.literal('image'), source: z.discriminatedUnion('type', [Base64Source, UrlSource, FileSource]) });
const DocumentBlock = z.strictObject({
  type: z.literal('document'),
  source: z.discriminatedUnion('type', [Base64Source, PlainTextSource, UrlSource, FileSource]),
  title: z.string().max(1024).nullish(),
  context: z.string().nullish(),
});
const RedactedBlock = unsupportedVariant('redacted', 'a redacted content block');
const SearchResultBlock = unsupportedVariant('search_result', 'a search_result content block');
const UserContentBlock = z.discriminatedUnion('type', [TextBlock, ImageBlock, DocumentBlock, RedactedBlock]);
const ToolResultBlock = z.discriminatedUnion('type', [TextBlock, ImageBlock, DocumentBlock, SearchResultBlock]);

export const UserMessageEvent = z.strictObject({
  type: z.literal('user.message'),
  content: z.array(UserContentBlock).min(1).max(100),
});
export const UserInterruptEvent = z.strictObject({
  type: z.literal('user.interrupt'),
  // A session has one thread (no multiagent), so there is no other thread to name.
  session_thread_id: notSupported('session_thread_id (session threads)').nullish(),
});
export const UserToolConfirmationEvent = z.strictObject({
  type: z.literal('user.tool_confirmation'),
  tool_use_id: Id,
  result: z.enum(['allow', 'deny']),
  deny_message: z.string().max(10_000).nullish(),
});
export const UserCustomToolResultEvent = z.strictObject({
  type: z.literal('user.custom_tool_result'),
  custom_tool_use_id: Id,
  content: z.array(ToolResultBlock).max(100).optional(),
  is_error: z.boolean().nullish(),
});
/**
 * Bounds of `user.define_outcome` (see harness/outcome.ts). The rubric's is the SDK's; the
 * description's and the count's keep the session record, which lists every outcome with its
 * description (`outcome_evaluations`), far below DynamoDB's 400 KB.
 */
export const OUTCOME_LIMITS = {
  descriptionChars: 10_000,
  rubricChars: 262_144,
  maxIterations: 20,
  defaultIterations: 3,
  perSession: 20,
} as const;
/**
 * An outcome the agent works toward and a grader checks (`BetaManagedAgentsUserDefineOutcomeEventParams`).
 * A file rubric (a Files API file read as the rubric's text) is not implemented yet.
 */
export const UserDefineOutcomeEvent = z.strictObject({
  type: z.literal('user.define_outcome'),
  description: z.string().min(1).max(OUTCOME_LIMITS.descriptionChars),
  rubric: z.discriminatedUnion('type', [
    z.strictObject({ type: z.literal('text'), content: z.string().min(1).max(OUTCOME_LIMITS.rubricChars) }),
    unsupportedVariant('file', 'a file rubric (rubric.type "file")'),
  ]),
  max_iterations: z.number().int().min(1).max(OUTCOME_LIMITS.maxIterations).nullish(),
});
/** `user.tool_result` answers a tool call a self_hosted environment's client ran; Corral runs them all. */
const UserToolResultEvent = unsupportedVariant('user.tool_result', 'user.tool_result (it answers tool calls of self_hosted environments)');
/**
 * A mid-conversation system message: text the model gets as a `role: "system"` message after the
 * user turn it accompanies (see `EventsSend` for where it may stand).
 */
export const SystemMessageEvent = z.strictObject({
  type: z.literal('system.message'),
  content: z.array(TextBlock).min(1).max(100),
});
export const UserEvent = z.discriminatedUnion('type', [
  UserMessageEvent,
  UserInterruptEvent,
  UserToolConfirmationEvent,
  UserCustomToolResultEvent,
  UserDefineOutcomeEvent,
  UserToolResultEvent,
  SystemMessageEvent,
]);
export type UserEvent = z.infer<typeof UserEvent>;

/**
 * A `system.message` goes with the user turn it follows, as the API describes it: at most one per
 * request, the last event, right after a `user.message` or `user.custom_tool_result`.
 */
export const EventsSend = z
  .strictObject({ events: z.array(UserEvent).min(1).max(50) })
  .superRefine(({ events }, ctx) => {
    events.forEach((e, i) => {
      if (e.type !== 'system.message') return;
      const before = events[i - 1]?.type;
      if (i !== events.length - 1) ctx.addIssue({ code: 'custom', path: ['events', i], message: 'a system.message must be the last event of its request (at most one per request)' });
      else if (before !== 'user.message' && before !== 'user.custom_tool_result') {
        ctx.addIssue({ code: 'custom', path: ['events', i], message: 'a system.message must follow the user.message or user.custom_tool_result it accompanies, in the same request' });
      }
    });
  });

const AgentRef = z.union([
  Id,
  z.strictObject({ type: z.literal('agent'), id: Id, version: Version.optional() }),
  z.strictObject({
    type: z.literal('agent_with_overrides'),
    id: Id,
    version: Version.optional(),
    model: ModelParam.optional(),
    system: z.string().max(100_000).nullish(),
    tools: z.array(AgentTool).max(128).optional(),
    mcp_servers: z.array(McpServer).max(20).optional(),
    skills: z.array(Skill).max(20).optional(),
  }),
]);

/**
 * `authorization_token` is write-only: the session service hands it to the credential proxy (the
 * vault) at creation and never stores or returns it.
 */
const GitHubRepositoryResourceParam = z.strictObject({
  type: z.literal('github_repository'),
  // A remote repository: never a local path, file:// or another scheme git would open on a host
  // (which hosts and whether plain http is allowed is the session service's operator rule).
  url: z
    .string()
    .min(1)
    .max(2048)
    .regex(/^https?:\/\/[^\s/?#@\\]+(?:[/?#]\S*)?$/i, 'must be an https:// URL of a remote repository, without credentials in it'),
  authorization_token: z.string().min(1).max(16_384).optional().meta({ writeOnly: true }),
  checkout: z
    .discriminatedUnion('type', [
      z.strictObject({ type: z.literal('branch'), name: z.string().min(1).max(255) }),
      z.strictObject({ type: z.literal('commit'), sha: z.string().min(1).max(64) }),
    ])
    .nullish(),
  mount_path: z.string().min(1).max(1024).nullish(),
});
/**
 * A file of the Files API mounted read-only in the session's sandboxes (`BetaManagedAgentsFileResourceParams`,
 * and `client.beta.sessions.resources.add`): at `mount_path`, under `/mnt/session/uploads/`,
 * default `/mnt/session/uploads/<file_id>`.
 */
export const FileResourceParam = z.strictObject({
  type: z.literal('file'),
  file_id: Id,
  mount_path: z
    .string()
    .min(1)
    .max(1024)
    .superRefine((p, ctx) => {
      const problem = fileMountPathProblem(p);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    })
    .nullish()
    .meta({ description: 'Absolute and normalized, under /mnt/session/uploads/ (default /mnt/session/uploads/<file_id>).' }),
});
export type FileResourceParam = z.infer<typeof FileResourceParam>;

/**
 * A memory store mounted at `/mnt/memory/<slug of its name>` in the session's sandboxes
 * (`BetaManagedAgentsMemoryStoreResourceParam`; docs/MEMORY.md).
 */
export const MemoryStoreResourceParam = z.strictObject({
  type: z.literal('memory_store'),
  memory_store_id: Id,
  access: z.enum(['read_write', 'read_only']).nullish(),
  instructions: z.string().max(4096).nullish(),
});
export type MemoryStoreResourceParam = z.infer<typeof MemoryStoreResourceParam>;

const SessionResource = z.discriminatedUnion('type', [
  GitHubRepositoryResourceParam,
  FileResourceParam,
  MemoryStoreResourceParam,
]);

/**
 * A session budget (`BetaManagedAgentsBudgetLimit`): a list cost in minor units of USD, as an
 * integer decimal string without leading zeros (at most 18 digits, so it is exact as a number).
 */
export const Budget = z.strictObject({
  type: z.literal('limit'),
  max_list_cost: z.strictObject({
    amount: z.string().regex(/^(0|[1-9][0-9]{0,17})$/, 'an integer amount in minor units (cents), at most 18 digits'),
    currency: z.literal('USD'),
  }),
});

export const SessionCreate = z.strictObject({
  agent: AgentRef,
  environment_id: Id,
  title: z.string().max(512).nullish(),
  metadata: Metadata.optional(),
  resources: z.array(SessionResource).max(20).optional(),
  vault_ids: z.array(Id).max(20).optional(),
  budget: Budget.optional(),
  initial_events: z.array(z.discriminatedUnion('type', [UserMessageEvent, UserDefineOutcomeEvent])).max(50).optional(),
});
export type SessionCreate = z.infer<typeof SessionCreate>;

export const SessionUpdate = z.strictObject({
  title: z.string().max(512).nullish(),
  metadata: MetadataPatch.nullish(),
  budget: Budget.nullish(),
  agent: z.strictObject({ tools: z.array(AgentTool).max(128).optional(), mcp_servers: z.array(McpServer).max(20).optional() }).optional(),
  vault_ids: z.array(Id).max(20).optional(),
});
export type SessionUpdate = z.infer<typeof SessionUpdate>;

/** `POST /v1/sessions/{id}/resources/{resource_id}`: rotate a repository's token (write-only). */
export const SessionResourceUpdate = z.strictObject({
  authorization_token: z.string().min(1).max(16_384).meta({ writeOnly: true }),
});
export type SessionResourceUpdate = z.infer<typeof SessionResourceUpdate>;

// --- Vaults and credentials (`@anthropic-ai/sdk/resources/beta/vaults`) -------------------------
// Secret fields (`token`, `access_token`, `refresh_token`, `client_secret`, `secret_value`) are
// write-only: the vault service hands them to the credential proxy and no response carries them.

const Secret = z.string().min(1).max(16_384).meta({ writeOnly: true });
const HttpUrl = z.url({ protocol: /^https?$/ }).max(2048);

export const VaultCreate = z.strictObject({
  display_name: z.string().min(1).max(255),
  metadata: Metadata.optional(),
});
export type VaultCreate = z.infer<typeof VaultCreate>;

export const VaultUpdate = z.strictObject({
  display_name: z.string().min(1).max(255).nullish(),
  metadata: MetadataPatch.nullish(),
});
export type VaultUpdate = z.infer<typeof VaultUpdate>;

const TokenEndpointAuth = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('none') }),
  z.strictObject({ type: z.literal('client_secret_basic'), client_secret: Secret }),
  z.strictObject({ type: z.literal('client_secret_post'), client_secret: Secret }),
]);
const CredentialNetworking = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('unrestricted') }),
  z.strictObject({ type: z.literal('limited'), allowed_hosts: z.array(z.string().min(1).max(255)).min(1).max(64) }),
]);
const InjectionLocation = z.strictObject({ body: z.boolean().optional(), header: z.boolean().optional() });

export const CredentialAuthCreate = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('static_bearer'), token: Secret, mcp_server_url: HttpUrl }),
  z.strictObject({
    type: z.literal('mcp_oauth'),
    access_token: Secret,
    mcp_server_url: HttpUrl,
    expires_at: z.iso.datetime({ offset: true }).nullish(),
    refresh: z
      .strictObject({
        client_id: z.string().min(1).max(1024),
        refresh_token: Secret,
        token_endpoint: HttpUrl,
        token_endpoint_auth: TokenEndpointAuth,
        resource: z.string().max(2048).nullish(),
        scope: z.string().max(2048).nullish(),
      })
      .nullish(),
  }),
  z.strictObject({
    type: z.literal('environment_variable'),
    secret_name: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'an environment variable name: letters, digits and _, not starting with a digit'),
    secret_value: Secret,
    networking: CredentialNetworking,
    injection_location: InjectionLocation.optional(),
  }),
]);

export const CredentialCreate = z.strictObject({
  auth: CredentialAuthCreate,
  display_name: z.string().max(255).nullish(),
  metadata: Metadata.optional(),
});
export type CredentialCreate = z.infer<typeof CredentialCreate>;

export const CredentialAuthUpdate = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('static_bearer'), token: Secret.nullish() }),
  z.strictObject({
    type: z.literal('mcp_oauth'),
    access_token: Secret.nullish(),
    expires_at: z.iso.datetime({ offset: true }).nullish(),
    refresh: z
      .strictObject({
        refresh_token: Secret.nullish(),
        scope: z.string().max(2048).nullish(),
        token_endpoint_auth: z
          .discriminatedUnion('type', [
            z.strictObject({ type: z.literal('client_secret_basic'), client_secret: Secret.nullish() }),
            z.strictObject({ type: z.literal('client_secret_post'), client_secret: Secret.nullish() }),
          ])
          .optional(),
      })
      .nullish(),
  }),
  z.strictObject({
    type: z.literal('environment_variable'),
    secret_value: Secret.nullish(),
    networking: CredentialNetworking.nullish(),
    injection_location: InjectionLocation.optional(),
  }),
]);

export const CredentialUpdate = z.strictObject({
  auth: CredentialAuthUpdate.optional(),
  display_name: z.string().max(255).nullish(),
  metadata: MetadataPatch.nullish(),
});
export type CredentialUpdate = z.infer<typeof CredentialUpdate>;

/** Corral extension: `POST /v1/sessions/{id}/fork`. */
export const SessionFork = z
  .strictObject({
    up_to_position: z
      .number()
      .int()
      .min(0)
      .max(MAX_INT)
      .optional()
      .meta({ description: 'Copy the log up to and including this position (default: the whole log).' }),
    title: z.string().max(512).nullish(),
  })
  .meta({ description: 'Corral extension: fork a session at a position of its log.' });
export type SessionFork = z.infer<typeof SessionFork>;

/** Most events one session import may carry (its body is also bound by the API's body limit). */
export const MAX_IMPORT_EVENTS = 10_000;

/**
 * One event of an imported log: a known event type, its id and time; its other fields are kept
 * as they are (bounded by the body limit and the JSON depth limit), since the copy is only read.
 */
const ImportedEvent = z.looseObject({
  type: z.enum(EVENT_TYPES as [string, ...string[]]),
  id: z.string().min(1).max(128),
  processed_at: z.iso.datetime({ offset: true }),
});

/** Corral extension (`corral import`): a session log, written as an archived read-only copy. */
export const SessionImport = z.strictObject({
  agent_id: Id.meta({ description: 'An agent of the caller (the import\'s copy of the session\'s agent).' }),
  agent_version: z.number().int().min(1).max(MAX_INT).optional(),
  environment_id: Id,
  title: z.string().max(512).nullish(),
  metadata: Metadata.optional(),
  source: z.strictObject({ session_id: z.string().min(1).max(128), created_at: z.iso.datetime({ offset: true }) }),
  events: z.array(ImportedEvent).max(MAX_IMPORT_EVENTS),
});
export type SessionImport = z.infer<typeof SessionImport>;

// --- Response shapes and the OpenAPI registry ----------------------------------------------------
// The routes never validate responses with these: they describe what the API returns, for the
// OpenAPI document (`lambdas/api/openapi.ts`, served at `/openapi.json`) and for tests that check
// real responses against that document. Objects are loose: a field added later is no breakage.

const Timestamp = z.iso.datetime().meta({ description: 'RFC 3339 timestamp (UTC)' });
const NullableTimestamp = Timestamp.nullable();

export const ErrorResponse = z
  .strictObject({
    type: z.literal('error'),
    error: z.looseObject({
      type: z.string().meta({ description: 'invalid_request_error, authentication_error, not_found_error, …' }),
      message: z.string(),
    }),
  })
  .meta({ description: 'Every error, with the matching HTTP status.' });

export const AgentResponse = z
  .looseObject({
    id: z.string(),
    type: z.literal('agent'),
    version: z.number().int().positive(),
    name: z.string(),
    description: z.string().nullable(),
    model: z.looseObject({ id: z.string() }),
    system: z.string().nullable(),
    tools: z.array(z.looseObject({ type: z.string() })),
    mcp_servers: z.array(z.looseObject({ name: z.string() })),
    skills: z.array(z.looseObject({ skill_id: z.string() })),
    metadata: z.record(z.string(), z.string()),
    created_at: Timestamp,
    updated_at: Timestamp,
    archived_at: NullableTimestamp,
  })
  .meta({ description: 'One version of an agent (`BetaManagedAgentsAgent`).' });

export const EnvironmentResponse = z
  .looseObject({
    id: z.string(),
    type: z.literal('environment'),
    name: z.string(),
    description: z.string().nullable(),
    config: z.looseObject({ type: z.enum(['cloud', 'self_hosted']) }),
    metadata: z.record(z.string(), z.string()),
    created_at: Timestamp,
    updated_at: Timestamp,
    archived_at: NullableTimestamp,
  })
  .meta({ description: 'An environment: the recipe sandboxes are built from (`BetaEnvironment`).' });

export const SessionResponse = z
  .looseObject({
    id: z.string(),
    type: z.literal('session'),
    status: z.enum(['rescheduling', 'running', 'idle', 'terminated']),
    agent: z.looseObject({ id: z.string(), type: z.literal('agent'), version: z.number().int(), name: z.string() }),
    environment_id: z.string(),
    title: z.string().nullable(),
    metadata: z.record(z.string(), z.string()),
    resources: z.array(z.unknown()),
    vault_ids: z.array(z.string()),
    usage: z.looseObject({}),
    stats: z.looseObject({}),
    created_at: Timestamp,
    updated_at: Timestamp,
    archived_at: NullableTimestamp,
    forked_from: z
      .strictObject({ session_id: z.string(), position: z.number().int() })
      .optional()
      .meta({ description: 'Corral extension: the session and log position this one was forked from.' }),
    imported_from: z
      .strictObject({ session_id: z.string(), created_at: Timestamp, events: z.number().int() })
      .optional()
      .meta({ description: 'Corral extension: this session is an archived, read-only copy imported from an export (`corral import`) of that session.' }),
  })
  .meta({ description: 'A session (`BetaManagedAgentsSession`).' });

export const SessionEventResponse = z
  .looseObject({
    id: z.string(),
    type: z.string().meta({
      description:
        'user.message, user.interrupt, user.tool_confirmation, user.custom_tool_result, agent.message, agent.thinking, ' +
        'agent.tool_use, agent.tool_result (Corral adds `sandbox`, the sandbox that answered), agent.custom_tool_use, ' +
        'session.status_running, session.status_idle, session.status_rescheduled, session.error, ' +
        'span.model_request_start, span.model_request_end, …',
    }),
    processed_at: Timestamp,
  })
  .meta({ description: 'A stored session event: `id`, `type`, `processed_at` and the fields of its type, as the official SDK declares them.' });

export const VaultResponse = z
  .looseObject({
    id: z.string(),
    type: z.literal('vault'),
    display_name: z.string(),
    metadata: z.record(z.string(), z.string()),
    created_at: Timestamp,
    updated_at: Timestamp,
    archived_at: NullableTimestamp,
  })
  .meta({ description: 'A vault (`BetaManagedAgentsVault`).' });

export const CredentialResponse = z
  .looseObject({
    id: z.string(),
    type: z.literal('vault_credential'),
    vault_id: z.string(),
    display_name: z.string().nullable(),
    auth: z.looseObject({ type: z.enum(['static_bearer', 'mcp_oauth', 'environment_variable']) }),
    metadata: z.record(z.string(), z.string()),
    created_at: Timestamp,
    updated_at: Timestamp,
    archived_at: NullableTimestamp,
  })
  .meta({ description: 'A credential of a vault (`BetaManagedAgentsCredential`): never its secret fields.' });

/** `POST /v1/vaults/{id}/credentials/{credential_id}/mcp_oauth_validate`: no body (the SDK sends none). */
export const CredentialValidate = z.strictObject({}).meta({ description: 'No fields: the official SDK sends no body.' });
export type CredentialValidate = z.infer<typeof CredentialValidate>;

const CapturedHttpResponse = z.strictObject({
  status_code: z.number().int(),
  content_type: z.string(),
  body: z.string().meta({ description: 'At most 2 KiB; tokens, secrets and sensitive-looking fields scrubbed.' }),
  body_truncated: z.boolean(),
});

export const CredentialValidationResponse = z
  .strictObject({
    type: z.literal('vault_credential_validation'),
    credential_id: z.string(),
    vault_id: z.string(),
    status: z.enum(['valid', 'invalid', 'unknown']),
    has_refresh_token: z.boolean(),
    mcp_probe: z.strictObject({ method: z.string(), http_response: CapturedHttpResponse.nullable() }).nullable(),
    refresh: z
      .strictObject({ status: z.enum(['succeeded', 'failed', 'connect_error', 'no_refresh_token']), http_response: CapturedHttpResponse.nullable() })
      .nullable(),
    validated_at: Timestamp,
  })
  .meta({ description: 'The result of probing an mcp_oauth credential against its MCP server (`BetaManagedAgentsCredentialValidation`).' });

export const SessionResourceResponse = z
  .looseObject({
    id: z.string(),
    type: z.enum(['github_repository', 'file', 'memory_store']),
  })
  .meta({ description: 'A session resource (`BetaManagedAgentsSessionResource`): never its `authorization_token`.' });

export const FileMetadataResponse = z
  .strictObject({
    id: z.string(),
    type: z.literal('file'),
    filename: z.string(),
    mime_type: z.string(),
    size_bytes: z.number().int(),
    created_at: Timestamp,
    downloadable: z.boolean(),
    expires_at: NullableTimestamp,
    scope: z.strictObject({ type: z.literal('session'), id: z.string() }).nullable(),
  })
  .meta({ description: 'A file (`BetaFileMetadata`): uploaded (`scope` null) or written by a session\'s agent under /mnt/session/outputs.' });

/** `POST /v1/files`: a multipart/form-data body (described here for the OpenAPI document; `lambdas/api/files.ts` parses it). */
export const FileUpload = z
  .strictObject({
    file: z.string().meta({ format: 'binary', description: 'The file: at most 4 MiB; its part\'s filename (final path component) and content type are kept.' }),
    expires_in_seconds: z.number().int().min(3600).max(7_776_000).optional(),
  })
  .meta({ description: 'multipart/form-data: one `file` part, and optionally `expires_in_seconds`.' });

export const SessionResourceDeletedResponse = z
  .strictObject({ id: z.string(), type: z.literal('session_resource_deleted') })
  .meta({ description: 'The answer to removing a resource from a session.' });

export const FileDeletedResponse = z.strictObject({ id: z.string(), type: z.literal('file_deleted') }).meta({ description: 'The answer to a file delete.' });

export const DeletedResponse = z
  .strictObject({
    id: z.string(),
    type: z.enum(['session_deleted', 'environment_deleted', 'vault_deleted', 'vault_credential_deleted']),
  })
  .meta({ description: 'The answer to a delete.' });

/** A page of a list: `{data, next_page}` (session lists also carry `prev_page`). */
export function pageOf<T extends z.ZodType>(item: T, opts: { prevPage?: boolean } = {}) {
  return z.strictObject({
    data: z.array(item),
    next_page: z.string().nullable().meta({ description: 'Cursor for `?page=`; null on the last page.' }),
    ...(opts.prevPage ? { prev_page: z.string().nullable() } : {}),
  });
}

export const EventsSendResponse = z.strictObject({ data: z.array(SessionEventResponse) });

/**
 * The schemas that get a name in the OpenAPI document (`components.schemas`), in a registry of
 * their own: registering changes nothing about validation and never clashes with zod's global one.
 */
export const namedSchemas = {
  AgentCreate,
  AgentUpdate,
  EnvironmentCreate,
  EnvironmentUpdate,
  SessionCreate,
  SessionUpdate,
  SessionFork,
  SessionImport,
  SessionResourceUpdate,
  FileResourceParam,
  VaultCreate,
  VaultUpdate,
  CredentialCreate,
  CredentialUpdate,
  EventsSend,
  UserEvent,
  Metadata,
  MetadataPatch,
  AgentTool,
  Agent: AgentResponse,
  Environment: EnvironmentResponse,
  Session: SessionResponse,
  SessionEvent: SessionEventResponse,
  SessionResource: SessionResourceResponse,
  Vault: VaultResponse,
  Credential: CredentialResponse,
  CredentialValidation: CredentialValidationResponse,
  Deleted: DeletedResponse,
  FileMetadata: FileMetadataResponse,
  FileUpload,
  Error: ErrorResponse,
} satisfies Record<string, z.ZodType>;
export const apiSchemas = z.registry<{ id: string }>();
for (const [id, schema] of Object.entries(namedSchemas)) apiSchemas.add(schema, { id });
