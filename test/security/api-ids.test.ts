import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgentAndEnvironment, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { call, storedRows } from './api-helpers.js';

/**
 * Attack: ids longer than DynamoDB's key limits (2,048 bytes for a partition key, 1,024 for a
 * sort key) on every route that takes one, and in every body field that names an object. Each
 * used to reach DynamoDB and come back as a 500; now each is a 400 naming the parameter.
 */
describe('ids over the key limits', () => {
  let t: TestRuntime;
  let ids: { agent: string; env: string; session: string; vault: string; credential: string };
  beforeAll(async () => {
    t = await startTestRuntime();
    await t.runtime.queue.stop();
    const { agent, environment } = await createAgentAndEnvironment(t.client);
    const session = await t.client.beta.sessions.create({ agent: agent.id, environment_id: environment.id });
    const vault = await call(t, 'POST', '/v1/vaults', { display_name: 'v' });
    ids = { agent: agent.id, env: environment.id, session: session.id, vault: String(vault.body.id), credential: 'vcrd_missing' };
  });
  afterAll(() => t.close());

  const long = 'a'.repeat(3000); // over both key limits
  const credLong = 'c'.repeat(1100); // over the sort key limit only

  it('answers 400 naming the parameter on every route with an id, for ids of 1,100 and 3,000 characters', async () => {
    const routes = (x: string, c: string): Array<[string, string, unknown?]> => [
      ['GET', `/v1/agents/${x}`],
      ['POST', `/v1/agents/${x}`, { name: 'n' }],
      ['POST', `/v1/agents/${x}/archive`],
      ['GET', `/v1/agents/${x}/versions`],
      ['GET', `/v1/environments/${x}`],
      ['POST', `/v1/environments/${x}`, { name: 'n' }],
      ['DELETE', `/v1/environments/${x}`],
      ['POST', `/v1/environments/${x}/archive`],
      ['GET', `/v1/sessions/${x}`],
      ['POST', `/v1/sessions/${x}`, { title: 't' }],
      ['DELETE', `/v1/sessions/${x}`],
      ['POST', `/v1/sessions/${x}/archive`],
      ['POST', `/v1/sessions/${x}/fork`, {}],
      ['GET', `/v1/sessions/${x}/events`],
      ['POST', `/v1/sessions/${x}/events`, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'hi' }] }] }],
      ['GET', `/v1/sessions/${x}/events/stream`],
      ['GET', `/v1/sessions/${x}/resources`],
      ['GET', `/v1/sessions/${x}/sandboxes`],
      ['POST', `/v1/sessions/${x}/sandboxes/default/handoff`, { to_session_id: ids.session }],
      ['GET', `/v1/sessions/${ids.session}/resources/${x}`],
      ['POST', `/v1/sessions/${ids.session}/resources/${x}`, { authorization_token: 'tok' }],
      ['GET', `/v1/vaults/${x}`],
      ['POST', `/v1/vaults/${x}`, { display_name: 'd' }],
      ['DELETE', `/v1/vaults/${x}`],
      ['POST', `/v1/vaults/${x}/archive`],
      ['GET', `/v1/vaults/${x}/credentials`],
      ['GET', `/v1/vaults/${ids.vault}/credentials/${c}`],
      ['POST', `/v1/vaults/${ids.vault}/credentials/${c}`, { display_name: 'd' }],
      ['DELETE', `/v1/vaults/${ids.vault}/credentials/${c}`],
      ['POST', `/v1/vaults/${ids.vault}/credentials/${c}/archive`],
    ];
    const before = await storedRows(t);
    const wrong: string[] = [];
    for (const x of [long, credLong]) {
      for (const [method, path, body] of routes(x, x)) {
        const res = await call(t, method, path, body);
        const param = path.includes(`/resources/${x}`) ? 'resource_id' : path.includes(`/credentials/${x}`) ? 'credential_id' : 'id';
        if (res.status !== 400 || !res.body.error?.message.startsWith(`${param}: must be an id`)) {
          wrong.push(`${method} ${path.slice(0, 60)}… (${x.length}): ${res.status} ${JSON.stringify(res.body).slice(0, 160)}`);
        }
      }
    }
    expect(wrong).toEqual([]);
    expect(await storedRows(t)).toEqual(before);
  });

  it('answers 400 naming the field for over-long ids inside bodies and queries', async () => {
    const wrong: string[] = [];
    const expect400 = async (what: string, method: string, path: string, body: unknown, field: string) => {
      const res = await call(t, method, path, body);
      if (res.status !== 400 || !res.body.error?.message.includes(field)) wrong.push(`${what}: ${res.status} ${JSON.stringify(res.body).slice(0, 160)}`);
    };
    await expect400('agent', 'POST', '/v1/sessions', { agent: long, environment_id: ids.env }, 'agent');
    await expect400('agent.id', 'POST', '/v1/sessions', { agent: { type: 'agent', id: long }, environment_id: ids.env }, 'agent');
    await expect400('environment_id', 'POST', '/v1/sessions', { agent: ids.agent, environment_id: long }, 'environment_id');
    await expect400('vault_ids', 'POST', '/v1/sessions', { agent: ids.agent, environment_id: ids.env, vault_ids: [credLong] }, 'vault_ids.0');
    await expect400('file_id', 'POST', '/v1/sessions', { agent: ids.agent, environment_id: ids.env, resources: [{ type: 'file', file_id: long }] }, 'file_id');
    await expect400('to_session_id', 'POST', `/v1/sessions/${ids.session}/sandboxes/default/handoff`, { to_session_id: long }, 'to_session_id');
    await expect400('tool_use_id', 'POST', `/v1/sessions/${ids.session}/events`, { events: [{ type: 'user.tool_confirmation', tool_use_id: long, result: 'allow' }] }, 'events.0.tool_use_id');
    await expect400('custom_tool_use_id', 'POST', `/v1/sessions/${ids.session}/events`, { events: [{ type: 'user.custom_tool_result', custom_tool_use_id: long }] }, 'events.0.custom_tool_use_id');
    await expect400('agent_id query', 'GET', `/v1/sessions?agent_id=${long}`, undefined, 'agent_id');
    await expect400('page cursor', 'GET', `/v1/agents?page=${Buffer.from(JSON.stringify({ a: long })).toString('base64url')}`, undefined, 'page');
    expect(wrong).toEqual([]);
  });

  it('still answers 404 for a well-formed id that does not exist', async () => {
    expect((await call(t, 'GET', '/v1/agents/agent_01ABCDEFGHJKMNPQRSTVWXYZ01')).status).toBe(404);
    expect((await call(t, 'GET', `/v1/vaults/${ids.vault}/credentials/${ids.credential}`)).status).toBe(404);
  });
});
