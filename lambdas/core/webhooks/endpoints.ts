import { InvalidRequestError, NotFoundError } from '../errors.js';
import { newId } from '../ids.js';
import type { WebhookEndpointCreate, WebhookEndpointUpdate } from '../api/webhook-schemas.js';
import type { StateTable } from '../store.js';
import { webhookKeys } from '../storage/keys.js';
import type { SecretStore } from '../vault/secret-store.js';
import { decodeCursor, encodeCursor } from '../resources/paging.js';
import { newSigningSecret } from './signing.js';
import type { PublishedWebhookEventType, WebhookDelivery, WebhookEndpoint } from './types.js';
import { checkWebhookUrl, type WebhookUrlRule } from './url.js';

/** At most this many endpoints per tenant, enabled or disabled (the hosted service's figure). */
export const MAX_ENDPOINTS_PER_TENANT = 32;

/**
 * Where signing secrets are written: Secrets Manager on AWS, an encrypted file locally. The API
 * only writes and deletes them (a new endpoint, a regenerated secret); only the deliverer reads.
 */
export type WebhookSecretWriter = Pick<SecretStore, 'put' | 'delete'>;

/**
 * Webhook endpoints per tenant: `client.beta.organization.webhooks` (create, list, retrieve,
 * update, delete, regenerate_signing_secret). The signing secret is in the answer to a create or
 * a regeneration and nowhere else: it is written to the secret store before the endpoint exists
 * (so no endpoint is ever without its secret) and no read returns it.
 */
/** How long a process reuses a tenant's endpoint list when publishing (`subscribers`). */
export const SUBSCRIBERS_TTL_MS = 2_000;

export class WebhookEndpointService {
  /** Each tenant's endpoints as publishing last read them (see `subscribers`). */
  private readonly recent = new Map<string, { at: number; endpoints: Promise<WebhookEndpoint[]> }>();

  constructor(
    private readonly table: StateTable,
    private readonly secrets: WebhookSecretWriter,
    private readonly urlRule: WebhookUrlRule,
    /** How long publishing reuses a tenant's endpoint list read by another call. @default SUBSCRIBERS_TTL_MS */
    private readonly subscribersTtlMs = SUBSCRIBERS_TTL_MS,
  ) {}

  /**
   * The tenant's endpoints as publishing needs them, on every status change of every session:
   * read at most once per `subscribersTtlMs` per process instead of a query per event (a step
   * that appends its idle would otherwise wait for one). This process's own create, update and
   * delete take effect at once; another process's (the API's, seen by a harness function) within
   * the TTL: an endpoint gets the events published from at most that long after it was made.
   */
  subscribers(tenant: string, now = Date.now()): Promise<WebhookEndpoint[]> {
    const hit = this.recent.get(tenant);
    if (hit && now - hit.at < this.subscribersTtlMs) return hit.endpoints;
    if (this.recent.size > 10_000) this.recent.clear();
    const endpoints = this.all(tenant);
    this.recent.set(tenant, { at: now, endpoints });
    endpoints.catch(() => this.recent.delete(tenant));
    return endpoints;
  }

  async create(tenant: string, p: WebhookEndpointCreate, now = new Date()): Promise<WebhookEndpoint & { signing_secret: string }> {
    checkWebhookUrl(p.url, this.urlRule);
    const existing = await this.all(tenant);
    if (existing.length >= MAX_ENDPOINTS_PER_TENANT) {
      throw new InvalidRequestError(`a tenant may have at most ${MAX_ENDPOINTS_PER_TENANT} webhook endpoints; delete one first`);
    }
    const id = newId('whep', now.getTime());
    const ts = now.toISOString();
    const endpoint: WebhookEndpoint = {
      id,
      url: p.url,
      name: p.name ?? '',
      description: p.description ?? '',
      enabled_events: dedupe(p.enabled_events),
      state: 'enabled',
      disabled_reason: '',
      created_at: ts,
      updated_at: ts,
    };
    const signing_secret = newSigningSecret();
    await this.secrets.put(webhookKeys.secretRef(id), { signing_secret });
    await this.save(tenant, endpoint, true);
    this.recent.delete(tenant);
    return { ...endpoint, signing_secret };
  }

  async get(tenant: string, id: string): Promise<WebhookEndpoint> {
    const k = webhookKeys.endpoint(id);
    const item = await this.table.get(k.pk, k.sk);
    if (!item || item.tenant !== tenant) throw new NotFoundError(`webhook endpoint ${id} not found`);
    return item.data as WebhookEndpoint;
  }

