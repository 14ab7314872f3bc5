import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoStateTable } from '../../lambdas/adapters/aws/dynamodb-state-table.js';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite, type EmbeddedDynamo } from '../../lambdas/adapters/local/dynalite.js';
import { planEgress } from '../../lambdas/core/sandbox/egress.js';
import { egressCapabilityHash, newEgressCapability, StateTableEgressGrants, type EgressGrant } from '../../lambdas/core/sandbox/egress-grant.js';
import { EgressRelay } from '../../lambdas/core/sandbox/egress-relay.js';
import { keys } from '../../lambdas/core/storage/keys.js';
import { startProxyService, type ProxyService } from '../../lambdas/proxy-service/server.js';
import { startTcpEgressForwarder, type EgressForwarder } from '../../sandbox/agent/egress-forwarder.js';

/**
 * The proxy service on loopback, as a Fargate sandbox reaches it: the sandbox agent's TCP egress
 * forwarder (adding the sandbox's capability), the service's sandbox port, the core's egress
 * relay, grants in the state table (dynalite). "Internet" hosts are loopback servers, reached by
 * the relay's test-only private-address exception and resolver.
 */

let db: EmbeddedDynamo;
let grants: StateTableEgressGrants;
let table: DynamoStateTable;
let origin: http.Server;
let originPort: number;
let service: ProxyService;
let forwarder: EgressForwarder;
let capability: string;
const seen: Array<{ host?: string; proxyAuthorization?: string }> = [];
const warnings: Array<{ message: string; extra?: Record<string, unknown> }> = [];

const NAMES: Record<string, string> = { 'allowed.test': '127.0.0.1', 'denied.test': '127.0.0.1', 'registry.npmjs.org': '127.0.0.1', 'mcp.example.test': '127.0.0.1' };
const resolve = async (host: string) => {
  if (!NAMES[host]) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
  return [NAMES[host]];
};

function grant(overrides: Partial<EgressGrant> = {}): EgressGrant {
  return {
    sessionId: 'sesn_proxy',
    sandbox: 'default',
    policy: planEgress({ networking: { type: 'limited', allowed_hosts: ['allowed.test'], allow_package_managers: true, allow_mcp_servers: true } }, [{ url: `http://mcp.example.test:${originPort}/mcp` }]),
    credentials: [],
    expiresAt: Date.now() + 60_000,
    ...overrides,
  };
}

/** An absolute-URI GET through `proxyPort`, with `headers`. */
function get(proxyPort: number, url: string, headers: Record<string, string> = {}): Promise<{ status: number; reason: string; body: string }> {
  return new Promise((done, fail) => {
    const req = http.request({ host: '127.0.0.1', port: proxyPort, method: 'GET', path: url, headers: { host: new URL(url).host, ...headers }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => done({ status: res.statusCode ?? 0, reason: res.statusMessage ?? '', body }));
    });
    req.on('error', fail);
    req.end();
  });
}

