import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoEventLog } from '../../lambdas/adapters/aws/dynamodb-event-log.js';
import { DynamoStateTable } from '../../lambdas/adapters/aws/dynamodb-state-table.js';
import { AnthropicModel } from '../../lambdas/core/harness/model.js';
import { createServices, type CorralServices } from '../../lambdas/core/services.js';
import type { SessionEvent } from '../../lambdas/core/session/events.js';
import { checkInvariants, logicalTranscript, startRig, type Rig } from './harness-rig.js';

/** A DynamoDB client that records the writes made through it. */
function recording(client: DynamoDBClient, writes: string[]): DynamoDBClient {
  return new Proxy(client, {
    get(target, prop, receiver) {
      if (prop !== 'send') return Reflect.get(target, prop, receiver);
      return async (command: { constructor: { name: string }; input: { TableName?: string; Item?: { position?: { N?: string } } } }) => {
        const out = await target.send(command as never);
        if (/Put|Update|Delete|BatchWrite/.test(command.constructor.name)) {
          const position = command.input.Item?.position?.N;
          writes.push(`${command.constructor.name}:${command.input.TableName ?? 'batch'}${position ? `@${position}` : ''}`);
        }
        return out;
      };
    },
  });
}

describe('duplicate wakes and racing harnesses', () => {
  let rig: Rig;
  let agentId: string;
  let envId: string;
  const tenant = 'races';
  beforeAll(async () => {
    rig = await startRig();
    const agent = await rig.services.agents.create(tenant, { name: 'r', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
    agentId = agent.id;
    envId = (await rig.services.environments.create(tenant, { name: 'e' })).id;
  });
  afterAll(() => rig.close());

  /** A second, independent harness process over the same tables (its own lease manager). */
  function otherHarness(writes: string[], clock?: () => number): CorralServices {
    const client = recording(rig.db.client, writes);
    return createServices({
      table: new DynamoStateTable(client, 'corral-state'),
      events: new DynamoEventLog(client, 'corral-events'),
      queue: { wake: async () => undefined },
      sandboxProvider: rig.provider,
      model: new AnthropicModel({ apiKey: 'test', baseURL: rig.fake.url }),
      harness: { retryDelayMs: () => 5, interruptPollMs: 20 },
      clock,
    });
  }

  async function startSession(text: string) {
    const s = await rig.services.sessions.create(tenant, { agent: agentId, environment_id: envId });
    await rig.services.sessions.send(tenant, s.id, [{ type: 'user.message', content: [{ type: 'text', text }] }]);
    return s.id;
  }

  const events = async (id: string) => (await rig.services.events.getEvents(id)).map((s) => s.event as SessionEvent);

  it('turns every wake delivered three times, out of order, into one transcript', async () => {
    const prompts = ['run `echo one`', 'run `echo two`', 'just say hi', 'run `echo four`'];
    // Baseline: each session woken once.
    const expected = [];
    for (const p of prompts) {
      const id = await startSession(p);
      await rig.settle(id);
      expected.push(logicalTranscript(await events(id)));
    }
    // The same sessions again, every wake three times, shuffled, all at once.
    const ids = [];
    for (const p of prompts) ids.push(await startSession(p));
    const deliveries = ids.flatMap((id) => [id, id, id]);
    for (let i = deliveries.length - 1; i > 0; i--) {
      const j = (i * 7919) % (i + 1); // a fixed shuffle
      [deliveries[i], deliveries[j]] = [deliveries[j], deliveries[i]];
    }
    await Promise.all(deliveries.map((id) => rig.settle(id)));
    for (const [i, id] of ids.entries()) {
      const log = await rig.services.events.getEvents(id);
      expect(checkInvariants(log.map((s) => s.position), log.map((s) => s.event as SessionEvent))).toEqual([]);
      expect(logicalTranscript(log.map((s) => s.event as SessionEvent))).toEqual(expected[i]);
    }
  });

  it('lets exactly one of two harnesses woken at the same moment make progress; the other writes nothing', async () => {
    const id = await startSession('run `echo race`');
    rig.fake.push({ kind: 'tool_use', calls: [{ name: 'bash', input: { command: 'echo race' } }], delayMs: 200 });
    const writesA: string[] = [];
    const writesB: string[] = [];
    const [a, b] = await Promise.all([otherHarness(writesA).harness.wake(id), otherHarness(writesB).harness.wake(id)]);
    const statuses = [a.status, b.status].sort();
    expect(statuses).toEqual(['busy', 'done']);
    const loserWrites = a.status === 'busy' ? writesA : writesB;
    const winnerWrites = a.status === 'busy' ? writesB : writesA;
    expect(loserWrites.filter((w) => w.includes('corral-events'))).toEqual([]);
    expect(loserWrites).toEqual([]); // not even a lease write: it found the lease taken
    expect(winnerWrites.some((w) => w.includes('corral-events'))).toBe(true);
    expect((await events(id)).at(-1)).toMatchObject({ type: 'session.status_idle' });
  });

  it('stops a harness whose lease was taken over: it cannot append after the new holder fenced it', async () => {
    const id = await startSession('tell me something');
    rig.fake.push({ kind: 'text', text: 'stale answer', delayMs: 1500 }, { kind: 'text', text: 'fresh answer' });
    const staleWrites: string[] = [];
    const stale = otherHarness(staleWrites).harness.wake(id);
    // wait until the stale harness is inside its model call
    for (let i = 0; i < 200 && !(await events(id)).some((e) => e.type === 'span.model_request_start'); i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    // An hour later by its clock, another harness finds the lease expired and takes over.
    const fresh = await otherHarness([], () => Date.now() + 3_600_000).harness.wake(id);
    expect(fresh.status).toBe('done');
    const staleResult = await stale;
    expect(staleResult.status).toBe('busy');

    const log = await events(id);
    const marker = log.findIndex((e) => e.type === 'session.status_rescheduled');
    expect(marker).toBeGreaterThan(0);
    const texts = log.filter((e) => e.type === 'agent.message').map((e) => JSON.stringify(e.content));
    expect(texts.join()).not.toContain('stale answer');
    expect(texts.join()).toContain('fresh answer');
    // every event the stale harness wrote sits before the marker (position = index + 1)
    const stalePositions = staleWrites.filter((w) => w.includes('corral-events@')).map((w) => Number(w.split('@')[1]));
    expect(stalePositions.length).toBeGreaterThan(0);
    expect(Math.max(...stalePositions)).toBeLessThan(marker + 1);
    expect(checkInvariants(log.map((_, i) => i + 1), log)).toEqual([]);
  });
});
