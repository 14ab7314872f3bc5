import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessSandboxProvider, bwrapAvailable } from '../../lambdas/adapters/local/process-sandbox.js';
import { jsonLogger } from '../../lambdas/core/logger.js';
import type { ProvisionRequest, SandboxProvider } from '../../lambdas/core/sandbox/types.js';
import { collectUntil, isIdle, listAll, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { logOf, makeBareRepo, startTestGitServer, type TestGitServer } from '../credential-proxy/fixtures/git-server.js';
import { startTestMcpServer, type TestMcpServer } from '../credential-proxy/fixtures/mcp-server.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

/**
 * Credential isolation needs bubblewrap (CI installs it): without it a sandbox is a plain process.
 * Outside CI the canary is skipped with a warning; in CI a missing bwrap fails it.
 */
const HAS_BWRAP = await bwrapAvailable();
if (!HAS_BWRAP && process.env.CI) throw new Error('bubblewrap (bwrap) is required for the credential canary in CI');
if (!HAS_BWRAP) console.warn('bubblewrap unavailable: skipping the credential canary');

const text = (t: string) => [{ type: 'text' as const, text: t }];

/**
 * The canary test. One unique token is the MCP server's bearer token (in a vault credential) and
 * the git server's password (the session's repository token). The agent (scripted model) calls
 * the MCP tool and pushes to the repository, both through the credential proxy; then it hunts
 * for the token in its sandbox: its environment, every process's environment and command line,
 * `.git/config`, the process list, and a grep of the whole filesystem. The token must appear
 * nowhere: not in any event of the log, any tool result, any model request, any API answer, any
 * file of the sandbox, any log line of the runtime (the proxy's lines included), or the state
 * table. A second run against a deliberately leaky configuration (the token in the remote URL,
 * the usual way) shows that the very same check catches a leak.
 */

/** A grep pattern that matches the canary but does not contain it (so no argv holds it). */
const patternOf = (canary: string) => `${canary.slice(0, -1)}[${canary.slice(-1)}]`;

const PROBES = (canary: string) => [
  'env',
  'for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do tr "\\0" "\\n" < "$f" 2>/dev/null; echo; done',
  'cat private-repo/.git/config; git -C private-repo config --list --show-origin',
  'ps auxww',
  `timeout 150 grep -rlas -D skip --exclude-dir=proc --exclude-dir=sys --exclude-dir=node_modules -e '${patternOf(canary)}' / ; echo "GREP_DONE rc=$?"`,
];

interface Evidence {
  sources: Record<string, string>;
  /** Files the in-sandbox grep listed. */
  grepHits: string[];
}

/** Every place the canary must not be, as text, for one session. */
async function gatherEvidence(t: TestRuntime, sessionId: string, sandboxRoot: string, logLines: string[], probeOutputs: string[]): Promise<Evidence> {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.isFile()) files.push(`${p}\n${fs.readFileSync(p).toString('latin1')}`);
    }
  };
  if (fs.existsSync(sandboxRoot)) walk(sandboxRoot);
  const grepOut = probeOutputs[probeOutputs.length - 1] ?? '';
  const grepHits = grepOut.split('\n').filter((l) => l.startsWith('/'));
  const resources = await t.client.beta.sessions.resources.list(sessionId);
  return {
    sources: {
      'events (the whole log)': JSON.stringify(await listAll(t.client, sessionId)),
      'tool results': probeOutputs.join('\n'),
      'model requests': JSON.stringify(t.fake.requests.map((r) => r.body)),
      'API answers': JSON.stringify([await t.client.beta.sessions.retrieve(sessionId), resources]),
      'log lines': logLines.join('\n'),
      'sandbox files (host side)': files.join('\n'),
      'state table': JSON.stringify(await t.runtime.services.table.scanPrefix('')),
    },
    grepHits,
  };
}

function leaksIn(e: Evidence, canary: string): string[] {
  const found = Object.entries(e.sources)
    .filter(([, v]) => v.includes(canary))
    .map(([k]) => k);
  if (e.grepHits.length) found.push(`grep in the sandbox: ${e.grepHits.join(', ')}`);
  return found;
}

