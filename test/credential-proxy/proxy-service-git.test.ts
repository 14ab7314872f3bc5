import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoStateTable } from '../../lambdas/adapters/aws/dynamodb-state-table.js';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite, type EmbeddedDynamo } from '../../lambdas/adapters/local/dynalite.js';
import { loadSigningKey } from '../../lambdas/credential-proxy/handler.js';
import { tableGitChannels } from '../../lambdas/core/vault/git-channels.js';
import { CredentialProxyClient } from '../../lambdas/core/vault/protocol.js';
import { CredentialProxy } from '../../lambdas/core/vault/proxy.js';
import type { SecretStore } from '../../lambdas/core/vault/secret-store.js';
import { normalizeRepositoryUrl, type SecretFields } from '../../lambdas/core/vault/types.js';
import type { StateTable } from '../../lambdas/core/store.js';
import { keys } from '../../lambdas/core/storage/keys.js';
import { createGitProxy, isGitRoute, serveGit } from '../../lambdas/proxy-service/git-route.js';
import { DescribeTasksCommand, ECSClient, RunTaskCommand, StopTaskCommand, type RunTaskCommandInput } from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';
import { EcsSandboxProvider, GIT_CHANNEL_ENV } from '../../lambdas/adapters/aws/ecs-sandbox-provider.js';
import { SandboxClient } from '../../lambdas/core/sandbox/client.js';
import { startAgent, type AgentHandle } from '../sandbox/helpers.js';
import { startGitForwarder, type GitForwarder } from '../../sandbox/agent/git-forwarder.js';
import { logOf, startTestGitServer, type TestGitServer } from './fixtures/git-server.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

class MemorySecrets implements SecretStore {
  readonly map = new Map<string, SecretFields>();
  async get(ref: string) {
    return this.map.get(ref);
  }
  async put(ref: string, value: SecretFields) {
    this.map.set(ref, { ...value });
  }
  async delete(ref: string) {
    this.map.delete(ref);
  }
}

const execFileAsync = promisify(execFile);
const GIT_ENV = { GIT_CONFIG_NOSYSTEM: '1', GIT_TERMINAL_PROMPT: '0', PATH: process.env.PATH ?? '/usr/bin:/bin' };

/**
 * The proxy service's git channel on its own, as on AWS: the credential proxy Lambda's core
 * (`git_open`) and the proxy service's (`serveGit`) are two processes' worth of `CredentialProxy`
 * that share only the state table (the open channels) and the secret store (the signing key and
 * the token). A real git client clones a private repository larger than a buffered Lambda
 * response may be (6 MB) through the sandbox's git forwarder and the service, commits and pushes;
 * the token is nowhere in the clone; a closed channel and an oversized push are refused.
 */
