import Anthropic from '@anthropic-ai/sdk';
import { describe, expect, it } from 'vitest';
import { backoffDelay, nextAttemptAt, type BackoffPolicy } from '../../lambdas/core/webhooks/backoff.js';
import { WebhookDeliverer } from '../../lambdas/core/webhooks/deliver.js';
import { WebhookEndpointService } from '../../lambdas/core/webhooks/endpoints.js';
import { logWebhookEventId, OutboxPublisher, webhookTypesOf } from '../../lambdas/core/webhooks/publish.js';
import { newSigningSecret, signPayload } from '../../lambdas/core/webhooks/signing.js';
import type { WebhookDelivery } from '../../lambdas/core/webhooks/types.js';
import { makeEvent } from '../../lambdas/core/session/events.js';
import type { SecretFields } from '../../lambdas/core/vault/types.js';
import { MemoryStateTable } from './memory-store.js';
import { readWebhookConfig } from '../../lambdas/core/config.js';

const sdk = new Anthropic({ apiKey: 'unused' });

describe('webhook signatures', () => {
  it('are what the SDK\'s unwrap verifies, and nothing else is', () => {
    const secret = newSigningSecret();
    const body = JSON.stringify({ id: 'wevt_1', type: 'event', created_at: '2026-01-01T00:00:00Z', data: { id: 'sesn_1', type: 'session.idled' } });
    const headers = { ...signPayload(secret, 'wevt_1', body) };
    expect(sdk.beta.webhooks.unwrap(body, { headers, key: secret }).id).toBe('wevt_1');
    expect(() => sdk.beta.webhooks.unwrap(body + ' ', { headers, key: secret })).toThrow();
    expect(() => sdk.beta.webhooks.unwrap(body, { headers: { ...headers, 'webhook-id': 'wevt_2' }, key: secret })).toThrow();
    expect(() => sdk.beta.webhooks.unwrap(body, { headers, key: newSigningSecret() })).toThrow();
    // A signature an hour old is refused by the receiver (replay protection), so each attempt signs anew.
    const old = signPayload(secret, 'wevt_1', body, new Date(Date.now() - 3_600_000));
    expect(() => sdk.beta.webhooks.unwrap(body, { headers: { ...old }, key: secret })).toThrow();
  });
});

describe('webhook backoff', () => {
  const policy: BackoffPolicy = { baseMs: 1000, capMs: 60_000, horizonMs: 3_600_000 };
  it('doubles from the base to the cap, jittered in the upper half', () => {
    expect(backoffDelay(1, policy, () => 1)).toBe(1000);
    expect(backoffDelay(4, policy, () => 1)).toBe(8000);
    expect(backoffDelay(4, policy, () => 0)).toBe(4000);
    expect(backoffDelay(30, policy, () => 1)).toBe(60_000);
    expect(backoffDelay(1000, policy, () => 0.5)).toBe(45_000);
  });
  it('stops at the horizon: the last attempt is at the horizon itself, none after', () => {
    expect(nextAttemptAt(0, 1, 10, policy, () => 1)).toBe(1010);
    expect(nextAttemptAt(0, 20, 3_599_000, policy, () => 1)).toBe(3_600_000);
    expect(nextAttemptAt(0, 20, 3_600_000, policy)).toBeNull();
  });
});

describe('webhook events of the session log', () => {
  it('maps status changes and verdicts, with ids fixed by the log event', () => {
    expect(webhookTypesOf(makeEvent({ type: 'session.status_running' }))).toEqual(['session.running', 'session.status_run_started']);
    expect(webhookTypesOf(makeEvent({ type: 'session.status_idle', stop_reason: { type: 'end_turn' }, stop_details: null }))).toEqual(['session.idled', 'session.status_idled']);
    expect(webhookTypesOf(makeEvent({ type: 'session.status_idle', stop_reason: { type: 'budget_reached' }, stop_details: null }))).toContain('session.budget_reached');
    expect(webhookTypesOf(makeEvent({ type: 'session.status_idle', stop_reason: { type: 'requires_action', event_ids: ['x'] }, stop_details: null }))).toContain('session.requires_action');
    expect(webhookTypesOf(makeEvent({ type: 'user.message', content: [{ type: 'text', text: 'hi' }] }))).toEqual([]);
    expect(logWebhookEventId('sesn_1', 'sevt_1', 'session.idled')).toBe(logWebhookEventId('sesn_1', 'sevt_1', 'session.idled'));
    expect(logWebhookEventId('sesn_1', 'sevt_1', 'session.idled')).not.toBe(logWebhookEventId('sesn_1', 'sevt_1', 'session.status_idled'));
  });
});

