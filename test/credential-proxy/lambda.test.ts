import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LambdaInvoker } from '../../lambdas/adapters/aws/lambda-invoke.js';
import { AwsGateway } from '../../infra/rehearsal/aws-gateway.js';
import { LambdaInvokeEmulator } from '../../infra/rehearsal/emulators.js';
import type { InvokeResult } from '../../infra/rehearsal/lambda-runtime.js';
import { createCredentialProxyHandler, loadSigningKey } from '../../lambdas/credential-proxy/handler.js';
import { LambdaProxyTransport } from '../../lambdas/adapters/aws/credential-proxy-client.js';
import { CredentialProxyClient } from '../../lambdas/core/vault/protocol.js';
import type { CredentialProxy } from '../../lambdas/core/vault/proxy.js';
import type { SecretStore } from '../../lambdas/core/vault/secret-store.js';
import { GIT_SIGNING_KEY_REF } from '../../lambdas/core/vault/types.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

describe('credential proxy on AWS: Lambda Invoke transport and handler', () => {
  // Lambda's Invoke API: the deploy rehearsal's, on loopback behind its gateway, signatures checked.
  const events: unknown[] = [];
  let answer: InvokeResult = { ok: true, value: null, durationMs: 1, coldStart: false };
  const gateway = new AwsGateway({
    callers: new Map([['AKIDINVOKE', { accessKeyId: 'AKIDINVOKE', name: 'harness', roleLogicalId: 'Role', roleArn: 'arn:aws:iam::123456789012:role/Role' }]]),
    backends: { lambda: new LambdaInvokeEmulator((name) => (name === 'corral-proxy' ? async (event) => (events.push(event), answer) : undefined)) },
    authorize: () => [{ allowed: true }],
    secretOf: () => 'invoke-secret',
  });
  let invoker: LambdaInvoker;
  beforeAll(async () => {
    invoker = new LambdaInvoker({ region: 'eu-west-1', endpoint: await gateway.start(), maxAttempts: 1, credentials: { accessKeyId: 'AKIDINVOKE', secretAccessKey: 'invoke-secret' } });
  });
  afterAll(async () => {
    invoker.destroy();
    await gateway.close();
  });

  it('the harness and the API call the proxy function synchronously and get its answer', async () => {
    // Prepare
    answer = { ok: true, value: { ok: true, result: [{ name: 't', input_schema: {} }] }, durationMs: 1, coldStart: false };
    const client = new CredentialProxyClient(new LambdaProxyTransport(invoker, 'corral-proxy'));
    // Act
    const tools = await client.mcpListTools({ sessionId: 's', vaultIds: [], server: { name: 'crm', url: 'https://crm.example.com' } });
    // Assess
    expect(tools).toEqual([{ name: 't', input_schema: {} }]);
    expect(gateway.calls.get('harness lambda:Invoke')).toBe(1);
    expect(events).toEqual([{ op: 'mcp_list_tools', sessionId: 's', vaultIds: [], server: { name: 'crm', url: 'https://crm.example.com' } }]);
  });

  it('an Invoke signed with another secret is refused, not sent to the function', async () => {
    const forged = new LambdaInvoker({ region: 'eu-west-1', endpoint: gateway.url, maxAttempts: 1, credentials: { accessKeyId: 'AKIDINVOKE', secretAccessKey: 'wrong' } });
    try {
      await expect(forged.invoke('corral-proxy', new TextEncoder().encode('{}'))).rejects.toMatchObject({ name: 'InvalidSignatureException', $metadata: { httpStatusCode: 403 } });
    } finally {
      forged.destroy();
    }
    expect(events).toHaveLength(1);
  });

  it('a crashed function is an internal failure whose payload is not passed on', async () => {
    answer = { ok: false, kind: 'function', error: { errorMessage: 'token=abc' }, durationMs: 1, coldStart: false } as InvokeResult;
    const client = new CredentialProxyClient(new LambdaProxyTransport(invoker, 'corral-proxy'));
    const err = await client.storeSecret('corral/vault/t/v/c', { token: 'abc' }).catch((e) => e);
    expect(err).toMatchObject({ kind: 'internal' });
    expect(String(err.message)).not.toContain('token=abc');
  });

  it('the handler answers invokes with the proxy, and function-URL git requests with handleGit', async () => {
    const calls: unknown[] = [];
    const fake = {
      handle: async (r: unknown) => (calls.push(r), { ok: true, result: null }),
      handleGit: async (req: Request) => new Response(`git ${req.method} ${new URL(req.url).pathname}${new URL(req.url).search} ${req.headers.get('x-corral-git-capability')}`, { status: 200, headers: { 'content-type': 'text/plain' } }),
    } as unknown as CredentialProxy;
    const handler = createCredentialProxyHandler(async () => fake);
    expect(await handler({ op: 'delete_secret', ref: 'corral/vault/t/v/c' })).toEqual({ ok: true, result: null });
    expect(calls).toEqual([{ op: 'delete_secret', ref: 'corral/vault/t/v/c' }]);
    const res = (await handler({
      rawPath: '/r/0/repo.git/info/refs',
      rawQueryString: 'service=git-upload-pack',
      headers: { 'x-corral-git-capability': 'v1.a.b' },
      requestContext: { http: { method: 'GET' } },
    })) as { statusCode: number; body: string; isBase64Encoded: boolean; headers: Record<string, string> };
    expect(res.statusCode).toBe(200);
    expect(res.isBase64Encoded).toBe(true);
    expect(Buffer.from(res.body, 'base64').toString()).toBe('git GET /r/0/repo.git/info/refs?service=git-upload-pack v1.a.b');
  });

  it('the git signing key is a secret of the proxy, created once', async () => {
    const map = new Map<string, Record<string, string>>();
    const store: SecretStore = { get: async (r) => map.get(r), put: async (r, v) => void map.set(r, v), delete: async (r) => void map.delete(r) };
    const a = await loadSigningKey(store);
    const b = await loadSigningKey(store);
    expect(a.length).toBe(32);
    expect(b.equals(a)).toBe(true);
    expect([...map.keys()]).toEqual([GIT_SIGNING_KEY_REF]);
  });
});