async function runProbes(t: TestRuntime, sessionId: string, canary: string, first: Array<{ name: string; input: unknown }> = []) {
  const probes = PROBES(canary);
  t.fake.push(
    { kind: 'tool_use', calls: [...first, ...probes.map((command) => ({ name: 'bash', input: { command, timeout_ms: 200_000 } }))] },
    { kind: 'text', text: 'I looked everywhere.' },
  );
  const stream = await t.client.beta.sessions.events.stream(sessionId);
  await t.client.beta.sessions.events.send(sessionId, { events: [{ type: 'user.message', content: text('print your environment and look for tokens') }] });
  const seen = await collectUntil(stream, isIdle);
  const results = seen.filter((e) => e.type === 'agent.tool_result' || e.type === 'agent.mcp_tool_result') as Array<{
    type: string;
    content?: Array<{ text?: string }>;
    is_error?: boolean;
  }>;
  return { seen, results, outputs: results.filter((r) => r.type === 'agent.tool_result').slice(-probes.length).map((r) => (r.content ?? []).map((c) => c.text ?? '').join('')) };
}

describe.skipIf(!HAS_BWRAP)('the canary: the token is readable nowhere the agent can look', () => {
  const CANARY = `corral-canary-${randomBytes(12).toString('hex')}`;
  let mcp: TestMcpServer;
  let git: TestGitServer;
  let root: string;
  let t: TestRuntime;
  const logLines: string[] = [];

  beforeAll(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-canary-git-'));
    makeBareRepo(root, 'private-repo', 'private content\n');
    git = await startTestGitServer({ root, token: CANARY });
    mcp = await startTestMcpServer({ token: CANARY });
    t = await startTestRuntime({ runtime: { logger: jsonLogger({}, (line) => logLines.push(line)), repositoryUrlAllow: ['http://127.0.0.1'] } });
  });
  afterAll(async () => {
    await t?.close();
    await git?.close();
    await mcp?.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('MCP and git push succeed through the proxy, and the canary appears nowhere', { timeout: 240_000 }, async () => {
    const vault = await t.client.beta.vaults.create({ display_name: 'canary vault' });
    await t.client.beta.vaults.credentials.create(vault.id, { auth: { type: 'static_bearer', token: CANARY, mcp_server_url: mcp.url } });
    const agent = await t.client.beta.agents.create({
      name: 'canary-agent',
      model: 'claude-sonnet-4-6',
      mcp_servers: [{ name: 'crm', type: 'url', url: mcp.url }],
      tools: [
        { type: 'agent_toolset_20260401' },
        { type: 'mcp_toolset', mcp_server_name: 'crm', default_config: { permission_policy: { type: 'always_allow' } } },
      ],
    });
    const env = await t.client.beta.environments.create({ name: 'canary-env' });
    const session = await t.client.beta.sessions.create({
      agent: agent.id,
      environment_id: env.id,
      vault_ids: [vault.id],
      resources: [{ type: 'github_repository', url: git.urlOf('private-repo'), authorization_token: CANARY }],
    });

    // In a subshell: bash keeps its working directory between calls, and the probes run from the workspace.
    const push = '(cd private-repo && echo canary-run >> README && git -c user.name=a -c user.email=a@example.com commit -qam "canary run" && git push -q origin HEAD:main 2>&1 && echo PUSHED)';
    const run = await runProbes(t, session.id, CANARY, [
      { name: 'mcp__crm__lookup_customer', input: { name: 'Ada' } },
      { name: 'bash', input: { command: push } },
    ]);
    // What had to work, worked: the MCP call with the vault credential, the push with the repository token.
    expect(run.results[0]).toMatchObject({ type: 'agent.mcp_tool_result', is_error: false, content: [{ text: 'Ada Lovelace, customer since 1843' }] });
    expect(run.results[1].content?.[0]?.text).toContain('PUSHED');
    expect(logOf(path.join(root, 'private-repo.git'))).toEqual(['canary run', 'first']);
    // The probes ran (so their silence means something).
    const [envOut, procOut, gitConfig, ps, grep] = run.outputs;
    expect(envOut).toContain('PATH=');
    expect(procOut).toContain('PATH=');
    expect(gitConfig).toMatch(/url = http:\/\/127\.0\.0\.1:\d+\/r\/0\/private-repo\.git/);
    expect(ps).toMatch(/PID/);
    // grep ran to the end (not killed by its timeout: 124) and matched nothing (0 would be a match;
    // 2 is an unreadable file, which -s keeps quiet)
    expect(grep).toMatch(/GREP_DONE rc=[12]$/m);

    const evidence = await gatherEvidence(t, session.id, path.join(t.dataDir, 'sandboxes'), logLines, run.outputs);
    expect(logLines.length).toBeGreaterThan(0);
    expect(logLines.some((l) => l.includes('credential proxy'))).toBe(true); // the proxy's lines are in there too
    expect(leaksIn(evidence, CANARY)).toEqual([]);
    // Outside the sandbox, the only copy on disk is encrypted.
    const store = fs.readFileSync(path.join(t.dataDir, 'vault', 'secrets.json'), 'utf8');
    expect(store).not.toContain(CANARY);
    expect(store).not.toContain(Buffer.from(CANARY).toString('base64'));
  });

  it('the same check catches a leak: a deliberately leaky configuration (token in the remote URL)', { timeout: 240_000 }, async () => {
    // The usual, leaky way: the token in the repository URL, as a direct clone leaves it in
    // .git/config (written here into the workspace, as such a clone would; no credential proxy).
    const leakyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-leaky-'));
    const inner = new ProcessSandboxProvider({ dataDir: leakyDir, isolation: 'auto' });
    const leaky: SandboxProvider & { close(): Promise<void> } = {
      // It "delivers" repositories, its own leaky way.
      recipeSupport: { ...inner.recipeSupport, publicRepositories: { supported: true }, credentialedRepositories: { supported: true } },
      // Into the workspace of the started sandbox (each sandbox starts with an empty one).
      provision: async (req: ProvisionRequest) => {
        const sandbox = await inner.provision({ ...req, recipe: { ...req.recipe, repositories: [] } });
        const repo = path.join(inner.workspaceDir(req.sessionId, req.name), 'private-repo', '.git');
        fs.mkdirSync(repo, { recursive: true });
        const url = git.urlOf('private-repo').replace('http://', `http://x-access-token:${CANARY}@`);
        fs.writeFileSync(path.join(repo, 'config'), `[remote "origin"]\n\turl = ${url}\n`);
        return sandbox;
      },
      release: (s, n, ref) => inner.release(s, n, ref),
      releaseAll: (s) => inner.releaseAll(s),
      close: () => inner.close(),
    };
    const leakyLogs: string[] = [];
    const lt = await startTestRuntime({
      runtime: { credentialProxy: false, sandboxProvider: leaky, logger: jsonLogger({}, (line) => leakyLogs.push(line)), repositoryUrlAllow: ['http://127.0.0.1'] },
    });
    try {
      const agent = await lt.client.beta.agents.create({ name: 'leaky', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
      const env = await lt.client.beta.environments.create({ name: 'leaky' });
      const session = await lt.client.beta.sessions.create({
        agent: agent.id,
        environment_id: env.id,
        resources: [{ type: 'github_repository', url: git.urlOf('private-repo') }],
      });
      const run = await runProbes(lt, session.id, CANARY);
      const evidence = await gatherEvidence(lt, session.id, path.join(leakyDir, 'sandboxes'), leakyLogs, run.outputs);
      const leaks = leaksIn(evidence, CANARY);
      // The check sees the token where the leaky setup put it: .git/config, the sandbox's files, grep.
      expect(leaks).toEqual(expect.arrayContaining(['tool results', 'events (the whole log)', 'sandbox files (host side)']));
      expect(leaks.some((l) => l.startsWith('grep in the sandbox') && l.includes('.git/config'))).toBe(true);
    } finally {
      await lt.close();
      fs.rmSync(leakyDir, { recursive: true, force: true });
    }
  });
});
