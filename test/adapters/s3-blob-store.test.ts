import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer, text } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIN_PART_SIZE, S3BlobStore } from '../../lambdas/adapters/aws/s3-blob-store.js';
import { S3Client } from '../../lambdas/adapters/aws/s3-client.js';
import { AwsGateway, type Caller } from '../../infra/rehearsal/aws-gateway.js';
import { S3Emulator } from '../../infra/rehearsal/s3.js';

/**
 * The S3 adapter and its minimal S3 client (s3-client.ts) against the deploy rehearsal's S3 (real
 * HTTP on loopback: streamed uploads, multipart uploads, S3's XML errors), with every request's
 * SigV4 signature checked by the gateway against the caller's secret, as AWS checks it. IAM is not
 * the point here (every call is allowed, except ListBucket where a test says so);
 * test/rehearsal/s3.test.ts checks it with the template's roles.
 */
const BUCKET = 'corral-blobs-test';
const SECRET = 'blob-test-secret';
let dir: string;
let gateway: AwsGateway;
let emulator: S3Emulator;
let mayList = true;
let s3: S3Client;
let endpoint: string;
/** Requests the gateway refused for their signature. */
const unauthenticated: string[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 's3-blobs-'));
  emulator = new S3Emulator({ dir, buckets: [BUCKET], mayList: () => mayList });
  const caller: Caller = { accessKeyId: 'AKIDBLOBTEST', name: 'test', roleLogicalId: 'Role', roleArn: 'arn:aws:iam::000000000000:role/Role' };
  gateway = new AwsGateway({
    callers: new Map([[caller.accessKeyId, caller]]),
    backends: { s3: emulator },
    authorize: () => [{ allowed: true }],
    secretOf: (id) => (id === caller.accessKeyId ? SECRET : undefined),
    onCall: (call, outcome) => void (outcome === 'unauthenticated' && unauthenticated.push(`${call.method} ${call.path}`)),
  });
  endpoint = await gateway.start();
  s3 = new S3Client({ region: 'us-east-1', endpoint, maxAttempts: 1, credentials: { accessKeyId: caller.accessKeyId, secretAccessKey: SECRET, sessionToken: 'session-token' } });
});
afterAll(async () => {
  s3.destroy();
  await gateway.close();
  rmSync(dir, { recursive: true, force: true });
});

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const calls = (op: string) => gateway.calls.get(`test s3:${op}`) ?? 0;
/** A stream of `bytes` in uneven chunks, with no length known in advance. */
const chunked = (bytes: Buffer, size = 777_777) => Readable.from((function* () { for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size); })());

