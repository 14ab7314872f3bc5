import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LocalEgressProxy } from '../../lambdas/adapters/local/egress-proxy.js';
import { ProcessSandboxProvider, bwrapAvailable } from '../../lambdas/adapters/local/process-sandbox.js';
import { SandboxClient } from '../../lambdas/core/sandbox/client.js';
import { planEgress, type EgressPolicy } from '../../lambdas/core/sandbox/egress.js';
import type { SandboxRecipe } from '../../lambdas/core/sandbox/types.js';
import { tempDir } from './helpers.js';

/**
 * The local egress proxy with real processes on loopback: bubblewrapped sandboxes (no network of
 * their own) whose tools reach servers only through the proxy, under the environment's networking.
 * The internet is not reachable here, so "allowed" hosts are loopback servers reached by the
 * proxy's test-only private-address exception and resolver; the proxy without them is the one
 * production runs.
 */
const HAS_BWRAP = await bwrapAvailable();
if (!HAS_BWRAP && process.env.CI) throw new Error('bubblewrap (bwrap) is required for the egress tests in CI');

interface Hit {
  host: string | undefined;
  url: string | undefined;
}

let root: string;
let origin: http.Server;
let originPort: number;
const hits: Hit[] = [];
const warnings: Array<{ message: string; extra?: Record<string, unknown> }> = [];
const providers: ProcessSandboxProvider[] = [];
const proxies: LocalEgressProxy[] = [];

/** Names the test resolver knows: stand-ins for real hosts, all on loopback. */
const NAMES: Record<string, string[]> = {
  'allowed.test': ['127.0.0.1'],
  'denied.test': ['127.0.0.1'],
  'registry.npmjs.org': ['127.0.0.1'],
  'mcp.example.test': ['127.0.0.1'],
  'metadata.test': ['169.254.169.254'],
};
const testResolve = async (host: string) => {
  const a = NAMES[host];
  if (!a) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
  return a;
};
const logger = { warn: (message: string, extra?: Record<string, unknown>) => void warnings.push({ message, extra }) };

function proxy(opts: ConstructorParameters<typeof LocalEgressProxy>[0] = {}) {
  const p = new LocalEgressProxy({ logger, resolve: testResolve, allowPrivateAddresses: ['127.0.0.1'], ...opts });
  proxies.push(p);
  return p;
}

async function sandbox(networking: EgressPolicy, egress: LocalEgressProxy = proxy()) {
  const p = new ProcessSandboxProvider({ dataDir: path.join(root, `p${providers.length}`), isolation: 'bwrap', logger: { warn: () => {} }, egress });
  providers.push(p);
  const recipe: SandboxRecipe = { environmentId: 'env_egress', packages: {}, repositories: [], networking };
  const sb = await p.provision({ sessionId: `sesn_egress${providers.length}`, name: 'default', recipe });
  const client = new SandboxClient(sb.endpoint);
  return { bash: async (command: string) => (await client.execute('bash', { command })).output };
}

const limited = (allowed_hosts: string[], extra: Record<string, unknown> = {}, mcp: Array<{ url: string }> = []) =>
  planEgress({ type: 'cloud', networking: { type: 'limited', allowed_hosts, ...extra } }, mcp);
/** curl through the proxy the sandbox's environment names; prints the status, and the body on a denial. */
const curl = (url: string, flags = '') => `curl -sS -m 10 ${flags} -o out.txt -w '%{http_code}\\n' ${url}; cat out.txt; rm -f out.txt`;

