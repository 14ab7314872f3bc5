import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { toFile } from '@anthropic-ai/sdk';
import { getRequestListener } from '@hono/node-server';
import { Hono } from 'hono';
import { chromium, type BrowserContext, type Page, type Response } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { consoleRoutes } from '../../lambdas/api/console.js';
import { createAgentAndEnvironment, listAll, startTestRuntime, waitFor, type TestRuntime } from '../helpers/runtime.js';
import { coordinatorModel } from '../fixtures/thread-model.js';
import { echoModel } from '../fixtures/fake-messages-api.js';

/**
 * The session console, end to end in a real browser: Debian's Chromium driven by playwright-core,
 * against the local runtime with the scripted model. `.ci/run` installs Chromium; without it this
 * suite fails (it never skips).
 *
 * The screenshots go to temporary files; with UPDATE_SCREENSHOT=1 they replace docs/console.png and
 * docs/console-new-session.png.
 * One browser and one runtime serve every test: the session views first, then the manage views.
 */

const CHROMIUM = '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
/** Bounded polling of something on the page. */
const poll = <T>(fn: () => Promise<T> | T) => expect.poll(fn, { timeout: 20_000, interval: 50 });
const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The workspace of a session's default sandbox (`<dataDir>/sandboxes/<session>/default…/workspace`). */
function workspaceOf(dataDir: string, sessionId: string): string | undefined {
  const root = join(dataDir, 'sandboxes', sessionId);
  if (!existsSync(root)) return undefined;
  const dir = readdirSync(root).find((d) => d === 'default' || d.startsWith('default+'));
  const ws = dir && join(root, dir, 'workspace');
  return ws && existsSync(ws) ? ws : undefined;
}

