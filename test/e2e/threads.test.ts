import type Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coordinatorModel } from '../fixtures/thread-model.js';
import { cli } from '../cli/helpers.js';
import { SDK_RESOURCES } from '../helpers/sdk-resources.js';
import { SdkTypes } from '../helpers/sdk-types.js';
import { startTestRuntime, waitFor, type TestRuntime } from '../helpers/runtime.js';
import { HARNESS } from '../../lambdas/core/harness/step.js';
import { NotFoundError } from '../../lambdas/core/errors.js';

/**
 * Multi-agent threads through the official SDK against the local runtime: a coordinator (an
 * agent with a `coordinator` roster) spawns two threads of a worker agent, each of which runs a
 * command in its own sandbox; the threads' answers come back to the coordinator as
 * `agent.thread_message_received`, and `client.beta.sessions.threads` lists them, with their own
 * event logs.
 */

const THREADS = { file: 'sessions/threads/threads.d.ts', className: 'Threads' };
const THREAD_EVENTS = { file: 'sessions/threads/events.d.ts', className: 'Events' };
const sdk = new SdkTypes([SDK_RESOURCES.agents.file, THREADS.file, THREAD_EVENTS.file]);
const method = (r: { file: string; className: string }, name: string) => sdk.methods(r).find((m) => m.name === name)!;

