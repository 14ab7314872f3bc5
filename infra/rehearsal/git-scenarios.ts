/**
 * The rehearsal's private-repository scenario (docs/CREDENTIALS.md "Git from Fargate sandboxes"),
 * run by test/rehearsal/egress.test.ts in the `egress` scenario's deploy (`proxyService=fargate`,
 * the proxy service's tasks rehearsed as an ECS service behind its NLB, the sandbox task in a
 * network namespace whose only way out is what its security groups allow), with `GIT_CONTEXT`.
 *
 * A private repository on loopback (`git http-backend` demanding the token); a session through
 * the official SDK names it with an `authorization_token`; the Fargate sandbox clones it at its
 * mount path through the proxy service's git channel; the scripted model's command commits and
 * pushes; the push lands on the server; the token is found nowhere in the sandbox (its task's
 * environment as ECS was given it, its processes' environments, command lines and memory, its
 * files) nor in the rehearsal's logs, each search shown to find what must be there.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { logOf, startTestGitServer } from '../../test/credential-proxy/fixtures/git-server.js';
import { memoryHolds } from '../../test/helpers/process-memory.js';
import { filesContaining, processTree } from './sandbox-search.js';
import type { Rehearsal } from './rehearsal.js';
import { fail, runTurn, type Scenario } from './scenarios.js';

export const GIT_SCENARIOS = ['private-git'] as const;

/**
 * The CDK context `private-git` needs besides the egress scenario's: the API accepts the loopback
 * repository's http origin. It only widens which repository URLs a session may name; sandbox
 * egress (what the egress scenario asserts) does not read it.
 */
export const GIT_CONTEXT = { repositoryUrlAllow: 'http://127.0.0.1' } as const;

export function gitScenarios(r: Rehearsal, fake: { push(...turns: unknown[]): void }): Scenario[] {
  return [
    {
      name: 'private-git',
      proves:
        'with proxyService=fargate a Fargate sandbox clones a private repository through the proxy service\'s git channel, the model commits and pushes, the push lands, and the token is nowhere in the sandbox',
      timeoutMs: 240_000,
      async run(ctx) {
        const token = `ghp_rehearsal_${randomBytes(12).toString('hex')}`;
        const root = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-rehearsal-git-'));
        const work = path.join(root, 'seed');
        fs.mkdirSync(work);
        const git = (args: string[], cwd: string) => execFileSync('git', args, { cwd, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', GIT_CONFIG_NOSYSTEM: '1', HOME: root } });
        git(['init', '-q', '-b', 'main'], work);
        fs.writeFileSync(path.join(work, 'README'), 'private content\n');
        git(['add', 'README'], work);
        git(['-c', 'user.name=t', '-c', 'user.email=t@example.com', 'commit', '-q', '-m', 'first'], work);
        git(['clone', '-q', '--bare', work, path.join(root, 'private-repo.git')], root);
        const server = await startTestGitServer({ root, token });
        let session: string | undefined;
        try {
          const url = server.urlOf('private-repo');
          session = await ctx.newSession('default', { resources: [{ type: 'github_repository', url, authorization_token: token, mount_path: '/workspace/private-repo' }] });
          const command = [
            // The rehearsed task's workspace is a directory of the host, the bash tool's working
            // directory, not /workspace (ecs.ts translates --workspace): the clone is under it.
            'cd private-repo',
            'cat README',
            'echo "from the rehearsal" >> README',
            'git -c user.name=agent -c user.email=agent@example.com commit -qam "pushed from a Fargate sandbox"',
            'git push -q origin HEAD:main && echo pushed',
          ].join(' && ');
          fake.push({ kind: 'tool_use', calls: [{ name: 'bash', input: { command } }] });
          const events = await runTurn(ctx, session, 'Commit and push');
          const result = events.find((e) => e.type === 'agent.tool_result');
          const out = JSON.stringify(result?.content ?? null);
          if (!out.includes('private content') || !out.includes('pushed')) fail(`the clone or the push failed: ${out.slice(0, 600)}`);
          if (logOf(path.join(root, 'private-repo.git'))[0] !== 'pushed from a Fargate sandbox') fail('the push did not land on the server');
          // The token nowhere in the sandbox: the task's environment, its processes' environments,
          // command lines and memory, its files; nor in any log of the rehearsal. Each search is
          // shown to see: it finds what must be there (the channel's capability in the agent's
          // memory, the pushed line in the workspace, the session in the logs).
          const tasks = [...r.ecs.tasks.values()].filter((t) => !t.service && t.lastStatus === 'RUNNING' && t.child?.pid && t.environment.CORRAL_GIT_CHANNEL);
          if (!tasks.length) fail('no running sandbox task with a git channel to search');
          const leaks: string[] = [];
          const blind: string[] = [];
          for (const t of tasks) {
            const capability = (JSON.parse(t.environment.CORRAL_GIT_CHANNEL!) as { capability: string }).capability;
            if (JSON.stringify(t.environment).includes(token)) leaks.push(`task ${t.id}'s environment`);
            let capabilitySeen = false;
            for (const pid of processTree(t.child!.pid!)) {
              for (const f of ['environ', 'cmdline']) {
                try {
                  if (fs.readFileSync(`/proc/${pid}/${f}`).includes(token)) leaks.push(`/proc/${pid}/${f}`);
                } catch {
                  // gone
                }
              }
              const [tokenInMemory, capabilityInMemory] = memoryHolds(pid, [Buffer.from(token), Buffer.from(capability)]);
              if (tokenInMemory) leaks.push(`the memory of process ${pid}`);
              capabilitySeen ||= capabilityInMemory;
            }
            if (!capabilitySeen) blind.push(`the memory scan of task ${t.id} did not find the git channel's capability`);
            const taskDir = path.dirname(fs.readlinkSync(`/proc/${t.child!.pid}/cwd`));
            leaks.push(...filesContaining(taskDir, [Buffer.from(token)]));
            if (!filesContaining(taskDir, [Buffer.from('from the rehearsal')]).length) blind.push(`the file search of task ${t.id} did not find the pushed line`);
          }
          const logs = path.join(r.workDir, 'logs');
          leaks.push(...filesContaining(logs, [Buffer.from(token)]));
          if (!filesContaining(logs, [Buffer.from(session)]).length) blind.push('the log search did not find the session id');
          if (blind.length) fail(`a search for the token cannot see: ${blind.join('; ')}`);
          if (leaks.length) fail(`the token is in the sandbox or the logs: ${leaks.join(', ')}`);
          return `cloned, committed and pushed through the proxy service's git channel; the token is in none of ${tasks.length} sandbox task(s) (environment, processes, memory, files) nor in the rehearsal's logs`;
        } finally {
          if (session) await ctx.client.beta.sessions.delete(session).catch(() => undefined);
          await server.close();
          fs.rmSync(root, { recursive: true, force: true });
        }
      },
    },
  ];
}
