import type Anthropic from '@anthropic-ai/sdk';

/**
 * The webhook event types Corral publishes: a subset of the SDK's `BetaWebhookEventData['type']`
 * (resources/beta/webhooks.d.ts). The type checker holds each name to the SDK's union. Types the
 * SDK declares and Corral never emits (user profiles, external keys, vault credential refreshes)
 * are refused in `enabled_events`, so an endpoint cannot wait for an event that never comes.
 */
export type WebhookEventType = Anthropic.Beta.BetaWebhookEventData['type'];

export const PUBLISHED_WEBHOOK_EVENT_TYPES = [
  'session.created',
  'session.updated',
  'session.archived',
  'session.deleted',
  'session.running',
  'session.idled',
  'session.requires_action',
  'session.budget_reached',
  'session.status_rescheduled',
  'session.status_run_started',
  'session.status_idled',
  'session.status_terminated',
  'session.outcome_evaluation_ended',
  // Published by threads once they land (the lead wires them: see docs/WEBHOOKS.md).
  'session.thread_created',
  'session.thread_idled',
  'session.thread_terminated',
  'agent.created',
  'agent.updated',
  'agent.archived',
  'environment.created',
  'environment.updated',
  'environment.archived',
  'environment.deleted',
  'vault.created',
  'vault.archived',
  'vault.deleted',
  'vault_credential.created',
  'vault_credential.archived',
  'vault_credential.deleted',
  // Published by deployments and memory stores once they land (see docs/WEBHOOKS.md).
  'deployment.created',
  'deployment.updated',
  'deployment.paused',
  'deployment.unpaused',
  'deployment.archived',
  'deployment.deleted',
  'deployment_run.started',
  'deployment_run.succeeded',
  'deployment_run.failed',
  'memory_store.created',
  'memory_store.archived',
  'memory_store.deleted',
] as const satisfies readonly WebhookEventType[];

export type PublishedWebhookEventType = (typeof PUBLISHED_WEBHOOK_EVENT_TYPES)[number];

/** An endpoint as the API returns it (`BetaOrganizationWebhookEndpoint`); never its secret. */
export interface WebhookEndpoint {
  id: string;
  type?: never;
  url: string;
  name: string;
  description: string;
  enabled_events: PublishedWebhookEventType[];
  state: 'enabled' | 'disabled';
  disabled_reason: string;
  created_at: string;
  updated_at: string;
}

/** One event on its way to one endpoint: the outbox item and the delivery log's line. */
export interface WebhookDelivery {
  /** The payload's `id` (the `webhook-id` header): the same on every attempt. */
  event_id: string;
  endpoint_id: string;
  event_type: PublishedWebhookEventType;
  created_at: string;
  /** `pending` until a 2xx answer (`delivered`) or the retry horizon passes (`failed`: dead-lettered). */
  status: 'pending' | 'delivered' | 'failed';
  attempts: number;
  /** When the next attempt is due (pending only), RFC 3339. */
  next_attempt_at: string | null;
  /** The last attempt: its HTTP status (null when no answer came) and a short reason. */
  last_attempt_at: string | null;
  last_status_code: number | null;
  last_error: string | null;
}
