import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer, text } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIN_PART_SIZE, S3BlobStore } from '../../lambdas/adapters/aws/s3-blob-store.js';
import { S3Client } from '../../lambdas/adapters/aws/s3-client.js';
import { createAuthorizer, type Authorizer } from '../../infra/rehearsal/authorize.js';
import { AwsGateway, type Caller } from '../../infra/rehearsal/aws-gateway.js';
import { rehearsalContext } from '../../infra/rehearsal/build-model.js';
import { SecretsManagerEmulator } from '../../infra/rehearsal/emulators.js';
import { S3Emulator } from '../../infra/rehearsal/s3.js';
import { functions, resourcesOfType, type CfnTemplate } from '../../infra/rehearsal/template.js';
import { synthesizedTemplate } from './synth.js';

/**
 * Blobs through the rehearsal's AWS endpoint, as the deployed functions reach S3: each function's
 * blob store signs with its own key, the gateway checks every request against that function's role
 * and the bucket policy from the synthesized template, and the S3 emulation stores what passes.
 * This is the same gateway, authorizer and S3 the full rehearsal (`startRehearsal`) runs, without
 * starting the functions themselves.
 */
const REGION = 'us-east-1';
const ACCOUNT = '000000000000';

let template: CfnTemplate;
let dir: string;
let gateway: AwsGateway;
let emulator: S3Emulator;
let authorize: Authorizer;
let bucket: string;
const callers = new Map<string, Caller>();
const clients: S3Client[] = [];
/** The blob store of the function whose logical id starts with `prefix`, with that function's bucket variable. */
const storeOf = new Map<string, S3BlobStore>();
const store = (prefix: string) => storeOf.get(prefix)!;
const callerOf = (prefix: string) => [...callers.values()].find((c) => c.name.startsWith(`fn:${prefix}`))!;

beforeAll(async () => {
  template = await synthesizedTemplate();
  const overrides = { region: REGION, account: ACCOUNT, queueUrlBase: `http://127.0.0.1/${ACCOUNT}` };
  const ctx = rehearsalContext(template, overrides);
  const [bucketId] = resourcesOfType(ctx, 'AWS::S3::Bucket');
  bucket = ctx.physicalIds.ref(bucketId, ctx);
  authorize = createAuthorizer(template, { account: ACCOUNT, tables: [], taskDefinitions: [] }, overrides, { secrets: new SecretsManagerEmulator(`arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:`) });
  dir = mkdtempSync(join(tmpdir(), 'rehearsal-s3-'));
  emulator = new S3Emulator({ dir, buckets: [bucket], mayList: (call, b) => authorize.check(call.caller, 's3:ListBucket', `arn:aws:s3:::${b}`).allowed });
  gateway = new AwsGateway({ callers, backends: { s3: emulator }, authorize: (call) => authorize(call), secretOf: () => 'x' });
  const endpoint = await gateway.start();
  for (const prefix of ['ApiHandler', 'ApiStreamHandler', 'HarnessStepFunction', 'SandboxReaperFunction', 'CredentialProxyFunction']) {
    const f = functions(ctx).find((x) => x.logicalId.startsWith(prefix) && !(prefix === 'ApiHandler' && x.logicalId.startsWith('ApiStreamHandler')));
    if (!f?.roleLogicalId) throw new Error(`no function ${prefix}* with a role in the template`);
    const accessKeyId = `AKIA${randomBytes(8).toString('hex').toUpperCase()}`;
    callers.set(accessKeyId, { accessKeyId, name: `fn:${prefix}`, roleLogicalId: f.roleLogicalId, roleArn: f.roleArn });
    const s3 = new S3Client({ region: REGION, endpoint, maxAttempts: 1, credentials: { accessKeyId, secretAccessKey: 'x' } });
    clients.push(s3);
    // Functions without the variable get the bucket anyway: what they cannot do is up to their role.
    storeOf.set(prefix, new S3BlobStore({ s3, bucket: f.environment.CORRAL_BLOB_BUCKET ?? bucket, partSize: MIN_PART_SIZE }));
  }
}, 180_000);

