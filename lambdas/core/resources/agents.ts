import { ConflictError, InvalidRequestError, NotFoundError } from '../errors.js';
import { ID_PREFIX, newId } from '../ids.js';
import type { AgentCreate, AgentUpdate, PermissionPolicy } from '../api/schemas.js';
import { ConditionFailedError, type StateTable } from '../store.js';
import { AgentVersionRecords, HeadRecords, type AgentHeadFields } from '../storage/items.js';
import { tenantPrincipal } from '../storage/principal.js';
import { UnsupportedModelError, checkModelServed, type ModelProvider } from '../harness/model-ids.js';
import { MAX_AGENT_BYTES, assertRecordFits, nowIso, patchMetadata } from './common.js';
import { coordinatorOf, resolveMultiagent } from '../threads/multiagent.js';
import { collectPage, createdAtFilter, type CreatedAtRange, type ListParams, type ListResult } from './paging.js';

/** Which models this deployment serves: its provider, and its configured list when it has one. */
export interface ModelServing {
  provider: ModelProvider;
  allowed?: readonly string[];
}

/** An agent version as the API returns it (`BetaManagedAgentsAgent`). */
export interface Agent {
  id: string;
  type: 'agent';
  version: number;
  name: string;
  description: string | null;
  model: { id: string; effort?: { type: string }; inference_geo?: string; speed?: 'standard' | 'fast' };
  system: string | null;
  tools: AgentToolDefinition[];
  mcp_servers: Array<{ name: string; type: 'url'; url: string }>;
  skills: Array<{ type: 'anthropic' | 'custom'; skill_id: string; version: string }>;
  metadata: Record<string, string>;
  execution_identity: unknown;
  multiagent: unknown;
  created_at: string;
  updated_at: string;
  archived_at: string | null;
}

export type AgentToolDefinition =
  | {
      type: 'agent_toolset_20260401';
      configs: Array<{ name: string; type: string; enabled: boolean; permission_policy: PermissionPolicy; [k: string]: unknown }>;
      default_config: { enabled: boolean; permission_policy: PermissionPolicy };
    }
  | {
      type: 'mcp_toolset';
      mcp_server_name: string;
      configs: Array<{ name: string; enabled: boolean; permission_policy: PermissionPolicy }>;
      default_config: { enabled: boolean; permission_policy: PermissionPolicy };
    }
  | { type: 'custom'; name: string; description: string; input_schema: Record<string, unknown> };

/** Tools of the agent toolset that the model provider runs (the Messages API's server tools). */
export const SERVER_TOOL_NAMES = ['web_search', 'web_fetch'] as const;

/** `url_sources` of a web_fetch config as the API returns it: every source named, null when not set. */
export interface WebFetchUrlSources {
  client_tool_results: { type: string; tools?: Array<{ type: 'tool_reference'; name: string }> } | null;
  server_tool_results: { type: string; tools?: Array<{ type: 'tool_reference'; name: string }> } | null;
  user_input: { type: string } | null;
}

const ALLOW: PermissionPolicy = { type: 'always_allow' };
const ASK: PermissionPolicy = { type: 'always_ask' };

function normalizeModel(model: AgentCreate['model']): Agent['model'] {
  if (typeof model === 'string') return { id: model };
  const out: Agent['model'] = { id: model.id };
  if (model.effort) out.effort = typeof model.effort === 'string' ? { type: model.effort } : model.effort;
  if (model.inference_geo) out.inference_geo = model.inference_geo;
  if (model.speed) out.speed = model.speed;
  return out;
}

