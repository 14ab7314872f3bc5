/**
 * Memory per open event stream in one stream tier process (lambdas/stream-tier/server.ts), the
 * figure behind `streamConnectionsPerTask` in scripts/capacity/sources.ts.
 *
 *   npx tsx bench/stream-tier-memory.ts [streams, default 2000]
 *
 * Starts the tier on dynalite in a child process (20 sessions, the log poll at 10 minutes so idle
 * streams do nothing), opens 200 streams to warm it, then `streams` more, 20 at a time (dynalite
 * resets connections under a few hundred concurrent requests), and prints the child's resident
 * memory before and after, per stream. Loopback only; the child is killed at the end.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { fileURLToPath } from 'node:url';

async function serve() {
  const { startDynalite } = await import('../lambdas/adapters/local/dynalite.js');
  const { ensureTables } = await import('../lambdas/adapters/aws/tables.js');
  const { createAwsServices } = await import('../lambdas/adapters/aws/services.js');
  const { generateApiKey } = await import('../lambdas/core/resources/tenants.js');
  const { FanoutNotifier } = await import('../lambdas/core/session/notifier.js');
  const { NO_SANDBOXES, startStreamTier } = await import('../lambdas/stream-tier/server.js');
  const dyn = await startDynalite();
  await ensureTables(dyn.client, { events: 'events', state: 'state' });
  const env = { CORRAL_EVENTS_TABLE: 'events', CORRAL_STATE_TABLE: 'state', CORRAL_WAKE_QUEUE_URL: 'http://127.0.0.1:9/0/w.fifo', CORRAL_RATE_LIMITS: 'read=0' };
  const { services } = await createAwsServices({ env, clients: { dynamodb: dyn.client }, sandboxProvider: NO_SANDBOXES });
  const key = generateApiKey();
  await services.tenants.addKey('bench', key);
  const agent = await services.agents.create('bench', { name: 'a', model: 'claude-sonnet-4-6' });
  const environment = await services.environments.create('bench', { name: 'e', config: { type: 'cloud' } });
  const ids: string[] = [];
  for (let i = 0; i < 20; i++) ids.push((await services.sessions.create('bench', { agent: agent.id, environment_id: environment.id })).id);
  const tier = await startStreamTier({ services, notifier: new FanoutNotifier(), port: 0, stream: { pollMs: 600_000 } });
  console.log(JSON.stringify({ url: tier.url, key, ids, pid: process.pid }));
}

async function measure(n: number) {
  const child = spawn('npx', ['tsx', fileURLToPath(import.meta.url), '--serve'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let buf = '';
  const info = await new Promise<{ url: string; key: string; ids: string[]; pid: number }>((resolve) =>
    child.stdout!.on('data', (d) => {
      buf += d;
      const line = buf.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve(JSON.parse(line));
    }),
  );
  const rssKiB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${info.pid}/status`, 'utf8'))![1]);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  let opened = 0;
  const open = (k: number) =>
    Promise.all(
      Array.from({ length: k }, () => {
        const id = info.ids[opened++ % info.ids.length];
        return new Promise<void>((resolve, reject) => {
          http
            .get(`${info.url}/v1/sessions/${id}/events/stream`, { agent, headers: { 'x-api-key': info.key } }, (res) => {
              if (res.statusCode !== 200) reject(new Error(`HTTP ${res.statusCode}`));
              res.on('data', () => undefined);
              resolve();
            })
            .on('error', reject);
        });
      }),
    );
  try {
    for (let i = 0; i < 10; i++) await open(20);
    await sleep(3000);
    const before = rssKiB();
    for (let done = 0; done < n; done += 20) await open(Math.min(20, n - done));
    await sleep(5000);
    const after = rssKiB();
    const streams = ((await (await fetch(`${info.url}/health`)).json()) as { streams: number }).streams;
    console.log(JSON.stringify({ streams: n, openInProcess: streams, rssBeforeKiB: before, rssAfterKiB: after, perStreamKiB: Math.round(((after - before) / n) * 10) / 10 }));
  } finally {
    try {
      process.kill(info.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    child.kill('SIGKILL');
    agent.destroy();
  }
}

if (process.argv.includes('--serve')) await serve();
else await measure(Number(process.argv[2] ?? 2000));
