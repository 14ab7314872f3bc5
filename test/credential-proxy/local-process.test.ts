import fs from 'node:fs';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRuntime, waitFor, type TestRuntime } from '../helpers/runtime.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

function callSocket(socketPath: string, auth: string | undefined, body: unknown): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath, path: '/call', method: 'POST', headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) } },
      (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

/**
 * Locally the credential proxy is its own process: started on first use, reached over a Unix
 * socket only its owner may open, with a token made fresh at every start that is in no argv or
 * environment, restarted when it dies, stopped with the runtime.
 */
describe('the local credential proxy process', () => {
  let t: TestRuntime;
  const SECRET = `local-proxy-secret-${Date.now()}`;
  beforeAll(async () => {
    // Bedrock (no model key): nothing but a vault's credentials needs the proxy here. With a model
    // key the proxy starts with the runtime (model-calls.test.ts).
    t = await startTestRuntime({ runtime: { modelProvider: 'bedrock', bedrock: { region: 'us-east-1' } } });
  });
  afterAll(() => t?.close());

  it('is not started until a credential needs it, then runs apart from the runtime', async () => {
    const proxy = t.runtime.credentialProxy!;
    expect(proxy.pid).toBeUndefined();
    const vault = await t.client.beta.vaults.create({ display_name: 'v' });
    expect(proxy.pid).toBeUndefined(); // metadata alone never needs it
    await t.client.beta.vaults.credentials.create(vault.id, { auth: { type: 'static_bearer', token: SECRET, mcp_server_url: 'https://mcp.example.com' } });
    const pid = proxy.pid!;
    expect(pid).toBeGreaterThan(0);
    expect(pid).not.toBe(process.pid);
    // its token is in neither its command line nor its environment
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    const environ = fs.readFileSync(`/proc/${pid}/environ`, 'utf8');
    expect(cmdline).toContain('credential-proxy-server.ts');
    expect(environ).not.toMatch(/ANTHROPIC|CORRAL_API_KEY/);
    expect((fs.statSync(proxy.controlSocket).mode & 0o777)).toBe(0o600);
    expect((fs.statSync(proxy.socketDir).mode & 0o777)).toBe(0o700);
  });

  it('answers only callers with the token', async () => {
    const proxy = t.runtime.credentialProxy!;
    const call = { op: 'delete_secret', ref: 'corral/vault/local/x/y' };
    expect((await callSocket(proxy.controlSocket, undefined, call)).status).toBe(401);
    expect((await callSocket(proxy.controlSocket, 'Bearer not-the-token-at-all-not-the-token', call)).status).toBe(401);
  });

  it('comes back after it dies, and stops with the runtime', async () => {
    const proxy = t.runtime.credentialProxy!;
    const first = proxy.pid!;
    process.kill(first, 'SIGKILL'); // a process this test's runtime started, by its id
    await waitFor(async () => proxy.pid === undefined, 'the proxy to be gone');
    const vault = await t.client.beta.vaults.create({ display_name: 'after restart' });
    await t.client.beta.vaults.credentials.create(vault.id, { auth: { type: 'static_bearer', token: SECRET, mcp_server_url: 'https://mcp2.example.com' } });
    const second = proxy.pid!;
    expect(second).toBeGreaterThan(0);
    expect(second).not.toBe(first);
    await proxy.close();
    expect(() => process.kill(second, 0)).toThrow();
  });
});
