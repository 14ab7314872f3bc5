import { execFile } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { GetSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoStateTable } from '../../lambdas/adapters/aws/dynamodb-state-table.js';
import { SecretsManagerStore } from '../../lambdas/adapters/aws/secrets-manager-store.js';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite, type EmbeddedDynamo } from '../../lambdas/adapters/local/dynalite.js';
import { PemEgressCa } from '../../lambdas/core/sandbox/egress-ca.js';
import { newEgressCapability, StateTableEgressGrants } from '../../lambdas/core/sandbox/egress-grant.js';
import { placeholdersFor } from '../../lambdas/core/sandbox/egress-placeholders.js';
import { EgressRelay } from '../../lambdas/core/sandbox/egress-relay.js';
import { CredentialProxyClient } from '../../lambdas/core/vault/protocol.js';
import { CredentialProxy } from '../../lambdas/core/vault/proxy.js';
import { VaultService } from '../../lambdas/core/vault/vaults.js';
import { setUpEgressCredentials } from '../../lambdas/proxy-service/egress-credentials.js';
import { startProxyService, type ProxyService } from '../../lambdas/proxy-service/server.js';
import { installEgressTrust } from '../../sandbox/agent/egress-trust.js';
import { startSecretsManager } from '../helpers/secrets-manager-http.js';
import { memoryHolds } from '../helpers/process-memory.js';
import { SandboxClient } from '../../lambdas/core/sandbox/client.js';
import { startAgent } from './helpers.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
const run = promisify(execFile);

/**
 * The proxy service applying an `environment_variable` credential as on AWS, with real parts: the
 * vault's secret in Secrets Manager (the rehearsal's emulator, over HTTP), the session and vault
 * records in dynalite, the egress CA made in Secrets Manager on the service's first start, the
 * service on TCP with a sandbox's egress grant (what the ECS provider writes: placeholders by
 * reference, no secret), and curl as the sandbox's tool: it trusts the bundle the agent builds
 * from `/egress-ca.pem` and sends only the placeholder.
 */
const SECRET = 'sk-aws-canary-5e4d3c2b1a09f8e7';