describe('S3BlobStore', () => {
  const store = () => new S3BlobStore({ s3, bucket: BUCKET, partSize: MIN_PART_SIZE });

  it('stores bytes, reads them back with size and type, deletes them; a missing key is null', async () => {
    const blobs = store();
    expect(await blobs.put('files/t1/file_1', new TextEncoder().encode('hello'), { contentType: 'text/plain' })).toEqual({ size: 5, contentType: 'text/plain' });
    expect(await blobs.head('files/t1/file_1')).toEqual({ size: 5, contentType: 'text/plain' });
    const got = await blobs.get('files/t1/file_1');
    expect(got!.head).toEqual({ size: 5, contentType: 'text/plain' });
    expect(await text(got!.body)).toBe('hello');
    // Untyped: reported without a type, as the local store does (the SDK sends application/octet-stream).
    await blobs.put('files/t1/file_1', new TextEncoder().encode('abc'));
    expect(await blobs.head('files/t1/file_1')).toEqual({ size: 3 });
    await blobs.delete('files/t1/file_1');
    expect(await blobs.get('files/t1/file_1')).toBeNull();
    expect(await blobs.head('files/t1/file_1')).toBeNull();
    await blobs.delete('files/t1/file_1');
    expect(emulator.keys(BUCKET)).not.toContain('files/t1/file_1');
  });

  it('sends a stream of known size as one PutObject, as it is read', async () => {
    const bytes = randomBytes(300_000);
    const before = { put: calls('PutObject'), create: calls('CreateMultipartUpload') };
    expect(await store().put('workspaces/t1/s1/a.tar', chunked(bytes, 65_536), { size: bytes.length })).toEqual({ size: bytes.length });
    expect(calls('PutObject')).toBe(before.put + 1);
    expect(calls('CreateMultipartUpload')).toBe(before.create);
    expect(sha(await buffer((await store().get('workspaces/t1/s1/a.tar'))!.body))).toBe(sha(bytes));
  });

  it('sends a short stream of unknown size as one PutObject', async () => {
    const before = { put: calls('PutObject'), create: calls('CreateMultipartUpload') };
    expect(await store().put('files/t1/small', Readable.from([Buffer.from('a'), Buffer.from('bc')]), { contentType: 'text/csv' })).toEqual({ size: 3, contentType: 'text/csv' });
    expect(calls('PutObject')).toBe(before.put + 1);
    expect(calls('CreateMultipartUpload')).toBe(before.create);
    expect(await text((await store().get('files/t1/small'))!.body)).toBe('abc');
    // And an empty one.
    expect(await store().put('files/t1/empty', Readable.from([]))).toEqual({ size: 0 });
    expect(await store().head('files/t1/empty')).toEqual({ size: 0 });
  });

  it('sends a long stream of unknown size as a multipart upload of full parts', async () => {
    const bytes = randomBytes(2 * MIN_PART_SIZE + 12_345);
    const before = { create: calls('CreateMultipartUpload'), parts: calls('UploadPart'), complete: calls('CompleteMultipartUpload') };
    expect(await store().put('workspaces/t1/s1/big.tar', chunked(bytes), { contentType: 'application/x-tar' })).toEqual({ size: bytes.length, contentType: 'application/x-tar' });
    expect(calls('CreateMultipartUpload')).toBe(before.create + 1);
    expect(calls('UploadPart')).toBe(before.parts + 3);
    expect(calls('CompleteMultipartUpload')).toBe(before.complete + 1);
    expect(await store().head('workspaces/t1/s1/big.tar')).toEqual({ size: bytes.length, contentType: 'application/x-tar' });
    expect(sha(await buffer((await store().get('workspaces/t1/s1/big.tar'))!.body))).toBe(sha(bytes));
    expect(emulator.openUploads(BUCKET)).toBe(0);
  });

  it('aborts the multipart upload when the stream fails, and keeps the old bytes', async () => {
    await store().put('workspaces/t1/s2/ws.tar', new TextEncoder().encode('old'));
    const before = calls('AbortMultipartUpload');
    let sent = 0;
    const failing = new Readable({
      read() {
        if (sent >= 2 * MIN_PART_SIZE + 1) return this.destroy(new Error('cut'));
        sent += 1024 * 1024;
        this.push(randomBytes(1024 * 1024));
      },
    });
    await expect(store().put('workspaces/t1/s2/ws.tar', failing)).rejects.toThrow('cut');
    expect(calls('AbortMultipartUpload')).toBe(before + 1);
    expect(emulator.openUploads(BUCKET)).toBe(0);
    expect(await text((await store().get('workspaces/t1/s2/ws.tar'))!.body)).toBe('old');
  });

  it('reports a read S3 refuses as an error, not as a missing blob', async () => {
    mayList = false; // S3 answers 403 for a missing key to a caller that may not list the bucket
    try {
      await expect(store().head('files/t1/nothing')).rejects.toMatchObject({ $metadata: { httpStatusCode: 403 } });
      await expect(store().get('files/t1/nothing')).rejects.toMatchObject({ name: 'AccessDenied' });
    } finally {
      mayList = true;
    }
  });

  it('refuses keys the core would never build', async () => {
    for (const key of ['../x', 'a/../../x', '/etc/passwd', 'a//b', 'a/./b', 'x#type', '', 'a/b/', 'a b']) {
      await expect(store().put(key, new Uint8Array(1)), key).rejects.toThrow(/invalid blob key/);
      await expect(store().get(key), key).rejects.toThrow(/invalid blob key/);
    }
    expect(() => new S3BlobStore({ s3, bucket: BUCKET, partSize: 1024 })).toThrow(/at least/);
  });

  it('signs keys with every character the core uses, and a session token', async () => {
    const key = 'workspaces/t_1/s-1/a=b.c_d-e.tar';
    await store().put(key, Readable.from([Buffer.from('x')]), { size: 1 });
    expect(await store().head(key)).toEqual({ size: 1 });
    expect(emulator.keys(BUCKET)).toContain(key);
  });

  it('is refused with SignatureDoesNotMatch when signed with another secret, and sends a signed hash of bytes in memory', async () => {
    const wrong = new S3Client({ region: 'us-east-1', endpoint, maxAttempts: 1, credentials: { accessKeyId: 'AKIDBLOBTEST', secretAccessKey: 'not-the-secret' } });
    try {
      const blobs = new S3BlobStore({ s3: wrong, bucket: BUCKET });
      await expect(blobs.put('files/t1/forged', new Uint8Array(3))).rejects.toMatchObject({ name: 'SignatureDoesNotMatch', $metadata: { httpStatusCode: 403 } });
      await expect(blobs.head('files/t1/forged')).rejects.toMatchObject({ name: 'Forbidden', $metadata: { httpStatusCode: 403 } });
      expect(unauthenticated.splice(0)).toEqual(['PUT /corral-blobs-test/files/t1/forged', 'HEAD /corral-blobs-test/files/t1/forged']);
    } finally {
      wrong.destroy();
    }
    expect(emulator.keys(BUCKET)).not.toContain('files/t1/forged');
  });

  it('fails a PutObject whose stream fails, rather than waiting on it', async () => {
    let sent = 0;
    const failing = new Readable({
      read() {
        if (sent >= 100_000) return this.destroy(new Error('cut short'));
        sent += 50_000;
        this.push(randomBytes(50_000));
      },
    });
    await expect(store().put('files/t1/cut', failing, { size: 1_000_000 })).rejects.toThrow('cut short');
    expect(emulator.keys(BUCKET)).not.toContain('files/t1/cut');
  });

  it('signed every request it sent the way the gateway checks it', () => {
    expect(unauthenticated).toEqual([]);
  });
});

