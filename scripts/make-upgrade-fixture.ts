/**
 * Makes `test/fixtures/upgrade/*.jsonl`: the tables of a local instance stopped (SIGKILL) in the
 * middle of a session, as the code this runs on wrote them. `test/e2e/upgrade.test.ts` loads it
 * into a fresh data directory and starts the current code on it.
 *
 * The committed fixture was made on the release before derived records carried schema versions
 * (commit eea4789), so it holds records exactly as that code wrote them. Run it again only to add
 * a fixture of another release (`npx tsx scripts/make-upgrade-fixture.ts <name>`); never to
 * replace the old one, which is the point of the test.
 *
 * The moment it stops the instance: one tool call finished (its command wrote `ran-first`), a
 * second one running in the sandbox (it wrote `ran-second`, then sleeps), and a user message sent
 * while it runs, queued for the next model call. The harness holds the lease, its cursor is saved,
 * the sandbox record is busy. Beside it, a session at rest: one turn done (the harness saved its
 * cursor), then an interrupt sent (its signal counter raised).
 */
import Anthropic from '@anthropic-ai/sdk';
import { ScanCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDynalite } from '../lambdas/adapters/local/dynalite.js';
import { startFakeMessagesApi } from '../test/fixtures/fake-messages-api.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
/** The API key of the fixture's tenant (a test key; only its hash is in the fixture). */
export const FIXTURE_API_KEY = 'sk-corral-upgrade-fixture';

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(check: () => Promise<boolean>, what: string, ms = 30_000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function main() {
  const name = process.argv[2] ?? 'unversioned';
  const fake = await startFakeMessagesApi();
  const dataDir = mkdtempSync(join(tmpdir(), 'corral-fixture-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'local-runtime/main.ts')], {
    cwd: ROOT,
    env: { ...process.env, PORT: String(port), CORRAL_DATA_DIR: dataDir, CORRAL_API_KEY: FIXTURE_API_KEY, ANTHROPIC_API_KEY: 'test-model-key', ANTHROPIC_BASE_URL: fake.url },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  try {
    await waitFor(() => fetch(`${url}/health`).then((r) => r.ok, () => false), 'health');
    const client = new Anthropic({ baseURL: url, apiKey: FIXTURE_API_KEY, maxRetries: 2 });
    const agent = await client.beta.agents.create({ name: 'upgrade', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
    await client.beta.agents.update(agent.id, { version: agent.version, description: 'second version' });
    const env = await client.beta.environments.create({ name: 'upgrade-env' });
    // A session at rest: its turn ended (the harness saved its cursor), then an interrupt was sent.
    const idle = await client.beta.sessions.create({ agent: agent.id, environment_id: env.id, title: 'at rest' });
    await client.beta.sessions.events.send(idle.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'hello' }] }] });
    await waitFor(async () => (await client.beta.sessions.retrieve(idle.id)).status === 'idle' && (await client.beta.sessions.events.list(idle.id)).data.some((e) => e.type === 'agent.message'), 'the first session to rest');
    await client.beta.sessions.events.send(idle.id, { events: [{ type: 'user.interrupt' }] });
    await waitFor(async () => (await client.beta.sessions.retrieve(idle.id)).status === 'idle', 'the interrupt to settle');
    const session = await client.beta.sessions.create({ agent: agent.id, environment_id: env.id, title: 'mid-upgrade' });
    fake.push(
      { kind: 'tool_use', calls: [{ name: 'bash', input: { command: 'echo first >> ran-first; echo first done' } }] },
      { kind: 'tool_use', calls: [{ name: 'bash', input: { command: 'echo second >> ran-second; touch started; sleep 60' } }] },
    );
    await client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'start' }] }] });
    const marker = join(dataDir, 'sandboxes', session.id, 'default', 'workspace', 'started');
    await waitFor(async () => existsSync(marker), 'the second command to run');
    await client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'queued while the tool runs' }] }] });
    await new Promise((r) => setTimeout(r, 500));
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });

    const dynamo = await startDynalite({ path: join(dataDir, 'dynamodb') });
    const lines: string[] = [JSON.stringify({ fixture: name, session_id: session.id, idle_session_id: idle.id, agent_id: agent.id, environment_id: env.id })];
    for (const table of ['corral-events', 'corral-state']) {
      let start: Record<string, AttributeValue> | undefined;
      do {
        const page = await dynamo.client.send(new ScanCommand({ TableName: table, ExclusiveStartKey: start }));
        for (const item of page.Items ?? []) lines.push(JSON.stringify({ table, item }));
        start = page.LastEvaluatedKey;
      } while (start);
    }
    await dynamo.close();
    const out = join(ROOT, 'test', 'fixtures', 'upgrade');
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, `${name}.jsonl`), lines.join('\n') + '\n');
    console.log(`wrote ${lines.length - 1} items to test/fixtures/upgrade/${name}.jsonl`);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await fake.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