/** The deliverer over the in-memory table, a scripted receiver and a hand-moved clock. */
async function rig(answer: (n: number) => number) {
  const table = new MemoryStateTable();
  const store = new Map<string, SecretFields>();
  const secrets = { get: async (r: string) => store.get(r), put: async (r: string, v: SecretFields) => void store.set(r, v), delete: async (r: string) => void store.delete(r) };
  let now = Date.now(); // the receiver checks the signature's timestamp against its own clock
  const endpoints = new WebhookEndpointService(table, secrets, { allow: ['https://hooks.test'] });
  const ep = await endpoints.create('tnt_1', { url: 'https://hooks.test/in', enabled_events: ['session.created'] }, new Date(now));
  const wire: Array<{ id: string; body: string }> = [];
  const dead: WebhookDelivery[] = [];
  const fetchFake = (async (_url: string, init: { headers: Record<string, string>; body: string }) => {
    wire.push({ id: init.headers['webhook-id'], body: init.body });
    sdk.beta.webhooks.unwrap(init.body, { headers: init.headers, key: ep.signing_secret }); // throws unless signed right
    return new Response(null, { status: answer(wire.length) });
  }) as unknown as typeof fetch;
  const deliverer = new WebhookDeliverer({
    table,
    secrets,
    urlRule: { allow: ['https://hooks.test'] },
    backoff: { baseMs: 1000, capMs: 8000, horizonMs: 60_000 },
    fetch: fetchFake,
    clock: () => now,
    random: () => 1,
    deadLetter: async (d) => void dead.push(d),
  });
  const publisher = new OutboxPublisher(table, endpoints, () => undefined);
  return { table, endpoints, ep, wire, dead, deliverer, publisher, tick: (ms: number) => (now += ms), at: () => new Date(now).toISOString() };
}

describe('webhook delivery', () => {
  it('retries a failing receiver by the backoff and delivers once it answers 2xx', async () => {
    const r = await rig((n) => (n < 3 ? 503 : 204));
    await r.publisher.publish('tnt_1', 'session.created', { id: 'sesn_1' }, { eventId: 'wevt_a', createdAt: r.at() });
    await r.publisher.publish('tnt_1', 'session.created', { id: 'sesn_1' }, { eventId: 'wevt_a', createdAt: r.at() }); // a second writer: one delivery
    expect((await r.deliverer.runDue()).attempted).toBe(1);
    expect((await r.deliverer.runDue()).attempted).toBe(0); // not due for another second
    r.tick(1000);
    expect((await r.deliverer.runDue()).attempted).toBe(1);
    r.tick(1999);
    expect((await r.deliverer.runDue()).attempted).toBe(0); // the third waits 2 s
    r.tick(1);
    expect(await r.deliverer.runDue()).toEqual({ attempted: 1, delivered: 1 });
    expect(r.wire.map((w) => w.id)).toEqual(['wevt_a', 'wevt_a', 'wevt_a']);
    expect(new Set(r.wire.map((w) => w.body)).size).toBe(1); // the same bytes on every attempt
    const log = await r.endpoints.deliveries('tnt_1', r.ep.id, {});
    expect(log.data).toEqual([expect.objectContaining({ event_id: 'wevt_a', status: 'delivered', attempts: 3, last_status_code: 204, next_attempt_at: null })]);
    r.tick(60_000);
    expect((await r.deliverer.runDue()).attempted).toBe(0);
  });

  it('dead-letters a delivery once its horizon passes, exactly once', async () => {
    const r = await rig(() => 500);
    await r.publisher.publish('tnt_1', 'session.created', { id: 'sesn_1' }, { createdAt: r.at() });
    for (let i = 0; i < 40; i++) {
      await r.deliverer.runDue();
      r.tick(4000);
    }
    expect(r.dead).toHaveLength(1);
    expect(r.dead[0]).toMatchObject({ status: 'failed', last_status_code: 500 });
    expect(r.wire.length).toBeGreaterThan(5);
    const log = await r.endpoints.deliveries('tnt_1', r.ep.id, {});
    expect(log.data[0]).toMatchObject({ status: 'failed', next_attempt_at: null });
  });

  it('sends once when two runners find the same delivery due', async () => {
    const r = await rig(() => 200);
    await r.publisher.publish('tnt_1', 'session.created', { id: 'sesn_1' }, { createdAt: r.at() });
    const other = new WebhookDeliverer({ table: r.table, secrets: { get: async () => ({ signing_secret: r.ep.signing_secret }) }, urlRule: { allow: ['https://hooks.test'] }, fetch: (async () => new Response(null, { status: 200 })) as unknown as typeof fetch, clock: () => Date.parse(r.at()) });
    const [a, b] = await Promise.all([r.deliverer.runDue(), other.runDue()]);
    expect(a.attempted + b.attempted).toBe(1);
  });

  it('publishes only to enabled endpoints that asked for the type, and drops deliveries of a deleted endpoint', async () => {
    const r = await rig(() => 200);
    await r.publisher.publish('tnt_1', 'session.deleted', { id: 'sesn_1' });
    await r.publisher.publish('tnt_2', 'session.created', { id: 'sesn_1' });
    expect((await r.deliverer.runDue()).attempted).toBe(0);
    await r.publisher.publish('tnt_1', 'session.created', { id: 'sesn_1' }, { createdAt: r.at() });
    await r.endpoints.delete('tnt_1', r.ep.id);
    expect(await r.deliverer.runDue()).toEqual({ attempted: 1, delivered: 0 });
    expect(r.wire).toHaveLength(0);
  });
});

