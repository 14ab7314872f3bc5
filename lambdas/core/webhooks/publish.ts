import { createHash } from 'node:crypto';
import { newId } from '../ids.js';
import type { Logger } from '../logger.js';
import type { SessionEvent } from '../session/event-types.js';
import type { StoredEvent } from '../session/events.js';
import type { EventLog } from '../session/log.js';
import { ConditionFailedError, type StateTable } from '../store.js';
import { keys, webhookKeys } from '../storage/keys.js';
import type { PublishedWebhookEventType, WebhookDelivery, WebhookEndpoint } from './types.js';

/**
 * Publishing: `publish(tenant, type, data)` writes one outbox item per enabled endpoint that
 * subscribed to `type` (the delivery item, in the state table, holding the exact payload every
 * attempt sends) and then asks the deliverer to run (`kick`). The delivery happens because the
 * item exists, not because the kick arrived: the deliverer also sweeps every pending item that is
 * due, so a lost kick (the process died right after the write) costs a sweep interval, not the
 * event. An event with a fixed id (a log event's) written twice is one delivery (the write is
 * conditional on the item not existing).
 *
 * Corral has no workspaces: `organization_id` is the tenant and `workspace_id` is `default`.
 */
export interface WebhookPublisher {
  publish(tenant: string, type: PublishedWebhookEventType, data: { id: string } & Record<string, string>, opts?: { eventId?: string; createdAt?: string }): Promise<void>;
}

export const CORRAL_WORKSPACE_ID = 'default';

export class OutboxPublisher implements WebhookPublisher {
  constructor(
    private readonly table: StateTable,
    /** The tenant's endpoints (`WebhookEndpointService.subscribers`: read at most once per few seconds). */
    private readonly endpoints: { subscribers(tenant: string): Promise<WebhookEndpoint[]> },
    /** Ask the deliverer to run soon (locally: now; on AWS: a message to the delivery queue). */
    private readonly kick: () => void,
  ) {}

  async publish(
    tenant: string,
    type: PublishedWebhookEventType,
    data: { id: string } & Record<string, string>,
    opts: { eventId?: string; createdAt?: string } = {},
  ): Promise<void> {
    const targets = (await this.endpoints.subscribers(tenant)).filter((e) => e.state === 'enabled' && e.enabled_events.includes(type));
    if (targets.length === 0) return;
    const eventId = opts.eventId ?? newId('wevt');
    const createdAt = opts.createdAt ?? new Date().toISOString();
    const payload = JSON.stringify({
      id: eventId,
      type: 'event',
      created_at: createdAt,
      data: { ...data, type, organization_id: tenant, workspace_id: CORRAL_WORKSPACE_ID },
    });
    for (const endpoint of targets) {
      const k = webhookKeys.delivery(endpoint.id, createdAt, eventId);
      const delivery: WebhookDelivery = {
        event_id: eventId,
        endpoint_id: endpoint.id,
        event_type: type,
        created_at: createdAt,
        status: 'pending',
        attempts: 0,
        next_attempt_at: createdAt,
        last_attempt_at: null,
        last_status_code: null,
        last_error: null,
      };
      try {
        await this.table.put(
          { ...k, tenant, payload, delivery, gsi1pk: webhookKeys.due, gsi1sk: webhookKeys.dueSort(createdAt, endpoint.id, k.sk) },
          { ifNotExists: true },
        );
      } catch (err) {
        if (!(err instanceof ConditionFailedError)) throw err; // already in the outbox
      }
    }
    this.kick();
  }
}

/** The webhook event types a log event stands for (most stand for none). */
export function webhookTypesOf(e: SessionEvent): PublishedWebhookEventType[] {
  switch (e.type) {
    case 'session.status_running':
      return ['session.running', 'session.status_run_started'];
    case 'session.status_idle': {
      const extra: PublishedWebhookEventType[] =
        e.stop_reason.type === 'requires_action' ? ['session.requires_action'] : e.stop_reason.type === 'budget_reached' ? ['session.budget_reached'] : [];
      return ['session.idled', 'session.status_idled', ...extra];
    }
    case 'session.status_terminated':
      return ['session.status_terminated'];
    case 'session.status_rescheduled':
      return ['session.status_rescheduled'];
    case 'span.outcome_evaluation_end':
      return ['session.outcome_evaluation_ended'];
    // A coordinator's log records its threads' lives (docs/THREADS.md).
    case 'session.thread_created':
      return ['session.thread_created'];
    case 'session.thread_status_idle':
      return ['session.thread_idled'];
    case 'session.thread_status_terminated':
      return ['session.thread_terminated'];
    default:
      return [];
  }
}

/** The thread a `session.thread_*` log event is about. */
function threadIdOf(e: SessionEvent): string | undefined {
  const id = (e as { session_thread_id?: unknown }).session_thread_id;
  return typeof id === 'string' ? id : undefined;
}

/** A log event's webhook event id: the same for every writer that publishes it (`wevt_` + 26). */
export function logWebhookEventId(sessionId: string, eventId: string, type: string): string {
  return `wevt_${createHash('sha256').update(`${sessionId}\n${eventId}\n${type}`).digest('base64url').slice(0, 26)}`;
}

/**
 * The session log as webhooks see it: every append that stands for webhook events publishes them
 * after it lands, with ids fixed by the log event (so the writer that finishes another's batch
 * publishes the same ids). A failure to publish is logged and does not fail the append: the log
 * is the product; the webhook is a notification of it.
 */
export function publishingEventLog(log: EventLog, table: StateTable, publisher: WebhookPublisher, logger?: Logger): EventLog {
  const tenants = new Map<string, string>();
  const tenantOf = async (sessionId: string): Promise<string | undefined> => {
    const known = tenants.get(sessionId);
    if (known) return known;
    const k = keys.head('session', sessionId);
    const tenant = (await table.get(k.pk, k.sk))?.tenant;
    if (typeof tenant !== 'string') return undefined;
    if (tenants.size > 10_000) tenants.clear();
    tenants.set(sessionId, tenant);
    return tenant;
  };
  const after = async (sessionId: string, stored: StoredEvent[]) => {
    const todo = stored.flatMap((s) => webhookTypesOf(s.event).map((type) => ({ s, type })));
    if (todo.length === 0) return;
    try {
      const tenant = await tenantOf(sessionId);
      if (!tenant) return;
      for (const { s, type } of todo) {
        const thread = type.startsWith('session.thread_') ? threadIdOf(s.event) : undefined;
        await publisher.publish(tenant, type, { id: sessionId, ...(thread ? { session_thread_id: thread } : {}) }, { eventId: logWebhookEventId(sessionId, s.event.id, type), createdAt: s.event.processed_at });
      }
    } catch (err) {
      logger?.warn('webhook publish failed', { sessionId, error: (err as Error)?.message ?? String(err) });
    }
  };
  return {
    ...log,
    getEvents: log.getEvents.bind(log),
    lastPosition: log.lastPosition.bind(log),
    deleteAll: log.deleteAll.bind(log),
    async emitEvent(sessionId, event, opts) {
      const stored = await log.emitEvent(sessionId, event, opts);
      await after(sessionId, [stored]);
      return stored;
    },
    async appendBatch(sessionId, events, opts) {
      const stored = await log.appendBatch(sessionId, events, opts);
      await after(sessionId, stored);
      return stored;
    },
  };
}