describe('the proxy service\'s git channel', () => {
  let dynamo: EmbeddedDynamo;
  let table: StateTable;
  let git: TestGitServer;
  let root: string;
  let home: string;
  let server: http.Server;
  let serviceUrl: string;
  let forwarder: GitForwarder | undefined;
  const secrets = new MemorySecrets();
  const TOKEN = `ghp_${randomBytes(12).toString('hex')}`;
  const MAX_PUSH = 3 * 1024 * 1024;
  const BIG = 7 * 1024 * 1024;
  let issuer: CredentialProxy;
  let client: CredentialProxyClient;
  let repoUrl: string;

  // Asynchronous: the git server and the service answer from this process's event loop.
  const gitChannelCount = async (sessionId: string, sandbox: string) => (await table.query(keys.gitChannels(sessionId))).items.filter((i) => i.sandbox === sandbox).length;
  const run = async (args: string[], cwd: string) => (await execFileAsync('git', args, { cwd, env: { ...GIT_ENV, HOME: home }, maxBuffer: 1 << 20 })).stdout;

  beforeAll(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-psgit-'));
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-psgit-home-'));
    // A private repository with a 7 MB incompressible file: its clone's pack is over 6 MB.
    const work = path.join(root, 'seed');
    fs.mkdirSync(work);
    await run(['init', '-q', '-b', 'main'], work);
    fs.writeFileSync(path.join(work, 'README'), 'private content\n');
    fs.writeFileSync(path.join(work, 'big.bin'), randomBytes(BIG));
    await run(['add', '.'], work);
    await run(['-c', 'user.name=t', '-c', 'user.email=t@example.com', 'commit', '-q', '-m', 'first'], work);
    await run(['clone', '-q', '--bare', work, path.join(root, 'private-repo.git')], root);
    git = await startTestGitServer({ root, token: TOKEN });
    repoUrl = git.urlOf('private-repo');

    dynamo = await startDynalite();
    await ensureTables(dynamo.client, { events: 'events', state: 'state' });
    table = new DynamoStateTable(dynamo.client, 'state');
    await secrets.put('corral/vault/t1/repo-token', { token: TOKEN });
    await table.put({
      pk: 'session#s1',
      sk: 'head',
      tenant: 't1',
      rev: 0,
      data: { id: 's1', vault_ids: [], resources: [{ type: 'github_repository', url: repoUrl, mount_path: '/workspace/private-repo' }] },
      git_credentials: [{ url: normalizeRepositoryUrl(repoUrl), secret_ref: 'corral/vault/t1/repo-token' }],
    });

    // The service: port 3128's git route (here an ephemeral port on loopback).
    const service = createGitProxy({ table, secrets });
    server = http.createServer((req, res) => {
      if (!isGitRoute(req.url)) {
        req.resume();
        res.writeHead(404).end();
        return;
      }
      void serveGit(service, req, res, { maxRequestBytes: MAX_PUSH });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    serviceUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/git`;

    // The credential proxy Lambda: it opens channels, and creates the signing key on first use.
    issuer = new CredentialProxy({
      table,
      secrets,
      signingKey: () => loadSigningKey(secrets),
      gitChannels: tableGitChannels(table),
      gitEndpoint: { kind: 'https', url: serviceUrl },
    });
    client = new CredentialProxyClient({ call: (r) => issuer.handle(r) });
  });
  afterAll(async () => {
    forwarder?.server.close();
    server?.closeAllConnections();
    server?.close();
    await git?.close();
    await issuer?.close();
    await dynamo?.close();
    fs.rmSync(root, { recursive: true, force: true });
    fs.rmSync(home, { recursive: true, force: true });
  });

  it('clones a private repository over 6 MB, commits and pushes through the service; the token stays out', async () => {
    const channel = await client.gitOpen({ sessionId: 's1', sandbox: 'default', repositories: [repoUrl] });
    expect(channel.endpoint).toEqual({ kind: 'https', url: serviceUrl });
    expect(JSON.stringify(channel)).not.toContain(TOKEN);
    // As the Fargate sandbox's agent does with CORRAL_GIT_CHANNEL.
    forwarder = await startGitForwarder({ capability: channel.capability, url: serviceUrl, repositories: channel.repositories });
    const remote = forwarder.remoteFor(repoUrl)!;
    const sandbox = fs.mkdtempSync(path.join(root, 'sandbox-'));
    await run(['clone', '-q', remote, 'private-repo'], sandbox);
    const clone = path.join(sandbox, 'private-repo');
    expect(fs.readFileSync(path.join(clone, 'README'), 'utf8')).toBe('private content\n');
    expect(fs.statSync(path.join(clone, 'big.bin')).size).toBe(BIG);

    fs.appendFileSync(path.join(clone, 'README'), 'from the sandbox\n');
    await run(['-c', 'user.name=a', '-c', 'user.email=a@example.com', 'commit', '-q', '-am', 'pushed through the proxy service'], clone);
    await run(['push', '-q', 'origin', 'main'], clone);
    expect(logOf(path.join(root, 'private-repo.git'))[0]).toBe('pushed through the proxy service');
    // The server saw the token (the service added it), the sandbox's clone holds none of it.
    expect(git.authorizations.at(-1)).toBe(`Basic ${Buffer.from(`x-access-token:${TOKEN}`).toString('base64')}`);
    const grep = spawnSync('grep', ['-rl', '--binary-files=text', TOKEN, sandbox, home]);
    expect(grep.status).toBe(1); // searched, found nothing
    expect(grep.stdout.toString()).toBe('');
  });

  it('refuses a push larger than its bound, and nothing lands upstream', async () => {
    const clone = path.join(fs.readdirSync(root).filter((d) => d.startsWith('sandbox-')).map((d) => path.join(root, d))[0], 'private-repo');
    fs.writeFileSync(path.join(clone, 'more.bin'), randomBytes(MAX_PUSH + 512 * 1024));
    await run(['add', 'more.bin'], clone);
    await run(['-c', 'user.name=a', '-c', 'user.email=a@example.com', 'commit', '-q', '-m', 'too large'], clone);
    // git sends a pack this size chunked: the service cuts the upload once it passes the bound.
    const refused = (await run(['push', '-q', 'origin', 'main'], clone).then(() => null, (e: unknown) => e)) as { stderr?: string } | null;
    expect(refused?.stderr).toMatch(/RPC failed|hung up/);
    expect(logOf(path.join(root, 'private-repo.git'))[0]).toBe('pushed through the proxy service');
    // A body that declares its oversized length is answered 413 before anything is read.
    const declared = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${serviceUrl}/r/0/private-repo.git/git-receive-pack`, { method: 'POST', headers: { 'content-length': String(MAX_PUSH + 1) } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.write(Buffer.alloc(1024));
    });
    expect(declared).toBe(413);
  });

  it('the Fargate provider gives the task a channel, never the token; the agent clones through the service; release closes it', async () => {
    const ecs = mockClient(ECSClient);
    const port = await new Promise<number>((resolve) => {
      const probe = http.createServer().listen(0, '127.0.0.1', () => {
        const p = (probe.address() as AddressInfo).port;
        probe.close(() => resolve(p));
      });
    });
    const ARN = 'arn:aws:ecs:eu-west-1:123456789012:task/corral-sandboxes/0123456789abcdef';
    let input: RunTaskCommandInput | undefined;
    let agent: AgentHandle | undefined;
    ecs.on(RunTaskCommand).callsFake(async (i: RunTaskCommandInput) => {
      input = i;
      // The task: a real agent, given exactly the overrides' environment.
      const env = Object.fromEntries((i.overrides?.containerOverrides?.[0]?.environment ?? []).map((e) => [e.name!, e.value!]));
      const { CORRAL_SANDBOX_CAPABILITY: capability, ...rest } = env;
      agent = await startAgent({ root: fs.mkdtempSync(path.join(root, 'task-')), mode: 'tcp', port, capability, env: { ...rest, HOME: home }, waitReady: false });
      return { tasks: [{ taskArn: ARN, lastStatus: 'PROVISIONING' }], failures: [] };
    });
    const running = { taskArn: ARN, lastStatus: 'RUNNING', desiredStatus: 'RUNNING', attachments: [{ type: 'ElasticNetworkInterface', details: [{ name: 'privateIPv4Address', value: '127.0.0.1' }] }] };
    ecs.on(DescribeTasksCommand).callsFake(async () => ({ tasks: [{ ...running, containers: [{ name: 'sandbox', lastStatus: 'RUNNING', networkInterfaces: [] }] }] }));
    ecs.on(StopTaskCommand).resolves({});
    try {
      const provider = new EcsSandboxProvider({
        ecs: new ECSClient({ region: 'eu-west-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } }),
        cluster: 'corral-sandboxes',
        taskDefinition: 'corral-sandbox:7',
        subnets: ['subnet-a'],
        securityGroups: ['sg-sandbox'],
        containerName: 'sandbox',
        port,
        pollIntervalMs: 20,
        healthTimeoutMs: 60_000,
        gitChannels: client,
      });
      expect(provider.recipeSupport.credentialedRepositories.supported).toBe(true);
      const provisioning = provider.provision({
        sessionId: 's1',
        name: 'fargate',
        recipe: { environmentId: 'env_1', packages: {}, repositories: [{ url: repoUrl, mountPath: '/workspace/private-repo', checkout: null, channel: 'credential_proxy' }] },
      });
      const sb = await provisioning.catch(async (err: unknown) => {
        throw new Error(`${(err as Error).message}\n${agent?.stderr()}`);
      });
      const overrides = input!.overrides!.containerOverrides![0]!.environment!;
      expect(overrides.map((e) => e.name)).toEqual(['CORRAL_SANDBOX_CAPABILITY', 'CORRAL_SANDBOX_RECIPE', GIT_CHANNEL_ENV]);
      expect(JSON.parse(overrides[2]!.value!)).toMatchObject({ url: serviceUrl, capability: expect.stringMatching(/^v1\./), repositories: [{ url: repoUrl, path: '/r/0/private-repo.git' }] });
      expect(JSON.stringify(input)).not.toContain(TOKEN);
      const out = await new SandboxClient(sb.endpoint).execute('bash', { command: 'cd private-repo && cat README && git remote get-url origin && git log -1 --format=%s' });
      expect(out.output).toContain('from the sandbox');
      expect(out.output).toMatch(/http:\/\/127\.0\.0\.1:\d+\/r\/0\/private-repo\.git/);
      expect(spawnSync('grep', ['-rl', '--binary-files=text', TOKEN, agent!.workspace, agent!.stateDir]).status).toBe(1);
      expect(spawnSync('grep', ['-l', '--binary-files=text', TOKEN, `/proc/${agent!.child.pid}/environ`]).status).toBe(1);
      expect(await gitChannelCount('s1', 'fargate')).toBe(1);
      await provider.release('s1', 'fargate', sb.ref);
      expect(await gitChannelCount('s1', 'fargate')).toBe(0);
    } finally {
      await agent?.stop();
      ecs.restore();
    }
  });

  it('a closed channel opens nothing: the sandbox\'s git requests are refused', async () => {
    const remote = forwarder!.remoteFor(repoUrl)!;
    expect(await run(['ls-remote', remote, 'main'], home)).toMatch(/refs\/heads\/main/);
    await client.gitClose({ sessionId: 's1', sandbox: 'default' });
    let err: Error & { stderr?: string } = new Error('no failure');
    try {
      await run(['ls-remote', remote, 'main'], home);
    } catch (e) {
      err = e as typeof err;
    }
    expect(String(err.stderr ?? err.message)).toMatch(/403/);
  });
});
