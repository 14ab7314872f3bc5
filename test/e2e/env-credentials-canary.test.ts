import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileEgressCa } from '../../lambdas/adapters/local/egress-ca.js';
import { bwrapAvailable } from '../../lambdas/adapters/local/process-sandbox.js';
import { jsonLogger } from '../../lambdas/core/logger.js';
import { collectUntil, isIdle, listAll, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { memoryHolds } from '../helpers/process-memory.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

/**
 * The environment-variable canary. A unique secret is an `environment_variable` credential
 * (`CANARY_API_KEY`, allowed only towards `api.canary.test`); a loopback HTTPS server (its own CA,
 * standing in for a public one) answers `api.canary.test` only to `Authorization: Bearer <secret>`.
 * The agent's bash tool, in a real bubblewrapped sandbox, calls it with curl and
 * `$CANARY_API_KEY`, and succeeds: the egress proxy terminated TLS with the deployment's CA and
 * put the secret in place of the placeholder. The same call to `other.canary.test` (reachable,
 * not allowed by the credential) carries only the placeholder. Then the secret is searched for
 * everywhere in the sandbox: its environment, every process's environ and cmdline, a grep of its
 * filesystem, the sandbox's files on the host, and the memory of every one of its processes (read
 * from the host through /proc/<pid>/mem, as root); and in the events, model requests, API answers,
 * log lines and state table. It is nowhere. The memory scan's own control: the placeholder, which
 * the sandbox does hold, is found in that memory.
 */
const HAS_BWRAP = await bwrapAvailable();
if (!HAS_BWRAP && process.env.CI) throw new Error('bubblewrap (bwrap) is required for the credential canary in CI');
const IS_ROOT = process.getuid?.() === 0;
if (!HAS_BWRAP) console.warn('bubblewrap unavailable: skipping the environment-variable canary');

const text = (t: string) => [{ type: 'text' as const, text: t }];
const patternOf = (canary: string) => `${canary.slice(0, -1)}[${canary.slice(-1)}]`;

/** Every pid descended from this process that lives in another network namespace: the sandbox's. */
function sandboxPids(): number[] {
  const parent = new Map<number, number>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      parent.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone
    }
  }
  const ours = fs.readlinkSync('/proc/self/ns/net');
  const descends = (pid: number) => {
    for (let p = parent.get(pid); p !== undefined && p > 1; p = parent.get(p)) if (p === process.pid) return true;
    return false;
  };
  return [...parent.keys()].filter((pid) => {
    try {
      return descends(pid) && fs.readlinkSync(`/proc/${pid}/ns/net`) !== ours;
    } catch {
      return false;
    }
  });
}

