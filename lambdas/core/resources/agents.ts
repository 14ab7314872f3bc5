import { ConflictError, InvalidRequestError, NotFoundError } from '../errors.js';
import { ID_PREFIX, newId } from '../ids.js';
import type { AgentCreate, AgentUpdate, PermissionPolicy } from '../api/schemas.js';
import { ConditionFailedError, type Item, type StateTable } from '../store.js';
import { MAX_AGENT_BYTES, assertRecordFits, nowIso, patchMetadata } from './common.js';
import { collectPage, type ListParams, type ListResult } from './paging.js';

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
  return tools.map((tool): AgentToolDefinition => {
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
    return {
      type: 'agent_toolset_20260401',
      default_config: def,
      configs: (tool.configs ?? []).map((c) => ({
        ...c,
        name: c.name,
        type: c.name,
        enabled: c.enabled ?? def.enabled,
        permission_policy: c.permission_policy ?? def.permission_policy,
      })),
    };
  });
}

function normalizeSkills(skills: AgentCreate['skills']): Agent['skills'] {
  return (skills ?? []).map((s) => ({ type: s.type, skill_id: s.skill_id, version: s.version ?? 'latest' }));
}

const headKey = (id: string) => ({ pk: `agent#${id}`, sk: 'head' });
const versionKey = (id: string, version: number) => ({ pk: `agent#${id}`, sk: `v#${String(version).padStart(10, '0')}` });

/** Agents: versioned, immutable per version, archived rather than deleted. */
export class AgentService {
  constructor(private readonly table: StateTable) {}

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
      execution_identity: params.execution_identity ?? { type: 'service_account' },
      multiagent: params.multiagent ?? null,
      created_at: nowIso(now),
      updated_at: nowIso(now),
      archived_at: null,
    };
    assertRecordFits('agent', agent, MAX_AGENT_BYTES);
    await this.table.put({ ...versionKey(id, 1), tenant, data: agent }, { ifNotExists: true });
    try {
      await this.table.put({ ...headKey(id), tenant, version: 1, data: agent, gsi1pk: `${tenant}#agents`, gsi1sk: id });
    } catch (err) {
      // No version without a head: an agent nobody can list or read is not left behind.
      await this.table.delete(versionKey(id, 1).pk, versionKey(id, 1).sk).catch(() => undefined);
      throw err;
    }
    return agent;
  }

  private async head(tenant: string, id: string): Promise<Item> {
    const head = await this.table.get(headKey(id).pk, 'head');
    if (!head || head.tenant !== tenant) throw new NotFoundError(`agent ${id} not found`);
    return head;
  }

  /** The latest version, or the given one. */
  async get(tenant: string, id: string, version?: number): Promise<Agent> {
    const head = await this.head(tenant, id);
    if (version === undefined || version === head.version) return head.data as Agent;
    const item = await this.table.get(versionKey(id, version).pk, versionKey(id, version).sk);
    if (!item) throw new NotFoundError(`agent ${id} has no version ${version}`);
    return item.data as Agent;
  }

  /** A new immutable version. With `version`, the update must be based on the latest one (409 otherwise). */
  async update(tenant: string, id: string, params: AgentUpdate, now = new Date()): Promise<Agent> {
    const head = await this.head(tenant, id);
    const current = head.data as Agent;
    if (current.archived_at) throw new InvalidRequestError(`agent ${id} is archived`);
    if (params.version !== undefined && params.version !== current.version) {
      throw new ConflictError(`agent ${id} is at version ${current.version}, not ${params.version}`);
    }
    const next = this.apply(current, params, now);
    assertRecordFits('agent', next, MAX_AGENT_BYTES);
    try {
      await this.table.put({ ...versionKey(id, next.version), tenant, data: next }, { ifNotExists: true });
      await this.table.put(
        { ...headKey(id), tenant, version: next.version, data: next, gsi1pk: `${tenant}#agents`, gsi1sk: id },
        { ifEquals: { version: current.version } },
      );
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
      execution_identity: params.execution_identity === undefined ? current.execution_identity : params.execution_identity,
      multiagent: params.multiagent === undefined ? current.multiagent : params.multiagent,
      updated_at: nowIso(now),
    };
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
    const current = head.data as Agent;
    if (current.archived_at) return current;
    const archived = { ...current, archived_at: nowIso(now), updated_at: nowIso(now) };
    await this.table.put({ ...head, data: archived } as Item, { ifEquals: { version: current.version } });
    return archived;
  }

  list(tenant: string, params: ListParams & { include_archived?: boolean }): Promise<ListResult<Agent>> {
    return collectPage(
      (q) => this.table.queryIndex(`${tenant}#agents`, q),
      params,
      (item) => String(item.gsi1sk),
      (item) => params.include_archived === true || !(item.data as Agent).archived_at,
      (item) => item.data as Agent,
    );
  }

  listVersions(tenant: string, id: string, params: ListParams): Promise<ListResult<Agent>> {
    return this.head(tenant, id).then(() =>
      collectPage(
        (q) => this.table.query(`agent#${id}`, { ...q, prefix: 'v#' }),
        params,
        (item) => item.sk,
        () => true,
        (item) => item.data as Agent,
      ),
    );
  }
}