describe('webhook configuration', () => {
  it('reads CORRAL_WEBHOOK_*; anything malformed names the variable', () => {
    expect(readWebhookConfig({})).toEqual({ urlAllow: [], backoff: {} });
    expect(
      readWebhookConfig({
        CORRAL_WEBHOOK_URL_ALLOW: 'http://127.0.0.1, https://hooks.internal:8443',
        CORRAL_WEBHOOK_BACKOFF: 'base=100,horizon=60000',
        CORRAL_WEBHOOK_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/1/q',
        CORRAL_WEBHOOK_SECRET_PREFIX: 'corral/',
      }),
    ).toEqual({ urlAllow: ['http://127.0.0.1', 'https://hooks.internal:8443'], backoff: { baseMs: 100, horizonMs: 60000 }, queueUrl: 'https://sqs.eu-west-1.amazonaws.com/1/q', secretPrefix: 'corral/' });
    expect(() => readWebhookConfig({ CORRAL_WEBHOOK_BACKOFF: 'base=soon' })).toThrow(/CORRAL_WEBHOOK_BACKOFF/);
    expect(() => readWebhookConfig({ CORRAL_WEBHOOK_URL_ALLOW: 'ftp://x' })).toThrow(/CORRAL_WEBHOOK_URL_ALLOW/);
  });
});

describe("publishing's endpoint list", () => {
  it('is read once per TTL, except that this process sees its own create, update and delete at once', async () => {
    const table = new MemoryStateTable();
    let queries = 0;
    const counted = new Proxy(table, {
      get(target, prop, receiver) {
        if (prop === 'queryIndex') queries++;
        const v = Reflect.get(target, prop, receiver);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    const store = new Map<string, SecretFields>();
    const secrets = { get: async (r: string) => store.get(r), put: async (r: string, v: SecretFields) => void store.set(r, v), delete: async (r: string) => void store.delete(r) };
    const endpoints = new WebhookEndpointService(counted, secrets, { allow: ['https://hooks.test'] }, 1_000);
    const t0 = Date.now();
    expect(await endpoints.subscribers('tnt_1', t0)).toEqual([]);
    expect(await endpoints.subscribers('tnt_1', t0 + 500)).toEqual([]);
    expect(queries).toBe(1); // one read within the TTL
    const ep = await endpoints.create('tnt_1', { url: 'https://hooks.test/in', enabled_events: ['session.created'] });
    expect((await endpoints.subscribers('tnt_1', t0 + 600)).map((e) => e.id)).toEqual([ep.id]); // its own create, at once
    await endpoints.update('tnt_1', ep.id, { state: 'disabled' });
    expect((await endpoints.subscribers('tnt_1', t0 + 700))[0].state).toBe('disabled');
    await endpoints.delete('tnt_1', ep.id);
    expect(await endpoints.subscribers('tnt_1', t0 + 800)).toEqual([]);
    // Another process's change (written straight to the table here) shows once the TTL is over.
    const other = new WebhookEndpointService(table, secrets, { allow: ['https://hooks.test'] });
    const made = await other.create('tnt_1', { url: 'https://hooks.test/b', enabled_events: ['session.created'] });
    expect(await endpoints.subscribers('tnt_1', t0 + 900)).toEqual([]);
    expect((await endpoints.subscribers('tnt_1', t0 + 2_000)).map((e) => e.id)).toEqual([made.id]);
  });
});
