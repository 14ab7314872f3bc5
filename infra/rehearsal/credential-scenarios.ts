/**
 * The environment-variable canary on the rehearsed Fargate path (`proxyService=fargate`), in the
 * `egress` scenario's deploy (test/rehearsal/egress.test.ts): an `environment_variable`
 * credential made through the official SDK is substituted by the proxy service's tasks (their own
 * role reads the vault's secret), the sandbox task holds only its placeholder, and the secret is
 * searched for everywhere the sandbox could read it: the task's environment as ECS was given it,
 * its processes' environments, command lines and memory, its files, and every log and file of
 * the rehearsal.
 */
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { PemEgressCa } from '../../lambdas/core/sandbox/egress-ca.js';
import { memoryHolds } from '../../test/helpers/process-memory.js';
import type { Rehearsal } from './rehearsal.js';
import { filesContaining, processTree } from './sandbox-search.js';
import { fail, listPages, runTurn, type Scenario } from './scenarios.js';

export const CREDENTIAL_SCENARIOS = ['egress-credentials'] as const;

/** The canary API's stand-in name (resolved to loopback in the proxy service's tasks). */
export const CANARY_HOST = 'api.canary.rehearsal.test';

let originCa: PemEgressCa | undefined;
/**
 * The CA of the rehearsal's "internet" for the canary API: the proxy service's tasks trust it
 * (`CORRAL_PROXY_UPSTREAM_CA`, a rehearsal-only setting), as a deployment trusts public CAs.
 */
export function canaryOriginCa(): PemEgressCa {
  originCa ??= PemEgressCa.create();
  return originCa;
}

export function credentialScenarios(r: Rehearsal, fake: { push(...turns: unknown[]): void }): Scenario[] {
  return [
    {
      name: 'egress-credentials',
      proves:
        'with proxyService=fargate a sandbox\'s curl with an environment_variable credential\'s variable reaches the API with the secret, substituted by the proxy service; the secret is in no environment, command line, memory or file of the sandbox task and in no log of the rehearsal',
      timeoutMs: 180_000,
      async run(ctx) {
        const secret = `sk-rehearsal-canary-${randomBytes(16).toString('hex')}`;
        const seen: string[] = [];
        const ca = canaryOriginCa();
        // The canary API: 200 only with the secret.
        const origin = https.createServer({ SNICallback: (name, cb) => cb(null, ca.contextFor(name)) }, (req, res) => {
          const authorization = String(req.headers.authorization ?? '');
          seen.push(authorization);
          const ok = authorization === `Bearer ${secret}`;
          res.writeHead(ok ? 200 : 401).end(ok ? 'CANARY-API: authorized' : 'CANARY-API: unauthorized');
        });
        await new Promise<void>((done) => origin.listen(0, '127.0.0.1', () => done()));
        const port = (origin.address() as AddressInfo).port;
        let session: string | undefined;
        try {
          const vault = await ctx.client.beta.vaults.create({ display_name: 'rehearsal env canary' });
          await ctx.client.beta.vaults.credentials.create(vault.id, {
            auth: {
              type: 'environment_variable',
              secret_name: 'CANARY_API_KEY',
              secret_value: secret,
              networking: { type: 'limited', allowed_hosts: [CANARY_HOST] },
              injection_location: { header: true, body: false },
            },
          });
          const env = await ctx.client.beta.environments.create({
            name: 'rehearsal-env-canary',
            config: { type: 'cloud', networking: { type: 'limited', allowed_hosts: [CANARY_HOST] } },
          });
          const agent = await ctx.client.beta.agents.create({ name: 'rehearsal-env-canary', model: ctx.model, tools: [{ type: 'agent_toolset_20260401' }] });
          session = (await ctx.client.beta.sessions.create({ agent: agent.id, environment_id: env.id, vault_ids: [vault.id] })).id;
          const commands = [`curl -sS -m 20 https://${CANARY_HOST}:${port}/v1/things -H "Authorization: Bearer $CANARY_API_KEY"`, 'printf %s "$CANARY_API_KEY"'];
          fake.push({ kind: 'tool_use', calls: commands.map((command) => ({ name: 'bash', input: { command } })) }, { kind: 'text', text: 'done' });
          const events = await runTurn(ctx, session, 'Call the canary API');
          const outputs = events.filter((e) => e.type === 'agent.tool_result').map((e) => ((e.content as Array<{ text?: string }> | undefined) ?? []).map((c) => c.text ?? '').join(''));
          if (!outputs[0]?.includes('CANARY-API: authorized')) fail(`the canary API did not get the secret: ${JSON.stringify(outputs).slice(0, 600)}; it saw ${seen.length} request(s)`);
          const placeholder = /^corral-placeholder-[0-9a-f]{48}$/.exec(outputs[1] ?? '')?.[0];
          if (!placeholder) fail(`CANARY_API_KEY in the sandbox is not a placeholder: ${JSON.stringify(outputs[1]).slice(0, 100)}`);

          // The sandbox task, searched while it runs.
          const task = r.ecs.running().find((t) => t.tags.some((tag) => tag.key === 'corral:session' && tag.value === session));
          if (!task?.child?.pid) fail('no running sandbox task for the session');
          const needles = [Buffer.from(secret), Buffer.from(secret, 'utf16le')];
          const leaks: string[] = [];
          const taskEnv = JSON.stringify(task.environment);
          if (taskEnv.includes(secret)) leaks.push(`task ${task.id}'s environment`);
          if (!taskEnv.includes(placeholder)) fail('the task\'s environment lacks the placeholder: the search could not see it');
          const pids = processTree(task.child.pid);
          for (const pid of pids) {
            for (const f of ['environ', 'cmdline']) {
              try {
                if (fs.readFileSync(`/proc/${pid}/${f}`).includes(secret)) leaks.push(`/proc/${pid}/${f}`);
              } catch {
                // gone
              }
            }
          }
          let memory = 'not searched (not root)';
          if (process.getuid?.() === 0) {
            const found = pids.map((pid) => memoryHolds(pid, [...needles, Buffer.from(placeholder)]));
            found.forEach((f, i) => {
              if (f[0] || f[1]) leaks.push(`the memory of process ${pids[i]}`);
            });
            // The scan can see: the placeholder, which the sandbox holds, is found.
            if (!found.some((f) => f[2])) fail(`the memory scan of ${pids.length} process(es) did not find the placeholder either: it cannot see`);
            memory = `${pids.length} processes' memory searched`;
          }
          // Files: the task's directory (workspace, container log) and everything else the
          // rehearsal wrote (every function's and task's log, buckets, other tasks).
          leaks.push(...filesContaining(r.workDir, needles));
          const { events: all } = await listPages(ctx.client, session);
          if (JSON.stringify(all).includes(secret)) leaks.push('the session\'s events');
          if (leaks.length) fail(`the secret is in ${leaks.join(', ')}`);
          if (seen.some((a) => a !== `Bearer ${secret}`)) fail(`the canary API also saw ${JSON.stringify(seen.filter((a) => a !== `Bearer ${secret}`)).slice(0, 200)}`);
          return `the canary API got the secret from the proxy service (${seen.length} request(s)); the sandbox held the placeholder; the secret is in no environment, command line or file (${memory}; every file under the rehearsal's work directory)`;
        } finally {
          if (session) await ctx.client.beta.sessions.delete(session).catch(() => undefined);
          origin.close();
        }
      },
    },
  ];
}
