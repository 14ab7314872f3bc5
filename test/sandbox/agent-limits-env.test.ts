import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { SandboxClient } from '../../lambdas/core/sandbox/client.js';
import { SANDBOX_LIMITS_ENV } from '../../sandbox/limits.js';
import { startAgent, tempDir, type AgentHandle } from './helpers.js';

// A Fargate task gets its limits in the task definition's environment (a stack setting), not in
// `--limits`: the agent must read them from there, and keep them out of the tools' environment.
let root: string | undefined;
let agent: AgentHandle | undefined;

afterEach(async () => {
  await agent?.stop();
  if (root) fs.rmSync(root, { recursive: true, force: true });
  agent = undefined;
  root = undefined;
});

const writeTwoMiB = 'head -c 2097152 /dev/zero > big.bin && stat -c %s big.bin';

describe(`sandbox agent: limits from ${SANDBOX_LIMITS_ENV}`, () => {
  it('puts the limits of the environment on every tool, names the one hit, and hides the variable', async () => {
    root = tempDir();
    agent = await startAgent({ root, mode: 'tcp', env: { [SANDBOX_LIMITS_ENV]: 'file_size=1m' } });
    const client = new SandboxClient(agent.endpoint);
    const out = await client.execute('bash', { command: writeTwoMiB });
    expect(out.isError).toBe(true);
    expect(out.output).toMatch(/file size limit \(1 MiB per file\)/);
    const env = await client.execute('bash', { command: `echo "[\${${SANDBOX_LIMITS_ENV}-unset}]"` });
    expect(env.output).toContain('[unset]');
  });

  it('without the variable (and without --limits) the same write succeeds', async () => {
    root = tempDir();
    agent = await startAgent({ root, mode: 'tcp' });
    const out = await new SandboxClient(agent.endpoint).execute('bash', { command: writeTwoMiB });
    expect(out.isError).toBe(false);
    expect(out.output).toContain('2097152');
  });
});
