import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgentAndEnvironment, listAll, startTestRuntime, waitFor, type TestRuntime } from '../helpers/runtime.js';

/**
 * The session console, end to end in a real browser: Debian's Chromium driven by playwright-core,
 * against the local runtime with the scripted model. `.ci/run` installs Chromium; without it this
 * suite fails (it never skips).
 *
 * The screenshot goes to a temporary file; with UPDATE_SCREENSHOT=1 it replaces docs/console.png.
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

  it('never put the key in a URL and threw no errors', () => {
    expect(urls.length).toBeGreaterThan(3);
    expect(urls.filter((u) => u.includes(t.runtime.apiKey))).toEqual([]);
    expect(pageErrors).toEqual([]);
  });
});
