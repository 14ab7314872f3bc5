import * as z from 'zod';
import { WebhookEmpty, WebhookEndpointCreate, WebhookEndpointUpdate } from '../core/api/webhook-schemas.js';
import type { Operation } from './openapi.js';

/** The webhook operations of the OpenAPI document (and so of the strict query check). */
const Endpoint = z
  .looseObject({ id: z.string(), url: z.string(), enabled_events: z.array(z.string()), state: z.enum(['enabled', 'disabled']) })
  .meta({ description: 'A webhook endpoint (`BetaOrganizationWebhookEndpoint`); never its signing secret.' });
const NewEndpoint = z.looseObject({ id: z.string(), signing_secret: z.string() }).meta({ description: 'A new endpoint with its signing secret, shown this once.' });
const Secret = z.object({ signing_secret: z.string() });
const Deleted = z.object({ id: z.string(), type: z.literal('webhook_endpoint_deleted') });
const Delivery = z.looseObject({ event_id: z.string(), endpoint_id: z.string(), status: z.enum(['pending', 'delivered', 'failed']), attempts: z.number() });
const id = { schema: z.string(), description: 'An endpoint id.' };

export const WEBHOOK_OPERATIONS: Operation[] = [
  {
    method: 'post', path: '/v1/organizations/webhooks', operationId: 'createWebhookEndpoint', summary: 'Create a webhook endpoint', tag: 'webhooks',
    body: WebhookEndpointCreate, response: NewEndpoint,
    description: 'https:// to a public host unless the operator allows more origins (CORRAL_WEBHOOK_URL_ALLOW). At most 32 per tenant. The signing secret is in this answer only.',
  },
  {
    method: 'get', path: '/v1/organizations/webhooks', operationId: 'listWebhookEndpoints', summary: 'List webhook endpoints', tag: 'webhooks',
    response: z.object({ data: z.array(Endpoint), has_more: z.boolean(), first_id: z.string().nullable(), last_id: z.string().nullable() }),
    query: {
      limit: { schema: z.number().int().min(1).max(100), description: 'Page size, 1 to 100.' },
      order: { schema: z.enum(['asc', 'desc']), description: 'By creation; default desc.' },
      after_id: id,
      before_id: id,
    },
  },
  { method: 'get', path: '/v1/organizations/webhooks/{id}', operationId: 'getWebhookEndpoint', summary: 'Retrieve a webhook endpoint', tag: 'webhooks', response: Endpoint },
  {
    method: 'post', path: '/v1/organizations/webhooks/{id}', operationId: 'updateWebhookEndpoint', summary: 'Update a webhook endpoint', tag: 'webhooks',
    body: WebhookEndpointUpdate, response: Endpoint,
  },
  { method: 'delete', path: '/v1/organizations/webhooks/{id}', operationId: 'deleteWebhookEndpoint', summary: 'Delete a webhook endpoint and its secret', tag: 'webhooks', response: Deleted },
  {
    method: 'post', path: '/v1/organizations/webhooks/{id}/regenerate_signing_secret', operationId: 'regenerateWebhookSigningSecret',
    summary: 'Replace the signing secret (the old one stops at once)', tag: 'webhooks', body: WebhookEmpty, response: Secret,
  },
  {
    method: 'get', path: '/v1/corral/webhooks/{id}/deliveries', operationId: 'listWebhookDeliveries', summary: "An endpoint's delivery log, newest first", tag: 'webhooks',
    response: z.object({ data: z.array(Delivery), next_page: z.string().nullable() }),
    query: { limit: { schema: z.number().int().min(1).max(100), description: 'Page size, 1 to 100.' }, page: { schema: z.string(), description: 'The `next_page` cursor of the previous page.' } },
    extension: true,
  },
];
