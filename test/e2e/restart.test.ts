import Anthropic from '@anthropic-ai/sdk';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeMessagesApi, type FakeMessagesApi } from '../fixtures/fake-messages-api.js';
import { listAll, waitFor } from '../helpers/runtime.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const API_KEY = 'sk-corral-restart-test';

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** `npm start`'s program as its own process, so it can be killed with SIGKILL. */
function startServer(port: number, dataDir: string, modelUrl: string): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'local-runtime/main.ts')], {
    cwd: ROOT,
    env: {
      ...process.env,
      PORT: String(port),
      CORRAL_DATA_DIR: dataDir,
      CORRAL_API_KEY: API_KEY,
      ANTHROPIC_API_KEY: 'test-model-key',
      ANTHROPIC_BASE_URL: modelUrl,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
}

async function healthy(url: string) {
  await waitFor(() => fetch(`${url}/health`).then((r) => r.ok, () => false), 'server health', 30_000);
}

function kill9(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

/** The invariants of a finished session's log. */
function assertConsistent(events: Array<{ id: string; type: string; [k: string]: unknown }>) {
  expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
  const uses = events.filter((e) => e.type === 'agent.tool_use').map((e) => e.id);
  const results = events.filter((e) => e.type === 'agent.tool_result').map((e) => e.tool_use_id);
  expect(results.sort()).toEqual([...uses].sort());
  // every tool result comes after its tool use
  for (const r of events.filter((e) => e.type === 'agent.tool_result')) {
    expect(events.findIndex((e) => e.id === r.tool_use_id)).toBeLessThan(events.indexOf(r));
  }
  const starts = events.filter((e) => e.type === 'span.model_request_start').map((e) => e.id);
  const ends = events.filter((e) => e.type === 'span.model_request_end').map((e) => e.model_request_start_id);
  expect(ends.sort()).toEqual([...starts].sort());
  expect(events.at(-1)).toMatchObject({ type: 'session.status_idle', stop_reason: { type: 'end_turn' } });
}

describe('SIGKILL in the middle of a session', () => {
  let fake: FakeMessagesApi;
  let dataDir: string;
  let port: number;
  let url: string;
  let child: ChildProcess | null = null;
  let client: Anthropic;

  beforeAll(async () => {
    fake = await startFakeMessagesApi();
    dataDir = mkdtempSync(join(tmpdir(), 'corral-restart-'));
    port = await freePort();
    url = `http://127.0.0.1:${port}`;
    client = new Anthropic({ baseURL: url, apiKey: API_KEY, maxRetries: 2 });
  });
  afterAll(async () => {
    if (child && child.exitCode === null) await kill9(child);
    await fake.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('completes after a restart, with no lost, duplicated or reordered events', async () => {
    child = startServer(port, dataDir, fake.url);
    await healthy(url);
    const agent = await client.beta.agents.create({ name: 'a', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
    const env = await client.beta.environments.create({ name: 'e' });

    // Killed while the model is answering.
    const s1 = await client.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    fake.push({ kind: 'text', text: 'slow answer', delayMs: 5_000 });
    const requestsBefore = fake.requests.length;
    await client.beta.sessions.events.send(s1.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'hi' }] }] });
    await waitFor(async () => (await listAll(client, s1.id)).some((e) => e.type === 'span.model_request_start'), 'model request');
    // The model has the request (it passes through the credential proxy process on its way).
    await waitFor(async () => fake.requests.length > requestsBefore, 'the model to receive the request');
    const before1 = await listAll(client, s1.id);
    await kill9(child);

    // Killed while a tool is running, in a second server life.
    child = startServer(port, dataDir, fake.url);
    await healthy(url);
    await waitFor(async () => (await client.beta.sessions.retrieve(s1.id)).status === 'idle', 'session 1 idle after restart');
    const s2 = await client.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    fake.push({ kind: 'tool_use', calls: [{ name: 'bash', input: { command: 'touch started; sleep 5; echo slept' } }] });
    await client.beta.sessions.events.send(s2.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'go' }] }] });
    // wait until the command is running in the sandbox
    const marker = join(dataDir, 'sandboxes', s2.id, 'default', 'workspace', 'started');
    await waitFor(async () => existsSync(marker), 'the command to start', 30_000);
    const before2 = await listAll(client, s2.id);
    await kill9(child);

    child = startServer(port, dataDir, fake.url);
    await healthy(url);
    await waitFor(async () => (await client.beta.sessions.retrieve(s2.id)).status === 'idle', 'session 2 idle after restart', 30_000);

    const after1 = await listAll(client, s1.id);
    expect(after1.slice(0, before1.length)).toEqual(before1); // nothing before the kill changed
    assertConsistent(after1);
    expect(after1.find((e) => e.type === 'agent.message')).toMatchObject({ content: [{ text: 'You said: hi' }] });
    // the request the dead process started is closed as failed, then asked again
    const ends1 = after1.filter((e) => e.type === 'span.model_request_end');
    expect(ends1.map((e) => e.is_error)).toEqual([true, false]);

    const after2 = await listAll(client, s2.id);
    expect(after2.slice(0, before2.length)).toEqual(before2);
    assertConsistent(after2);
    const result = after2.find((e) => e.type === 'agent.tool_result')!;
    // the sandbox died with the server: the model is told, never left waiting
    expect(result.is_error).toBe(true);
    expect(JSON.stringify(result.content)).toMatch(/sandbox/);

    // positions are contiguous and the stream from position 0 replays the same log
    const log = await fetch(`${url}/v1/sessions/${s2.id}/events/stream`, { headers: { 'x-api-key': API_KEY, 'last-event-id': '0' } });
    const reader = log.body!.getReader();
    let text = '';
    while ((text.match(/^id: /gm) ?? []).length < after2.length) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    await reader.cancel();
    const ids = [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
    expect(ids).toEqual(after2.map((_, i) => i + 1));
  }, 120_000);
});