describe('multi-agent threads', () => {
  let t: TestRuntime;
  let c: Anthropic;
  let worker: Anthropic.Beta.BetaManagedAgentsAgent;
  let coordinator: Anthropic.Beta.BetaManagedAgentsAgent;
  let environmentId: string;
  beforeAll(async () => {
    t = await startTestRuntime();
    c = t.client;
    t.fake.setFallback(coordinatorModel('worker', ['echo alpha-$((20+1))', 'echo beta-$((40+2))']));
    worker = await c.beta.agents.create({ name: 'worker', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
    coordinator = await c.beta.agents.create({
      name: 'lead',
      model: 'claude-sonnet-4-6',
      tools: [],
      multiagent: { type: 'coordinator', agents: [worker.id] },
    });
    environmentId = (await c.beta.environments.create({ name: 'env', config: { type: 'cloud' } })).id;
  });
  afterAll(() => t?.close());

  it('stores the roster resolved to agent references, and refuses what Corral does not build', async () => {
    expect(coordinator.multiagent).toEqual({ type: 'coordinator', agents: [{ type: 'agent', id: worker.id, version: 1 }] });
    const selfish = await c.beta.agents.create({ name: 'selfish', model: 'claude-sonnet-4-6', multiagent: { type: 'coordinator', agents: [{ type: 'self' }] } });
    expect(selfish.multiagent).toEqual({ type: 'coordinator', agents: [{ type: 'agent', id: selfish.id, version: 1 }] });
    const updated = await c.beta.agents.update(selfish.id, { version: 1, name: 'selfish-2' });
    expect(updated.multiagent).toEqual({ type: 'coordinator', agents: [{ type: 'agent', id: selfish.id, version: 2 }] });
    const refused = async (multiagent: unknown) =>
      c.beta.agents.create({ name: 'x', model: 'claude-sonnet-4-6', multiagent } as Anthropic.Beta.AgentCreateParams).then(
        () => 'accepted',
        (err: { status?: number; message: string }) => `${err.status} ${err.message}`,
      );
    expect(await refused({ type: 'coordinator', agents: ['agent_nope'] })).toMatch(/^400 .*multiagent\.agents\.0: agent agent_nope not found/);
    expect(await refused({ type: 'coordinator', agents: [coordinator.id] })).toMatch(/^400 .*one level deep/);
    expect(await refused({ type: 'coordinator', agents: [worker.id, { type: 'agent', id: worker.id }] })).toMatch(/^400 .*named twice/);
    expect(await refused({ type: 'coordinator', agents: [{ type: 'advisor', model: 'claude-opus-4-6' }] })).toMatch(/^400 .*advisor roster entry/);
    expect(await refused({ type: 'multiagent_20261001' })).toMatch(/^400 .*multiagent_20261001/);
  });

  it('spawns two threads that each run a command in a sandbox, and reports their answers to the coordinator', async () => {
    const session = await c.beta.sessions.create({ agent: coordinator.id, environment_id: environmentId });
    expect(session.agent.multiagent).toEqual(coordinator.multiagent);
    await c.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'Split the work.' }] }] });

    const primary = await waitFor(async () => {
      const events: Anthropic.Beta.Sessions.BetaManagedAgentsSessionEvent[] = [];
      for await (const e of c.beta.sessions.events.list(session.id)) events.push(e);
      const last = events.at(-1);
      return events.filter((e) => e.type === 'agent.thread_message_received').length === 2 && last?.type === 'session.status_idle' && events;
    }, 'both threads reported and the coordinator idle', 60_000);

    const created = primary.filter((e) => e.type === 'session.thread_created');
    expect(created.map((e) => e.agent_name)).toEqual(['worker', 'worker']);
    const threadIds = created.map((e) => e.session_thread_id);
    expect(primary.filter((e) => e.type === 'agent.thread_message_sent').map((e) => e.to_session_thread_id)).toEqual(threadIds);
    const received = primary.filter((e) => e.type === 'agent.thread_message_received');
    expect(new Set(received.map((e) => e.from_session_thread_id))).toEqual(new Set(threadIds));
    expect(received.map((e) => JSON.stringify(e.content)).sort()).toEqual([expect.stringContaining('alpha-21'), expect.stringContaining('beta-42')]);
    expect(primary.filter((e) => e.type === 'session.thread_status_idle')).toHaveLength(2);
    const answers = primary.filter((e) => e.type === 'agent.message').map((e) => e.content.map((b) => ('text' in b ? b.text : '')).join(''));
    expect(answers.at(-1)).toBe('Both threads answered.');

    const threads: Anthropic.Beta.Sessions.BetaManagedAgentsSessionThread[] = [];
    for await (const th of c.beta.sessions.threads.list(session.id)) threads.push(th);
    expect(threads.map((th) => th.id)).toEqual(threadIds);
    // Every answer has the shape the SDK declares (raw JSON, so a missing field is not hidden by defaults).
    const raw = async (path: string, init?: RequestInit) =>
      (await fetch(`${t.runtime.url}${path}`, { ...init, headers: { 'x-api-key': t.runtime.apiKey, 'anthropic-beta': 'managed-agents-2026-04-01' } })).json() as Promise<{ data?: unknown[] }>;
    const page = await raw(`/v1/sessions/${session.id}/threads`);
    expect(page.data!.flatMap((th, i) => sdk.conforms(th, method(THREADS, 'list').result, `$.data[${i}]`))).toEqual([]);
    expect(sdk.conforms(await raw(`/v1/sessions/${session.id}/threads/${threadIds[1]}`), method(THREADS, 'retrieve').result)).toEqual([]);
    expect(sdk.conforms({ id: threadIds[1] }, method(THREADS, 'retrieve').result)).not.toEqual([]); // the check is not vacuous
    const ownPage = await raw(`/v1/sessions/${session.id}/threads/${threadIds[1]}/events`);
    expect(ownPage.data!.flatMap((e, i) => sdk.conforms(e, method(THREAD_EVENTS, 'list').result, `$.data[${i}]`))).toEqual([]);
    expect(sdk.conforms(await raw(`/v1/agents/${coordinator.id}`), sdk.methods(SDK_RESOURCES.agents).find((m) => m.name === 'retrieve')!.result)).toEqual([]);
    for (const th of threads) {
      expect(th).toMatchObject({ type: 'session_thread', session_id: session.id, status: 'idle', archived_at: null, agent: { id: worker.id, name: 'worker', version: 1 } });
      expect(await c.beta.sessions.threads.retrieve(th.id, { session_id: session.id })).toEqual(th);
      const own: Anthropic.Beta.Sessions.BetaManagedAgentsSessionEvent[] = [];
      for await (const e of c.beta.sessions.threads.events.list(th.id, { session_id: session.id })) own.push(e);
      expect(own.map((e) => e.type)).toEqual(expect.arrayContaining(['user.message', 'agent.tool_use', 'agent.tool_result', 'session.status_idle']));
      const result = own.find((e) => e.type === 'agent.tool_result')!;
      expect(JSON.stringify(result.content)).toMatch(/alpha-21|beta-42/);
      // Each thread ran in a sandbox of its own.
      expect(await t.runtime.services.sandboxes.list(th.id)).toHaveLength(1);
    }
    // The threads' records are not sessions of the tenant's list.
    const listed: string[] = [];
    for await (const s of c.beta.sessions.list()) listed.push(s.id);
    expect(listed).toContain(session.id);
    expect(listed.filter((id) => threadIds.includes(id))).toEqual([]);

    // A thread of another session, or a session's id, is not a thread of this one.
    await expect(c.beta.sessions.threads.retrieve(session.id, { session_id: session.id })).rejects.toMatchObject({ status: 404 });
    const archived = await c.beta.sessions.threads.archive(threadIds[0], { session_id: session.id });
    expect(archived).toMatchObject({ id: threadIds[0], status: 'terminated', archived_at: expect.any(String) });
    const idle: string[] = [];
    for await (const th of c.beta.sessions.threads.list(session.id, { statuses: ['idle'] })) idle.push(th.id);
    expect(idle).toEqual([threadIds[1]]);

    // The CLI shows them: `sessions threads` lists each with its status, `sessions show` counts them.
    const env = { CORRAL_URL: t.runtime.url, CORRAL_API_KEY: t.runtime.apiKey };
    const listed2 = await cli(['sessions', 'threads', session.id], { env });
    expect(listed2).toMatchObject({ code: 0, stderr: '' });
    expect(listed2.stdout.split('\n')[0]).toMatch(/^ID\s+STATUS\s+AGENT\s+TOKENS\s+UPDATED/);
    expect(listed2.stdout).toMatch(new RegExp(`${threadIds[0]}\\s+terminated\\s+worker v1`));
    expect(listed2.stdout).toMatch(new RegExp(`${threadIds[1]}\\s+idle\\s+worker v1`));
    const shown = await cli(['sessions', 'show', session.id], { env });
    expect(shown.stdout).toMatch(/threads\s+2 \(1 terminated, 1 idle\)/);

    // Deleting the session deletes its threads, their logs and their sandboxes.
    await c.beta.sessions.delete(session.id);
    for (const id of threadIds) {
      await expect(t.runtime.services.sessions.get(HARNESS, id)).rejects.toBeInstanceOf(NotFoundError);
      expect(await t.runtime.services.events.getEvents(id)).toEqual([]);
      expect(await t.runtime.services.sandboxes.list(id)).toEqual([]);
    }
  });
});
