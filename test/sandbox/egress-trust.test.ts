import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CA_BUNDLE_VARIABLES as LOCAL_VARIABLES } from '../../lambdas/adapters/local/process-sandbox.js';
import { PemEgressCa } from '../../lambdas/core/sandbox/egress-ca.js';
import { CA_BUNDLE_VARIABLES, installEgressTrust } from '../../sandbox/agent/egress-trust.js';

/** The agent's own trust bundle (Fargate sandboxes): fetched from the proxy, written, pointed at. */
describe('installEgressTrust', () => {
  const ca = PemEgressCa.create();
  let body = ca.certPem;
  let server: http.Server;
  let url: string;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-trust-'));
  beforeAll(async () => {
    server = http.createServer((req, res) => (req.url === '/egress-ca.pem' ? res.end(body) : res.writeHead(404).end()));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('writes the system CAs followed by the egress CA, readable by all, and points every CA variable at it', async () => {
    const env = await installEgressTrust(url, path.join(dir, 'a'));
    expect(Object.keys(env).sort()).toEqual([...LOCAL_VARIABLES].sort());
    const file = env.SSL_CERT_FILE!;
    for (const v of CA_BUNDLE_VARIABLES) expect(env[v]).toBe(file);
    const text = fs.readFileSync(file, 'utf8');
    expect(text.endsWith(ca.certPem)).toBe(true);
    expect(text.length).toBeGreaterThan(ca.certPem.length); // the system's CAs come first
    expect(fs.statSync(file).mode & 0o777).toBe(0o644);
    // A leaf of the CA verifies against what the bundle holds last.
    expect(new crypto.X509Certificate(ca.issue('api.example.com')).verify(new crypto.X509Certificate(ca.certPem).publicKey)).toBe(true);
  });

  it('sets nothing, and says why, when the proxy does not hand out one PEM certificate', async () => {
    body = 'not a certificate';
    const logged: string[] = [];
    const env = await installEgressTrust(url, path.join(dir, 'b'), (_l, msg, f) => logged.push(`${msg} ${JSON.stringify(f)}`), { attempts: 2, pauseMs: 1 });
    expect(env).toEqual({});
    expect(fs.existsSync(path.join(dir, 'b', 'ca-bundle.pem'))).toBe(false);
    expect(logged.join('\n')).toMatch(/could not be fetched.*not one PEM certificate/);
    const missing = await installEgressTrust(`${url}/nowhere`, path.join(dir, 'c'), () => {}, { attempts: 1 });
    expect(missing).toEqual({});
  });
});
