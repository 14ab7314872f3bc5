import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SessionService } from '../../lambdas/core/resources/sessions.js';
import type { EventLog } from '../../lambdas/core/session/log.js';
import type { WakeQueue } from '../../lambdas/core/harness/queue.js';
import type { TestRuntime } from '../helpers/runtime.js';
import { call, nestedJson, storedRows, startQuietRuntime } from './api-helpers.js';

/**
 * Attack: JSON nested 5,000 deep. It used to overflow the stack (a 500), and a session create
 * with such an `initial_events` entry answered 500 and still created the session. Now the body
 * is refused before it is parsed, and a session create that fails at any step leaves nothing.
 */
describe('deep nesting and atomic creates', () => {
  let t: TestRuntime;
  let agentId: string;
  let envId: string;
  beforeAll(async () => {
    ({ t, agentId, envId } = await startQuietRuntime());
  });
  afterAll(() => t.close());

  it('refuses a session whose initial_events entry is nested 5,000 deep, and leaves no session behind', async () => {
    const before = await storedRows(t);
    const deep = nestedJson(5000);
    const body = `{"agent":"${agentId}","environment_id":"${envId}","initial_events":[{"type":"user.message","content":[{"type":"image","source":{"type":"base64","data":${deep}}}]}]}`;
    const res = await call(t, 'POST', '/v1/sessions', body);
    expect(res.status).toBe(400);
    expect(res.body.error?.message).toMatch(/nested more than 64 levels/);
    expect(await storedRows(t)).toEqual(before);
    expect((await t.client.beta.sessions.list()).data).toEqual([]);
  });

  it('refuses deep bodies on every route that takes one, and still takes 64 levels', async () => {
    const deep = nestedJson(5000);
    const wrong: string[] = [];
    for (const [path, body] of [
      ['/v1/agents', `{"name":"a","model":"m","metadata":${deep}}`],
      ['/v1/environments', `{"name":"e","config":${deep}}`],
      ['/v1/vaults', `{"display_name":${deep}}`],
      ['/v1/sessions', `{"agent":"${agentId}","environment_id":"${envId}","resources":[{"type":"file","x":${deep}}]}`],
      [`/v1/agents/${agentId}`, `{"tools":[{"type":"custom","name":"t","description":"d","input_schema":{"type":"object","properties":${deep}}}]}`],
    ] as const) {
      const res = await call(t, 'POST', path, body);
      if (res.status !== 400) wrong.push(`${path}: ${res.status} ${JSON.stringify(res.body).slice(0, 120)}`);
    }
    expect(wrong).toEqual([]);
    // 64 levels in all is still a valid body: an input schema nested 60 deep
    const schema = '{"type":"object","properties":{"p":'.repeat(29) + '{"type":"string"}' + '}}'.repeat(29);
    const ok = await call(t, 'POST', '/v1/agents', `{"name":"deep","model":"m","tools":[{"type":"custom","name":"t","description":"d","input_schema":${schema}}]}`);
    expect(ok.status).toBe(200);
  });

  it('a session create that fails after its first write leaves no session, event or secret behind', async () => {
    const s = t.runtime.services;
    // The real log, failing on the second event it is asked to append.
    let appends = 0;
    const failingLog: EventLog = Object.create(s.events, {
      emitEvent: {
        value: (...args: Parameters<EventLog['emitEvent']>) => {
          if (++appends === 2) return Promise.reject(new Error('the store went away'));
          return s.events.emitEvent(...args);
        },
      },
    });
    const secrets = new Map<string, unknown>();
    const sink = {
      storeSecret: async (ref: string, value: unknown) => void secrets.set(ref, value),
      deleteSecret: async (ref: string) => void secrets.delete(ref),
      copySecret: async () => {},
    };
    const sessions = new SessionService(s.table, failingLog, s.agents, s.environments, s.queue, { vaults: s.vaults, secrets: sink as never });
    const before = await storedRows(t);
    const message = { type: 'user.message' as const, content: [{ type: 'text' as const, text: 'hi' }] };
    await expect(
      sessions.create('local', {
        agent: agentId,
        environment_id: envId,
        resources: [{ type: 'github_repository', url: 'https://example.com/r.git', authorization_token: 'tok' }],
        initial_events: [message, message, message],
      }),
    ).rejects.toThrow(/went away/);
    expect(appends).toBe(2);
    expect(await storedRows(t)).toEqual(before);
    expect(secrets.size).toBe(0);

    // and one whose wake fails, after every write
    const failingQueue: WakeQueue = { wake: () => Promise.reject(new Error('queue unavailable')) } as unknown as WakeQueue;
    const sessions2 = new SessionService(s.table, s.events, s.agents, s.environments, failingQueue, { vaults: s.vaults, secrets: sink as never });
    await expect(sessions2.create('local', { agent: agentId, environment_id: envId, initial_events: [message] })).rejects.toThrow(/queue unavailable/);
    expect(await storedRows(t)).toEqual(before);
  });
});
