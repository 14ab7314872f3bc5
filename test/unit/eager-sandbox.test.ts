import { describe, expect, it } from 'vitest';
import { withEagerSandbox } from '../../bench/lib/eager-sandbox.js';
import { AgentCreate, EnvironmentCreate, SessionCreate } from '../../lambdas/core/api/schemas.js';
import type { ProvisionRequest, SandboxProvider } from '../../lambdas/core/sandbox/types.js';
import { createServices } from '../../lambdas/core/services.js';
import { MemoryEventLog, MemoryStateTable } from './memory-store.js';
import { DELIVERS_EVERYTHING } from './recipe-support.js';
import { ScriptedModel, text } from './scripted-model.js';

/**
 * The benchmark's coupled design (bench/lib/eager-sandbox.ts) against the product's harness: the
 * wrapper provisions the default sandbox when a turn starts, before the turn's first event; the
 * product's harness provisions nothing for a turn that calls no tool.
 */
const T = 'tnt_eager';

async function textTurn(eager: boolean) {
  const events = new MemoryEventLog();
  const provisions: Array<{ req: ProvisionRequest; logThen: string[] }> = [];
  const provider: SandboxProvider = {
    recipeSupport: DELIVERS_EVERYTHING,
    async provision(req) {
      provisions.push({ req, logThen: (await events.getEvents(req.sessionId)).map((e) => e.event.type) });
      return { endpoint: { kind: 'tcp', host: '127.0.0.1', port: 9, capability: 'cap' }, ref: 'ref-1' };
    },
    release: async () => undefined,
  };
  const model = new ScriptedModel();
  const svc = createServices({
    table: new MemoryStateTable(),
    events,
    queue: { wake: async () => undefined },
    sandboxProvider: provider,
    model,
    ...(eager ? { wrapHarnessDeps: withEagerSandbox } : {}),
  });
  const agent = await svc.agents.create(T, AgentCreate.parse({ name: 'a', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] }));
  const env = await svc.environments.create(T, EnvironmentCreate.parse({ name: 'e' }));
  const session = await svc.sessions.create(T, SessionCreate.parse({ agent: agent.id, environment_id: env.id }));
  await svc.sessions.send(T, session.id, [{ type: 'user.message', content: [{ type: 'text', text: 'hi' }] }] as never);
  model.push(text('hello'));
  await svc.harness.wake(session.id);
  const log = (await events.getEvents(session.id)).map((e) => e.event.type);
  return { provisions, log, env: env.id, sandboxes: await svc.sandboxes.list(session.id) };
}

describe('eager provisioning (benchmark only)', () => {
  it('provisions the default sandbox when the turn starts, before it is running, even for a turn that calls no tool', async () => {
    const { provisions, log, env, sandboxes } = await textTurn(true);
    expect(provisions).toHaveLength(1);
    expect(provisions[0].req).toMatchObject({ name: 'default', recipe: { environmentId: env, packages: {}, repositories: [] } });
    expect(provisions[0].logThen).not.toContain('session.status_running');
    expect(sandboxes.map((s) => [s.name, s.state])).toEqual([['default', 'ready']]);
    expect(log).toContain('agent.message');
    expect(log.at(-1)).toBe('session.status_idle');
  });

  it('is not what the product does: without the wrapper a text turn provisions nothing', async () => {
    const { provisions, log } = await textTurn(false);
    expect(provisions).toEqual([]);
    expect(log).toContain('agent.message');
  });
});
