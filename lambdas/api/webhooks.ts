import { Hono, type MiddlewareHandler } from 'hono';
import type { PublishedWebhookEventType } from '../core/webhooks/types.js';
import { WebhookEmpty, WebhookEndpointCreate, WebhookEndpointUpdate } from '../core/api/webhook-schemas.js';
import { InvalidRequestError } from '../core/errors.js';
import type { CorralServices } from '../core/services.js';
import { parseBody, pathId, queryInt, queryOrder, queryPage, type Env } from './http.js';

/**
 * `/v1/organizations/webhooks` (`client.beta.organization.webhooks`): a tenant's webhook
 * endpoints. The signing secret is in the answer to a create and to `regenerate_signing_secret`,
 * and in no other answer, log line or error.
 */
export function webhookRoutes(s: CorralServices) {
  const app = new Hono<Env>();
  app.post('/', async (c) => c.json(await s.webhooks.create(c.get('tenant'), await parseBody(c, WebhookEndpointCreate))));
  app.get('/', async (c) => {
    const id = (name: string) => {
      const v = c.req.query(name);
      if (v !== undefined && !/^[A-Za-z0-9_-]{1,128}$/.test(v)) throw new InvalidRequestError(`${name}: must be an endpoint id`);
      return v;
    };
    return c.json(
      await s.webhooks.list(c.get('tenant'), {
        limit: queryInt(c, 'limit', { min: 1, max: 100 }),
        order: queryOrder(c),
        after_id: id('after_id'),
        before_id: id('before_id'),
      }),
    );
  });
  app.get('/:id', async (c) => c.json(await s.webhooks.get(c.get('tenant'), pathId(c, 'id'))));
  app.post('/:id', async (c) => c.json(await s.webhooks.update(c.get('tenant'), pathId(c, 'id'), await parseBody(c, WebhookEndpointUpdate))));
  app.delete('/:id', async (c) => c.json(await s.webhooks.delete(c.get('tenant'), pathId(c, 'id'))));
  app.post('/:id/regenerate_signing_secret', async (c) => {
    await parseBody(c, WebhookEmpty);
    return c.json(await s.webhooks.regenerateSigningSecret(c.get('tenant'), pathId(c, 'id')));
  });
  return app;
}

/** `/v1/corral/webhooks/{id}/deliveries` (Corral extension): an endpoint's delivery log, newest first. */
export function webhookDeliveryRoutes(s: CorralServices) {
  const app = new Hono<Env>();
  app.get('/:id/deliveries', async (c) =>
    c.json(await s.webhooks.deliveries(c.get('tenant'), pathId(c, 'id'), { limit: queryInt(c, 'limit', { min: 1, max: 100 }), page: queryPage(c) })),
  );
  return app;
}

/**
 * Which successful API calls publish which webhook event, and where the resource's id is: the
 * answer's `id` (`body`) or a path parameter. Session status changes come from the log instead
 * (core/webhooks/publish.ts `publishingEventLog`).
 */
const PUBLISHED: Record<string, { type: PublishedWebhookEventType; id: 'body' | string; vault?: string; thread?: string }> = {
  'POST /v1/agents': { type: 'agent.created', id: 'body' },
  'POST /v1/agents/:id': { type: 'agent.updated', id: 'id' },
  'POST /v1/agents/:id/archive': { type: 'agent.archived', id: 'id' },
  'POST /v1/environments': { type: 'environment.created', id: 'body' },
  'POST /v1/environments/:id': { type: 'environment.updated', id: 'id' },
  'POST /v1/environments/:id/archive': { type: 'environment.archived', id: 'id' },
  'DELETE /v1/environments/:id': { type: 'environment.deleted', id: 'id' },
  'POST /v1/sessions': { type: 'session.created', id: 'body' },
  'POST /v1/sessions/:id/fork': { type: 'session.created', id: 'body' },
  'POST /v1/sessions/:id': { type: 'session.updated', id: 'id' },
  'POST /v1/sessions/:id/archive': { type: 'session.archived', id: 'id' },
  'DELETE /v1/sessions/:id': { type: 'session.deleted', id: 'id' },
  'POST /v1/vaults': { type: 'vault.created', id: 'body' },
  'POST /v1/vaults/:id/archive': { type: 'vault.archived', id: 'id' },
  'DELETE /v1/vaults/:id': { type: 'vault.deleted', id: 'id' },
  'POST /v1/vaults/:id/credentials': { type: 'vault_credential.created', id: 'body', vault: 'id' },
  'POST /v1/vaults/:id/credentials/:credential_id/archive': { type: 'vault_credential.archived', id: 'credential_id', vault: 'id' },
  'DELETE /v1/vaults/:id/credentials/:credential_id': { type: 'vault_credential.deleted', id: 'credential_id', vault: 'id' },
  'POST /v1/deployments': { type: 'deployment.created', id: 'body' },
  'POST /v1/deployments/:id': { type: 'deployment.updated', id: 'id' },
  'POST /v1/deployments/:id/pause': { type: 'deployment.paused', id: 'id' },
  'POST /v1/deployments/:id/unpause': { type: 'deployment.unpaused', id: 'id' },
  'POST /v1/deployments/:id/archive': { type: 'deployment.archived', id: 'id' },
  'POST /v1/sessions/:id/threads/:thread_id/archive': { type: 'session.thread_terminated', id: 'id', thread: 'thread_id' },
  'POST /v1/memory_stores': { type: 'memory_store.created', id: 'body' },
  'POST /v1/memory_stores/:id/archive': { type: 'memory_store.archived', id: 'id' },
  'DELETE /v1/memory_stores/:id': { type: 'memory_store.deleted', id: 'id' },
};

/**
 * Publishes the webhook event of a successful call in `PUBLISHED` before the answer goes out. A
 * failure to publish is logged, not answered: the call itself succeeded.
 */
export function publishWebhooks(s: CorralServices, logger?: { error(msg: string, fields?: Record<string, unknown>): void }): MiddlewareHandler<Env> {
  return async (c, next) => {
    await next();
    if (c.res.status !== 200 || (c.req.method !== 'POST' && c.req.method !== 'DELETE')) return;
    const route = c.req.matchedRoutes.filter((r) => r.method !== 'ALL').at(-1);
    const rule = route && PUBLISHED[`${route.method} ${route.path.replace(/\/$/, '')}`];
    if (!rule) return;
    try {
      let id = rule.id === 'body' ? undefined : c.req.param(rule.id);
      if (rule.id === 'body') {
        const body = (await c.res.clone().json()) as { id?: unknown };
        if (typeof body?.id === 'string') id = body.id;
      }
      if (!id) return;
      const vault = rule.vault ? c.req.param(rule.vault) : undefined;
      const thread = rule.thread ? c.req.param(rule.thread) : undefined;
      await s.webhookEvents.publish(c.get('tenant'), rule.type, { id, ...(vault ? { vault_id: vault } : {}), ...(thread ? { session_thread_id: thread } : {}) });
    } catch (err) {
      logger?.error('webhook publish failed', { route: route?.path, error: (err as Error)?.message ?? String(err) });
    }
  };
}