describe('session console in Chromium', () => {
  let t: TestRuntime;
  let ctx: BrowserContext;
  let page: Page;
  let profile: string;
  let sessionId: string;
  const urls: string[] = [];
  const pageErrors: string[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`Chromium is not installed at ${CHROMIUM}: install it with "apt-get install -y chromium" (.ci/run does)`);
    }
    t = await startTestRuntime();
    const { agent, environment } = await createAgentAndEnvironment(t.client);
    sessionId = (await t.client.beta.sessions.create({ agent: agent.id, environment_id: environment.id, title: 'console tour' })).id;
    profile = mkdtempSync(join(tmpdir(), 'corral-chromium-'));
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      viewport: { width: 1100, height: 900 },
    });
    page = ctx.pages()[0] ?? (await ctx.newPage());
    page.setDefaultTimeout(20_000);
    page.on('request', (r) => urls.push(r.url()));
    page.on('pageerror', (e) => pageErrors.push(e.message));
  }, 90_000);

  afterAll(async () => {
    await ctx?.close();
    await t?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
  }, 60_000);

  it('asks for the API key once, refuses a wrong one, then lists the sessions', async () => {
    await page.goto(`${t.runtime.url}/console`);
    await page.locator('#api-key').fill('sk-corral-wrong');
    await page.locator('#use-key').click();
    await poll(() => page.locator('#key-error').textContent()).toContain('rejected');
    // This server has no GET /corral/auth (404): the API key is the only way in.
    expect(await page.locator('#sign-in button').count()).toBe(0);
    await page.locator('#api-key').fill(t.runtime.apiKey);
    await page.locator('#use-key').click();
    const row = page.locator(`#sessions tr[data-id="${sessionId}"]`);
    await row.waitFor();
    expect(await row.textContent()).toContain('console tour');
    expect(await row.locator('.badge').textContent()).toBe('idle');
    // Into the session: the key stays in this tab's session storage, and only there.
    await row.locator('a').click();
    await page.waitForURL(`**/console/sessions/${sessionId}`);
    await poll(() => page.locator('#conn').textContent()).toBe('live');
    expect(await page.locator('#title').textContent()).toBe('console tour');
    expect(await page.evaluate('[sessionStorage.length, localStorage.length]')).toEqual([1, 0]);
  }, 60_000);

  it('shows a scripted session as it runs: the tool call, its result, then the answer', async () => {
    // The tool waits for a file the test creates, so the page can be seen mid-turn.
    const command = 'while [ ! -e release ]; do sleep 0.05; done; echo console-$((6*7))';
    t.fake.push(
      { kind: 'tool_use', text: 'Let me run that.', calls: [{ name: 'bash', input: { command } }] },
      { kind: 'text', text: 'The command printed console-42.' },
    );
    await t.client.beta.sessions.events.send(sessionId, {
      events: [{ type: 'user.message', content: [{ type: 'text', text: 'Run the gated command, please.' }] }],
    });

    const tool = page.locator('.tool[data-type="agent.tool_use"]');
    await tool.waitFor();
    expect(await tool.locator('.tool-name').textContent()).toBe('bash');
    expect(await tool.locator('.tool-summary').textContent()).toBe(command);
    expect(await tool.locator('.tool-state').textContent()).toBe('running…');
    expect(await page.locator('#status').textContent()).toBe('running');
    expect(await page.locator('#interrupt').isEnabled()).toBe(true);
    expect(await page.locator('.ev-user').last().textContent()).toContain('Run the gated command, please.');
    expect(await page.locator('.ev-agent').last().textContent()).toContain('Let me run that.');
    // the answer cannot exist yet: the tool has not returned
    expect(await page.locator('.ev-agent', { hasText: 'printed console-42' }).count()).toBe(0);

    const workspace = await waitFor(async () => workspaceOf(t.dataDir, sessionId), 'the sandbox workspace');
    writeFileSync(join(workspace, 'release'), '');

    await poll(() => tool.locator('.tool-state').textContent()).toBe('ok');
    expect(await tool.locator('.tool-result pre').textContent()).toContain('console-42');
    expect(await tool.locator('.sandbox').textContent()).toBe('sandbox default');
    await page.locator('.ev-agent', { hasText: 'The command printed console-42.' }).waitFor();
    await poll(() => page.locator('#status').textContent()).toBe('idle');
    expect(await page.locator('#sandboxes').textContent()).toBe('default');
    // two steps (model requests), each with its latency strip
    const steps = page.locator('.step');
    expect(await steps.count()).toBe(2);
    const strip = await steps.first().locator('.strip').textContent();
    expect(strip).toMatch(/wait \d/);
    expect(strip).toMatch(/first output \d/);
    expect(strip).toMatch(/model \d/);
    expect(strip).toMatch(/tools \d.*\(1\)/);
    expect(await steps.nth(1).locator('.strip').textContent()).not.toContain('tools');
    // what the page shows is the log, in order
    // (a result fills its tool call's card and a request's end its step's strip: neither is an item)
    const shown = await page.locator('#timeline [data-position]').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-position'))));
    const log = await listAll(t.client, sessionId);
    const items = log.map((e, i) => ({ type: e.type, position: i + 1 })).filter((e) => e.type !== 'agent.tool_result' && e.type !== 'span.model_request_end');
    expect(shown).toEqual(items.map((e) => e.position));
    expect(await tool.getAttribute('data-result-position')).toBe(String(log.findIndex((e) => e.type === 'agent.tool_result') + 1));
  }, 60_000);

  it('sends a message from the page and shows its answer', async () => {
    await page.locator('#message').fill('hello from the browser');
    await page.locator('#send').click();
    await page.locator('.ev-user', { hasText: 'hello from the browser' }).waitFor();
    await page.locator('.ev-agent', { hasText: 'You said: hello from the browser' }).waitFor();
    await poll(() => page.locator('[data-type="session.status_idle"]').count()).toBe(2);
    expect(await page.locator('#message').inputValue()).toBe('');
    const log = await listAll(t.client, sessionId);
    expect(log.filter((e) => e.type === 'user.message').at(-1)).toMatchObject({ content: [{ type: 'text', text: 'hello from the browser' }] });
  }, 60_000);

  it('shows the answer as the model writes it (event_deltas), then the stored message in its place', async () => {
    const text = 'Streaming into the console, fragment by fragment, until the stored message takes over.';
    let release!: () => void;
    // Two fragments, then the model waits for the test: what the page shows by then is a preview.
    t.fake.push({ kind: 'text', text, chunkDelayMs: 10, hold: { afterDeltas: 2, until: new Promise<void>((r) => (release = r)) } });
    await page.locator('#message').fill('stream it');
    await page.locator('#send').click();
    const preview = page.locator('.ev-agent.preview');
    await poll(() => preview.locator('pre').textContent()).toBe(text.slice(0, 2 * Math.min(24, Math.ceil(text.length / 3))));
    expect(await preview.getAttribute('data-position')).toBeNull();
    expect(await page.locator('.ev-agent:not(.preview)', { hasText: text }).count()).toBe(0);
    const previewId = await preview.getAttribute('data-preview-id');
    expect(previewId).toMatch(/^sevt_/);
    release();
    const stored = page.locator('.ev-agent:not(.preview)', { hasText: text });
    await stored.waitFor();
    expect(await preview.count()).toBe(0);
    expect(await stored.getAttribute('title')).toMatch(new RegExp(`^${previewId} · `)); // the stored message has the preview's id
    await poll(() => page.locator('#status').textContent()).toBe('idle');
  }, 60_000);

  it('interrupts a hanging turn from the page', async () => {
    t.fake.push({ kind: 'hang' });
    await page.locator('#message').fill('think forever');
    await page.locator('#send').click();
    await poll(() => page.locator('#status').textContent()).toBe('running');
    await poll(() => page.locator('.step').last().locator('.lat-model').textContent()).toContain('running…');
    await page.locator('#interrupt').click();
    await page.locator('[data-type="user.interrupt"]').waitFor();
    await poll(() => page.locator('#status').textContent()).toBe('idle');
    expect(await page.locator('.step').last().locator('.lat-model').textContent()).toContain('(failed)');
    expect(await page.locator('#interrupt').isDisabled()).toBe(true);
    await waitFor(async () => (await t.client.beta.sessions.retrieve(sessionId)).status === 'idle', 'idle');
  }, 60_000);

  it('shows errors, and leaves a screenshot of a whole session', async () => {
    // A tour for the README: a model error that is retried, a tool call, the answer, a message.
    const tour = await t.client.beta.sessions.create({
      agent: (await t.client.beta.sessions.retrieve(sessionId)).agent.id,
      environment_id: (await t.client.beta.sessions.retrieve(sessionId)).environment_id,
      title: 'Say hello from the sandbox',
    });
    t.fake.push({ kind: 'error', status: 529 });
    await t.client.beta.sessions.events.send(tour.id, {
      events: [{ type: 'user.message', content: [{ type: 'text', text: "Please run `echo 'hello from the sandbox' > hello.txt && ls -l && cat hello.txt`" }] }],
    });
    await page.goto(`${t.runtime.url}/console/sessions/${tour.id}`);
    await page.locator('[data-type="session.status_idle"]').waitFor();
    const error = page.locator('.ev-error');
    expect(await error.textContent()).toMatch(/overloaded_error: .*\(retrying\)/);
    expect(await page.locator('.tool .tool-result pre').textContent()).toContain('hello from the sandbox');
    await page.locator('#message').fill('Thanks!');
    await page.locator('#send').click();
    await poll(() => page.locator('[data-type="session.status_idle"]').count()).toBe(2);
    await page.locator('#message').fill('What else is in the workspace?');

    // The whole page in one viewport, so the message form sits at the bottom where it belongs.
    const height = Number(await page.evaluate('document.documentElement.scrollHeight'));
    await page.setViewportSize({ width: 1100, height: Math.min(height, 4000) });
    await page.evaluate('window.scrollTo(0, 0)');
    const out = process.env.UPDATE_SCREENSHOT ? join(REPO, 'docs', 'console.png') : join(mkdtempSync(join(tmpdir(), 'corral-shot-')), 'console.png');
    mkdirSync(dirname(out), { recursive: true });
    await page.screenshot({ path: out });
    const size = statSync(out).size;
    expect(size).toBeGreaterThan(10_000);
    expect(size).toBeLessThan(1_000_000);
  }, 60_000);

  it("shows an outcome: its task and rubric, each evaluation, the grader's verdicts", async () => {
    const graded = await t.client.beta.sessions.create({
      agent: (await t.client.beta.sessions.retrieve(sessionId)).agent.id,
      environment_id: (await t.client.beta.sessions.retrieve(sessionId)).environment_id,
      title: 'An outcome',
    });
    t.fake.push(
      { kind: 'text', text: 'A first draft.' },
      { kind: 'text', text: '{"result": "needs_revision", "explanation": "The draft lacks a title."}' },
      { kind: 'text', text: 'Title: Done. A second draft.' },
      { kind: 'text', text: '{"result": "satisfied", "explanation": "It has a title."}' },
    );
    await page.goto(`${t.runtime.url}/console/sessions/${graded.id}`);
    await t.client.beta.sessions.events.send(graded.id, {
      events: [{ type: 'user.define_outcome', description: 'Write a draft.', rubric: { type: 'text', content: 'It has a title.' } }],
    });
    await page.locator('[data-type="session.status_idle"]').waitFor();
    expect(await page.locator('.ev-outcome').textContent()).toContain('Write a draft.');
    expect(await page.locator('.ev-outcome').textContent()).toContain('It has a title.');
    expect(await page.locator('[data-type="span.outcome_evaluation_start"]').allTextContents()).toEqual([
      expect.stringContaining('grading the outcome · evaluation 1'),
      expect.stringContaining('grading the outcome · evaluation 2'),
    ]);
    const verdicts = page.locator('.ev-verdict');
    expect(await verdicts.allTextContents()).toEqual([
      expect.stringContaining('needs_revision: The draft lacks a title.'),
      expect.stringContaining('satisfied: It has a title.'),
    ]);
    expect(await verdicts.first().getAttribute('class')).toContain('ev-error');
    expect(await verdicts.last().getAttribute('class')).not.toContain('ev-error');
    // The session's outcome_evaluations under its header: the outcome as the record says it ended.
    const summary = page.locator('#outcomes .outcome[data-result="satisfied"]');
    await summary.waitFor();
    const outcomeId = (await t.client.beta.sessions.retrieve(graded.id)).outcome_evaluations[0].outcome_id;
    expect(await summary.getAttribute('data-outcome-id')).toBe(outcomeId);
    expect(await summary.textContent()).toMatch(/^satisfied 2 evaluations · .*Write a draft\.grader: It has a title\.$/);
    // Read again from the start (the log replays), it shows the same, once.
    await page.reload();
    await page.locator('#outcomes .outcome[data-result="satisfied"]').waitFor();
    expect(await page.locator('#outcomes .outcome').count()).toBe(1);
  }, 60_000);

  it('shows no outcomes on a session without any', async () => {
    await page.goto(`${t.runtime.url}/console/sessions/${sessionId}`);
    await page.locator('[data-type="session.status_idle"]').first().waitFor();
    expect(await page.locator('#outcomes').isHidden()).toBe(true);
    expect(await page.locator('#outcomes .outcome').count()).toBe(0);
  });

  it("shows a coordinator's threads: each one's start, its task, its answer, and its status", async () => {
    const { environment } = await createAgentAndEnvironment(t.client);
    const worker = await t.client.beta.agents.create({ name: 'worker', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
    const lead = await t.client.beta.agents.create({ name: 'lead', model: 'claude-sonnet-4-6', tools: [], multiagent: { type: 'coordinator', agents: [worker.id] } });
    const session = await t.client.beta.sessions.create({ agent: lead.id, environment_id: environment.id, title: 'Threads' });
    t.fake.setFallback(coordinatorModel('worker', ['echo console-a', 'echo console-b']));
    try {
      await page.goto(`${t.runtime.url}/console/sessions/${session.id}`);
      expect(await page.locator('#threads-line').isHidden()).toBe(true);
      await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'Split the work.' }] }] });
      await poll(() => page.locator('[data-type="agent.thread_message_received"]').count()).toBe(2);
      await poll(() => page.locator('#threads .chip').allTextContents()).toEqual(['worker · idle', 'worker · idle']);
      expect(await page.locator('[data-type="session.thread_created"]').allTextContents()).toEqual([
        expect.stringContaining('started · agent worker'),
        expect.stringContaining('started · agent worker'),
      ]);
      expect(await page.locator('[data-type="agent.thread_message_sent"]').allTextContents()).toEqual([
        expect.stringContaining('echo console-a'),
        expect.stringContaining('echo console-b'),
      ]);
      const answers = (await page.locator('[data-type="agent.thread_message_received"]').allTextContents()).join('\n');
      expect(answers).toContain('console-a');
      expect(answers).toContain('console-b');
    } finally {
      t.fake.setFallback(echoModel);
    }
  }, 90_000);

  // --- the manage views ----------------------------------------------------------------------

  /** Secrets typed into forms: never in the page afterwards, nor in anything the API answered. */
  const SECRETS = { env: 'sk-console-env-' + Math.random().toString(36).slice(2), bearer: 'sk-console-bearer-' + Math.random().toString(36).slice(2) };
  /** The bodies of the API's answers to the page (streams excluded: they never end). */
  const answers: Array<Promise<string>> = [];
  const made: { agent?: string; environment?: string; vault?: string; session?: string; file?: string } = {};
  const hashOf = async (prefix: string) => {
    await page.waitForURL(new RegExp(`#${prefix}/`));
    return decodeURIComponent(new URL(page.url()).hash.slice(prefix.length + 2));
  };

  it('creates an agent, showing the API\'s own 400 for a wrong field first', async () => {
    page.on('response', (r: Response) => {
      if (!new URL(r.url()).pathname.startsWith('/v1/') || (r.headers()['content-type'] ?? '').includes('event-stream')) return;
      answers.push(r.text().catch(() => ''));
    });
    await page.goto(`${t.runtime.url}/console#agents`);
    await page.locator('#agent-name').fill('console agent');
    await page.locator('#agent-system').fill('You are terse.');
    await page.locator('#agent-tools').fill('[{"type": "agent_toolset_20260401", "bogus": 1}]');
    await page.locator('#agent-create-submit').click();
    // the API's 400, as it said it
    await poll(() => page.locator('#agent-create-error').textContent()).toContain('bogus');
    await page.locator('#agent-tools').fill('[{"type": "agent_toolset_20260401"}]');
    await page.locator('#agent-create-submit').click();
    made.agent = await hashOf('agents');
    expect(await page.locator('#agent-version').textContent()).toBe('v1');
    const agent = await t.client.beta.agents.retrieve(made.agent);
    expect(agent).toMatchObject({ name: 'console agent', system: 'You are terse.', version: 1, tools: [{ type: 'agent_toolset_20260401' }] });
  }, 60_000);

  it('creates an environment with limited networking and packages', async () => {
    await page.goto(`${t.runtime.url}/console#environments`);
    await page.locator('#env-name').fill('console env');
    await page.locator('#env-networking').selectOption('limited');
    await page.locator('#env-hosts').fill('api.example.com\n*.pypi.org');
    await page.locator('#env-allow-package-managers').check();
    await page.locator('#env-create-submit').click();
    const row = page.locator('#environments tr', { hasText: 'console env' });
    await row.waitFor();
    made.environment = (await row.getAttribute('data-id'))!;
    expect(await row.textContent()).toContain('limited (api.example.com, *.pypi.org)');
    const env = await t.client.beta.environments.retrieve(made.environment);
    expect(env.config).toMatchObject({ type: 'cloud', networking: { type: 'limited', allowed_hosts: ['api.example.com', '*.pypi.org'], allow_package_managers: true } });
    // An edit adds packages (the session below does not use this environment's packages: none
    // install without a network).
    await page.goto(`${t.runtime.url}/console#environments`);
    const other = page.locator('#environments tr', { hasText: 'console env' });
    await other.locator('button.edit').click();
    await page.locator('#env-edit-name').fill('console env (pip)');
    await page.locator('#env-edit-pip').fill('requests==2.32.3');
    await page.locator('#env-edit-submit').click();
    await page.locator('#environments tr', { hasText: 'pip:requests==2.32.3' }).waitFor();
    expect((await t.client.beta.environments.retrieve(made.environment)).config).toMatchObject({ packages: { pip: ['requests==2.32.3'] } });
    // back to no packages, for the session
    await page.locator('#environments tr', { hasText: 'console env (pip)' }).locator('button.edit').click();
    await page.locator('#env-edit-pip').fill('');
    await page.locator('#env-edit-submit').click();
    await page.locator('#environments tr', { hasText: 'console env (pip)' }).locator('td', { hasText: '—' }).waitFor();
    expect(((await t.client.beta.environments.retrieve(made.environment)).config as { packages?: { pip?: string[] } }).packages?.pip ?? []).toEqual([]);
  }, 60_000);

  it('creates a vault and two credentials whose secrets the page keeps nowhere', async () => {
    await page.goto(`${t.runtime.url}/console#vaults`);
    await page.locator('#vault-name').fill('console vault');
    await page.locator('#vault-create-submit').click();
    made.vault = await hashOf('vaults');
    expect(await page.locator('#vault-title').textContent()).toBe('console vault');

    await page.locator('#cred-type').selectOption('environment_variable');
    await page.locator('#cred-name').fill('demo token');
    await page.locator('#cred-secret-name').fill('DEMO_TOKEN');
    await page.locator('#cred-secret-value').fill(SECRETS.env);
    await page.locator('#cred-hosts').fill('api.example.com');
    await page.locator('#cred-create-submit').click();
    await page.locator('#credentials tr', { hasText: 'demo token' }).waitFor();
    expect(await page.locator('#credentials tr', { hasText: 'demo token' }).textContent()).toContain('$DEMO_TOKEN → api.example.com');

    await page.locator('#cred-type').selectOption('static_bearer');
    await page.locator('#cred-name').fill('mcp bearer');
    await page.locator('#cred-url').fill('https://mcp.example.com/mcp');
    await page.locator('#cred-token').fill(SECRETS.bearer);
    await page.locator('#cred-create-submit').click();
    await page.locator('#credentials tr', { hasText: 'mcp bearer' }).waitFor();

    const creds = (await t.client.beta.vaults.credentials.list(made.vault)).data;
    expect(creds.map((c) => c.auth.type).sort()).toEqual(['environment_variable', 'static_bearer']);
    // Nothing in the page holds a secret: not the document, not an input's value.
    const inPage = String(await page.evaluate('document.documentElement.outerHTML + [...document.querySelectorAll("input, textarea")].map((i) => i.value).join("\\n")'));
    for (const secret of Object.values(SECRETS)) expect(inPage).not.toContain(secret);
  }, 60_000);

  it('starts a session with the agent, the environment, the vault and a file, and it runs to idle', async () => {
    const file = await t.client.beta.files.upload({ file: await toFile(Buffer.from('mounted by the console\n'), 'note.txt', { type: 'text/plain' }) });
    made.file = file.id;
    await page.goto(`${t.runtime.url}/console`);
    await page.locator('#new-session').click();
    await page.locator('#session-agent').selectOption(made.agent!);
    await page.locator('#session-environment').selectOption(made.environment!);
    await page.locator('#session-title').fill('started in the console');
    await page.locator(`#session-vault-${made.vault}`).check();
    await page.locator(`#session-file-${file.id}`).check();
    await page.locator('#session-message').fill(`Please run \`cat /mnt/session/uploads/${file.id}\``);
    // The form for docs/CONSOLE.md (with UPDATE_SCREENSHOT=1; a temporary file otherwise).
    const shot = process.env.UPDATE_SCREENSHOT ? join(REPO, 'docs', 'console-new-session.png') : join(mkdtempSync(join(tmpdir(), 'corral-shot-')), 'new-session.png');
    await page.locator('#session-create').screenshot({ path: shot });
    expect(statSync(shot).size).toBeGreaterThan(10_000);
    await page.locator('#session-create-submit').click();
    await page.waitForURL(/\/console\/sessions\/sesn_/);
    made.session = decodeURIComponent(new URL(page.url()).pathname.split('/').at(-1)!);
    // The echo model runs the backticked command in the sandbox, then reports its output.
    await poll(() => page.locator('#status').textContent()).toBe('idle');
    expect(await page.locator('.tool .tool-result pre').textContent()).toContain('mounted by the console');
    await page.locator('.ev-agent', { hasText: 'Tool output:' }).waitFor();
    const session = await t.client.beta.sessions.retrieve(made.session);
    expect(session).toMatchObject({ title: 'started in the console', environment_id: made.environment, vault_ids: [made.vault], agent: { id: made.agent, version: 1 } });
    expect((await t.client.beta.sessions.resources.list(made.session)).data).toMatchObject([{ type: 'file', file_id: file.id }]);
  }, 60_000);

  it('edits the agent: the edit is version 2, both versions are listed, and a stale edit is refused', async () => {
    await page.goto(`${t.runtime.url}/console#agents/${made.agent}`);
    await page.locator('#agent-system').fill('You are terse, and polite.');
    await page.locator('#agent-edit-submit').click();
    await poll(() => page.locator('#agent-version').textContent()).toBe('v2');
    expect(await page.locator('#versions tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-version')))).toEqual(['2', '1']);
    expect(await t.client.beta.agents.retrieve(made.agent!)).toMatchObject({ version: 2, system: 'You are terse, and polite.', name: 'console agent' });
    // An edit made elsewhere meanwhile (version 3): the page's edit of version 2 is refused, not applied over it.
    await t.client.beta.agents.update(made.agent!, { version: 2, system: 'Edited elsewhere.' });
    await page.locator('#agent-system').fill('A stale edit.');
    await page.locator('#agent-edit-submit').click();
    await poll(() => page.locator('#agent-edit-error').textContent()).toContain('is at version 3, not 2');
    expect(await t.client.beta.agents.retrieve(made.agent!)).toMatchObject({ version: 3, system: 'Edited elsewhere.' });
    await page.goto(`${t.runtime.url}/console#agents`);
    expect(await page.locator(`#agents tr[data-id="${made.agent}"] .version`).textContent()).toBe('v3');
  }, 60_000);

  it('archives a session, an agent, a credential and a vault', async () => {
    await page.goto(`${t.runtime.url}/console`);
    await page.locator(`#sessions tr[data-id="${made.session}"] button.archive`).click();
    await poll(() => page.locator(`#sessions tr[data-id="${made.session}"]`).count()).toBe(0);
    expect((await t.client.beta.sessions.retrieve(made.session!)).archived_at).toBeTruthy();

    await page.goto(`${t.runtime.url}/console#agents`);
    await page.locator(`#agents tr[data-id="${made.agent}"] button.archive`).click();
    await poll(() => page.locator(`#agents tr[data-id="${made.agent}"]`).count()).toBe(0);
    expect((await t.client.beta.agents.retrieve(made.agent!)).archived_at).toBeTruthy();

    await page.goto(`${t.runtime.url}/console#vaults/${made.vault}`);
    await page.locator('#credentials tr', { hasText: 'mcp bearer' }).locator('button.archive').click();
    await poll(() => page.locator('#credentials tr', { hasText: 'mcp bearer' }).count()).toBe(0);
    await page.goto(`${t.runtime.url}/console#vaults`);
    await page.locator(`#vaults tr[data-id="${made.vault}"] button.archive`).click();
    await poll(() => page.locator(`#vaults tr[data-id="${made.vault}"]`).count()).toBe(0);
    expect((await t.client.beta.vaults.retrieve(made.vault!)).archived_at).toBeTruthy();
  }, 60_000);

  it('received no secret in any answer of the API', async () => {
    const bodies = await Promise.all(answers);
    expect(bodies.length).toBeGreaterThan(10);
    expect(bodies.some((b) => b.includes('"environment_variable"'))).toBe(true); // the credentials were listed
    for (const secret of Object.values(SECRETS)) expect(bodies.filter((b) => b.includes(secret))).toEqual([]);
  });

  // --- OIDC sign-in ---------------------------------------------------------------------------

  it('signs in with an OIDC issuer that /corral/auth lists: code + PKCE, the token sent as a bearer', async () => {
    // The issuer: discovery, an authorization endpoint that approves at once, a token endpoint
    // that checks the PKCE verifier against the challenge it was shown.
    const JWT = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjb25zb2xlLXVzZXIifQ.c2lnbmF0dXJl';
    const seen: { authorize?: URLSearchParams; token?: URLSearchParams } = {};
    const issuer: Server = createServer((req, res) => {
      const url = new URL(req.url!, 'http://x');
      const cors = { 'access-control-allow-origin': '*', 'content-type': 'application/json' };
      const iss = `http://127.0.0.1:${(issuer.address() as AddressInfo).port}/realm`;
      if (url.pathname === '/realm/.well-known/openid-configuration') {
        res.writeHead(200, cors).end(JSON.stringify({ issuer: iss, authorization_endpoint: `${iss}/authorize`, token_endpoint: `${iss}/token` }));
      } else if (url.pathname === '/realm/authorize') {
        seen.authorize = url.searchParams;
        const back = new URL(url.searchParams.get('redirect_uri')!);
        back.searchParams.set('code', 'the-code');
        back.searchParams.set('state', url.searchParams.get('state')!);
        res.writeHead(302, { location: back.toString() }).end();
      } else if (url.pathname === '/realm/token' && req.method === 'POST') {
        let body = '';
        req.on('data', (c) => (body += c));
        req.on('end', () => {
          const p = (seen.token = new URLSearchParams(body));
          const challenge = createHash('sha256').update(p.get('code_verifier') ?? '').digest('base64url');
          const ok = p.get('code') === 'the-code' && challenge === seen.authorize?.get('code_challenge') && p.get('client_id') === 'console-public';
          res.writeHead(ok ? 200 : 400, cors).end(JSON.stringify(ok ? { access_token: JWT, token_type: 'Bearer', expires_in: 300 } : { error: 'invalid_grant' }));
        });
      } else res.writeHead(404, cors).end('{}');
    });
    await new Promise<void>((r) => issuer.listen(0, '127.0.0.1', r));
    const issuerUrl = `http://127.0.0.1:${(issuer.address() as AddressInfo).port}/realm`;
    // The console, with the shared contract's GET /corral/auth and a stand-in for the API that
    // accepts only that token.
    const authorizations: string[] = [];
    const api = new Hono();
    api.route('/', consoleRoutes({ oidcIssuers: () => [issuerUrl] }));
    api.get('/corral/auth', (c) => c.json({ api_key: true, oidc: [{ issuer: issuerUrl, client_id: 'console-public', scopes: ['openid', 'profile'] }] }));
    api.get('/v1/sessions', (c) => {
      authorizations.push(`${c.req.header('authorization')} | ${c.req.header('x-api-key') ?? ''}`);
      return c.req.header('authorization') === `Bearer ${JWT}` ? c.json({ data: [], next_page: null }) : c.json({ error: { message: 'no' } }, 401);
    });
    const server = createServer(getRequestListener(api.fetch));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const consoleUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/console`;
    const tab = await ctx.newPage();
    try {
      const csp = (await tab.goto(consoleUrl))!.headers()['content-security-policy'];
      expect(csp).toContain(`connect-src 'self' ${new URL(issuerUrl).origin};`);
      await tab.locator(`#sign-in button[data-issuer="${issuerUrl}"]`).click();
      await tab.locator('#sessions').waitFor();
      expect(tab.url()).toBe(consoleUrl); // the code and state are gone from the address
      expect(seen.authorize?.get('code_challenge_method')).toBe('S256');
      expect(seen.authorize?.get('scope')).toBe('openid profile');
      expect(seen.authorize?.get('redirect_uri')).toBe(consoleUrl);
      expect(seen.token?.get('grant_type')).toBe('authorization_code');
      expect(authorizations).toEqual([`Bearer ${JWT} | `]);
      expect(await tab.evaluate('[sessionStorage.getItem("corral.oidcToken"), sessionStorage.getItem("corral.apiKey"), localStorage.length]')).toEqual([JWT, null, 0]);
      await tab.locator('#forget').click();
      await tab.locator('#api-key').waitFor();
      expect(await tab.evaluate('sessionStorage.length')).toBe(0);
    } finally {
      await tab.close();
      server.close();
      issuer.close();
    }
  }, 60_000);

  it("lists deployments and a deployment's runs, each linked to its session; pauses and runs one now from the page", async () => {
    const { agent, environment } = await createAgentAndEnvironment(t.client);
    const d = await t.client.beta.deployments.create({
      name: 'console nightly',
      agent: agent.id,
      environment_id: environment.id,
      initial_events: [{ type: 'user.message', content: [{ type: 'text', text: 'report' }] }],
      schedule: { type: 'cron', expression: '0 3 * * *', timezone: 'UTC' },
    });
    const first = await t.client.beta.deployments.run(d.id);
    await page.goto(`${t.runtime.url}/console#deployments`);
    await poll(() => page.locator(`#deployments tr[data-id="${d.id}"] .status`).textContent()).toBe('active');
    await page.locator(`#deployments tr[data-id="${d.id}"] a`).click();
    await poll(() => page.locator(`#runs tr[data-id="${first.id}"] a`).getAttribute('href')).toContain(`/console/sessions/${first.session_id}`);
    await expect(page.locator('#deployment-schedule').textContent()).resolves.toContain('0 3 * * * (UTC)');
    await page.locator('button.pause').click();
    await poll(() => page.locator('#deployment-status').textContent()).toContain('paused');
    await page.locator('button.run').click();
    await poll(() => page.locator('#runs tr[data-id]').count()).toBe(2);
    const runs = (await t.client.beta.deploymentRuns.list({ deployment_id: d.id })).data;
    expect(runs).toHaveLength(2);
    expect((await t.client.beta.deployments.retrieve(d.id)).status).toBe('paused');
  });

  it('never put the key in a URL and threw no errors', () => {
    expect(urls.length).toBeGreaterThan(3);
    expect(urls.filter((u) => u.includes(t.runtime.apiKey))).toEqual([]);
    expect(pageErrors).toEqual([]);
  });
});
