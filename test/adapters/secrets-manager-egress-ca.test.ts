import crypto from 'node:crypto';
import { DeleteSecretCommand, GetSecretValueCommand, PutSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_EGRESS_CA_SECRET, openSecretsManagerEgressCa } from '../../lambdas/adapters/aws/secrets-manager-egress-ca.js';
import { PemEgressCa } from '../../lambdas/core/sandbox/egress-ca.js';
import { startSecretsManager } from '../helpers/secrets-manager-http.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

/**
 * The egress CA kept in Secrets Manager: the real SDK client against the rehearsal's Secrets
 * Manager emulator, served over HTTP on loopback (the JSON protocol, `x-amz-target`).
 */
describe('openSecretsManagerEgressCa', () => {
  let client: SecretsManagerClient;
  let close: () => Promise<void>;

  beforeAll(async () => {
    ({ client, close } = await startSecretsManager());
  });
  afterAll(() => close());

  const stored = async (id = DEFAULT_EGRESS_CA_SECRET) => JSON.parse((await client.send(new GetSecretValueCommand({ SecretId: id }))).SecretString!) as { certificate: string; private_key: string };

  it('makes the CA on first use, keeps its key in the secret, and every later opening loads the same one', async () => {
    const first = await openSecretsManagerEgressCa(client);
    const secret = await stored();
    expect(secret.certificate).toBe(first.certPem);
    expect(new crypto.X509Certificate(secret.certificate).checkPrivateKey(crypto.createPrivateKey(secret.private_key))).toBe(true);
    const again = await openSecretsManagerEgressCa(client);
    expect(again.certPem).toBe(first.certPem);
    // A leaf of the reopened CA verifies against the first one's certificate (the one sandboxes trust).
    const leaf = new crypto.X509Certificate(again.issue('api.example.com'));
    expect(leaf.verify(new crypto.X509Certificate(first.certPem).publicKey)).toBe(true);
    expect(leaf.checkHost('api.example.com')).toBe('api.example.com');
  });

  it('tasks starting at once end with one CA: the one that loses the race to create it reads the winner\'s', async () => {
    const id = 'corral/egress-ca-race';
    const opened = await Promise.all(Array.from({ length: 4 }, () => openSecretsManagerEgressCa(client, { secretId: id })));
    const winner = (await stored(id)).certificate;
    // Whoever created it returns its own; every other one returns what it read: the same.
    for (const ca of opened) expect(ca.certPem).toBe(winner);
    await client.send(new DeleteSecretCommand({ SecretId: id, ForceDeleteWithoutRecovery: true }));
  });

  it('remakes a CA with 30 days or less left, as a new version of the secret', async () => {
    const id = 'corral/egress-ca-old';
    const old = PemEgressCa.create(new Date(Date.now() - 3640 * 86_400_000)).toPem();
    await openSecretsManagerEgressCa(client, { secretId: id }); // creates
    await client.send(new PutSecretValueCommand({ SecretId: id, SecretString: JSON.stringify({ certificate: old.certificate, private_key: old.privateKey }) }));
    const renewed = await openSecretsManagerEgressCa(client, { secretId: id });
    expect(renewed.certPem).not.toBe(old.certificate);
    expect((await stored(id)).certificate).toBe(renewed.certPem);
  });

  it('refuses a secret whose key is not its certificate\'s, or that is not the CA\'s shape, without printing it', async () => {
    const id = 'corral/egress-ca-bad';
    const a = PemEgressCa.create().toPem();
    const b = PemEgressCa.create().toPem();
    await openSecretsManagerEgressCa(client, { secretId: id });
    await client.send(new PutSecretValueCommand({ SecretId: id, SecretString: JSON.stringify({ certificate: a.certificate, private_key: b.privateKey }) }));
    const err = await openSecretsManagerEgressCa(client, { secretId: id }).catch((e: Error) => e);
    expect(String(err)).toMatch(/does not match/);
    expect(String(err)).not.toContain(b.privateKey.split('\n')[1]!);
    await client.send(new PutSecretValueCommand({ SecretId: id, SecretString: JSON.stringify({ key: b.privateKey }) }));
    const shape = await openSecretsManagerEgressCa(client, { secretId: id }).catch((e: Error) => e);
    expect(String(shape)).toMatch(/must hold \{certificate, private_key\}/);
    expect(String(shape)).not.toContain(b.privateKey.split('\n')[1]!);
  });
});