function normalizeTools(tools: NonNullable<AgentCreate['tools']>, mcpServers: Agent['mcp_servers']): AgentToolDefinition[] {
  const names = new Set<string>();
  return tools.map((tool, i): AgentToolDefinition => {
    if (tool.type === 'custom') {
      if (names.has(tool.name)) throw new InvalidRequestError(`tools: duplicate tool name ${tool.name}`);
      names.add(tool.name);
      return { type: 'custom', name: tool.name, description: tool.description, input_schema: tool.input_schema };
    }
    if (tool.type === 'mcp_toolset') {
      if (!mcpServers.some((s) => s.name === tool.mcp_server_name)) {
        throw new InvalidRequestError(`tools: mcp_toolset names unknown MCP server ${tool.mcp_server_name}`);
      }
      const def = { enabled: tool.default_config?.enabled ?? true, permission_policy: tool.default_config?.permission_policy ?? ASK };
      return {
        type: 'mcp_toolset',
        mcp_server_name: tool.mcp_server_name,
        default_config: def,
        configs: (tool.configs ?? []).map((c) => ({
          name: c.name,
          enabled: c.enabled ?? def.enabled,
          permission_policy: c.permission_policy ?? def.permission_policy,
        })),
      };
    }
    const def = { enabled: tool.default_config?.enabled ?? true, permission_policy: tool.default_config?.permission_policy ?? ALLOW };
    const given = tool.configs ?? [];
    const notOffered = serverToolPolicies(i, def, given);
    const configs = given.map((c) => ({
      ...c,
      name: c.name,
      type: c.name,
      enabled: c.enabled ?? def.enabled,
      permission_policy: c.permission_policy ?? def.permission_policy,
      // web_fetch echoes url_sources in the object form, each source named (null: not set).
      ...(c.name === 'web_fetch' ? { url_sources: normalizeUrlSources(c.url_sources) } : {}),
    }));
    return { type: 'agent_toolset_20260401', default_config: def, configs: [...configs, ...notOffered.map((c) => (c.name === 'web_fetch' ? { ...c, url_sources: null } : c))] };
  });
}

/**
 * `web_search` and `web_fetch` are run by the model provider inside the model's answer, where
 * nobody can be asked first, so an `always_ask` policy cannot be honoured for them:
 * - a web tool that a config of its own enables (or gives `always_ask`) with that policy is
 *   refused, naming the setting;
 * - a web tool left to a `default_config` of `always_ask` ("ask before every tool") is not
 *   offered, and says so: the agent echoes a config of its own for it with `enabled: false`.
 * Returns those added configs.
 */
function serverToolPolicies(
  index: number,
  def: { enabled: boolean; permission_policy: PermissionPolicy },
  configs: Array<{ name: string; enabled?: boolean | null; permission_policy?: PermissionPolicy | null }>,
): Array<{ name: string; type: string; enabled: false; permission_policy: PermissionPolicy }> {
  const added: Array<{ name: string; type: string; enabled: false; permission_policy: PermissionPolicy }> = [];
  for (const name of SERVER_TOOL_NAMES) {
    const j = configs.findIndex((c) => c.name === name);
    const config = j >= 0 ? configs[j] : undefined;
    if (!(config?.enabled ?? def.enabled)) continue;
    if ((config?.permission_policy ?? def.permission_policy).type !== 'always_ask') continue;
    if (!config) {
      added.push({ name, type: name, enabled: false, permission_policy: def.permission_policy });
      continue;
    }
    const field = config.permission_policy
      ? `tools.${index}.configs.${j}.permission_policy`
      : `tools.${index}.default_config.permission_policy`;
    throw new InvalidRequestError(
      `${field}: always_ask is not supported for ${name}, which the model provider runs without asking; ` +
        `give ${name} permission_policy always_allow, or disable it`,
    );
  }
  return added;
}

type UrlSourceParam = string | { type: string; tools?: Array<{ type: 'tool_reference'; name: string }> } | null | undefined;

function normalizeUrlSources(
  sources: { client_tool_results?: UrlSourceParam; server_tool_results?: UrlSourceParam; user_input?: UrlSourceParam } | null | undefined,
): WebFetchUrlSources | null {
  if (!sources) return null;
  const one = (v: UrlSourceParam) => (v == null ? null : typeof v === 'string' ? { type: v } : v);
  return {
    client_tool_results: one(sources.client_tool_results),
    server_tool_results: one(sources.server_tool_results),
    user_input: one(sources.user_input),
  };
}

