import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SandboxClient, waitHealthy } from '../../lambdas/core/sandbox/client.js';
import { SandboxUnavailableError, type SandboxEndpoint } from '../../lambdas/core/sandbox/types.js';
import { tempDir } from './helpers.js';

/** A fake agent whose answer is chosen by the tool name, to exercise the client's error mapping. */
let dir: string;
let server: http.Server;
let endpoint: SandboxEndpoint;
let socketPath: string;
const seen: Array<{ auth?: string; body: unknown }> = [];

beforeAll(async () => {
  dir = tempDir('corral-client-');
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/health') {
        res.end('{"ok":true}');
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { tool: string };
      seen.push({ auth: req.headers.authorization, body });
      switch (body.tool) {
        case 'ok':
          res.end(JSON.stringify({ output: 'fine', is_error: false }));
          break;
        case 'html':
          res.writeHead(200).end('<html>');
          break;
        case 'boom':
          res.writeHead(502).end('{"error":"bad gateway"}');
          break;
        case 'shape':
          res.end('{"result":1}');
          break;
        case 'reject':
          res.writeHead(400).end('{"error":"unknown tool"}');
          break;
        case 'reset':
          req.socket.destroy();
          break;
        case 'hang':
          break; // never answers
      }
    });
  });
  socketPath = path.join(dir, 'fake.sock');
  await new Promise<void>((r) => server.listen(socketPath, r));
  endpoint = { kind: 'unix', socketPath, capability: 'cap-secret-value' };
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('SandboxClient', () => {
  it('sends the capability, idempotency key and input; maps the result', async () => {
    const c = new SandboxClient(endpoint);
    expect(await c.execute('ok', { a: 1 }, { idempotencyKey: 'toolu_9' })).toEqual({ output: 'fine', isError: false });
    expect(seen.at(-1)).toEqual({ auth: 'Bearer cap-secret-value', body: { tool: 'ok', input: { a: 1 }, idempotency_key: 'toolu_9' } });
    expect(await c.health()).toBe(true);
  });

  it('turns a refused request into a tool error', async () => {
    const out = await new SandboxClient(endpoint).execute('reject', {});
    expect(out).toEqual({ output: 'sandbox rejected the request: unknown tool', isError: true });
  });

  it.each([
    ['html', 'non-JSON response (HTTP 200)'],
    ['boom', 'HTTP 502'],
    ['shape', 'malformed response'],
    ['reset', 'connection reset (sandbox died?)'],
  ])('throws SandboxUnavailableError for %s, naming the socket and the reason, without leaking the capability', async (tool, reason) => {
    const err = await new SandboxClient(endpoint).execute(tool, {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SandboxUnavailableError);
    expect((err as Error).message).toBe(`sandbox at unix:${socketPath} is unavailable: ${reason}`);
    expect((err as Error).message).not.toContain('cap-secret-value');
  });

  it('throws SandboxUnavailableError on timeout, and the abort reason on abort', async () => {
    const c = new SandboxClient(endpoint);
    await expect(c.execute('hang', {}, { timeoutMs: 200 })).rejects.toThrow(/timed out/);
    const ac = new AbortController();
    const pending = c.execute('hang', {}, { signal: ac.signal, timeoutMs: 60_000 });
    ac.abort(new Error('stop now'));
    await expect(pending).rejects.toThrow('stop now');
  });

  it('waitHealthy gives up with SandboxUnavailableError', async () => {
    const missing: SandboxEndpoint = { kind: 'unix', socketPath: path.join(dir, 'none.sock'), capability: 'x' };
    await expect(waitHealthy(missing, { timeoutMs: 300, intervalMs: 50 })).rejects.toBeInstanceOf(SandboxUnavailableError);
    await waitHealthy(endpoint, { timeoutMs: 1000 });
  });
});

describe('what the model is told about an unreachable sandbox', () => {
  it('leaves out the sandbox address', async () => {
    const { withoutAddress } = await import('../../lambdas/core/sandbox/manager.js');
    expect(withoutAddress('sandbox at unix:/data/sandboxes/s/default/run/agent.sock is unavailable: connection refused')).toBe('connection refused');
    expect(withoutAddress('sandbox at http://10.0.3.17:8080 did not become healthy within 300000 ms')).toBe('the sandbox did not become healthy within 300000 ms');
    expect(withoutAddress('capacity: try later')).toBe('capacity: try later');
  });
});

describe('kept-alive connections to the agent', () => {
  /** The real agent's server, in this process, counting the connections it accepts. */
  async function realAgent(listen: 'tcp' | 'unix') {
    const { SandboxAgent, createAgentServer } = await import('../../sandbox/agent.js');
    const root = tempDir('corral-keepalive-');
    const agent = new SandboxAgent({ workspace: root, capability: 'k'.repeat(40), stateDir: null });
    const srv = createAgentServer(agent);
    let connections = 0;
    srv.on('connection', () => connections++);
    const sock = path.join(root, 'agent.sock');
    await new Promise<void>((r) => (listen === 'tcp' ? srv.listen(0, '127.0.0.1', r) : srv.listen(sock, r)));
    const port = (srv.address() as { port?: number }).port ?? 0;
    const ep: SandboxEndpoint =
      listen === 'tcp' ? { kind: 'tcp', host: '127.0.0.1', port, capability: 'k'.repeat(40) } : { kind: 'unix', socketPath: sock, capability: 'k'.repeat(40) };
    return {
      ep,
      connections: () => connections,
      async close() {
        agent.shutdown();
        srv.closeAllConnections();
        await new Promise((r) => srv.close(r));
        fs.rmSync(root, { recursive: true, force: true });
      },
    };
  }

  it.each(['tcp', 'unix'] as const)('reuses one connection for successive calls over %s', async (kind) => {
    const a = await realAgent(kind);
    try {
      const c = new SandboxClient(a.ep);
      for (let i = 0; i < 5; i++) expect(await c.execute('bash', { command: `echo ${i}` })).toEqual({ output: `${i}\n`, isError: false });
      expect(await new SandboxClient(a.ep).health()).toBe(true);
      expect(a.connections()).toBe(1);
    } finally {
      await a.close();
    }
  });

  it('announces how long it keeps an idle connection', async () => {
    const a = await realAgent('tcp');
    try {
      const ep = a.ep as { host: string; port: number };
      const res = await fetch(`http://${ep.host}:${ep.port}/health`);
      expect(res.headers.get('keep-alive')).toBe('timeout=65');
      expect(res.headers.get('connection')).toBe('keep-alive');
    } finally {
      await a.close();
    }
  });

  it('sends a request again on a new connection when a kept-alive one turns out dead', async () => {
    // A server that drops a reused connection when the next request arrives on it, as an agent
    // that closed it (or a connection that died while a Lambda was frozen) does.
    let connections = 0;
    let requests = 0;
    const srv = http.createServer((req, res) => {
      requests++;
      const socket = req.socket as typeof req.socket & { served?: number };
      socket.served = (socket.served ?? 0) + 1;
      if (socket.served > 1) {
        socket.destroy();
        return;
      }
      req.resume();
      req.on('end', () => res.end(JSON.stringify({ output: `answer ${requests}`, is_error: false })));
    });
    srv.on('connection', () => connections++);
    const sock = path.join(dir, 'stale.sock');
    await new Promise<void>((r) => srv.listen(sock, r));
    try {
      const c = new SandboxClient({ kind: 'unix', socketPath: sock, capability: 'x' });
      expect(await c.execute('bash', { command: 'a' }, { idempotencyKey: 'toolu_a' })).toEqual({ output: 'answer 1', isError: false });
      expect(await c.execute('bash', { command: 'b' }, { idempotencyKey: 'toolu_b' })).toEqual({ output: 'answer 3', isError: false });
      expect({ connections, requests }).toEqual({ connections: 2, requests: 3 });
    } finally {
      srv.closeAllConnections();
      await new Promise((r) => srv.close(r));
    }
  });
});
