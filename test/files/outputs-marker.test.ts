/**
 * The outputs catalogue costs nothing when nothing under `/mnt/session/outputs` changed: a real
 * sandbox agent behind a counting proxy (every request the manager makes to it is counted), the
 * Files service on the in-memory state table (every catalogue lookup counted) and a blob store on
 * disk. A writing call that changed nothing there makes one request (`POST /execute`) and no
 * lookup; a change, by the tool or by anyone between calls (a background process), is still
 * catalogued at the next writing call; a catalogue left unfinished is taken up again.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FileBlobStore } from '../../lambdas/adapters/local/file-blob-store.js';
import { FileService } from '../../lambdas/core/resources/files.js';
import { SandboxManager } from '../../lambdas/core/sandbox/manager.js';
import { MAX_COPIES_PER_CALL } from '../../lambdas/core/sandbox/session-files.js';
import type { ProvisionRequest, SandboxProvider } from '../../lambdas/core/sandbox/types.js';
import { MemoryStateTable } from '../unit/memory-store.js';
import { DELIVERS_EVERYTHING } from '../unit/recipe-support.js';
import { planFor, startAgent, tempDir, type AgentHandle } from '../sandbox/helpers.js';

const TENANT = 'tenant-marker';
const SESSION = 'sesn_marker';

describe('the outputs catalogue after a writing call', () => {
  let root: string;
  let outputs: string;
  let agent: AgentHandle;
  let proxy: http.Server;
  let port: number;
  /** `METHOD /path` of every request that reached the agent. */
  let requests: string[] = [];
  let lookups = 0;
  let files: FileService;
  let manager: SandboxManager;
  const plan = { ...planFor(), tenant: TENANT };

  beforeAll(async () => {
    root = tempDir('corral-marker-');
    const sessionDir = path.join(root, 'session');
    outputs = path.join(sessionDir, 'outputs');
    fs.mkdirSync(outputs, { recursive: true });
    agent = await startAgent({ root, args: ['--session-dir', sessionDir] });
    const socketPath = (agent.endpoint as { socketPath: string }).socketPath;
    proxy = http.createServer((req, res) => {
      requests.push(`${req.method} ${(req.url ?? '').split('?')[0]}`);
      const up = http.request({ socketPath, method: req.method, path: req.url, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    port = (proxy.address() as { port: number }).port;
  });
  afterAll(async () => {
    await agent?.stop();
    await new Promise((resolve) => proxy?.close(resolve));
    fs.rmSync(root, { recursive: true, force: true });
  });

  beforeEach(() => {
    fs.rmSync(outputs, { recursive: true, force: true });
    fs.mkdirSync(outputs);
    const table = new MemoryStateTable();
    files = new FileService(table, new FileBlobStore(path.join(root, `blobs-${Date.now()}-${Math.random()}`)));
    const counted = {
      read: (t: string, id: string) => files.readBytes(t, id),
      outputs: (t: string, s: string) => {
        lookups++;
        return files.outputs(t, s);
      },
      putOutput: files.putOutput.bind(files),
    };
    const capability = agent.endpoint.capability;
    const provider: SandboxProvider = {
      recipeSupport: DELIVERS_EVERYTHING,
      async provision(_req: ProvisionRequest) {
        return { endpoint: { kind: 'tcp', host: '127.0.0.1', port, capability }, ref: 'ref-1' };
      },
      async release() {},
    };
    manager = new SandboxManager(provider, table, undefined, counted);
  });

  /** One call; the requests it made to the agent and the catalogue lookups. */
  async function call(tool: string, input: unknown) {
    requests = [];
    lookups = 0;
    const out = await manager.execute(SESSION, 'default', plan, tool, input);
    expect(out.isError, out.output).toBe(false);
    return { requests: [...requests], lookups };
  }
  const catalogued = async () => Object.fromEntries([...(await files.outputs(TENANT, SESSION))].map(([p, f]) => [p, f.size]));

  it('makes no listing request and no lookup when nothing under outputs changed, and still catalogues a change', async () => {
    // The first writing call of a sandbox catalogues (its record has no marker yet).
    const first = await call('bash', { command: `printf one > ${outputs}/a.txt` });
    expect(first.requests).toEqual(['POST /execute', 'GET /outputs', 'GET /outputs/content']);
    expect(first.lookups).toBe(1);
    expect(await catalogued()).toEqual({ 'a.txt': 3 });

    // Nothing changed under outputs: the call is the call, nothing more.
    expect(await call('bash', { command: 'echo elsewhere > scratch.txt' })).toEqual({ requests: ['POST /execute'], lookups: 0 });
    expect(await call('write', { file_path: 'notes.txt', content: 'in the workspace' })).toEqual({ requests: ['POST /execute'], lookups: 0 });

    // Written between calls by someone else (a background process): the next writing call sees it.
    fs.writeFileSync(path.join(outputs, 'late.txt'), 'written later');
    const late = await call('bash', { command: 'true' });
    expect(late.requests).toEqual(['POST /execute', 'GET /outputs', 'GET /outputs/content']);
    expect(await catalogued()).toEqual({ 'a.txt': 3, 'late.txt': 13 });

    // A change of content with the same size moves the marker too.
    await call('bash', { command: `printf two > ${outputs}/a.txt` });
    const id = (await files.outputs(TENANT, SESSION)).get('a.txt')!.fileId;
    expect((await files.readBytes(TENANT, id))!.toString()).toBe('two');

    // A tool that does not write is never followed by a catalogue.
    fs.writeFileSync(path.join(outputs, 'b.txt'), 'b');
    expect(await call('read', { file_path: 'notes.txt' })).toEqual({ requests: ['POST /execute'], lookups: 0 });
    expect((await call('bash', { command: 'true' })).requests).toContain('GET /outputs');
    expect(Object.keys(await catalogued()).sort()).toEqual(['a.txt', 'b.txt', 'late.txt']);
    expect(await call('bash', { command: 'true' })).toEqual({ requests: ['POST /execute'], lookups: 0 });
  });

  it('tells the model, and runs the call, when the sandboxes have no /mnt/session for the session\'s files', async () => {
    const capability = agent.endpoint.capability;
    const bare: SandboxProvider = {
      recipeSupport: DELIVERS_EVERYTHING,
      async provision() {
        return { endpoint: { kind: 'tcp', host: '127.0.0.1', port, capability }, ref: 'ref-bare' };
      },
      async release() {},
      async sessionFilesRefusal() {
        return 'no /mnt/session here';
      },
    };
    const m = new SandboxManager(bare, new MemoryStateTable(), undefined, { read: async () => Buffer.from('x'), outputs: async () => new Map(), putOutput: async () => undefined });
    requests = [];
    const out = await m.execute('sesn_bare', 'default', { ...plan, files: [{ fileId: 'file_1', mountPath: '/mnt/session/uploads/file_1' }] }, 'bash', { command: 'echo ran' });
    expect(out.output).toContain('[corral] sandbox "default": the session\'s file resources are not mounted: no /mnt/session here');
    expect(out.output).toContain('ran');
    expect(requests).not.toContain('PUT /files');
  });

  it('takes up a catalogue left unfinished even though the marker did not move', async () => {
    const n = MAX_COPIES_PER_CALL + 5;
    for (let i = 0; i < n; i++) fs.writeFileSync(path.join(outputs, `f${String(i).padStart(2, '0')}.txt`), `file ${i}`);
    const first = await call('bash', { command: 'true' });
    expect(first.requests.filter((r) => r === 'GET /outputs/content')).toHaveLength(MAX_COPIES_PER_CALL);
    expect(Object.keys(await catalogued())).toHaveLength(MAX_COPIES_PER_CALL);
    const second = await call('bash', { command: 'true' });
    expect(second.requests.filter((r) => r === 'GET /outputs/content')).toHaveLength(5);
    expect(Object.keys(await catalogued())).toHaveLength(n);
    expect(await call('bash', { command: 'true' })).toEqual({ requests: ['POST /execute'], lookups: 0 });
  });
});
