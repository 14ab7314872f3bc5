import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runScenarios, SCENARIOS, type ScenarioResult } from '../../infra/rehearsal/scenarios.js';
import { formatTable, parseArgs } from '../../scripts/smoke.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

/**
 * The smoke scenarios against the local runtime with the scripted model, behind a loopback proxy
 * that answers as API Gateway does in front of a buffered Lambda: 502 for a response body over
 * its limit (6 MB; lower to show a scenario fails when a list does not fit). Event streams pass
 * through unbuffered, as they do through the streaming integration.
 */
async function startGateway(upstream: string, maxBufferedBytes: number) {
  const sockets = new Set<Socket>();
  const readBody = async (req: IncomingMessage) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  };
  const dropped = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'keep-alive', 'accept-encoding']);
  const server: Server = createServer(async (req, res) => {
    try {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (!dropped.has(k) && typeof v === 'string') headers[k] = v;
      const body = req.method === 'GET' || req.method === 'HEAD' ? undefined : await readBody(req);
      const abort = new AbortController();
      res.on('close', () => abort.abort());
      const up = await fetch(`${upstream}${req.url}`, { method: req.method, headers, body, signal: abort.signal });
      const out: Record<string, string> = {};
      up.headers.forEach((v, k) => {
        if (!['content-length', 'content-encoding', 'transfer-encoding', 'connection'].includes(k)) out[k] = v;
      });
      if ((up.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
        res.writeHead(up.status, out).flushHeaders();
        for await (const chunk of up.body as unknown as AsyncIterable<Uint8Array>) res.write(chunk);
        res.end();
        return;
      }
      const buffered = Buffer.from(await up.arrayBuffer());
      if (buffered.length > maxBufferedBytes) {
        res.writeHead(502, { 'content-type': 'application/json' }).end(JSON.stringify({ message: 'Internal server error' }));
        return;
      }
      res.writeHead(up.status, out).end(buffered);
    } catch {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    }
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

describe('smoke scenarios (official SDK -> gateway-like proxy -> local runtime -> scripted model)', () => {
  let t: TestRuntime;
  beforeAll(async () => {
    t = await startTestRuntime();
  });
  afterAll(() => t?.close());

  it('passes every scenario behind a 6 MB buffered limit, and reports time to first token', async () => {
    const gateway = await startGateway(t.runtime.url, 6 * 1024 * 1024);
    try {
      const seen: string[] = [];
      const results = await runScenarios({ baseURL: gateway.url, apiKey: t.runtime.apiKey, onResult: (r) => seen.push(r.name) });
      const failed = results.filter((r) => !r.ok);
      expect(failed, formatTable(results)).toEqual([]);
      expect(results.map((r) => r.name)).toEqual(SCENARIOS.map((s) => s.name));
      expect(seen).toEqual(SCENARIOS.map((s) => s.name));
      const ttft = results.flatMap((r) => r.timeToFirstTokenMs ?? []);
      expect(ttft.length).toBeGreaterThanOrEqual(4);
      // Each scenario cleaned up: its sessions are gone.
      for (const r of results) {
        for (const id of r.sessionIds) await expect(t.client.beta.sessions.retrieve(id)).rejects.toMatchObject({ status: 404 });
      }
      expect(formatTable(results)).toMatch(/time to first token: p50 \d+ ms, p95 \d+ ms/);
    } finally {
      await gateway.close();
    }
  }, 300_000);

  it('fails the large list scenario when a page does not fit the gateway, and says why', async () => {
    // Room for the 2 MB messages the scenario sends (a send answers with them) but not for the
    // pages of up to 5 MB it then lists: as a gateway in front of a list without a byte bound.
    const gateway = await startGateway(t.runtime.url, 3 * 1024 * 1024);
    try {
      const results = await runScenarios({
        baseURL: gateway.url,
        apiKey: t.runtime.apiKey,
        only: ['large-event-list', 'tool-round-trip'],
        clientOptions: { maxRetries: 0 },
      });
      const byName = Object.fromEntries(results.map((r) => [r.name, r]));
      expect(byName['tool-round-trip'].ok).toBe(true);
      expect(byName['large-event-list']).toMatchObject({ ok: false, detail: expect.stringMatching(/^listing events, page \d+: 502 /) });
    } finally {
      await gateway.close();
    }
  }, 300_000);

  it('fails a scenario that runs out of time, and lets a hook add scenarios and fail one', async () => {
    const results: ScenarioResult[] = await runScenarios({
      baseURL: t.runtime.url,
      apiKey: t.runtime.apiKey,
      only: ['tool-round-trip', 'never-ends', 'checked'],
      hooks: {
        scenarios: [
          { name: 'never-ends', proves: 'a timeout fails a scenario', timeoutMs: 300, run: () => new Promise(() => undefined) },
          { name: 'checked', proves: 'a hook can fail a scenario', timeoutMs: 10_000, run: async () => 'fine' },
        ],
        afterEach: async (r) => (r.name === 'checked' ? 'the task is still running' : undefined),
      },
    });
    expect(results.map((r) => [r.name, r.ok])).toEqual([
      ['tool-round-trip', true],
      ['never-ends', false],
      ['checked', false],
    ]);
    expect(results[1].detail).toMatch(/timed out/);
    expect(results[2].detail).toBe('fine; the task is still running');
  }, 300_000);

  it('runs as npm run smoke: a table and exit 0 on success, exit 1 on failure, exit 2 on bad arguments', async () => {
    const run = (args: string[]) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/smoke.ts', ...args], { env: { ...process.env, CORRAL_API_KEY: '' } });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d) => (stdout += d));
        child.stderr.on('data', (d) => (stderr += d));
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      });
    const ok = await run(['--url', t.runtime.url, '--key', t.runtime.apiKey, '--only', 'tool-round-trip']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/scenario\s+result\s+seconds\s+detail/);
    expect(ok.stdout).toMatch(/tool-round-trip\s+pass\s+\d+\.\d\s+bash printed corral-smoke-/);
    expect(ok.stdout).toMatch(/time to first token: p50 \d+ ms/);

    const bad = await run(['--url', t.runtime.url, '--key', 'not-a-key', '--only', 'tool-round-trip', '--json']);
    expect(bad.code).toBe(1);
    const report = JSON.parse(bad.stdout) as { ok: boolean; results: ScenarioResult[] };
    expect(report.ok).toBe(false);
    expect(report.results[0]).toMatchObject({ name: 'tool-round-trip', ok: false, detail: expect.stringContaining('401') });

    const usage = await run(['--url', t.runtime.url]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('--key is required');
  }, 120_000);

  it('checks its arguments', () => {
    expect(() => parseArgs([], {})).toThrow('--url is required');
    expect(() => parseArgs(['--url', 'ftp://x', '--key', 'k'], {})).toThrow('must be http(s)');
    expect(() => parseArgs(['--url', 'http://x', '--key', 'k', '--only', 'nope'], {})).toThrow('unknown scenario nope');
    expect(() => parseArgs(['--url', 'http://x', '--key', 'k', '--timeout-scale', '0'], {})).toThrow('positive number');
    expect(() => parseArgs(['--url', 'http://x', '--bogus'], {})).toThrow('unknown argument --bogus');
    expect(() => parseArgs(['--url'], {})).toThrow('--url needs a value');
    expect(parseArgs(['--url=http://x/', '--only', 'interrupt,stream-resume', '--json'], { CORRAL_API_KEY: 'k' })).toEqual({
      url: 'http://x',
      key: 'k',
      only: ['interrupt', 'stream-resume'],
      model: undefined,
      timeoutScale: undefined,
      json: true,
    });
  });
});