afterAll(async () => {
  for (const c of clients) c.destroy();
  await gateway?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** S3's refusal: 403 AccessDenied (a HEAD answer has no body, so the client can only name it by its status). */
const denied = async (p: Promise<unknown>) => expect(p).rejects.toMatchObject({ name: expect.stringMatching(/^(AccessDenied|Forbidden)$/), $metadata: { httpStatusCode: 403 } });
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('blobs in the rehearsal, under the template IAM', () => {
  it('names the template bucket in the environment of the API function, the harness and the reaper', () => {
    const ctx = rehearsalContext(template, { region: REGION, account: ACCOUNT, queueUrlBase: `http://127.0.0.1/${ACCOUNT}` });
    const env = (prefix: string) => functions(ctx).find((f) => f.logicalId.startsWith(prefix))!.environment.CORRAL_BLOB_BUCKET;
    for (const prefix of ['ApiHandler', 'HarnessStepFunction', 'SandboxReaperFunction']) expect(env(prefix), prefix).toBe(bucket);
    for (const prefix of ['ApiStreamHandler', 'CredentialProxyFunction']) expect(env(prefix), prefix).toBeUndefined();
  });

  it('the API function stores, reads and deletes a file; the harness reads it and stores an output, and deletes nothing', async () => {
    const api = store('ApiHandler');
    expect(await api.put('files/rehearsal/file_1', new TextEncoder().encode('q3 numbers'), { contentType: 'text/csv' })).toEqual({ size: 10, contentType: 'text/csv' });
    expect(await api.head('files/rehearsal/file_1')).toEqual({ size: 10, contentType: 'text/csv' });
    expect(await text((await store('HarnessStepFunction').get('files/rehearsal/file_1'))!.body)).toBe('q3 numbers');
    await store('HarnessStepFunction').put('files/rehearsal/file_out', Readable.from([Buffer.from('report')]), { contentType: 'text/markdown' });
    expect(await text((await api.get('files/rehearsal/file_out'))!.body)).toBe('report');
    await denied(store('HarnessStepFunction').delete('files/rehearsal/file_1'));
    await api.delete('files/rehearsal/file_1');
    // A missing key is "no blob", not an error, for the functions that read (they may list the bucket).
    expect(await api.head('files/rehearsal/file_1')).toBeNull();
    expect(await store('HarnessStepFunction').get('files/rehearsal/file_1')).toBeNull();
  });

  it('the reaper writes a workspace snapshot as a multipart upload and deletes an older one; the harness restores it; the reaper reads nothing', async () => {
    const bytes = randomBytes(MIN_PART_SIZE + 4321);
    const stream = Readable.from((function* () { for (let i = 0; i < bytes.length; i += 1 << 20) yield bytes.subarray(i, i + (1 << 20)); })());
    expect(await store('SandboxReaperFunction').put('workspaces/rehearsal/sesn_1/workspace.tar', stream, { contentType: 'application/x-tar' })).toEqual({ size: bytes.length, contentType: 'application/x-tar' });
    expect(gateway.calls.get('fn:SandboxReaperFunction s3:UploadPart')).toBe(2);
    expect(sha(await buffer((await store('HarnessStepFunction').get('workspaces/rehearsal/sesn_1/workspace.tar'))!.body))).toBe(sha(bytes));
    await store('SandboxReaperFunction').put('workspaces/rehearsal/sesn_1/older.tar', new TextEncoder().encode('older'));
    await store('SandboxReaperFunction').delete('workspaces/rehearsal/sesn_1/older.tar');
    // The harness only restores: it writes and deletes no snapshot.
    await denied(store('HarnessStepFunction').put('workspaces/rehearsal/sesn_1/workspace.tar', new TextEncoder().encode('newer')));
    await denied(store('HarnessStepFunction').delete('workspaces/rehearsal/sesn_1/workspace.tar'));
    await denied(store('SandboxReaperFunction').get('workspaces/rehearsal/sesn_1/workspace.tar'));
    // Without ListBucket, a missing key is 403 too, as S3 answers it.
    await denied(store('SandboxReaperFunction').head('workspaces/rehearsal/sesn_none/workspace.tar'));
  });

  it('the API function copies a snapshot for a fork and deletes the snapshots of a deleted session', async () => {
    const api = store('ApiHandler');
    const source = await api.get('workspaces/rehearsal/sesn_1/workspace.tar');
    await api.put('workspaces/rehearsal/sesn_fork/workspace.tar', source!.body, { size: source!.head.size });
    expect(sha(await buffer((await store('HarnessStepFunction').get('workspaces/rehearsal/sesn_fork/workspace.tar'))!.body))).toBe(
      sha(await buffer((await api.get('workspaces/rehearsal/sesn_1/workspace.tar'))!.body)),
    );
    await api.delete('workspaces/rehearsal/sesn_fork/workspace.tar');
    expect(await api.get('workspaces/rehearsal/sesn_fork/workspace.tar')).toBeNull();
  });

  it('refuses every function the prefixes its role lacks, with AccessDenied naming action and object', async () => {
    const before = gateway.denials.length;
    await denied(store('ApiHandler').put('elsewhere/rehearsal/x', new Uint8Array(1)));
    await denied(store('ApiHandler').get('elsewhere/rehearsal/x'));
    await denied(store('SandboxReaperFunction').put('files/rehearsal/file_2', new Uint8Array(1)));
    await denied(store('HarnessStepFunction').put('elsewhere/x', new Uint8Array(1)));
    for (const fn of ['ApiStreamHandler', 'CredentialProxyFunction']) {
      await denied(store(fn).get('files/rehearsal/file_out'));
      await denied(store(fn).put('files/rehearsal/file_3', new Uint8Array(1)));
    }
    const denials = gateway.denials.slice(before);
    expect(denials[0]).toMatchObject({ function: 'fn:ApiHandler', service: 's3', operation: 'PutObject', action: 's3:PutObject', resource: `arn:aws:s3:::${bucket}/elsewhere/rehearsal/x` });
    expect(denials[0].message).toMatch(/not authorized to perform: s3:PutObject/);
    expect(denials.map((d) => `${d.function} ${d.action}`)).toEqual([
      'fn:ApiHandler s3:PutObject',
      'fn:ApiHandler s3:GetObject',
      'fn:SandboxReaperFunction s3:PutObject',
      'fn:HarnessStepFunction s3:PutObject',
      'fn:ApiStreamHandler s3:GetObject',
      'fn:ApiStreamHandler s3:PutObject',
      'fn:CredentialProxyFunction s3:GetObject',
      'fn:CredentialProxyFunction s3:PutObject',
    ]);
    expect(emulator.keys(bucket)).toEqual(['files/rehearsal/file_out', 'workspaces/rehearsal/sesn_1/workspace.tar']);
  });

  it('lets the bucket policy refuse a request without TLS even to a role that may write', () => {
    const harness = callerOf('HarnessStepFunction');
    const object = `arn:aws:s3:::${bucket}/files/rehearsal/file_out`;
    expect(authorize.check(harness, 's3:PutObject', object).allowed).toBe(true);
    const plain = authorize.check(harness, 's3:PutObject', object, { 'aws:SecureTransport': false });
    expect(plain.allowed).toBe(false);
    if (!plain.allowed) expect(plain.message).toMatch(/explicit deny in a resource-based policy/);
  });
});
