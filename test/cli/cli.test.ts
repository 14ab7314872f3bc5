import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listAll, startTestRuntime, waitFor, type TestRuntime } from '../helpers/runtime.js';
import { cli, ndjson, spawnBin, startCuttingProxy, until } from './helpers.js';

describe('corral CLI against the local runtime', () => {
  let t: TestRuntime;
  let env: Record<string, string>;
  let cwd: string;
  let agentId: string;
  let envId: string;
  let sessionId: string;

  beforeAll(async () => {
    t = await startTestRuntime();
    env = { CORRAL_URL: t.runtime.url, CORRAL_API_KEY: t.runtime.apiKey };
    cwd = mkdtempSync(join(tmpdir(), 'corral-cli-'));
  });
  afterAll(async () => {
    await t?.close();
    rmSync(cwd, { recursive: true, force: true });
  });

  it('creates and lists agents and environments (human, --json and -q output)', async () => {
    const agent = await cli(['agents', 'create', '--name', 'cli-agent', '-q'], { env });
    expect(agent).toMatchObject({ code: 0, stderr: '' });
    agentId = agent.stdout.trim();
    expect(agentId).toMatch(/^agent_/);
    const created = await cli(['envs', 'create', '--name', 'cli-env', '--networking', 'limited', '--allow-host', 'example.com', '--json'], { env });
    expect(created.code).toBe(0);
    const environment = JSON.parse(created.stdout);
    envId = environment.id;
    expect(environment.config.networking).toMatchObject({ type: 'limited', allowed_hosts: ['example.com'] });

    const agents = await cli(['agents', 'list'], { env });
    expect(agents.code).toBe(0);
    expect(agents.stdout.split('\n')[0]).toMatch(/^ID\s+NAME\s+VERSION\s+MODEL/);
    expect(agents.stdout).toContain(agentId);
    expect(agents.stdout).toContain('claude-sonnet-4-6');
    const envs = JSON.parse((await cli(['envs', 'list', '--json'], { env })).stdout) as Array<{ id: string }>;
    expect(envs.map((e) => e.id)).toContain(envId);
    // the agent uses the agent toolset unless told otherwise
    expect((await t.client.beta.agents.retrieve(agentId)).tools).toEqual([expect.objectContaining({ type: 'agent_toolset_20260401' })]);
  });

  it('runs a session: create --message --wait prints the turn as it happens, until idle', async () => {
    const r = await cli(
      ['sessions', 'create', '--agent', agentId, '--env', envId, '--title', 'from the cli', '--message', 'run `echo cli-$((6*7))`', '--wait'],
      { env },
    );
    expect(r.code).toBe(0);
    expect(r.stderr).toBe(''); // no spinner when stderr is not a terminal
    sessionId = /created session (\S+)/.exec(r.stdout)![1];
    const lines = r.stdout.split('\n');
    const types = lines.map((l) => /^\s+\d+\s+\S+\s+(\S+)/.exec(l)?.[1]).filter(Boolean);
    expect(types).toEqual([
      'user.message',
      'session.status_running',
      'span.model_request_start',
      'agent.message',
      'agent.tool_use',
      'span.model_request_end',
      'agent.tool_result',
      'span.model_request_start',
      'agent.message',
      'span.model_request_end',
      'session.status_idle',
    ]);
    expect(r.stdout).toMatch(/agent\.tool_use\s+bash echo cli-\$\(\(6\*7\)\)/);
    expect(r.stdout).toMatch(/agent\.tool_result\s+ok \S+ sandbox default\n\s+cli-42/);
    expect(r.stdout).toMatch(/Tool output:\n\s+cli-42/);
    expect(r.stdout).toMatch(/span\.model_request_end\s+model \S+, \d+ in \/ \d+ out tokens/);
    expect(r.stdout).toMatch(/session\.status_idle\s+end_turn/);
  });

  it('lists and shows sessions', async () => {
    const list = await cli(['sessions', 'list'], { env });
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`${sessionId}\\s+idle\\s+from the cli\\s+cli-agent v1`));
    const show = await cli(['sessions', 'show', sessionId], { env });
    expect(show.code).toBe(0);
    expect(show.stdout).toMatch(/status\s+idle/);
    expect(show.stdout).toContain(`${t.runtime.url}/console/sessions/${sessionId}`);
    expect(JSON.parse((await cli(['sessions', 'show', sessionId, '--json'], { env })).stdout)).toMatchObject({ id: sessionId, status: 'idle' });
    const byStatus = JSON.parse((await cli(['sessions', 'list', '--status', 'running', '--json'], { env })).stdout) as unknown[];
    expect(byStatus).toEqual([]);
  });

  it('send --wait prints only what follows the message, and the message can come from stdin', async () => {
    const before = (await listAll(t.client, sessionId)).length;
    const r = await cli(['sessions', 'send', sessionId, '-', '--wait', '--json'], { env, stdin: 'hello from stdin\n' });
    expect(r.code).toBe(0);
    const got = ndjson(r.stdout);
    expect(got[0]).toMatchObject({ position: before + 1, event: { type: 'user.message', content: [{ type: 'text', text: 'hello from stdin' }] } });
    expect(got.map((g) => g.position)).toEqual(got.map((_, i) => before + 1 + i));
    expect(got.at(-1)!.event.type).toBe('session.status_idle');
    expect(got.find((g) => g.event.type === 'agent.message')!.event.content).toEqual([{ type: 'text', text: expect.stringContaining('hello from stdin') }]);
    const plain = await cli(['sessions', 'send', sessionId, 'no', 'wait'], { env });
    expect(plain).toMatchObject({ code: 0, stdout: expect.stringMatching(new RegExp(`^sent sevt_\\S+ to ${sessionId}\\n$`)) });
    await waitFor(async () => (await t.client.beta.sessions.retrieve(sessionId)).status === 'idle' && (await listAll(t.client, sessionId)).at(-1)?.type === 'session.status_idle', 'idle');
  });

  it('events --from --to prints exactly those positions; --type filters and keeps positions', async () => {
    const all = await listAll(t.client, sessionId);
    const r = await cli(['events', sessionId, '--from', '3', '--to', '7', '--json'], { env });
    expect(r.code).toBe(0);
    const got = ndjson(r.stdout);
    expect(got.map((g) => g.position)).toEqual([3, 4, 5, 6, 7]);
    expect(got.map((g) => g.event.id)).toEqual(all.slice(2, 7).map((e) => e.id));
    const tools = ndjson((await cli(['events', sessionId, '--type', 'agent.tool_use', '--json'], { env })).stdout);
    expect(tools).toEqual([{ position: 5, event: all[4] }]);
    const everything = ndjson((await cli(['events', sessionId, '--json'], { env })).stdout);
    expect(everything.map((g) => g.event)).toEqual(all);
    const human = await cli(['events', sessionId, '--from', '5', '--to', '5'], { env });
    expect(human.stdout).toMatch(/^\s+5\s+\S+\s+agent\.tool_use\s+bash echo cli-\$\(\(6\*7\)\)\n$/);
    expect((await cli(['events', sessionId, '--from', '5', '--to', '2'], { env })).code).toBe(2);
    expect((await cli(['events', sessionId, '--from', 'x'], { env })).code).toBe(2);
  });

  it('the events list reads by position (Corral extension: from_position, to_position)', async () => {
    const all = await listAll(t.client, sessionId);
    const get = async (q: string) => {
      const res = await fetch(`${t.runtime.url}/v1/sessions/${sessionId}/events?${q}`, { headers: { 'x-api-key': t.runtime.apiKey } });
      return { status: res.status, body: (await res.json()) as { data: Array<{ id: string }>; next_page: string | null } };
    };
    const ids = (p: { body: { data: Array<{ id: string }> } }) => p.body.data.map((e) => e.id);
    expect(ids(await get('from_position=2&to_position=4'))).toEqual(all.slice(1, 4).map((e) => e.id));
    expect(ids(await get('from_position=2&to_position=4&order=desc'))).toEqual(all.slice(1, 4).map((e) => e.id).reverse());
    expect(ids(await get(`from_position=${all.length}`))).toEqual([all.at(-1)!.id]);
    expect(ids(await get(`from_position=${all.length + 1}`))).toEqual([]);
    expect(ids(await get('from_position=4&to_position=3'))).toEqual([]);
    // pages within a range never leave it
    const first = await get('from_position=2&to_position=6&limit=3');
    expect(ids(first)).toEqual(all.slice(1, 4).map((e) => e.id));
    const second = await get(`from_position=2&to_position=6&limit=3&page=${first.body.next_page}`);
    expect(ids(second)).toEqual(all.slice(4, 6).map((e) => e.id));
    expect(second.body.next_page).toBeNull();
    const last = await get('to_position=3&limit=3');
    expect(last.body.next_page).toBeNull();
    expect((await get('from_position=-1')).status).toBe(400);
    expect((await get('to_position=x')).status).toBe(400);
  });

  it('forks a session at a position', async () => {
    const r = await cli(['sessions', 'fork', sessionId, '--at', '11', '--title', 'cli fork', '--json'], { env });
    expect(r.code).toBe(0);
    const fork = JSON.parse(r.stdout);
    expect(fork).toMatchObject({ title: 'cli fork', forked_from: { session_id: sessionId, position: 11 } });
    expect((await listAll(t.client, fork.id)).map((e) => e.type)).toEqual((await listAll(t.client, sessionId)).slice(0, 11).map((e) => e.type));
    // (forks end idle here: a fork in the middle of a turn would go on running it)
    const whole = (await listAll(t.client, sessionId)).length;
    const human = await cli(['sessions', 'fork', sessionId], { env });
    expect(human.stdout).toMatch(new RegExp(`^forked ${sessionId} at position ${whole} into sesn_\\S+\\n$`));
    expect((await cli(['sessions', 'fork', sessionId, '--at', '99999'], { env })).code).toBe(1);
  });

  it('interrupt --wait ends a hanging turn and returns once the session is idle', async () => {
    const s = await t.client.beta.sessions.create({ agent: agentId, environment_id: envId });
    t.fake.push({ kind: 'hang' });
    expect((await cli(['sessions', 'send', s.id, 'think forever'], { env })).code).toBe(0);
    await waitFor(async () => (await listAll(t.client, s.id)).some((e) => e.type === 'span.model_request_start'), 'the model request');
    const r = await cli(['sessions', 'interrupt', s.id, '--wait'], { env });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^sent sevt_\S+ \(interrupt\)/);
    expect(r.stdout).toMatch(/user\.interrupt[\s\S]*span\.model_request_end\s+model[^\n]*, failed[\s\S]*session\.status_idle\s+end_turn\n$/);
    expect((await t.client.beta.sessions.retrieve(s.id)).status).toBe('idle');
  });

  it('tail follows the stream through dropped connections with no gaps and no repeats', async () => {
    const s = await t.client.beta.sessions.create({ agent: agentId, environment_id: envId });
    // Every stream connection is cut after ~1.2 kB, mid-message: the tail must reconnect many times.
    const proxy = await startCuttingProxy(t.runtime.url, 1200);
    try {
      const tail = cli(['sessions', 'tail', s.id, '--until-idle', '--json'], { env: { ...env, CORRAL_URL: proxy.url } });
      await t.client.beta.sessions.events.send(s.id, {
        events: [{ type: 'user.message', content: [{ type: 'text', text: 'run `for i in 1 2 3; do echo line-$i; done`' }] }],
      });
      const r = await tail;
      expect(r.code).toBe(0);
      const got = ndjson(r.stdout);
      const log = await listAll(t.client, s.id);
      expect(got.map((g) => g.position)).toEqual(log.map((_, i) => i + 1));
      expect(got.map((g) => g.event)).toEqual(log);
      expect(proxy.streamConnections).toBeGreaterThanOrEqual(3);
    } finally {
      await proxy.close();
    }
  });

  it('tail --from starts at a position; tail --new only shows what comes next', async () => {
    const all = await listAll(t.client, sessionId);
    const ac = new AbortController();
    let printed = 0;
    const tail = cli(['sessions', 'tail', sessionId, '--from', '9', '--json'], {
      env,
      signal: ac.signal,
      onOutput: (out) => (printed = ndjson(out).length),
    });
    await until(() => printed >= all.length - 8, 'the replay from position 9');
    ac.abort(); // as Ctrl-C does
    const r = await tail;
    expect(r.code).toBe(130);
    expect(ndjson(r.stdout).map((g) => g.position)).toEqual(all.slice(8).map((_, i) => 9 + i));

    // --new finds the end of the log, then follows; the spinner line says when it is live
    let live = false;
    const fresh = cli(['sessions', 'tail', sessionId, '--new', '--until-idle', '--json'], {
      env,
      stderrTTY: true,
      onOutput: (_out, err) => (live ||= err.includes('to go idle')),
    });
    await until(() => live, 'the tail to be live');
    await t.client.beta.sessions.events.send(sessionId, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'news' }] }] });
    const nr = await fresh;
    expect(nr.code).toBe(0);
    const got = ndjson(nr.stdout);
    expect(got[0]).toMatchObject({ position: all.length + 1, event: { type: 'user.message' } });
    expect(got.map((g) => g.position)).toEqual(got.map((_, i) => all.length + 1 + i));
    expect(got.at(-1)!.event.type).toBe('session.status_idle');
  });

  it('draws a spinner on stderr only when stderr is a terminal', async () => {
    const s = await t.client.beta.sessions.create({ agent: agentId, environment_id: envId });
    const r = await cli(['sessions', 'send', s.id, 'spin', '--wait'], { env, stderrTTY: true });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('\r\x1b[K');
    expect(r.stderr).toMatch(/waiting for sesn_\S+ to go idle/);
    expect(r.stdout).not.toContain('\x1b[');
  });

  it('exit codes: 2 for a wrong command line, 1 for API errors, with clear messages', async () => {
    expect(await cli(['sessions', 'frobnicate'], { env })).toMatchObject({ code: 2, stderr: expect.stringContaining('unknown command "sessions frobnicate"') });
    expect(await cli(['agents', 'create'], { env })).toMatchObject({ code: 2, stderr: expect.stringContaining('--name is required') });
    expect(await cli(['agents', 'list', '--bogus'], { env })).toMatchObject({ code: 2, stderr: expect.stringContaining("Unknown option '--bogus'") });
    expect(await cli(['sessions', 'show'], { env })).toMatchObject({ code: 2, stderr: expect.stringContaining('usage: corral sessions show ID') });
    expect(await cli([], { env })).toMatchObject({ code: 2, stderr: expect.stringContaining('Commands:') });
    expect(await cli(['--help'], { env })).toMatchObject({ code: 0, stdout: expect.stringContaining('sessions tail') });
    expect(await cli(['sessions', 'show', 'sesn_nope'], { env })).toMatchObject({ code: 1, stderr: 'corral: 404 not_found_error: session sesn_nope not found\n' });
    expect(await cli(['sessions', 'tail', 'sesn_nope'], { env })).toMatchObject({ code: 1, stderr: expect.stringContaining('404') });
    expect(await cli(['agents', 'list'], { env: { ...env, CORRAL_API_KEY: 'wrong' } })).toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/401 authentication_error: .*CORRAL_API_KEY/),
    });
    expect(await cli(['agents', 'list'], { env: { CORRAL_URL: t.runtime.url }, cwd })).toMatchObject({ code: 1, stderr: expect.stringContaining('no API key') });
  });

  it('reads the key from ./.corral/api-key when CORRAL_API_KEY is not set', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'corral-cli-key-'));
    try {
      mkdirSync(join(dir, '.corral'));
      writeFileSync(join(dir, '.corral', 'api-key'), t.runtime.apiKey + '\n');
      expect(await cli(['agents', 'list', '-q'], { env: { CORRAL_URL: t.runtime.url }, cwd: dir })).toMatchObject({ code: 0, stdout: expect.stringContaining(agentId) });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('vaults: used as the SDK shapes them; a server without them is named clearly', async () => {
    const created = await cli(['vaults', 'create', '--name', 'prod secrets', '--metadata', 'team=infra'], { env });
    expect(created).toMatchObject({ code: 0, stdout: expect.stringMatching(/^created vault \S+ \(prod secrets\)\n$/) });
    const list = await cli(['vaults', 'list'], { env });
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^ID\s+NAME\s+CREATED\n/);
    expect(list.stdout).toContain('prod secrets');

    // A server without the vaults collection (an older Corral, or another implementation).
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      req.on('end', () => {
        res.statusCode = 404;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ type: 'error', error: { type: 'not_found_error', message: `no route for ${req.method} ${req.url}` } }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const venv = { CORRAL_URL: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, CORRAL_API_KEY: 'k' };
      expect(await cli(['vaults', 'list'], { env: venv })).toMatchObject({ code: 1, stderr: expect.stringContaining('vaults are not available on this server') });
      expect((await cli(['vaults', 'create', '--name', 'x'], { env: venv })).stderr).toContain('vaults are not available on this server');
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('the corral executable runs from any directory, names CORRAL_URL when nothing answers, and exits 130 on Ctrl-C', async () => {
    // a port where nothing listens
    const probe = createTcpServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const deadPort = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const refused = spawnBin(['sessions', 'list'], { env: { CORRAL_URL: `http://127.0.0.1:${deadPort}`, CORRAL_API_KEY: 'k' }, cwd: tmpdir() });
    expect(await refused.exited).toBe(1);
    expect(refused.stderr).toContain(`cannot reach Corral at CORRAL_URL=http://127.0.0.1:${deadPort}: connection refused`);

    const tail = spawnBin(['sessions', 'tail', sessionId], { env, cwd: tmpdir() });
    await until(() => tail.stdout.includes('session.status_idle'), 'the tail to print the log');
    tail.child.kill('SIGINT');
    expect(await tail.exited).toBe(130);
    expect(tail.stdout).toMatch(/^\s+1\s+\S+\s+user\.message\s+run `echo cli-/);
  });
});
