/**
 * A warm pool on the local runtime (official SDK -> API -> harness -> fake model -> real
 * sandboxes): once an environment's pool is filled, a new session whose first action is a tool
 * call runs it in the pooled sandbox, and no sandbox is started for that session.
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessSandboxProvider } from '../../lambdas/adapters/local/process-sandbox.js';
import type { ProvisionRequest, SandboxProvider } from '../../lambdas/core/sandbox/types.js';
import { collectUntil, createAgentAndEnvironment, isIdle, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { tempDir } from '../sandbox/helpers.js';

type Ev = { type: string; [k: string]: unknown };

describe('a warm pool on the local runtime', () => {
  let t: TestRuntime;
  let local: ProcessSandboxProvider;
  let root: string;
  const starts: string[] = [];
  // Read by the pool at each use: the environment's id is added once the API has made it.
  const sizes: Record<string, number> = { env_not_yet: 1 };

  beforeAll(async () => {
    root = tempDir('corral-e2e-pool-');
    local = new ProcessSandboxProvider({ dataDir: root, logger: { warn: () => {} } });
    const counting: SandboxProvider = {
      recipeSupport: local.recipeSupport,
      provision: (req: ProvisionRequest) => {
        starts.push(req.sessionId);
        return local.provision(req);
      },
      release: (s, n, r) => local.release(s, n, r),
      releaseAll: (s) => local.releaseAll(s),
      transfer: (f, to, r) => local.transfer(f, to, r),
    };
    t = await startTestRuntime({ runtime: { sandboxProvider: counting, warmPool: { sizes, maxAgeMs: 3_600_000 } } });
  });
  afterAll(async () => {
    await t?.close();
    await local?.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  async function toolFirst(agent: string, environment: string): Promise<{ id: string; events: Ev[] }> {
    const session = await t.client.beta.sessions.create({ agent, environment_id: environment });
    t.fake.push({ kind: 'tool_use', calls: [{ name: 'bash', input: { command: 'echo first call' } }] }, { kind: 'text', text: 'done' });
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'go' }] }] });
    return { id: session.id, events: (await collectUntil(stream, isIdle)) as Ev[] };
  }

  it("runs a tool-first session's first call in the pooled sandbox, starting none for the session", async () => {
    const { agent, environment } = await createAgentAndEnvironment(t.client);
    sizes[environment.id] = 1;
    const pool = t.runtime.services.sandboxes.warmPool!;
    // The environment's first session teaches the pool its recipe; the pool fills behind it.
    await toolFirst(agent.id, environment.id);
    await pool.settled();
    const [pooled] = (await pool.slots(environment.id)).filter((s) => s.state === 'ready');
    expect(pooled).toBeDefined();

    const second = await toolFirst(agent.id, environment.id);
    const result = second.events.find((e) => e.type === 'agent.tool_result')!;
    expect(result.is_error).toBe(false);
    expect((result.content as Array<{ text: string }>)[0].text).toBe('first call\n');
    expect(starts).not.toContain(second.id);
    expect((await t.runtime.services.sandboxes.get(second.id, 'default'))!.ref).toBe(pooled.ref);
  });
});
