import * as z from 'zod';
import { PUBLISHED_WEBHOOK_EVENT_TYPES } from '../webhooks/types.js';

/**
 * Request schemas of the webhook endpoint API (`client.beta.organization.webhooks`,
 * resources/beta/organization/webhooks.d.ts). Unknown fields are 400s naming them. `enabled_events`
 * takes the `BetaWebhookEvent` types Corral publishes (core/webhooks/types.ts); any other name is a
 * 400 that lists the accepted ones.
 */
const EventType = z.enum(PUBLISHED_WEBHOOK_EVENT_TYPES);
const Url = z.string().min(1).max(2048);

export const WebhookEndpointCreate = z.strictObject({
  url: Url,
  enabled_events: z.array(EventType).min(1).max(PUBLISHED_WEBHOOK_EVENT_TYPES.length),
  name: z.string().max(255).optional(),
  description: z.string().max(2048).optional(),
});
export type WebhookEndpointCreate = z.infer<typeof WebhookEndpointCreate>;

export const WebhookEndpointUpdate = z.strictObject({
  url: Url.optional(),
  /** Replaces the whole set; an empty list leaves it unchanged (as the SDK documents). */
  enabled_events: z.array(EventType).max(PUBLISHED_WEBHOOK_EVENT_TYPES.length).optional(),
  name: z.string().max(255).optional(),
  description: z.string().max(2048).optional(),
  state: z.enum(['enabled', 'disabled']).optional(),
});
export type WebhookEndpointUpdate = z.infer<typeof WebhookEndpointUpdate>;

/** `regenerate_signing_secret` takes no body. */
export const WebhookEmpty = z.strictObject({});