/** The API refuses every skill (none is loaded into a sandbox yet), so an agent's list is empty. */
function normalizeSkills(skills: AgentCreate['skills']): Agent['skills'] {
  if (skills?.length) throw new InvalidRequestError('skills: skills are not supported by Corral');
  return [];
}

/** Agent heads (the latest version, listed per tenant) and every version, in the state table. */
const heads = new HeadRecords<Agent, AgentHeadFields>('agent');
const versions = new AgentVersionRecords<Agent>();

/** Agents: versioned, immutable per version, archived rather than deleted. */
export class AgentService {
  /**
   * @param models the deployment's model provider and its configured models: an agent whose model
   *   the provider cannot serve is refused at create and update (400), not at its first model call.
   */
  constructor(
    private readonly table: StateTable,
    private readonly models?: ModelServing,
  ) {}

  /** Refuses a model the configured provider cannot serve (model-ids.ts). */
  private checkModel(model: Agent['model']): void {
    if (!this.models) return;
    try {
      checkModelServed(model.id, this.models.provider, this.models.allowed);
    } catch (err) {
      if (err instanceof UnsupportedModelError) throw new InvalidRequestError(`model: ${err.message}`);
      throw err;
    }
  }

  async create(tenant: string, params: AgentCreate, now = new Date()): Promise<Agent> {
    const id = newId(ID_PREFIX.agent, now.getTime());
    const mcpServers = params.mcp_servers ?? [];
    const agent: Agent = {
      id,
      type: 'agent',
      version: 1,
      name: params.name,
      description: params.description ?? null,
      model: normalizeModel(params.model),
      system: params.system ?? null,
      tools: normalizeTools(params.tools ?? [], mcpServers),
      mcp_servers: mcpServers,
      skills: normalizeSkills(params.skills),
      metadata: params.metadata ?? {},
      // Only the default principal gets past the API (schemas.ts).
      execution_identity: { type: 'service_account' },
      multiagent: await resolveMultiagent(params.multiagent, { id, version: 1 }, (ref, v) => this.get(tenant, ref, v)),
      created_at: nowIso(now),
      updated_at: nowIso(now),
      archived_at: null,
    };
    this.checkModel(agent.model);
    assertRecordFits('agent', agent, MAX_AGENT_BYTES);
    await versions.put(this.table, tenant, agent, { ifNotExists: true });
    try {
      await heads.put(this.table, tenant, agent, { version: 1 });
    } catch (err) {
      // No version without a head: an agent nobody can list or read is not left behind.
      await versions.delete(this.table, id, 1).catch(() => undefined);
      throw err;
    }
    return agent;
  }

  private async head(tenant: string, id: string) {
    const head = await heads.get(this.table, tenantPrincipal(tenant), id);
    if (!head) throw new NotFoundError(`agent ${id} not found`);
    return head;
  }

  /** The latest version, or the given one. */
  async get(tenant: string, id: string, version?: number): Promise<Agent> {
    const head = await this.head(tenant, id);
    if (version === undefined || version === head.version) return head.data;
    const item = await versions.get(this.table, tenantPrincipal(tenant), id, version);
    if (!item) throw new NotFoundError(`agent ${id} has no version ${version}`);
    return item.data;
  }

