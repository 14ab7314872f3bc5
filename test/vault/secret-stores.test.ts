import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  CreateSecretCommand,
  DeleteSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  ResourceExistsException,
  ResourceNotFoundException,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SecretsManagerStore } from '../../lambdas/adapters/aws/secrets-manager-store.js';
import { FileSecretStore } from '../../lambdas/adapters/local/file-secret-store.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

describe('FileSecretStore (local, AES-256-GCM)', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-secrets-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('keeps values encrypted, in files only the owner can read, and reads them back in a new instance', async () => {
    const a = new FileSecretStore(dir);
    await a.put('corral/vault/t/v/c1', { token: 'plain-token-value' });
    await a.put('corral/vault/t/v/c2', { access_token: 'another-value', refresh_token: 'r' });
    const mode = (p: string) => fs.statSync(p).mode & 0o777;
    expect(mode(a.dir)).toBe(0o700);
    expect(mode(a.keyFile)).toBe(0o600);
    expect(mode(a.storeFile)).toBe(0o600);
    expect(fs.readFileSync(a.keyFile).length).toBe(32);
    const raw = fs.readFileSync(a.storeFile, 'utf8');
    expect(raw).not.toContain('plain-token-value');
    expect(raw).not.toContain(Buffer.from('plain-token-value').toString('base64'));
    const b = new FileSecretStore(dir);
    expect(await b.get('corral/vault/t/v/c1')).toEqual({ token: 'plain-token-value' });
    expect(await b.get('corral/vault/t/v/c2')).toEqual({ access_token: 'another-value', refresh_token: 'r' });
    expect(await b.get('corral/vault/t/v/none')).toBeUndefined();
    await b.put('corral/vault/t/v/c1', { token: 'rotated' });
    expect(await a.get('corral/vault/t/v/c1')).toEqual({ token: 'rotated' });
    await b.delete('corral/vault/t/v/c1');
    await b.delete('corral/vault/t/v/c1'); // idempotent
    expect(await a.get('corral/vault/t/v/c1')).toBeUndefined();
    expect(await a.get('corral/vault/t/v/c2')).toEqual({ access_token: 'another-value', refresh_token: 'r' });
  });

  it('binds each entry to its name and refuses a wrong key, without saying what it holds', async () => {
    const s = new FileSecretStore(dir);
    await s.put('corral/vault/t/v/a', { token: 'value-a' });
    await s.put('corral/vault/t/v/b', { token: 'value-b' });
    // moving an entry under another name does not decrypt
    const store = JSON.parse(fs.readFileSync(s.storeFile, 'utf8'));
    store.entries['corral/vault/t/v/b'] = store.entries['corral/vault/t/v/a'];
    fs.writeFileSync(s.storeFile, JSON.stringify(store));
    await expect(new FileSecretStore(dir).get('corral/vault/t/v/b')).rejects.toThrow(/could not be decrypted/);
    // another key does not decrypt either, and the error names no value
    fs.writeFileSync(s.keyFile, Buffer.alloc(32, 7));
    const err = await new FileSecretStore(dir).get('corral/vault/t/v/a').catch((e: Error) => e);
    expect(String(err)).toMatch(/could not be decrypted/);
    expect(String(err)).not.toContain('value-a');
  });

  it('serializes concurrent writes of one process', async () => {
    const s = new FileSecretStore(dir);
    await Promise.all(Array.from({ length: 20 }, (_, i) => s.put(`corral/vault/t/v/c${i}`, { token: `v${i}` })));
    for (let i = 0; i < 20; i++) expect(await s.get(`corral/vault/t/v/c${i}`)).toEqual({ token: `v${i}` });
  });
});

describe('SecretsManagerStore (aws-sdk-client-mock)', () => {
  const sm = mockClient(SecretsManagerClient);
  afterEach(() => sm.reset());
  const store = () => new SecretsManagerStore(new SecretsManagerClient({ region: 'eu-west-1' }), { kmsKeyId: 'alias/corral' });
  const notFound = () => new ResourceNotFoundException({ message: 'no such secret', $metadata: {} });

  it('reads a secret, and a missing one is undefined', async () => {
    // Prepare
    sm.on(GetSecretValueCommand, { SecretId: 'corral/vault/t/v/c' }).resolves({ SecretString: '{"token":"x"}' });
    sm.on(GetSecretValueCommand, { SecretId: 'corral/vault/t/v/missing' }).rejects(notFound());
    // Act + Assess
    expect(await store().get('corral/vault/t/v/c')).toEqual({ token: 'x' });
    expect(await store().get('corral/vault/t/v/missing')).toBeUndefined();
  });

  it('puts a new version of an existing secret, and creates one that does not exist yet', async () => {
    sm.on(PutSecretValueCommand, { SecretId: 'corral/vault/t/v/old' }).resolves({});
    sm.on(PutSecretValueCommand, { SecretId: 'corral/vault/t/v/new' }).rejects(notFound());
    sm.on(CreateSecretCommand).resolves({});
    await store().put('corral/vault/t/v/old', { token: 'a' });
    await store().put('corral/vault/t/v/new', { token: 'b' });
    expect(sm.commandCalls(PutSecretValueCommand).map((c) => c.args[0].input)).toEqual([
      { SecretId: 'corral/vault/t/v/old', SecretString: '{"token":"a"}' },
      { SecretId: 'corral/vault/t/v/new', SecretString: '{"token":"b"}' },
    ]);
    expect(sm.commandCalls(CreateSecretCommand)[0].args[0].input).toMatchObject({
      Name: 'corral/vault/t/v/new',
      SecretString: '{"token":"b"}',
      KmsKeyId: 'alias/corral',
      Tags: [{ Key: 'corral:managed-by', Value: 'credential-proxy' }],
    });
  });

  it('a create that races another becomes a put', async () => {
    sm.on(PutSecretValueCommand).rejectsOnce(notFound()).resolves({});
    sm.on(CreateSecretCommand).rejects(new ResourceExistsException({ message: 'exists', $metadata: {} }));
    await store().put('corral/vault/t/v/race', { token: 'c' });
    expect(sm.commandCalls(PutSecretValueCommand)).toHaveLength(2);
  });

  it('deletes at once (no recovery window), and deleting a missing secret is fine', async () => {
    sm.on(DeleteSecretCommand, { SecretId: 'corral/vault/t/v/c' }).resolves({});
    sm.on(DeleteSecretCommand, { SecretId: 'corral/vault/t/v/gone' }).rejects(notFound());
    await store().delete('corral/vault/t/v/c');
    await store().delete('corral/vault/t/v/gone');
    expect(sm.commandCalls(DeleteSecretCommand)[0].args[0].input).toEqual({ SecretId: 'corral/vault/t/v/c', ForceDeleteWithoutRecovery: true });
  });

  it('other failures are not swallowed', async () => {
    sm.on(GetSecretValueCommand).rejects(new Error('AccessDeniedException'));
    await expect(store().get('corral/vault/t/v/c')).rejects.toThrow(/AccessDenied/);
  });
});
