import type Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectUntil, isIdle, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { SDK_RESOURCES } from '../helpers/sdk-resources.js';
import { SdkTypes } from '../helpers/sdk-types.js';

/**
 * Every response Corral gives the official SDK has the shape the SDK's `.d.ts` declares for it:
 * every required field present with the right type, nullable fields present as `null` (see
 * `SdkTypes.conforms`). Each method of each resource Corral serves (`SDK_RESOURCES`) is called
 * through the SDK with realistic data, and its answer, read off the wire (`asResponse()`, so the
 * SDK's own defaults cannot hide a missing field), is checked against the method's declared
 * return type; a list's page envelope (`data`, `next_page`, `prev_page`) against its page class.
 * A method the SDK adds fails the test until it has a call below.
 */

const sdk = new SdkTypes(Object.values(SDK_RESOURCES).map((r) => r.file));

/** What a call answers: the raw response of a JSON method, the events of a stream, or the bytes a download must return. */
type Answer = Response | { events: unknown[] } | { download: Response; expected: string };
type Fixture = {
  agent: Anthropic.Beta.BetaManagedAgentsAgent;
  environment: Anthropic.Beta.BetaEnvironment;
  /** The session that ran a turn (a bash call writing an output, then a message). */
  session: Anthropic.Beta.BetaManagedAgentsSession;
  /** A session with a GitHub repository resource, never run. */
  repoSession: Anthropic.Beta.BetaManagedAgentsSession;
  repoResource: string;
  vault: Anthropic.Beta.BetaManagedAgentsVault;
  credential: { id: string };
  oauthCredential: { id: string };
  file: Anthropic.Beta.BetaFileMetadata;
  fileText: string;
  streamed: unknown[];
};
type Call = (c: Anthropic, f: Fixture) => Promise<Answer>;

const MCP_URL = 'https://mcp.example.com/mcp';
const OAUTH_URL = 'https://127.0.0.1:1/mcp';

/** An agent with every kind of tool and option an SDK user would set. */
const RICH_AGENT: Anthropic.Beta.AgentCreateParams = {
  name: 'conformance',
  description: 'An agent whose every field is set',
  system: 'You check shapes.',
  metadata: { team: 'conformance' },
  model: { id: 'claude-sonnet-4-6', speed: 'standard' },
  mcp_servers: [{ name: 'docs', type: 'url', url: MCP_URL }],
  tools: [
    {
      type: 'agent_toolset_20260401',
      default_config: { enabled: true, permission_policy: { type: 'always_allow' } },
      configs: [
        { name: 'bash', permission_policy: { type: 'always_allow' } },
        { name: 'web_search', allowed_domains: ['docs.example.com'], user_location: { type: 'approximate', country: 'US', city: 'Boston' } },
        { name: 'web_fetch', max_content_tokens: 5000, url_sources: { user_input: 'all', server_tool_results: { type: 'only', tools: [{ type: 'tool_reference', name: 'web_search' }] } } },
      ],
    },
    { type: 'mcp_toolset', mcp_server_name: 'docs', default_config: { permission_policy: { type: 'always_ask' } } },
    { type: 'custom', name: 'lookup', description: 'Look a word up', input_schema: { type: 'object', properties: { q: { type: 'string' } } } },
  ],
};

const file = (text: string, name = 'notes.txt') => new File([text], name, { type: 'text/plain' });

