import type Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectUntil, isIdle, startTestRuntime, waitFor, type TestRuntime } from '../helpers/runtime.js';
import { WebhookReceiver } from '../helpers/webhook-receiver.js';
import { cli } from '../cli/helpers.js';
import { coordinatorModel } from '../fixtures/thread-model.js';
import { echoModel } from '../fixtures/fake-messages-api.js';

/**
 * Webhooks end to end: endpoints through the SDK's `client.beta.organization.webhooks`, real
 * sessions through the SDK, a receiver on loopback, every delivery verified with the SDK's
 * `client.beta.webhooks.unwrap`. Retries are time-scaled (tens of ms, not minutes).
 */
type EventTypes = Anthropic.Beta.Organization.WebhookCreateParams['enabled_events'];
const SESSION_EVENTS = ['session.created', 'session.status_run_started', 'session.running', 'session.status_idled', 'session.idled', 'agent.created', 'agent.archived'] as unknown as EventTypes;

describe('webhooks', () => {
  let t: TestRuntime;
  let c: Anthropic;
  let agentId: string;
  let environmentId: string;
  beforeAll(async () => {
    t = await startTestRuntime({
      runtime: { webhookUrlAllow: ['http://127.0.0.1'], webhookBackoff: { baseMs: 20, capMs: 150, horizonMs: 60_000 }, webhookSweepMs: 25 },
    });
    c = t.client;
    environmentId = (await c.beta.environments.create({ name: 'env', config: { type: 'cloud' } })).id;
  });
  afterAll(() => t?.close());

  /** Runs one turn of a new session to idle. */
  async function runSession(text: string): Promise<string> {
    const session = await c.beta.sessions.create({ agent: agentId, environment_id: environmentId });
    t.fake.push({ kind: 'text', text });
    const stream = await c.beta.sessions.events.stream(session.id);
    await c.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'hi' }] }] });
    await collectUntil(stream, isIdle);
    stream.controller.abort();
    return session.id;
  }

  /** Every request verified with the SDK's unwrap, deduplicated on webhook-id as a receiver would. */
  function verified(r: WebhookReceiver, key: string) {
    const byId = new Map<string, Anthropic.Beta.BetaWebhookEvent>();
    for (const w of r.received.filter((w) => w.answered === 200)) {
      const event = c.beta.webhooks.unwrap(w.body, { headers: w.headers, key });
      expect(event.id).toBe(w.headers['webhook-id']);
      byId.set(event.id, event);
    }
    return [...byId.values()];
  }

  it('signs what it delivers so that unwrap verifies it, and keeps the secret out of every read', async () => {
    const r = new WebhookReceiver();
    await r.up();
    const created = await c.beta.organization.webhooks.create({ url: r.url, enabled_events: SESSION_EVENTS, name: 'ci' });
    expect(created.signing_secret).toMatch(/^whsec_/);
    const read = await c.beta.organization.webhooks.retrieve(created.id);
    expect(JSON.stringify(read)).not.toContain(created.signing_secret);
    const listed = await c.beta.organization.webhooks.list();
    expect(listed.data.map((e) => e.id)).toContain(created.id);
    expect(JSON.stringify(listed.data)).not.toContain(created.signing_secret);

    agentId = (await c.beta.agents.create({ name: 'worker', model: 'claude-sonnet-4-6', tools: [] })).id;
    const sessionId = await runSession('hello');
    const want = ['agent.created', 'session.created', 'session.status_run_started', 'session.running', 'session.status_idled', 'session.idled'];
    const events = await waitFor(async () => {
      const v = verified(r, created.signing_secret);
      return want.every((w) => v.some((e) => e.data.type === w)) && v;
    }, 'every event type at the receiver', 15_000);
    for (const e of events.filter((e) => e.data.type.startsWith('session.'))) {
      expect(e.data).toMatchObject({ id: sessionId, organization_id: expect.any(String), workspace_id: 'default' });
      expect(e.type).toBe('event');
    }
    expect(events.find((e) => e.data.type === 'agent.created')?.data.id).toBe(agentId);
    // An event whose id is the route's path parameter (not the answer's): archiving a throwaway agent.
    const spare = (await c.beta.agents.create({ name: 'spare', model: 'claude-sonnet-4-6', tools: [] })).id;
    await c.beta.agents.archive(spare);
    await waitFor(async () => verified(r, created.signing_secret).some((e) => e.data.type === 'agent.archived' && e.data.id === spare), 'agent.archived with the path id');
    // A wrong key does not verify: the signature is over these bytes with this secret.
    const one = r.received[0];
    expect(() => c.beta.webhooks.unwrap(one.body, { headers: one.headers, key: 'whsec_' + Buffer.alloc(32, 7).toString('base64') })).toThrow();
    expect(() => c.beta.webhooks.unwrap(one.body.replace('"event"', '"evenT"'), { headers: one.headers, key: created.signing_secret })).toThrow();

    // A regenerated secret signs from now on; the old one no longer verifies what comes next.
    const { signing_secret } = await c.beta.organization.webhooks.regenerateSigningSecret(created.id);
    const before = r.received.length;
    await runSession('again');
    await waitFor(async () => r.received.length >= before + 4, 'deliveries after the rotation');
    const latest = r.received.at(-1)!;
    expect(c.beta.webhooks.unwrap(latest.body, { headers: latest.headers, key: signing_secret }).type).toBe('event');
    expect(() => c.beta.webhooks.unwrap(latest.body, { headers: latest.headers, key: created.signing_secret })).toThrow();

    await c.beta.organization.webhooks.delete(created.id);
    await r.down();
  });

  it('with the receiver down (refusing, then answering 500) and then up, every event arrives, each once after dedupe', async () => {
    const r = new WebhookReceiver();
    await r.up();
    const endpoint = await c.beta.organization.webhooks.create({ url: r.url, enabled_events: SESSION_EVENTS });
    await r.down(); // connections refused
    const sessionId = await runSession('while you were out');
    // The delivery log shows attempts that failed and their next attempt.
    const log = await waitFor(async () => {
      const page = (await c.get(`/v1/corral/webhooks/${endpoint.id}/deliveries`)) as { data: Array<{ status: string; attempts: number; last_error: string | null; next_attempt_at: string | null }> };
      return page.data.length >= 5 && page.data.every((d) => d.status === 'pending' && d.attempts >= 2) && page.data;
    }, 'failed attempts in the delivery log');
    expect(log.every((d) => d.last_error && d.next_attempt_at)).toBe(true);

    r.status = 500; // up but failing
    await r.up();
    await waitFor(async () => r.received.length >= 5, 'failing attempts');
    expect(r.received.every((w) => w.answered === 500)).toBe(true);
    r.status = 200;
    const events = await waitFor(async () => {
      const v = verified(r, endpoint.signing_secret);
      return v.length >= 5 && v;
    }, 'every event after the receiver came back');
    expect(events.map((e) => e.data.type).sort()).toEqual(['session.created', 'session.idled', 'session.running', 'session.status_idled', 'session.status_run_started']);
    expect(events.every((e) => e.data.id === sessionId)).toBe(true);
    // At least once on the wire; exactly once after dedupe (verified() keys on webhook-id).
    expect(r.received.length).toBeGreaterThan(events.length);
    await waitFor(async () => {
      const page = (await c.get(`/v1/corral/webhooks/${endpoint.id}/deliveries`)) as { data: Array<{ status: string }> };
      return page.data.every((d) => d.status === 'delivered');
    }, 'every delivery marked delivered');
    await r.down();
  });

  it('publishes deployment, deployment-run and memory-store events, from the API and from a run the scheduler side starts', async () => {
    const r = new WebhookReceiver();
    await r.up();
    const types = ['deployment.created', 'deployment.paused', 'deployment.unpaused', 'deployment.archived', 'deployment_run.started', 'deployment_run.succeeded', 'deployment_run.failed', 'session.created', 'memory_store.created', 'memory_store.archived', 'memory_store.deleted'] as unknown as EventTypes;
    const endpoint = await c.beta.organization.webhooks.create({ url: r.url, enabled_events: types });
    const deployment = await c.beta.deployments.create({ name: 'nightly', agent: agentId, environment_id: environmentId, initial_events: [{ type: 'user.message', content: [{ type: 'text', text: 'go' }] }] } as never);
    await c.beta.deployments.pause(deployment.id);
    await c.beta.deployments.unpause(deployment.id);
    t.fake.push({ kind: 'text', text: 'ran' });
    const run = await c.beta.deployments.run(deployment.id);
    expect(run.session_id).toBeTruthy();
    await c.beta.deployments.archive(deployment.id);
    const store = await c.beta.memoryStores.create({ name: 'notes' });
    await c.beta.memoryStores.archive(store.id);
    await c.beta.memoryStores.delete(store.id);
    const want: Array<[string, string]> = [
      ['deployment.created', deployment.id], ['deployment.paused', deployment.id], ['deployment.unpaused', deployment.id], ['deployment.archived', deployment.id],
      ['deployment_run.started', run.id], ['deployment_run.succeeded', run.id], ['session.created', run.session_id!],
      ['memory_store.created', store.id], ['memory_store.archived', store.id], ['memory_store.deleted', store.id],
    ];
    const events = await waitFor(async () => {
      const v = verified(r, endpoint.signing_secret);
      return want.every(([type, id]) => v.some((e) => e.data.type === type && e.data.id === id)) && v;
    }, 'every deployment and memory-store event at the receiver', 15_000);
    // The run succeeded (its session exists), so no failure was published for it.
    expect(events.filter((e) => e.data.type === 'deployment_run.failed')).toEqual([]);
    await c.beta.organization.webhooks.delete(endpoint.id);
    await r.down();
  });

  it("publishes a coordinator's thread events with the thread's id: created, idled, and terminated when archived", async () => {
    const r = new WebhookReceiver();
    await r.up();
    const endpoint = await c.beta.organization.webhooks.create({ url: r.url, enabled_events: ['session.thread_created', 'session.thread_idled', 'session.thread_terminated'] as unknown as EventTypes });
    const worker = await c.beta.agents.create({ name: 'worker', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
    const lead = await c.beta.agents.create({ name: 'lead', model: 'claude-sonnet-4-6', tools: [], multiagent: { type: 'coordinator', agents: [worker.id] } });
    t.fake.setFallback(coordinatorModel('worker', ['echo one', 'echo two']));
    try {
      const session = await c.beta.sessions.create({ agent: lead.id, environment_id: environmentId });
      await c.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'Split it.' }] }] });
      const idled = await waitFor(async () => {
        const v = verified(r, endpoint.signing_secret).filter((e) => e.data.type === 'session.thread_idled');
        return v.length === 2 && v;
      }, 'both threads idled at the receiver', 60_000);
      const threads: string[] = [];
      for await (const th of c.beta.sessions.threads.list(session.id)) threads.push(th.id);
      expect(threads).toHaveLength(2);
      const events = verified(r, endpoint.signing_secret);
      const about = (type: string) => events.filter((e) => e.data.type === type).map((e) => (e.data as { session_thread_id: string }).session_thread_id).sort();
      expect(about('session.thread_created')).toEqual([...threads].sort());
      expect(idled.map((e) => (e.data as { session_thread_id: string }).session_thread_id).sort()).toEqual([...threads].sort());
      expect(events.every((e) => e.data.id === session.id)).toBe(true);
      await c.beta.sessions.threads.archive(threads[0], { session_id: session.id });
      await waitFor(
        async () => verified(r, endpoint.signing_secret).some((e) => e.data.type === 'session.thread_terminated' && (e.data as { session_thread_id: string }).session_thread_id === threads[0]),
        'session.thread_terminated for the archived thread',
      );
    } finally {
      t.fake.setFallback(echoModel);
      await c.beta.organization.webhooks.delete(endpoint.id);
      await r.down();
    }
  }, 90_000);

  it('refuses hostile and malformed endpoints with a 400 naming the field', async () => {
    const bad = async (body: Record<string, unknown>) => {
      const err = await c.post('/v1/organizations/webhooks', { body }).catch((e: unknown) => e as { status: number; message: string });
      expect((err as { status: number }).status).toBe(400);
      return (err as { message: string }).message;
    };
    const events = ['session.created'];
    expect(await bad({ url: 'https://169.254.169.254/latest', enabled_events: events })).toMatch(/url/);
    expect(await bad({ url: 'https://10.1.2.3/h', enabled_events: events })).toMatch(/url/);
    expect(await bad({ url: 'http://example.com/h', enabled_events: events })).toMatch(/https/);
    expect(await bad({ url: 'https://localhost/h', enabled_events: events })).toMatch(/url/);
    expect(await bad({ url: 'https://example.com/h', enabled_events: ['user_profile.program_status_updated'] })).toMatch(/enabled_events/);
    expect(await bad({ url: 'https://example.com/h', enabled_events: events, secret: 'x' })).toMatch(/secret/);
  });

  it('corral webhooks: create shows the secret once; list, show, update, deliveries and delete work against the server', async () => {
    const env = { CORRAL_URL: t.runtime.url, CORRAL_API_KEY: t.runtime.apiKey };
    const r = new WebhookReceiver();
    await r.up();
    const created = await cli(['webhooks', 'create', '--url', r.url, '--event', 'session.created', '--name', 'cli'], { env });
    expect(created).toMatchObject({ code: 0 });
    const secret = /whsec_\S+/.exec(created.stdout)![0];
    const id = /whep_\w+/.exec(created.stdout)![0];
    const list = await cli(['webhooks', 'list'], { env });
    expect(list.stdout).toContain(id);
    const show = await cli(['webhooks', 'show', id], { env });
    expect(JSON.parse(show.stdout)).toMatchObject({ id, url: r.url, state: 'enabled', enabled_events: ['session.created'] });
    expect(list.stdout + show.stdout).not.toContain(secret);
    const session = await c.beta.sessions.create({ agent: agentId, environment_id: environmentId });
    await waitFor(async () => r.received.length >= 1, 'the session.created delivery');
    expect(c.beta.webhooks.unwrap(r.received[0].body, { headers: r.received[0].headers, key: secret }).data).toMatchObject({ id: session.id, type: 'session.created' });
    const log = await waitFor(async () => {
      const out = await cli(['webhooks', 'deliveries', id], { env });
      return out.stdout.includes('delivered') && out;
    }, 'the delivery log');
    expect(log.stdout).toMatch(/session\.created\s+delivered\s+1\s+200/);
    expect(await cli(['webhooks', 'update', id, '--disable'], { env })).toMatchObject({ code: 0, stdout: expect.stringContaining('disabled') });
    expect(await cli(['webhooks', 'create', '--url', 'https://169.254.169.254/', '--event', 'session.created'], { env })).toMatchObject({ code: 1, stderr: expect.stringContaining('url') });
    expect(await cli(['webhooks', 'delete', id], { env })).toMatchObject({ code: 0 });
    expect(await cli(['webhooks', 'show', id], { env })).toMatchObject({ code: 1, stderr: expect.stringContaining('404') });
    await r.down();
  });
});