describe('S3Client retries', () => {
  it('sends a request with a body in memory again after a 503 SlowDown, and a stream only once', async () => {
    const seen: string[] = [];
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        seen.push(`${req.method} ${req.url}`);
        if (seen.length % 2 === 1) {
          res.writeHead(503, { 'content-type': 'application/xml' });
          res.end('<?xml version="1.0"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>');
        } else {
          res.writeHead(200, { etag: '"e"' });
          res.end();
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const flaky = new S3Client({ region: 'us-east-1', endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, maxAttempts: 3, credentials: { accessKeyId: 'A', secretAccessKey: 'B' } });
    try {
      expect(await flaky.putObject({ bucket: 'b', key: 'k', body: new Uint8Array(2), contentLength: 2 })).toEqual({ etag: '"e"' });
      expect(seen).toEqual(['PUT /b/k', 'PUT /b/k']);
      await expect(flaky.putObject({ bucket: 'b', key: 'k', body: Readable.from([Buffer.from('ab')]), contentLength: 2 })).rejects.toMatchObject({
        name: 'SlowDown',
        $metadata: { httpStatusCode: 503 },
      });
      expect(seen).toHaveLength(3);
    } finally {
      flaky.destroy();
      await new Promise((r) => server.close(r));
    }
  });
});
