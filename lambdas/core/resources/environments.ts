import { InvalidRequestError, NotFoundError } from '../errors.js';
import { ID_PREFIX, newId } from '../ids.js';
import type { EnvironmentCreate, EnvironmentUpdate } from '../api/schemas.js';
import type { StateTable } from '../store.js';
import { HeadRecords } from '../storage/items.js';
import { tenantPrincipal } from '../storage/principal.js';
import { assertRecordFits, nowIso, patchMetadata } from './common.js';
import { collectPage, type ListParams, type ListResult } from './paging.js';

/** An environment as the API returns it (`BetaEnvironment`): the recipe sandboxes are built from. */
export interface Environment {
  id: string;
  type: 'environment';
  name: string;
  description: string | null;
  config: Record<string, unknown> & { type: 'cloud' | 'self_hosted' };
  metadata: Record<string, string>;
  scope?: 'organization' | 'account';
  created_at: string;
  updated_at: string;
  archived_at: string | null;
}

function normalizeConfig(config: EnvironmentCreate['config']): Environment['config'] {
  const networking = config?.networking;
  const packages = config?.packages;
  return {
    type: 'cloud',
    networking:
      networking?.type === 'limited'
        ? {
            type: 'limited',
            allow_mcp_servers: networking.allow_mcp_servers ?? false,
            allow_package_managers: networking.allow_package_managers ?? false,
            allowed_hosts: networking.allowed_hosts ?? [],
          }
        : { type: 'unrestricted' },
    packages: {
      type: 'packages',
      apt: packages?.apt ?? [],
      cargo: packages?.cargo ?? [],
      gem: packages?.gem ?? [],
      go: packages?.go ?? [],
      npm: packages?.npm ?? [],
      pip: packages?.pip ?? [],
    },
  };
}

/** Environments in the state table, listed per tenant. */
const heads = new HeadRecords<Environment>('environment');

export class EnvironmentService {
  constructor(private readonly table: StateTable) {}

  async create(tenant: string, params: EnvironmentCreate, now = new Date()): Promise<Environment> {
    const id = newId(ID_PREFIX.environment, now.getTime());
    const env: Environment = {
      id,
      type: 'environment',
      name: params.name,
      description: params.description ?? null,
      config: normalizeConfig(params.config),
      metadata: params.metadata ?? {},
      ...(params.scope ? { scope: params.scope } : {}),
      created_at: nowIso(now),
      updated_at: nowIso(now),
      archived_at: null,
    };
    assertRecordFits('environment', env);
    await heads.put(this.table, tenant, env, {}, { ifNotExists: true });
    return env;
  }

  async get(tenant: string, id: string): Promise<Environment> {
    const item = await heads.get(this.table, tenantPrincipal(tenant), id);
    if (!item) throw new NotFoundError(`environment ${id} not found`);
    return item.data;
  }

  private async save(tenant: string, env: Environment) {
    await heads.put(this.table, tenant, env, {});
  }

  async update(tenant: string, id: string, params: EnvironmentUpdate, now = new Date()): Promise<Environment> {
    const current = await this.get(tenant, id);
    if (current.archived_at) throw new InvalidRequestError(`environment ${id} is archived`);
    if (params.config && params.config.type !== current.config.type) {
      throw new InvalidRequestError(`config: cannot change an environment's config type from ${current.config.type}`);
    }
    const next: Environment = {
      ...current,
      name: params.name ?? current.name,
      description: params.description === undefined ? current.description : params.description,
      config: params.config ? normalizeConfig(params.config) : current.config,
      metadata: patchMetadata(current.metadata, params.metadata),
      ...(params.scope ? { scope: params.scope } : {}),
      updated_at: nowIso(now),
    };
    assertRecordFits('environment', next);
    await this.save(tenant, next);
    return next;
  }

  async archive(tenant: string, id: string, now = new Date()): Promise<Environment> {
    const current = await this.get(tenant, id);
    if (current.archived_at) return current;
    const next = { ...current, archived_at: nowIso(now), updated_at: nowIso(now) };
    await this.save(tenant, next);
    return next;
  }

  async delete(tenant: string, id: string): Promise<{ id: string; type: 'environment_deleted' }> {
    await this.get(tenant, id);
    await heads.delete(this.table, id);
    return { id, type: 'environment_deleted' };
  }

  list(tenant: string, params: ListParams & { include_archived?: boolean }): Promise<ListResult<Environment>> {
    return collectPage(
      (q) => heads.page(this.table, tenant, q),
      params,
      (item) => item.gsi1sk,
      (item) => params.include_archived === true || !item.data.archived_at,
      (item) => item.data,
    );
  }
}
