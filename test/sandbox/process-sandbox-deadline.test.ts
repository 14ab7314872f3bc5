import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ProcessSandboxProvider } from '../../lambdas/adapters/local/process-sandbox.js';
import { processAlive, tempDir } from './helpers.js';

/** A provisioning cut by its signal (the harness step's deadline) leaves no sandbox running. */
describe('ProcessSandboxProvider.provision with a signal', () => {
  const root = tempDir('corral-psb-cut-');
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  it('stops the agent it started when the signal fires before the agent is healthy', async () => {
    // Prepare: the signal fires while the provider sets the sandbox up (it asks for a git
    // channel right before it starts the agent), so the agent is started and not yet healthy.
    const cut = new AbortController();
    const logged: Array<{ message: string; extra?: Record<string, unknown> }> = [];
    const provider = new ProcessSandboxProvider({
      dataDir: path.join(root, 'data'),
      isolation: 'none',
      logger: { warn: () => {}, info: (message, extra) => void logged.push({ message, extra }) },
      gitChannels: {
        open: async () => {
          cut.abort(Object.assign(new Error("the harness step's deadline came"), { name: 'StepDeadlineError' }));
          return {
            id: 'channel-1',
            endpoint: { kind: 'unix', socketPath: path.join(root, 'git.sock') },
            capability: 'git-capability',
            expires_at: new Date(Date.now() + 60_000).toISOString(),
            repositories: [{ url: 'https://git.example.invalid/r.git', path: 'r' }],
          };
        },
        close: async () => undefined,
      },
    });
    const recipe = { environmentId: 'env_1', config: { type: 'cloud' }, resources: [{ type: 'github_repository', url: 'https://git.example.invalid/r.git' }] };
    try {
      // Act
      const err = await provider.provision({ sessionId: 'sesn_cut', name: 'default', recipe, signal: cut.signal }).catch((e: unknown) => e);

      // Assess: rejected with the signal's reason; the agent that was started is stopped
      expect(err).toBe(cut.signal.reason);
      const released = logged.find((l) => l.message === 'sandbox released');
      expect(released?.extra?.pid).toEqual(expect.any(Number));
      expect(processAlive(released!.extra!.pid as number)).toBe(false);
      expect(logged.some((l) => l.message === 'sandbox provisioned')).toBe(false);
    } finally {
      await provider.close();
    }
  });

  it('starts nothing when the signal has already fired', async () => {
    const logged: string[] = [];
    const provider = new ProcessSandboxProvider({ dataDir: path.join(root, 'data2'), isolation: 'none', logger: { warn: () => {}, info: (m) => void logged.push(m) } });
    const cut = new AbortController();
    cut.abort(new Error('deadline'));
    const err = await provider
      .provision({ sessionId: 'sesn_late', name: 'default', recipe: { environmentId: 'env_1', config: {}, resources: [] }, signal: cut.signal })
      .catch((e: unknown) => e);
    expect(err).toBe(cut.signal.reason);
    expect(logged).toEqual([]);
    await provider.close();
  });
});