describe('proxy service: environment_variable credentials', () => {
  const upstreamCa = PemEgressCa.create();
  const seen: Array<{ host: string; authorization: string }> = [];
  const logLines: string[] = [];
  let upstream: https.Server;
  let upstreamPort: number;
  let dynamo: EmbeddedDynamo;
  let sm: Awaited<ReturnType<typeof startSecretsManager>>;
  let service: ProxyService;
  let capability: string;
  let placeholder: string;
  let bundleEnv: Record<string, string>;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-proxysvc-cred-'));

  beforeAll(async () => {
    // The "internet": an API that requires the secret.
    upstream = https.createServer({ SNICallback: (name, cb) => cb(null, upstreamCa.contextFor(name)) }, (req, res) => {
      const authorization = String(req.headers.authorization ?? '');
      seen.push({ host: String(req.headers.host), authorization });
      res.writeHead(authorization === `Bearer ${SECRET}` ? 200 : 401).end(authorization === `Bearer ${SECRET}` ? 'welcome' : 'no');
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
    upstreamPort = (upstream.address() as AddressInfo).port;

    // The vault: the API writes the credential; its secret goes to Secrets Manager under corral/vault/.
    dynamo = await startDynalite();
    await ensureTables(dynamo.client, { events: 'events', state: 'state' });
    const table = new DynamoStateTable(dynamo.client, 'state');
    sm = await startSecretsManager();
    const apiSide = new CredentialProxy({ table, secrets: new SecretsManagerStore(sm.client), signingKey: async () => Buffer.alloc(32, 1) });
    const harnessClient = new CredentialProxyClient({ call: (r) => apiSide.handle(r) });
    const vaults = new VaultService(table, harnessClient);
    const v = await vaults.create('t1', { display_name: 'canary' });
    await vaults.createCredential('t1', v.id, {
      auth: { type: 'environment_variable', secret_name: 'CANARY_API_KEY', secret_value: SECRET, networking: { type: 'limited', allowed_hosts: ['api.canary.test'] }, injection_location: { header: true, body: false } },
    });
    await table.put({ pk: 'session#sesn_aws', sk: 'head', tenant: 't1', rev: 0, data: { id: 'sesn_aws', vault_ids: [v.id], resources: [], agent: { mcp_servers: [] } } });

    // The ECS provider's side: placeholders from egress_credentials (no secret), and the grant.
    const made = placeholdersFor(await harnessClient.egressCredentials({ sessionId: 'sesn_aws' }));
    placeholder = made.env.CANARY_API_KEY!;
    capability = newEgressCapability();
    const grants = new StateTableEgressGrants(table);
    await grants.put(capability, { tenant: 't1', sessionId: 'sesn_aws', sandbox: 'default', policy: { type: 'unrestricted' }, credentials: made.credentials, expiresAt: Date.now() + 600_000 });

    // The proxy service task: CA and secrets with its own clients.
    const logger = {
      info: (m: string, e?: Record<string, unknown>) => logLines.push(`${m} ${JSON.stringify(e ?? {})}`),
      warn: (m: string, e?: Record<string, unknown>) => logLines.push(`${m} ${JSON.stringify(e ?? {})}`),
      error: (m: string, e?: Record<string, unknown>) => logLines.push(`${m} ${JSON.stringify(e ?? {})}`),
    };
    const creds = await setUpEgressCredentials({ stateTable: table, logger, secretsManager: sm.client });
    const relay = new EgressRelay({ logger, allowPrivateAddresses: ['127.0.0.1'], resolve: async () => ['127.0.0.1'], ca: creds.ca, secrets: creds.secrets, upstreamTrust: [upstreamCa.certPem] });
    service = await startProxyService({ grants, relay, routes: { sandbox: [creds.route] }, logger, host: '127.0.0.1', sandboxPort: 0 });

    // The agent's side: the trust bundle from the service.
    bundleEnv = await installEgressTrust(`http://127.0.0.1:${service.sandboxPort}`, path.join(dir, 'ca'), () => {}, { attempts: 1 });
    // curl also trusts the test internet's own CA: a tunnel that is not intercepted shows the upstream's certificate.
    fs.writeFileSync(path.join(dir, 'curl.pem'), fs.readFileSync(bundleEnv.CURL_CA_BUNDLE!, 'utf8') + upstreamCa.certPem);
  }, 60_000);

  afterAll(async () => {
    await service?.close();
    await new Promise<void>((r) => upstream.close(() => r()));
    await sm?.close();
    await dynamo?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const curl = (host: string, auth = `Bearer ${placeholder}`) =>
    run('curl', ['-sS', '-o', '-', '-w', '\n%{http_code}', '--proxy', `http://127.0.0.1:${service.sandboxPort}`, '--proxy-header', `Proxy-Authorization: Bearer ${capability}`, '--cacert', path.join(dir, 'curl.pem'), '-H', `Authorization: ${auth}`, `https://${host}:${upstreamPort}/v1/ping`], { env: { PATH: process.env.PATH } })
      .then((r) => r.stdout)
      .catch((e: { stdout?: string; stderr?: string }) => `${e.stdout ?? ''}${e.stderr ?? ''}`);

  it('the tool sends the placeholder; the allowed host receives the secret, through a CA the sandbox fetched', async () => {
    expect(placeholder).toMatch(/^corral-placeholder-[0-9a-f]{48}$/);
    // The bundle the agent built ends with the CA kept in Secrets Manager (made there by the service).
    const stored = JSON.parse((await sm.client.send(new GetSecretValueCommand({ SecretId: 'corral/egress-ca' }))).SecretString!) as { certificate: string };
    expect(fs.readFileSync(bundleEnv.CURL_CA_BUNDLE!, 'utf8').endsWith(stored.certificate)).toBe(true);
    expect(await curl('api.canary.test')).toBe('welcome\n200');
    expect(seen.at(-1)).toEqual({ host: `api.canary.test:${upstreamPort}`, authorization: `Bearer ${SECRET}` });
  });

  it('another host gets only the placeholder, a wrong capability gets nothing, and no log line holds the secret', async () => {
    expect(await curl('elsewhere.test')).toBe('no\n401');
    expect(seen.at(-1)).toEqual({ host: `elsewhere.test:${upstreamPort}`, authorization: `Bearer ${placeholder}` });
    const before = seen.length;
    const denied = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--proxy', `http://127.0.0.1:${service.sandboxPort}`, '--proxy-header', `Proxy-Authorization: Bearer ${newEgressCapability()}`, '--cacert', bundleEnv.CURL_CA_BUNDLE!, `https://api.canary.test:${upstreamPort}/`]).catch((e: { stdout?: string; stderr?: string }) => `${e.stdout ?? ''}${e.stderr ?? ''}`);
    expect(String(typeof denied === 'string' ? denied : denied.stdout)).toMatch(/407/);
    expect(seen.length).toBe(before);
    expect(logLines.join('\n')).toMatch(/egress credential applied/);
    expect(logLines.join('\n')).not.toContain(SECRET);
  });

  it('a Fargate sandbox agent: its tool reaches the API with the placeholder; the secret is in no environment, command line, file or memory of the sandbox', async () => {
    // As the ECS provider starts it: the egress channel (proxy address, capability) and the placeholders.
    const root = fs.mkdtempSync(path.join(dir, 'task-'));
    const agent = await startAgent({
      root,
      env: {
        CORRAL_EGRESS_CHANNEL: JSON.stringify({ address: `127.0.0.1:${service.sandboxPort}`, capability }),
        CORRAL_TOOL_ENV: JSON.stringify({ CANARY_API_KEY: placeholder }),
        TMPDIR: root,
      },
    });
    try {
      const c = new SandboxClient(agent.endpoint);
      const call = `curl -sS -H "Authorization: Bearer $CANARY_API_KEY" https://api.canary.test:${upstreamPort}/v1/ping`;
      expect((await c.execute('bash', { command: call })).output).toBe('welcome');
      expect(seen.at(-1)).toEqual({ host: `api.canary.test:${upstreamPort}`, authorization: `Bearer ${SECRET}` });
      // From inside: the variable is the placeholder, and nothing the tools can read holds the secret.
      const inside = (await c.execute('bash', { command: `printf %s "$CANARY_API_KEY"; echo; (env; cat /proc/*/environ /proc/*/cmdline 2>/dev/null) | tr '\\0' '\\n' | grep -c '${SECRET.slice(0, -1)}[${SECRET.slice(-1)}]' || true` })).output;
      expect(inside).toBe(`${placeholder}\n0\n`);
      // From outside: the agent's environment, command line, files and memory.
      const pid = agent.child.pid!;
      for (const f of ['environ', 'cmdline']) expect(fs.readFileSync(`/proc/${pid}/${f}`).includes(SECRET)).toBe(false);
      const grep = await run('grep', ['-rl', SECRET, root]).then((r) => r.stdout, () => '');
      expect(grep).toBe('');
      if (process.getuid?.() === 0) {
        // The scan can see: it finds the placeholder the agent holds.
        expect(memoryHolds(pid, [Buffer.from(SECRET), Buffer.from(placeholder)])).toEqual([false, true]);
      }
    } finally {
      await agent.stop();
    }
  });
});