  async update(tenant: string, id: string, p: WebhookEndpointUpdate, now = new Date()): Promise<WebhookEndpoint> {
    const current = await this.get(tenant, id);
    if (p.url !== undefined) checkWebhookUrl(p.url, this.urlRule);
    const next: WebhookEndpoint = {
      ...current,
      url: p.url ?? current.url,
      name: p.name ?? current.name,
      description: p.description ?? current.description,
      enabled_events: p.enabled_events?.length ? dedupe(p.enabled_events) : current.enabled_events,
      state: p.state ?? current.state,
      // Enabling clears why it was disabled (Corral never disables one by itself yet).
      disabled_reason: p.state === 'enabled' ? '' : current.disabled_reason,
      updated_at: now.toISOString(),
    };
    await this.save(tenant, next, false);
    this.recent.delete(tenant);
    return next;
  }

  async delete(tenant: string, id: string): Promise<{ id: string; type: 'webhook_endpoint_deleted' }> {
    await this.get(tenant, id);
    const k = webhookKeys.endpoint(id);
    await this.table.delete(k.pk, k.sk);
    this.recent.delete(tenant);
    // After the endpoint: a pending delivery that still finds the endpoint finds its secret too.
    await this.secrets.delete(webhookKeys.secretRef(id));
    return { id, type: 'webhook_endpoint_deleted' };
  }

  async regenerateSigningSecret(tenant: string, id: string): Promise<{ signing_secret: string }> {
    await this.get(tenant, id);
    const signing_secret = newSigningSecret();
    // The old secret stops working at once: the next attempt of any delivery is signed with this one.
    await this.secrets.put(webhookKeys.secretRef(id), { signing_secret });
    return { signing_secret };
  }

  /** The SDK's `Page`: `data`, `has_more`, `first_id`, `last_id`; `after_id` / `before_id` page on. */
  async list(
    tenant: string,
    q: { limit?: number; order?: 'asc' | 'desc'; after_id?: string; before_id?: string },
  ): Promise<{ data: WebhookEndpoint[]; has_more: boolean; first_id: string | null; last_id: string | null }> {
    let all = await this.all(tenant); // at most 32: read whole, then cut
    if (q.order !== 'asc') all = all.reverse();
    if (q.after_id) {
      const i = all.findIndex((e) => e.id === q.after_id);
      all = i < 0 ? [] : all.slice(i + 1);
    }
    if (q.before_id) {
      const i = all.findIndex((e) => e.id === q.before_id);
      all = i < 0 ? [] : all.slice(0, i);
    }
    const limit = q.limit ?? 20;
    const data = q.before_id ? all.slice(-limit) : all.slice(0, limit);
    return { data, has_more: all.length > data.length, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null };
  }

  /** Every endpoint of the tenant, oldest first. */
  async all(tenant: string): Promise<WebhookEndpoint[]> {
    const page = await this.table.queryIndex(webhookKeys.endpointIndex(tenant), { limit: MAX_ENDPOINTS_PER_TENANT + 1 });
    return page.items.map((i) => i.data as WebhookEndpoint);
  }

  /** The delivery log of one endpoint, newest first (a Corral extension: `corral webhooks deliveries`). */
  async deliveries(tenant: string, id: string, q: { limit?: number; page?: string }): Promise<{ data: WebhookDelivery[]; next_page: string | null }> {
    await this.get(tenant, id);
    const limit = q.limit ?? 20;
    const after = decodeCursor(q.page);
    const page = await this.table.query(webhookKeys.deliveryPartition(id), { reverse: true, limit, ...(after ? { after } : {}) });
    return {
      data: page.items.map((i) => i.delivery as WebhookDelivery),
      next_page: page.last && page.items.length === limit ? encodeCursor(page.last) : null,
    };
  }

  private save(tenant: string, e: WebhookEndpoint, create: boolean) {
    const k = webhookKeys.endpoint(e.id);
    return this.table.put(
      { ...k, tenant, data: e, gsi1pk: webhookKeys.endpointIndex(tenant), gsi1sk: e.id },
      create ? { ifNotExists: true } : undefined,
    );
  }
}

function dedupe(types: readonly PublishedWebhookEventType[]): PublishedWebhookEventType[] {
  return [...new Set(types)];
}
