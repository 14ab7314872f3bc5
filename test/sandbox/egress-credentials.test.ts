import https from 'node:https';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileEgressCa } from '../../lambdas/adapters/local/egress-ca.js';
import { LocalEgressProxy, type EgressChannel, type EgressCredential } from '../../lambdas/adapters/local/egress-proxy.js';
import { parseHostPattern, type HostPattern } from '../../lambdas/core/sandbox/egress.js';

/**
 * The egress proxy's substitution of `environment_variable` secrets, against its Unix socket as a
 * sandbox's forwarder reaches it (no sandbox needed): TLS terminated with the egress CA only towards
 * the credential's hosts, the placeholder replaced in the request target, headers and a body with a
 * length, and left alone everywhere else. The canary (test/e2e/env-credentials-canary.test.ts)
 * does the same through a real sandbox.
 */
const SECRET = 'sk-test-secret-9f8e7d6c5b4a';
const PLACEHOLDER = 'corral-placeholder-00112233445566778899aabbccddeeff0011223344556677';

describe('egress proxy: environment_variable credentials', () => {
  const upstreamCa = FileEgressCa.create();
  const egressCa = FileEgressCa.create();
  const secretReads: string[] = [];
  let server: https.Server;
  let port: number;
  let proxy: LocalEgressProxy;
  let channel: EgressChannel;
  const credential = (over: Partial<EgressCredential> = {}): EgressCredential => ({
    credentialId: 'vcrd_test',
    vaultId: 'vlt_test',
    placeholder: PLACEHOLDER,
    allowedHosts: [parseHostPattern('api.test') as HostPattern],
    header: true,
    body: true,
    ...over,
  });

  beforeAll(async () => {
    server = https.createServer({ SNICallback: (name, cb) => cb(null, upstreamCa.contextFor(name)) }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ host: req.headers.host, url: req.url, key: req.headers['x-key'], body: Buffer.concat(chunks).toString() }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.address() as AddressInfo).port;
    proxy = new LocalEgressProxy({
      logger: { warn: () => {}, info: () => {} },
      allowPrivateAddresses: ['127.0.0.1'],
      resolve: async () => ['127.0.0.1'],
      upstreamCa: [upstreamCa.certPem],
      ca: egressCa,
      secrets: {
        secret: async (_owner, c, host) => {
          secretReads.push(`${c.credentialId}@${host}`);
          return SECRET;
        },
      },
    });
    channel = await proxy.open({ sessionId: 's', sandbox: 'default' }, { type: 'unrestricted' }, [credential()]);
  });
  afterAll(async () => {
    await proxy?.close();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  });

  /** An HTTPS request through the proxy's socket, trusting `trust`. */
  async function through(host: string, trust: string, body = `{"key":"${PLACEHOLDER}"}`): Promise<{ host: string; url: string; key: string; body: string }> {
    const raw = net.connect(channel.socketPath);
    raw.write(`CONNECT ${host}:${port} HTTP/1.1\r\nhost: ${host}:${port}\r\n\r\n`);
    await new Promise<void>((resolve, reject) => {
      let seen = '';
      const onData = (c: Buffer) => {
        seen += c.toString('latin1');
        if (seen.includes('\r\n\r\n')) {
          raw.off('data', onData);
          if (seen.startsWith('HTTP/1.1 200')) resolve();
          else reject(new Error(seen));
        }
      };
      raw.on('data', onData);
    });
    const socket = tls.connect({ socket: raw, servername: host, ca: [trust] });
    return new Promise((resolve, reject) => {
      const req = https.request(
        { host, port, path: `/v1?k=${PLACEHOLDER}`, method: 'POST', headers: { 'x-key': PLACEHOLDER, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, createConnection: () => socket },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString())));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  it('gives every sandbox a trust bundle holding the egress CA', async () => {
    const fs = await import('node:fs');
    expect(fs.readFileSync(channel.caBundlePath!, 'utf8')).toContain(egressCa.certPem.trim());
  });

  it('puts the secret in the request target, a header and the body, towards an allowed host', async () => {
    const seen = await through('api.test', egressCa.certPem);
    expect(seen.url).toBe(`/v1?k=${SECRET}`);
    expect(seen.key).toBe(SECRET);
    expect(seen.body).toBe(`{"key":"${SECRET}"}`);
    expect(secretReads).toContain('vcrd_test@api.test');
  });

  it('leaves the placeholder alone towards any other host (not intercepted: the server itself answers TLS)', async () => {
    const before = secretReads.length;
    const seen = await through('other.test', upstreamCa.certPem);
    expect(seen).toMatchObject({ url: `/v1?k=${PLACEHOLDER}`, key: PLACEHOLDER, body: `{"key":"${PLACEHOLDER}"}` });
    expect(secretReads.length).toBe(before);
  });

  it('substitutes only where injection_location allows', async () => {
    const headerOnly = await proxy.open({ sessionId: 's', sandbox: 'h' }, { type: 'unrestricted' }, [credential({ body: false })]);
    const prev = channel;
    channel = headerOnly;
    try {
      const seen = await through('api.test', egressCa.certPem);
      expect(seen.key).toBe(SECRET);
      expect(seen.body).toBe(`{"key":"${PLACEHOLDER}"}`);
    } finally {
      channel = prev;
      await headerOnly.close();
    }
  });
});