const CALLS: Record<string, Call> = {
  'agents.create': (c) => c.beta.agents.create(RICH_AGENT).asResponse(),
  'agents.retrieve': (c, f) => c.beta.agents.retrieve(f.agent.id).asResponse(),
  'agents.update': async (c, f) => {
    const a = await c.beta.agents.create(RICH_AGENT);
    return c.beta.agents.update(a.id, { version: a.version, description: 'updated', model: { id: 'claude-opus-4-6', effort: 'high' } }).asResponse();
  },
  'agents.list': (c) => c.beta.agents.list({ limit: 2 }).asResponse(),
  'agents.archive': async (c) => c.beta.agents.archive((await c.beta.agents.create(RICH_AGENT)).id).asResponse(),
  'agents.versions.list': async (c, f) => {
    await c.beta.agents.update(f.agent.id, { version: (await c.beta.agents.retrieve(f.agent.id)).version, metadata: { round: '2' } });
    return c.beta.agents.versions.list(f.agent.id).asResponse();
  },
  'environments.create': (c) =>
    c.beta.environments
      .create({
        name: 'conformance-rich',
        description: 'Packages and limited networking',
        metadata: { team: 'conformance' },
        config: { type: 'cloud', packages: { pip: ['requests'], npm: ['left-pad'] }, networking: { type: 'limited', allowed_hosts: ['api.example.com'], allow_package_managers: true } },
      })
      .asResponse(),
  'environments.retrieve': (c, f) => c.beta.environments.retrieve(f.environment.id).asResponse(),
  'environments.update': (c, f) => c.beta.environments.update(f.environment.id, { description: 'updated' }).asResponse(),
  'environments.list': (c) => c.beta.environments.list().asResponse(),
  'environments.delete': async (c) => c.beta.environments.delete((await c.beta.environments.create({ name: 'doomed' })).id).asResponse(),
  'environments.archive': async (c) => c.beta.environments.archive((await c.beta.environments.create({ name: 'archived' })).id).asResponse(),
  'sessions.create': (c, f) =>
    c.beta.sessions
      .create({ agent: f.agent.id, environment_id: f.environment.id, title: 'made', metadata: { team: 'conformance' }, vault_ids: [f.vault.id], resources: [{ type: 'file', file_id: f.file.id }] })
      .asResponse(),
  'sessions.retrieve': (c, f) => c.beta.sessions.retrieve(f.session.id).asResponse(),
  'sessions.update': (c, f) => c.beta.sessions.update(f.repoSession.id, { title: 'renamed', metadata: { round: '2' } }).asResponse(),
  // Page 2 of 3, so that both cursors are set.
  'sessions.list': async (c) => {
    const first = await c.beta.sessions.list({ limit: 1 });
    return c.beta.sessions.list({ limit: 1, page: first.next_page! }).asResponse();
  },
  'sessions.delete': async (c, f) => c.beta.sessions.delete((await c.beta.sessions.create({ agent: f.agent.id, environment_id: f.environment.id })).id).asResponse(),
  'sessions.archive': async (c, f) => c.beta.sessions.archive((await c.beta.sessions.create({ agent: f.agent.id, environment_id: f.environment.id })).id).asResponse(),
  'sessions.events.list': (c, f) => c.beta.sessions.events.list(f.session.id, { limit: 100 }).asResponse(),
  'sessions.events.send': (c, f) => c.beta.sessions.events.send(f.repoSession.id, { events: [{ type: 'user.interrupt' }] }).asResponse(),
  'sessions.events.stream': async (_c, f) => ({ events: f.streamed }),
  'sessions.resources.retrieve': (c, f) => c.beta.sessions.resources.retrieve(f.repoResource, { session_id: f.repoSession.id }).asResponse(),
  'sessions.resources.update': (c, f) =>
    c.beta.sessions.resources.update(f.repoResource, { session_id: f.repoSession.id, authorization_token: 'ghp_conformance2' }).asResponse(),
  'sessions.resources.list': (c, f) => c.beta.sessions.resources.list(f.repoSession.id).asResponse(),
  'sessions.resources.add': (c, f) => c.beta.sessions.resources.add(f.repoSession.id, { type: 'file', file_id: f.file.id, mount_path: '/mnt/session/uploads/added.txt' }).asResponse(),
  'sessions.resources.delete': async (c, f) => {
    const r = await c.beta.sessions.resources.add(f.repoSession.id, { type: 'file', file_id: f.file.id });
    return c.beta.sessions.resources.delete(r.id, { session_id: f.repoSession.id }).asResponse();
  },
  'vaults.create': (c) => c.beta.vaults.create({ display_name: 'made', metadata: { team: 'conformance' } }).asResponse(),
  'vaults.retrieve': (c, f) => c.beta.vaults.retrieve(f.vault.id).asResponse(),
  'vaults.update': (c, f) => c.beta.vaults.update(f.vault.id, { display_name: 'renamed' }).asResponse(),
  'vaults.list': (c) => c.beta.vaults.list().asResponse(),
  'vaults.delete': async (c) => c.beta.vaults.delete((await c.beta.vaults.create({ display_name: 'doomed' })).id).asResponse(),
  'vaults.archive': async (c) => c.beta.vaults.archive((await c.beta.vaults.create({ display_name: 'archived' })).id).asResponse(),
  'vaults.credentials.create': async (c) =>
    c.beta.vaults.credentials
      .create((await c.beta.vaults.create({ display_name: 'env' })).id, {
        display_name: 'env var',
        auth: { type: 'environment_variable', secret_name: 'CONFORMANCE', secret_value: 'conformance-token', networking: { type: 'limited', allowed_hosts: ['api.example.com'] } },
      })
      .asResponse(),
  'vaults.credentials.retrieve': (c, f) => c.beta.vaults.credentials.retrieve(f.oauthCredential.id, { vault_id: f.vault.id }).asResponse(),
  'vaults.credentials.update': (c, f) => c.beta.vaults.credentials.update(f.credential.id, { vault_id: f.vault.id, display_name: 'renamed' }).asResponse(),
  'vaults.credentials.list': (c, f) => c.beta.vaults.credentials.list(f.vault.id).asResponse(),
  'vaults.credentials.delete': async (c, f) => {
    const v = await c.beta.vaults.create({ display_name: 'doomed' });
    const cr = await c.beta.vaults.credentials.create(v.id, { auth: { type: 'static_bearer', token: 't', mcp_server_url: MCP_URL } });
    return c.beta.vaults.credentials.delete(cr.id, { vault_id: v.id }).asResponse();
  },
  'vaults.credentials.archive': async (c, f) => {
    const v = await c.beta.vaults.create({ display_name: 'archived' });
    const cr = await c.beta.vaults.credentials.create(v.id, { auth: { type: 'static_bearer', token: 't', mcp_server_url: MCP_URL } });
    return c.beta.vaults.credentials.archive(cr.id, { vault_id: v.id }).asResponse();
  },
  // Its server does not answer: the validation reports that, in the declared shape.
  'vaults.credentials.mcpOAuthValidate': (c, f) => c.beta.vaults.credentials.mcpOAuthValidate(f.oauthCredential.id, { vault_id: f.vault.id }).asResponse(),
  'files.upload': (c) => c.beta.files.upload({ file: file('uploaded\n', 'upload.txt') }).asResponse(),
  'files.list': (c, f) => c.beta.files.list({ scope_id: f.session.id }).asResponse(),
  'files.retrieveMetadata': (c, f) => c.beta.files.retrieveMetadata(f.file.id).asResponse(),
  'files.download': async (c, f) => ({ download: await c.beta.files.download(f.file.id), expected: f.fileText }),
  'files.delete': async (c) => c.beta.files.delete((await c.beta.files.upload({ file: file('doomed\n') })).id).asResponse(),
};

