import { spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareDataDir } from '../../local-runtime/runtime.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

/**
 * Attack: the embedded dynalite listened on a loopback TCP port with no authentication, so any
 * local user could read and change every tenant's data (API key hashes included). Now it listens
 * on a unix socket (0600) inside the data dir (0700), and another user cannot connect.
 */
const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;

/**
 * Try to send a DynamoDB ListTables to the socket as `uid`, from another process (asynchronously:
 * the store runs in this one); what happened, as one word.
 */
function connectAs(uid: number | undefined, socketPath: string): Promise<string> {
  const script = `
    const http = require('node:http');
    const req = http.request({ socketPath: ${JSON.stringify(socketPath)}, method: 'POST', path: '/',
      headers: { 'x-amz-target': 'DynamoDB_20120810.ListTables', 'content-type': 'application/x-amz-json-1.0', 'x-amz-date': '20260101T000000Z',
        // dynalite wants a signature's shape and checks nothing in it
        authorization: 'AWS4-HMAC-SHA256 Credential=local/20260101/local/dynamodb/aws4_request, SignedHeaders=host, Signature=00' } },
      (res) => { let b = ''; res.on('data', (c) => (b += c)); res.on('end', () => { console.log(b.includes('corral-state') ? 'READ-TABLES' : 'ANSWERED ' + b.slice(0, 200)); }); });
    req.on('error', (e) => console.log(e.code));
    req.end('{}');`;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', script], { uid, gid: uid, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (out += c));
    child.on('exit', () => resolve(out.trim()));
  });
}

describe('the embedded store', () => {
  let t: TestRuntime;
  let socketPath: string;
  beforeAll(async () => {
    t = await startTestRuntime();
    const endpoint = (t.runtime.credentialProxy as unknown as { opts: { dynamoEndpoint: string } }).opts.dynamoEndpoint;
    expect(endpoint).toMatch(/^unix:\//); // no TCP port at all
    socketPath = endpoint.slice('unix:'.length);
  });
  afterAll(() => t.close());

  it('listens on a 0600 socket in the 0700 data dir', () => {
    expect(socketPath).toBe(join(t.runtime.dataDir, 'dynamodb.sock'));
    expect(statSync(socketPath).isSocket()).toBe(true);
    expect(statSync(socketPath).mode & 0o777).toBe(0o600);
    expect(statSync(t.runtime.dataDir).mode & 0o777).toBe(0o700);
  });

  it.runIf(isRoot)('answers its own user, and another user (nobody) cannot connect', async () => {
    expect(await connectAs(undefined, socketPath)).toBe('READ-TABLES');
    expect(await connectAs(NOBODY, socketPath)).toBe('EACCES');
  });

  it.runIf(isRoot)('tightens a data dir others may enter, and refuses one that is not its user\'s', () => {
    const base = mkdtempSync(join(tmpdir(), 'corral-dd-'));
    try {
      const loose = join(base, 'loose');
      mkdirSync(loose, { mode: 0o755 });
      chmodSync(loose, 0o755);
      prepareDataDir(loose);
      expect(statSync(loose).mode & 0o777).toBe(0o700);

      const fresh = join(base, 'a', 'b');
      prepareDataDir(fresh);
      expect(statSync(fresh).mode & 0o777).toBe(0o700);

      const theirs = join(base, 'theirs');
      mkdirSync(theirs, { mode: 0o700 });
      chownSync(theirs, NOBODY, NOBODY);
      expect(() => prepareDataDir(theirs)).toThrow(/belongs to uid 65534, not to this user/);
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});