/** A CONNECT through `proxyPort`: the proxy's status line, and the socket (open on a 200). */
function connect(proxyPort: number, authority: string, headers: Record<string, string> = {}): Promise<{ status: number; head: string; socket: net.Socket }> {
  return new Promise((done, fail) => {
    const socket = net.connect({ host: '127.0.0.1', port: proxyPort }, () => {
      socket.write(`CONNECT ${authority} HTTP/1.1\r\nhost: ${authority}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);
    });
    let buf = '';
    const onData = (c: Buffer) => {
      buf += c.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      done({ status: Number(buf.split(' ')[1]), head: buf, socket });
    };
    socket.on('data', onData);
    socket.on('error', fail);
  });
}

beforeAll(async () => {
  db = await startDynalite();
  await ensureTables(db.client, { events: 'events', state: 'state' });
  table = new DynamoStateTable(db.client, 'state');
  grants = new StateTableEgressGrants(table);
  origin = http.createServer((req, res) => {
    seen.push({ host: req.headers.host, proxyAuthorization: req.headers['proxy-authorization'] });
    res.end(`hello from ${req.headers.host}`);
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', () => r()));
  originPort = (origin.address() as net.AddressInfo).port;
  const logger = { warn: (message: string, extra?: Record<string, unknown>) => void warnings.push({ message, extra }) };
  service = await startProxyService({
    grants,
    relay: new EgressRelay({ logger, resolve, allowPrivateAddresses: ['127.0.0.1'] }),
    logger,
    host: '127.0.0.1',
    sandboxPort: 0,
    harnessPort: 0,
    maxConnectionsPerGrant: 3,
    grantCacheMs: 0,
    routes: {
      sandbox: [{ prefix: '/git/', name: 'git', handle: (_req, res) => void res.end('git route') }],
      harness: [{ prefix: '/v1/messages', name: 'model', handle: (_req, res) => void res.end('model route') }],
    },
  });
  capability = newEgressCapability();
  await grants.put(capability, grant());
  forwarder = await startTcpEgressForwarder({ address: `127.0.0.1:${service.sandboxPort}`, capability });
}, 60_000);

afterAll(async () => {
  forwarder?.server.close();
  await service?.close();
  origin?.close();
  await db?.close();
});

describe('the proxy service (sandbox port, over TCP)', () => {
  it('lets a sandbox reach allowed hosts, its package registry and its MCP server, and denies the rest with a reason the model can read', async () => {
    const ok = await get(forwarder.port, `http://allowed.test:${originPort}/x`);
    expect(ok).toMatchObject({ status: 200, body: `hello from allowed.test:${originPort}` });
    expect((await get(forwarder.port, `http://registry.npmjs.org:${originPort}/left-pad`)).status).toBe(200);
    expect((await get(forwarder.port, `http://mcp.example.test:${originPort}/mcp`)).status).toBe(200);
    const denied = await get(forwarder.port, `http://denied.test:${originPort}/x`);
    expect(denied.status).toBe(403);
    expect(denied.body).toMatch(/^Corral egress proxy: .*denied\.test.*allowed_hosts/);
    expect(warnings.some((w) => w.message === 'egress denied' && w.extra?.host === 'denied.test' && w.extra?.sessionId === 'sesn_proxy')).toBe(true);
    // CONNECT too: a tunnel to an allowed host, a 403 for another
    const tunnel = await connect(forwarder.port, `allowed.test:${originPort}`);
    expect(tunnel.status).toBe(200);
    tunnel.socket.write(`GET / HTTP/1.1\r\nhost: allowed.test\r\nconnection: close\r\n\r\n`);
    const reply = await new Promise<string>((r) => {
      let b = '';
      tunnel.socket.on('data', (c) => (b += c));
      tunnel.socket.on('end', () => r(b));
    });
    expect(reply).toMatch(/hello from allowed\.test/);
    const refused = await connect(forwarder.port, `denied.test:${originPort}`);
    expect(refused.status).toBe(403);
    expect(refused.head).toMatch(/Corral egress: .*denied\.test/);
    refused.socket.destroy();
  });

  it('never passes the capability upstream, and a tool cannot choose it: the forwarder replaces what the tool sent', async () => {
    seen.length = 0;
    const other = newEgressCapability();
    await grants.put(other, grant({ policy: { type: 'unrestricted' } }));
    // the tool names another sandbox's capability: the forwarder's own (limited) one is used
    const r = await get(forwarder.port, `http://denied.test:${originPort}/`, { 'proxy-authorization': `Bearer ${other}` });
    expect(r.status).toBe(403);
    expect((await get(forwarder.port, `http://allowed.test:${originPort}/`)).status).toBe(200);
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((s) => s.proxyAuthorization === undefined)).toBe(true);
  });

  it('answers a 407 that says nothing more without a capability, with an unknown, an expired or a revoked one; the table holds only its hash', async () => {
    const direct = service.sandboxPort;
    const bodies: string[] = [];
    for (const headers of [{} as Record<string, string>, { 'proxy-authorization': `Bearer ${newEgressCapability()}` }, { 'proxy-authorization': 'Basic dXNlcjpwYXNz' }]) {
      const r = await get(direct, `http://allowed.test:${originPort}/`, headers);
      expect(r.status).toBe(407);
      bodies.push(r.body);
      const c = await connect(direct, `allowed.test:${originPort}`, headers);
      expect(c.status).toBe(407);
      c.socket.destroy();
    }
    expect(new Set(bodies).size).toBe(1);
    expect(bodies[0]).not.toMatch(/allowed|expired|unknown|grant/i);

    const expired = newEgressCapability();
    await grants.put(expired, grant({ expiresAt: Date.now() - 1 }));
    expect((await get(direct, `http://allowed.test:${originPort}/`, { 'proxy-authorization': `Bearer ${expired}` })).status).toBe(407);

    const revoked = newEgressCapability();
    await grants.put(revoked, grant());
    await grants.bind('arn:aws:ecs:eu-west-1:123456789012:task/c/abc', revoked, Date.now() + 60_000);
    expect((await get(direct, `http://allowed.test:${originPort}/`, { 'proxy-authorization': `Bearer ${revoked}` })).status).toBe(200);
    await grants.revokeRef('arn:aws:ecs:eu-west-1:123456789012:task/c/abc');
    expect((await get(direct, `http://allowed.test:${originPort}/`, { 'proxy-authorization': `Bearer ${revoked}` })).status).toBe(407);

    const k = keys.egressGrant(egressCapabilityHash(capability));
    const item = await table.get(k.pk, k.sk);
    expect(item).toBeDefined();
    expect(JSON.stringify(item)).not.toContain(capability);
  });

  it('bounds the connections one sandbox holds open (a 503), and frees them as they close', async () => {
    const open = [];
    for (let i = 0; i < 3; i++) {
      const t = await connect(forwarder.port, `allowed.test:${originPort}`);
      expect(t.status).toBe(200);
      open.push(t.socket);
    }
    const over = await connect(forwarder.port, `allowed.test:${originPort}`);
    expect(over.status).toBe(503);
    expect(over.head).toMatch(/Too many connections/);
    over.socket.destroy();
    for (const s of open) s.destroy();
    await new Promise((r) => setTimeout(r, 100));
    const again = await connect(forwarder.port, `allowed.test:${originPort}`);
    expect(again.status).toBe(200);
    again.socket.destroy();
  });

  it('serves /healthz and the plugged-in routes on each port; the harness routes are not on the sandbox port', async () => {
    const origin = (port: number, path: string) =>
      new Promise<{ status: number; body: string }>((done) => {
        http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
          let body = '';
          res.on('data', (c) => (body += c));
          res.on('end', () => done({ status: res.statusCode ?? 0, body }));
        });
      });
    expect(await origin(service.sandboxPort, '/healthz')).toMatchObject({ status: 200 });
    expect(await origin(service.sandboxPort, '/git/r/0/x.git/info/refs')).toMatchObject({ status: 200, body: 'git route' });
    expect(await origin(service.sandboxPort, '/v1/messages')).toMatchObject({ status: 404 });
    expect(await origin(service.harnessPort!, '/healthz')).toMatchObject({ status: 200 });
    expect(await origin(service.harnessPort!, '/v1/messages')).toMatchObject({ status: 200, body: 'model route' });
    expect(await origin(service.harnessPort!, '/git/r/0/x.git/info/refs')).toMatchObject({ status: 404 });
  });
});
