import { KMSClient } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KMS_SEALED_PREFIX, KmsCapabilitySealer } from '../../lambdas/adapters/aws/kms-capability-sealer.js';
import { AwsGateway, type Caller } from '../../infra/rehearsal/aws-gateway.js';
import { KmsEmulator } from '../../infra/rehearsal/emulators.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

// The sealer against the rehearsal's KMS (real protocol through the SDK, behind the rehearsal's
// gateway). Who may use the key is the template's business (test/infra/stack.test.ts, and the
// rehearsal's `sandbox-boundary` scenario); here the gateway lets `harness` and `api` in only.
const KEY = 'arn:aws:kms:us-east-1:000000000000:key/11111111-2222-3333-4444-555555555555';
const OTHER_KEY = 'arn:aws:kms:us-east-1:000000000000:key/99999999-2222-3333-4444-555555555555';
const owner = { sessionId: 'sesn_a', name: 'default' };
const capability = 'the-capability-0123456789abcdefghijklmnopqrstuvwxyz';

let gateway: AwsGateway;
const callers = new Map<string, Caller>();
const allowed = new Set(['harness', 'api']);

function sealer(name: string, keyId = KEY, extra: { dataKeyTtlMs?: number; clock?: () => number } = {}) {
  const accessKeyId = `AKIA${name.toUpperCase()}`;
  callers.set(accessKeyId, { accessKeyId, name, roleLogicalId: name, roleArn: `arn:aws:iam::000000000000:role/${name}` });
  const kms = new KMSClient({ region: 'us-east-1', endpoint: gateway.url, credentials: { accessKeyId, secretAccessKey: 'x' }, maxAttempts: 1 });
  return new KmsCapabilitySealer({ kms, keyId, ...extra });
}
const calls = (name: string, op: string) => gateway.calls.get(`${name} kms:${op}`) ?? 0;

beforeAll(async () => {
  gateway = new AwsGateway({
    callers,
    backends: { kms: new KmsEmulator([KEY, OTHER_KEY]) },
    authorize: (call) => [
      allowed.has(call.caller.name) ? { allowed: true } : { allowed: false, action: `kms:${call.operation}`, resource: KEY, message: `${call.caller.name} may not use the key` },
    ],
  });
  await gateway.start();
});

afterAll(() => gateway.close());

describe('KmsCapabilitySealer', () => {
  it('seals in one process and opens in another that may use the key; the stored text holds no capability', async () => {
    const harness = sealer('harness');
    const api = sealer('api');
    const stored = await harness.seal(owner, capability);
    expect(stored.startsWith(KMS_SEALED_PREFIX)).toBe(true);
    expect(stored).not.toContain(capability);
    expect(stored).not.toContain(Buffer.from(capability).toString('base64url').slice(0, 20));
    expect(await api.open(owner, stored)).toBe(capability);
    expect(await harness.open(owner, stored)).toBe(capability);
  });

  it('is bound to the session and sandbox name; a tampered or foreign text opens nothing', async () => {
    const s = sealer('harness');
    const stored = await s.seal(owner, capability);
    expect(await s.open({ sessionId: 'sesn_b', name: 'default' }, stored)).toBeNull();
    expect(await s.open({ sessionId: 'sesn_a', name: 'other' }, stored)).toBeNull();
    expect(await s.open(owner, capability)).toBeNull();
    const tail = stored.slice(-6);
    const flipped = stored.slice(0, -6) + (tail[0] === 'A' ? 'B' : 'A') + tail.slice(1);
    expect(await s.open(owner, flipped)).toBeNull();
    // A data key of another KMS key: KMS says so (IncorrectKeyException), and it opens nothing.
    const foreign = await sealer('api', OTHER_KEY).seal(owner, capability);
    expect(await s.open(owner, foreign)).toBeNull();
  });

  it('asks KMS for one data key per process and period, and decrypts each data key once', async () => {
    let now = 1_000_000;
    const a = sealer('harness', KEY, { dataKeyTtlMs: 60_000, clock: () => now });
    const b = sealer('api');
    const before = { gen: calls('harness', 'GenerateDataKey'), dec: calls('api', 'Decrypt') };
    const stored = await Promise.all(Array.from({ length: 5 }, (_, i) => a.seal({ sessionId: `sesn_${i}`, name: 'default' }, `${capability}${i}`)));
    expect(calls('harness', 'GenerateDataKey') - before.gen).toBe(1);
    for (let i = 0; i < 5; i++) expect(await b.open({ sessionId: `sesn_${i}`, name: 'default' }, stored[i])).toBe(`${capability}${i}`);
    expect(calls('api', 'Decrypt') - before.dec).toBe(1);
    now += 61_000;
    await a.seal(owner, capability);
    expect(calls('harness', 'GenerateDataKey') - before.gen).toBe(2);
  });

  it('a role that may not use the key opens nothing and fails loudly, without the capability in the error', async () => {
    const stored = await sealer('harness').seal(owner, capability);
    const reaper = sealer('reaper');
    const err = await reaper.open(owner, stored).catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/KMS Decrypt failed.*AccessDenied/);
    expect((err as Error).message).not.toContain(capability);
    await expect(reaper.seal(owner, capability)).rejects.toThrow(/KMS GenerateDataKey failed/);
  });
});
