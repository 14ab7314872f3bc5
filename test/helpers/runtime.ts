import Anthropic from '@anthropic-ai/sdk';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalRuntime, type LocalRuntime, type LocalRuntimeOptions } from '../../local-runtime/runtime.js';
import { startFakeMessagesApi, type FakeMessagesApi, type ScriptedTurn } from '../fixtures/fake-messages-api.js';

export interface TestRuntime {
  runtime: LocalRuntime;
  fake: FakeMessagesApi;
  client: Anthropic;
  dataDir: string;
  close(): Promise<void>;
}

/** The local runtime on loopback with the scripted fake Messages API as its model. */
export async function startTestRuntime(
  opts: { script?: ScriptedTurn[]; runtime?: Partial<LocalRuntimeOptions> } = {},
): Promise<TestRuntime> {
  const fake = await startFakeMessagesApi({ script: opts.script });
  const dataDir = mkdtempSync(join(tmpdir(), 'corral-test-'));
  const runtime = await startLocalRuntime({
    port: 0,
    dataDir,
    inMemory: true,
    anthropicApiKey: 'test-model-key',
    anthropicBaseUrl: fake.url,
    harness: { retryDelayMs: () => 10, interruptPollMs: 50 },
    ...opts.runtime,
  });
  const client = new Anthropic({ baseURL: runtime.url, apiKey: runtime.apiKey, maxRetries: 0 });
  return {
    runtime,
    fake,
    client,
    dataDir,
    async close() {
      await runtime.close();
      await fake.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** An agent with the agent toolset and an environment, ready for sessions. */
export async function createAgentAndEnvironment(client: Anthropic, agentParams: Record<string, unknown> = {}) {
  const agent = await client.beta.agents.create({
    name: 'test-agent',
    model: 'claude-sonnet-4-6',
    tools: [{ type: 'agent_toolset_20260401' }],
    ...agentParams,
  } as Anthropic.Beta.AgentCreateParams);
  const environment = await client.beta.environments.create({ name: 'test-env', config: { type: 'cloud' } });
  return { agent, environment };
}

type StreamEvent = { type: string; id: string; [k: string]: unknown };

const iterators = new WeakMap<object, AsyncIterator<unknown>>();

/**
 * Collect stream events until `until` says stop (or the stream ends). The stream stays open, so
 * the next call goes on where this one stopped.
 */
export async function collectUntil(
  stream: AsyncIterable<unknown>,
  until: (e: StreamEvent, all: StreamEvent[]) => boolean,
): Promise<StreamEvent[]> {
  let it = iterators.get(stream);
  if (!it) {
    it = stream[Symbol.asyncIterator]();
    iterators.set(stream, it);
  }
  const seen: StreamEvent[] = [];
  for (;;) {
    const { value, done } = await it.next();
    if (done) return seen;
    const e = value as StreamEvent;
    seen.push(e);
    if (until(e, seen)) return seen;
  }
}

export const isIdle = (e: { type: string }) => e.type === 'session.status_idle';

/** Poll until `check` returns a value (bounded). */
export async function waitFor<T>(check: () => Promise<T | undefined | null | false>, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Every stored event of a session, through the paginated list endpoint. */
export async function listAll(client: Anthropic, sessionId: string, params: Record<string, unknown> = {}) {
  const out: StreamEvent[] = [];
  for await (const e of client.beta.sessions.events.list(sessionId, params)) out.push(e as unknown as StreamEvent);
  return out;
}