describe.skipIf(!HAS_BWRAP)('the environment-variable canary: the secret is used, and readable nowhere in the sandbox', () => {
  const CANARY = `corral-envcanary-${randomBytes(12).toString('hex')}`;
  const upstreamCa = FileEgressCa.create();
  const seen: Array<{ host: string; authorization: string }> = [];
  let server: https.Server;
  let port: number;
  let t: TestRuntime;
  const logLines: string[] = [];

  beforeAll(async () => {
    server = https.createServer({ SNICallback: (name, cb) => cb(null, upstreamCa.contextFor(name)) }, (req, res) => {
      const host = (req.headers.host ?? '').replace(/:\d+$/, '');
      const authorization = req.headers.authorization ?? '';
      seen.push({ host, authorization });
      const ok = host === 'api.canary.test' && authorization === `Bearer ${CANARY}`;
      res.writeHead(ok ? 200 : 401, { 'content-type': 'text/plain' });
      res.end(ok ? 'CANARY-API: authorized\n' : 'CANARY-API: unauthorized\n');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.address() as AddressInfo).port;
    t = await startTestRuntime({
      runtime: {
        logger: jsonLogger({}, (line) => logLines.push(line)),
        egressTestHooks: {
          allowPrivateAddresses: ['127.0.0.1'],
          resolve: async (host) => (host.endsWith('.canary.test') ? ['127.0.0.1'] : []),
          upstreamCa: [upstreamCa.certPem],
        },
      },
    });
  });
  afterAll(async () => {
    await t?.close();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  });

  it('curl reaches the API with the secret; the secret is nowhere in the sandbox', { timeout: 300_000 }, async () => {
    const vault = await t.client.beta.vaults.create({ display_name: 'env canary' });
    await t.client.beta.vaults.credentials.create(vault.id, {
      auth: {
        type: 'environment_variable',
        secret_name: 'CANARY_API_KEY',
        secret_value: CANARY,
        networking: { type: 'limited', allowed_hosts: ['api.canary.test'] },
        injection_location: { header: true, body: false },
      },
    });
    const agent = await t.client.beta.agents.create({ name: 'env-canary', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
    const env = await t.client.beta.environments.create({ name: 'env-canary' });
    const session = await t.client.beta.sessions.create({ agent: agent.id, environment_id: env.id, vault_ids: [vault.id] });

    const call = (host: string, flags = '') => `curl -sS ${flags}--max-time 20 https://${host}:${port}/v1/things -H "Authorization: Bearer $CANARY_API_KEY"`;
    const commands = [
      call('api.canary.test'),
      // Not intercepted (no credential allows it): the tunnel reaches the stand-in server itself,
      // whose test CA the sandbox does not trust (a public host's would be), hence -k.
      call('other.canary.test', '-k '),
      'env',
      'for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do tr "\\0" "\\n" < "$f" 2>/dev/null; echo; done',
      `timeout 150 grep -rlas -D skip --exclude-dir=proc --exclude-dir=sys --exclude-dir=node_modules -e '${patternOf(CANARY)}' / ; echo "GREP_DONE rc=$?"`,
    ];
    t.fake.push({ kind: 'tool_use', calls: commands.map((command) => ({ name: 'bash', input: { command, timeout_ms: 200_000 } })) }, { kind: 'text', text: 'done' });
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('call the API, then look for secrets') }] });
    const events = await collectUntil(stream, isIdle);
    const outputs = (events.filter((e) => e.type === 'agent.tool_result') as Array<{ content?: Array<{ text?: string }> }>).map((r) => (r.content ?? []).map((c) => c.text ?? '').join(''));
    const [allowed, other, envOut, procOut, grep] = outputs;

    // The secret went where the credential allows, and only there.
    expect(allowed).toContain('CANARY-API: authorized');
    expect(other).toContain('CANARY-API: unauthorized');
    const placeholder = /CANARY_API_KEY=(corral-placeholder-[0-9a-f]{48})/.exec(envOut ?? '')?.[1];
    expect(placeholder).toBeDefined();
    expect(seen).toEqual([
      { host: 'api.canary.test', authorization: `Bearer ${CANARY}` },
      { host: 'other.canary.test', authorization: `Bearer ${placeholder}` },
    ]);
    // The tools trust the egress CA through the bundle (which the probes show in the environment).
    expect(envOut).toContain('SSL_CERT_FILE=/run/corral-ca/ca-bundle.pem');
    expect(procOut).toContain('CANARY_API_KEY=corral-placeholder-');
    expect(grep).toMatch(/GREP_DONE rc=[12]$/m);

    // The memory of every process of the sandbox (the agent, the shell, anything left running).
    if (IS_ROOT) {
      const pids = sandboxPids();
      expect(pids.length).toBeGreaterThan(1);
      const hits = pids.map((pid) => ({ pid, found: memoryHolds(pid, [Buffer.from(CANARY), Buffer.from(CANARY, 'utf16le'), Buffer.from(placeholder!)]) }));
      expect(hits.filter((h) => h.found[0] || h.found[1]).map((h) => h.pid)).toEqual([]);
      // The scan can see: the placeholder, which the sandbox holds, is found.
      expect(hits.some((h) => h.found[2])).toBe(true);
    } else {
      console.warn('not root: the memory of the sandbox processes is not searched');
    }

    // Nowhere else the agent or anyone could read it either.
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(p);
        else if (entry.isFile()) files.push(fs.readFileSync(p).toString('latin1'));
      }
    };
    walk(path.join(t.dataDir, 'sandboxes'));
    const sources: Record<string, string> = {
      events: JSON.stringify(await listAll(t.client, session.id)),
      'tool results': outputs.join('\n'),
      'model requests': JSON.stringify(t.fake.requests.map((r) => r.body)),
      'log lines': logLines.join('\n'),
      'sandbox files (host side)': files.join('\n'),
      'state table': JSON.stringify(await t.runtime.services.table.scanPrefix('')),
      'API answers': JSON.stringify([await t.client.beta.sessions.retrieve(session.id), await t.client.beta.vaults.credentials.list(vault.id)]),
    };
    expect(Object.entries(sources).filter(([, v]) => v.includes(CANARY)).map(([k]) => k)).toEqual([]);
    // The substitution was logged, without the secret.
    expect(logLines.some((l) => l.includes('egress credential applied'))).toBe(true);
    // The CA's key is in the data dir, 0600, and not in the sandbox.
    expect(fs.statSync(path.join(t.dataDir, 'egress-ca', 'ca.key')).mode & 0o777).toBe(0o600);
  });
});