beforeAll(async () => {
  root = tempDir('corral-egress-');
  origin = http.createServer((req, res) => {
    hits.push({ host: req.headers.host, url: req.url });
    res.end(`hello from ${req.headers.host}\n`);
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  originPort = (origin.address() as net.AddressInfo).port;
});

afterEach(async () => {
  await Promise.all(providers.splice(0).map((p) => p.close()));
  await Promise.all(proxies.splice(0).map((p) => p.close()));
  hits.length = 0;
  warnings.length = 0;
});

afterAll(async () => {
  await new Promise((r) => origin.close(r));
  fs.rmSync(root, { recursive: true, force: true });
});

describe.skipIf(!HAS_BWRAP)('egress from a local sandbox', { timeout: 60_000 }, () => {
  it('sets the proxy variables for the tools, and a direct connection (bypassing the proxy) fails: the sandbox has no network', async () => {
    const sb = await sandbox(limited([`allowed.test:${originPort}`]));
    const env = await sb.bash('env | grep -i _proxy= | sort');
    expect(env).toMatch(/^HTTPS_PROXY=http:\/\/127\.0\.0\.1:\d+$/m);
    expect(env).toMatch(/^http_proxy=http:\/\/127\.0\.0\.1:\d+$/m);
    expect(env).toMatch(/^NO_PROXY=localhost,127\.0\.0\.1,::1$/m);
    const direct = await sb.bash(`curl -sS -m 5 --noproxy '*' http://127.0.0.1:${originPort}/direct 2>&1; echo; (echo > /dev/tcp/127.0.0.1/${originPort}) 2>&1 && echo CONNECTED || echo REFUSED`);
    expect(direct).toContain('REFUSED');
    expect(direct).not.toContain('hello from');
    expect(hits).toEqual([]);
  });

  it('reaches an allowed host over plain HTTP and through a CONNECT tunnel', async () => {
    const sb = await sandbox(limited([`allowed.test:${originPort}`]));
    const plain = await sb.bash(curl(`http://allowed.test:${originPort}/plain`));
    expect(plain).toBe(`200\nhello from allowed.test:${originPort}\n`);
    // -p: curl tunnels with CONNECT even for http, as it does for every https request.
    const tunnelled = await sb.bash(`curl -sS -m 10 -p http://allowed.test:${originPort}/tunnel`);
    expect(tunnelled).toBe(`hello from allowed.test:${originPort}\n`);
    expect(hits.map((h) => h.url)).toEqual(['/plain', '/tunnel']);
  });

  it('answers a denied host with a 403 naming the host and the policy, and logs it for the operator without the path', async () => {
    const sb = await sandbox(limited([`allowed.test:${originPort}`]));
    const plain = await sb.bash(curl(`http://denied.test:${originPort}/secret-path?token=abc`));
    expect(plain).toContain('403');
    expect(plain).toContain(`denied.test:${originPort} is not allowed by this environment's networking policy (limited; allowed_hosts: allowed.test:${originPort}`);
    const tunnel = await sb.bash(`curl -sS -v -m 10 -p http://denied.test:${originPort}/x 2>&1 | grep '< HTTP' || true`);
    expect(tunnel).toContain(`403 Corral egress: denied.test:${originPort} is not allowed`);
    expect(hits).toEqual([]);
    const denied = warnings.filter((w) => w.message === 'egress denied');
    expect(denied).toHaveLength(2);
    expect(denied[0]!.extra).toMatchObject({ sessionId: expect.stringMatching(/^sesn_egress/), sandbox: 'default', host: 'denied.test', port: originPort, status: 403, reason: 'policy' });
    expect(JSON.stringify(warnings)).not.toContain('secret-path');
    expect(JSON.stringify(warnings)).not.toContain('token=abc');
  });

  it('allow_package_managers opens a registry (a stand-in name on loopback), and only with it', async () => {
    const on = await sandbox(limited([], { allow_package_managers: true }));
    expect(await on.bash(curl(`http://registry.npmjs.org:${originPort}/left-pad`))).toBe(`200\nhello from registry.npmjs.org:${originPort}\n`);
    expect(await on.bash(curl(`http://allowed.test:${originPort}/`))).toContain('403');
    const off = await sandbox(limited([]));
    expect(await off.bash(curl(`http://registry.npmjs.org:${originPort}/left-pad`))).toContain('403');
    expect(hits.map((h) => h.url)).toEqual(['/left-pad']);
  });

  it("allow_mcp_servers opens the agent's MCP servers at their port", async () => {
    const sb = await sandbox(limited([], { allow_mcp_servers: true }, [{ url: `http://mcp.example.test:${originPort}/mcp` }]));
    expect(await sb.bash(curl(`http://mcp.example.test:${originPort}/mcp`))).toBe(`200\nhello from mcp.example.test:${originPort}\n`);
    expect(await sb.bash(curl(`http://allowed.test:${originPort}/`))).toContain('403');
  });

  it('refuses private addresses even when unrestricted: loopback by address, and a name that resolves to link-local', async () => {
    // The proxy production runs: no private-address exception.
    const sb = await sandbox({ type: 'unrestricted' }, proxy({ allowPrivateAddresses: [] }));
    // (NO_PROXY sends 127.0.0.1 straight to the sandbox's own loopback: made to go through the proxy.)
    const byAddress = await sb.bash(curl(`http://127.0.0.1:${originPort}/internal`, "--noproxy ''"));
    expect(byAddress).toContain('403');
    expect(byAddress).toContain('private, loopback or link-local');
    // A name allowed by the policy that resolves to loopback: the address connected to is what counts.
    const byName = await sb.bash(curl(`http://allowed.test:${originPort}/internal`));
    expect(byName).toContain('403');
    expect(byName).toContain('127.0.0.1');
    expect(await sb.bash(curl('http://metadata.test/latest/meta-data/'))).toContain('169.254.169.254');
    expect(hits).toEqual([]);
    expect(warnings.filter((w) => w.extra?.reason === 'private_address')).toHaveLength(3);
  });

  it('unrestricted reaches any host whose address is allowed', async () => {
    const sb = await sandbox({ type: 'unrestricted' });
    expect(await sb.bash(curl(`http://denied.test:${originPort}/`))).toBe(`200\nhello from denied.test:${originPort}\n`);
  });
});

describe('the egress proxy itself', () => {
  /** A raw client on a channel's socket, as the sandbox's forwarder passes bytes on. */
  async function raw(socketPath: string, request: string): Promise<{ socket: net.Socket; head: Promise<string> }> {
    const socket = net.connect(socketPath);
    await new Promise<void>((r) => socket.once('connect', () => r()));
    socket.write(request);
    const head = new Promise<string>((resolve) => {
      let text = '';
      socket.on('data', (d) => {
        text += d.toString('latin1');
        if (text.includes('\r\n\r\n')) resolve(text);
      });
      socket.on('close', () => resolve(text));
    });
    return { socket, head };
  }

  it('bounds the connections of one sandbox: one past the limit gets a 503, another sandbox is unaffected', async () => {
    const p = proxy({ maxConnectionsPerSandbox: 2 });
    const a = await p.open({ sessionId: 'sesn_a', sandbox: 'default' }, limited([`allowed.test:${originPort}`]));
    const b = await p.open({ sessionId: 'sesn_b', sandbox: 'default' }, limited([`allowed.test:${originPort}`]));
    const connect = `CONNECT allowed.test:${originPort} HTTP/1.1\r\nhost: allowed.test:${originPort}\r\n\r\n`;
    const open = [await raw(a.socketPath, connect), await raw(a.socketPath, connect)];
    for (const c of open) expect(await c.head).toMatch(/^HTTP\/1\.1 200/);
    const third = await raw(a.socketPath, connect);
    expect(await third.head).toMatch(/^HTTP\/1\.1 503/);
    const other = await raw(b.socketPath, connect);
    expect(await other.head).toMatch(/^HTTP\/1\.1 200/);
    for (const c of [...open, third, other]) c.socket.destroy();
  });

  it('closes a tunnel that stays idle', async () => {
    const p = proxy({ idleTimeoutMs: 300 });
    const a = await p.open({ sessionId: 'sesn_a', sandbox: 'default' }, limited([`allowed.test:${originPort}`]));
    const c = await raw(a.socketPath, `CONNECT allowed.test:${originPort} HTTP/1.1\r\n\r\n`);
    expect(await c.head).toMatch(/^HTTP\/1\.1 200/);
    await new Promise<void>((r) => c.socket.once('close', () => r()));
    expect(c.socket.destroyed).toBe(true);
  });

  it('refuses a request that is not a proxy request, and closing a channel removes its socket', async () => {
    const p = proxy();
    const a = await p.open({ sessionId: 'sesn_a', sandbox: 'default' }, { type: 'unrestricted' });
    const c = await raw(a.socketPath, 'GET /relative HTTP/1.1\r\nhost: x\r\n\r\n');
    expect(await c.head).toMatch(/^HTTP\/1\.1 400/);
    c.socket.destroy();
    await a.close();
    expect(fs.existsSync(a.socketPath)).toBe(false);
  });
});