describe('every response conforms to the SDK’s declared type', () => {
  let t: TestRuntime;
  let f: Fixture;
  beforeAll(async () => {
    t = await startTestRuntime();
    const c = t.client;
    const agent = await c.beta.agents.create({ ...RICH_AGENT, name: 'runner', mcp_servers: [], tools: [RICH_AGENT.tools![0], RICH_AGENT.tools![2]] });
    const environment = await c.beta.environments.create({ name: 'conformance', config: { type: 'cloud', networking: { type: 'unrestricted' } } });
    const vault = await c.beta.vaults.create({ display_name: 'conformance' });
    const credential = await c.beta.vaults.credentials.create(vault.id, { display_name: 'docs', auth: { type: 'static_bearer', token: 'conformance-token', mcp_server_url: MCP_URL } });
    const oauthCredential = await c.beta.vaults.credentials.create(vault.id, {
      auth: {
        type: 'mcp_oauth',
        access_token: 'conformance-token',
        expires_at: '2030-01-01T00:00:00Z',
        mcp_server_url: OAUTH_URL,
        refresh: { client_id: 'conformance', refresh_token: 'conformance-refresh', token_endpoint: 'https://127.0.0.1:1/token', token_endpoint_auth: { type: 'client_secret_post', client_secret: 'conformance-secret' } },
      },
    });
    const fileText = 'a note for the agent\n';
    const uploaded = await c.beta.files.upload({ file: file(fileText) });
    const session = await c.beta.sessions.create({ agent: agent.id, environment_id: environment.id, title: 'runs', resources: [{ type: 'file', file_id: uploaded.id }] });
    const repoSession = await c.beta.sessions.create({
      agent: { type: 'agent', id: agent.id, version: agent.version },
      environment_id: environment.id,
      resources: [{ type: 'github_repository', url: 'https://github.com/octocat/Hello-World', authorization_token: 'ghp_conformance', checkout: { type: 'branch', name: 'master' } }],
    });
    const repoResource = (await c.beta.sessions.resources.list(repoSession.id)).data.find((r) => r.type === 'github_repository')!.id;
    // One turn: a bash call writing an output and reading the upload, then a message.
    t.fake.push(
      { kind: 'tool_use', text: 'Writing it down.', calls: [{ name: 'bash', input: { command: `cat /mnt/session/uploads/${uploaded.id}; echo done > /mnt/session/outputs/done.txt` } }] },
      { kind: 'text', text: 'Done.' },
    );
    const stream = await c.beta.sessions.events.stream(session.id);
    await c.beta.sessions.events.send(session.id, {
      events: [
        { type: 'user.message', content: [{ type: 'text', text: 'Note it.' }] },
        { type: 'system.message', content: [{ type: 'text', text: 'Keep notes short.' }] },
      ],
    });
    const streamed = await collectUntil(stream, (e, all) => isIdle(e) && all.some((x) => x.type === 'agent.message'));
    // The stream and the list below hold every kind of event the turn wrote.
    expect([...new Set(streamed.map((e) => e.type))]).toEqual(
      expect.arrayContaining(['user.message', 'system.message', 'session.status_running', 'span.model_request_start', 'span.model_request_end', 'agent.message', 'agent.tool_use', 'agent.tool_result', 'session.status_idle']),
    );
    stream.controller.abort();
    f = { agent, environment, session, repoSession, repoResource, vault, credential, oauthCredential, file: uploaded, fileText, streamed };
  }, 120_000);
  afterAll(() => t?.close());

  it('has a call for every method of every resource', () => {
    const methods = Object.entries(SDK_RESOURCES).flatMap(([path, r]) => sdk.methods(r).filter((m) => m.api).map((m) => `${path}.${m.name}`));
    expect(methods.filter((k) => !CALLS[k])).toEqual([]);
    expect(Object.keys(CALLS).filter((k) => !methods.includes(k)), 'calls of methods the SDK does not have').toEqual([]);
  });

  it('answers every method with its declared type', async () => {
    const problems: string[] = [];
    let checked = 0;
    for (const [path, r] of Object.entries(SDK_RESOURCES)) {
      for (const m of sdk.methods(r)) {
        if (!m.api) continue;
        const key = `${path}.${m.name}`;
        const call = CALLS[key];
        if (!call) continue;
        let answer: Answer;
        try {
          answer = await call(t.client, f);
        } catch (err) {
          problems.push(`${key}: ${(err as Error).message}`);
          continue;
        }
        const found: string[] = [];
        if ('events' in answer) {
          if (!answer.events.length) found.push('no events');
          for (const [i, e] of answer.events.entries()) found.push(...sdk.conforms(e, m.result, `$[${i}]`));
        } else if ('download' in answer) {
          const text = await answer.download.text();
          if (text !== answer.expected) found.push(`downloaded ${JSON.stringify(text)}, uploaded ${JSON.stringify(answer.expected)}`);
        } else {
          const body = (await answer.json()) as Record<string, unknown>;
          if (m.page) {
            for (const field of sdk.pageFields(m.page).filter((x) => x.name !== 'data')) found.push(...sdk.conforms(body[field.name], field.type, `$.${field.name}`));
            const data = (body.data ?? []) as unknown[];
            if (!data.length) found.push('an empty page: nothing to check');
            for (const [i, item] of data.entries()) found.push(...sdk.conforms(item, m.result, `$.data[${i}]`));
          } else found.push(...sdk.conforms(body, m.result));
        }
        checked++;
        problems.push(...found.map((p) => `${key}: ${p}`));
      }
    }
    expect(problems).toEqual([]);
    expect(checked).toBe(Object.keys(CALLS).length);
  }, 180_000);

  it('pages session lists both ways: prev_page turns back to the page before', async () => {
    const c = t.client;
    for (let i = 0; i < 3; i++) await c.beta.sessions.create({ agent: f.agent.id, environment_id: f.environment.id });
    const all: string[] = [];
    for await (const s of c.beta.sessions.list({ limit: 100 })) all.push(s.id);
    expect(all.length).toBeGreaterThanOrEqual(4);
    const first = await c.beta.sessions.list({ limit: 2 });
    expect(first.prev_page).toBeNull();
    const second = await c.beta.sessions.list({ limit: 2, page: first.next_page! });
    expect(second.data.map((s) => s.id)).toEqual(all.slice(2, 4));
    expect(second.prev_page).toEqual(expect.any(String));
    const back = await c.beta.sessions.list({ limit: 2, page: second.prev_page! });
    expect(back.data.map((s) => s.id)).toEqual(all.slice(0, 2));
    // Back at the start there is nothing before; forward again goes to the second page.
    expect(back.prev_page).toBeNull();
    const again = await c.beta.sessions.list({ limit: 2, page: back.next_page! });
    expect(again.data.map((s) => s.id)).toEqual(all.slice(2, 4));
    // One item back from the second page is the item before it, with more before that.
    const one = await c.beta.sessions.list({ limit: 1, page: second.prev_page! });
    expect(one.data.map((s) => s.id)).toEqual([all[1]]);
    expect(one.prev_page).toEqual(expect.any(String));
    // The other order pages back the same way.
    const asc = await c.beta.sessions.list({ limit: 2, order: 'asc' });
    const asc2 = await c.beta.sessions.list({ limit: 2, order: 'asc', page: asc.next_page! });
    const ascBack = await c.beta.sessions.list({ limit: 2, order: 'asc', page: asc2.prev_page! });
    expect(ascBack.data.map((s) => s.id)).toEqual(asc.data.map((s) => s.id));
    // A back cursor means nothing to a list that pages one way only.
    await expect(c.beta.agents.list({ page: second.prev_page! })).rejects.toMatchObject({ status: 400 });
  });
});