  /** A new immutable version. With `version`, the update must be based on the latest one (409 otherwise). */
  async update(tenant: string, id: string, params: AgentUpdate, now = new Date()): Promise<Agent> {
    const head = await this.head(tenant, id);
    const current = head.data;
    if (current.archived_at) throw new InvalidRequestError(`agent ${id} is archived`);
    if (params.version !== undefined && params.version !== current.version) {
      throw new ConflictError(`agent ${id} is at version ${current.version}, not ${params.version}`);
    }
    const next = this.apply(current, params, now);
    // `multiagent` left out keeps the roster (with `self` moved to the new version); null clears it.
    if (params.multiagent !== undefined) next.multiagent = await resolveMultiagent(params.multiagent, next, (ref, v) => this.get(tenant, ref, v));
    else next.multiagent = rosterWithSelf(current.multiagent, next);
    assertRecordFits('agent', next, MAX_AGENT_BYTES);
    try {
      await versions.put(this.table, tenant, next, { ifNotExists: true });
      await heads.put(this.table, tenant, next, { version: next.version }, { ifEquals: { version: current.version } });
    } catch (err) {
      if (err instanceof ConditionFailedError) throw new ConflictError(`agent ${id} was updated concurrently; retry`);
      throw err;
    }
    return next;
  }

  /** The agent with `params` applied, as the next version would be; nothing is stored. */
  preview(current: Agent, params: Omit<AgentUpdate, 'version'>, now = new Date()): Agent {
    return this.apply(current, params, now);
  }

  private apply(current: Agent, params: Omit<AgentUpdate, 'version'>, now: Date): Agent {
    const mcpServers = params.mcp_servers === undefined ? current.mcp_servers : (params.mcp_servers ?? []);
    const next: Agent = {
      ...current,
      version: current.version + 1,
      name: params.name ?? current.name,
      description: params.description === undefined ? current.description : params.description,
      model: params.model === undefined ? current.model : normalizeModel(params.model),
      system: params.system === undefined ? current.system : params.system,
      mcp_servers: mcpServers,
      tools: params.tools === undefined ? current.tools : normalizeTools(params.tools ?? [], mcpServers),
      skills: params.skills === undefined ? current.skills : normalizeSkills(params.skills ?? []),
      metadata: patchMetadata(current.metadata, params.metadata),
      execution_identity: { type: 'service_account' },
      multiagent: current.multiagent ?? null,
      updated_at: nowIso(now),
    };
    if (params.model !== undefined) this.checkModel(next.model);
    if (params.tools === undefined && params.mcp_servers !== undefined) {
      for (const t of next.tools) {
        if (t.type === 'mcp_toolset' && !mcpServers.some((s) => s.name === t.mcp_server_name)) {
          throw new InvalidRequestError(`tools: mcp_toolset names unknown MCP server ${t.mcp_server_name}`);
        }
      }
    }
    return next;
  }

  async archive(tenant: string, id: string, now = new Date()): Promise<Agent> {
    const head = await this.head(tenant, id);
    const current = head.data;
    if (current.archived_at) return current;
    const archived = { ...current, archived_at: nowIso(now), updated_at: nowIso(now) };
    await heads.replace(this.table, head, { data: archived }, { ifEquals: { version: current.version } });
    return archived;
  }

  list(tenant: string, params: ListParams & { include_archived?: boolean; created_at?: CreatedAtRange }): Promise<ListResult<Agent>> {
    const created = createdAtFilter(params.created_at);
    return collectPage(
      (q) => heads.page(this.table, tenant, q),
      params,
      (item) => item.gsi1sk,
      (item) => (params.include_archived === true || !item.data.archived_at) && created(item.data.created_at),
      (item) => item.data,
    );
  }

  listVersions(tenant: string, id: string, params: ListParams): Promise<ListResult<Agent>> {
    return this.head(tenant, id).then(() =>
      collectPage(
        (q) => versions.page(this.table, tenantPrincipal(tenant), id, q),
        params,
        (item) => item.sk,
        () => true,
        (item) => item.data,
      ),
    );
  }
}

/** A stored roster whose `self` entry follows the agent to its new version. */
function rosterWithSelf(multiagent: unknown, next: { id: string; version: number }): unknown {
  const roster = coordinatorOf(multiagent);
  if (!roster) return multiagent ?? null;
  return { ...roster, agents: roster.agents.map((a) => (a.id === next.id ? { ...a, version: next.version } : a)) };
}
