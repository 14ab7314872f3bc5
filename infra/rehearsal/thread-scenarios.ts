/**
 * Multi-agent threads on the rehearsed deployment: a coordinator session spawns two threads,
 * each a session of its own to the harness (its own wakes through the SQS FIFO queue, its own
 * log, lease and Fargate sandbox task), and their answers come back to the coordinator; the
 * harness function does all of it with its own role. See docs/THREADS.md.
 */
import type Anthropic from '@anthropic-ai/sdk';
import { echoModel, type FakeMessagesApi } from '../../test/fixtures/fake-messages-api.js';
import { coordinatorModel } from '../../test/fixtures/thread-model.js';
import { fail, type Scenario } from './scenarios.js';

export const THREAD_SCENARIOS = ['threads'] as const;

export function threadScenarios(fake: Pick<FakeMessagesApi, 'setFallback'>): Scenario[] {
  return [
    {
      name: 'threads',
      proves:
        'a coordinator session spawns two threads that each run a command in a sandbox task of their own, woken through the queue, and both answers reach the coordinator; threads.list, retrieve, events.list and events.stream read them through API Gateway',
      timeoutMs: 180_000,
      async run(ctx) {
        const c = ctx.client;
        const marker = ctx.marker('thread');
        fake.setFallback(coordinatorModel('rehearsal-worker', [`echo ${marker}-a`, `echo ${marker}-b`]));
        let session: string | undefined;
        try {
          const worker = await c.beta.agents.create({ name: 'rehearsal-worker', model: ctx.model, tools: [{ type: 'agent_toolset_20260401' }] });
          const lead = await c.beta.agents.create({ name: 'rehearsal-lead', model: ctx.model, tools: [], multiagent: { type: 'coordinator', agents: [worker.id] } });
          const environment = await c.beta.environments.create({ name: `rehearsal-threads-${marker}`, config: { type: 'cloud' } });
          session = (await c.beta.sessions.create({ agent: lead.id, environment_id: environment.id })).id;
          await c.beta.sessions.events.send(session, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'Split the work.' }] }] });
          let events: Anthropic.Beta.Sessions.BetaManagedAgentsSessionEvent[] = [];
          for (;;) {
            if (ctx.signal.aborted) fail(`the coordinator did not hear from both threads: ${events.map((e) => e.type).join(', ').slice(0, 800)}`);
            events = [];
            for await (const e of c.beta.sessions.events.list(session)) events.push(e);
            const received = events.filter((e) => e.type === 'agent.thread_message_received');
            if (received.length === 2 && events.at(-1)?.type === 'session.status_idle') break;
            await new Promise((r) => setTimeout(r, 500));
          }
          const answers = events.flatMap((e) => (e.type === 'agent.thread_message_received' ? [JSON.stringify(e.content)] : []));
          for (const part of ['a', 'b']) if (!answers.some((a) => a.includes(`${marker}-${part}`))) fail(`no thread answered with ${marker}-${part}: ${answers.join(' | ').slice(0, 400)}`);
          const threads: Anthropic.Beta.Sessions.BetaManagedAgentsSessionThread[] = [];
          for await (const th of c.beta.sessions.threads.list(session)) threads.push(th);
          if (threads.length !== 2 || threads.some((th) => th.status !== 'idle')) fail(`threads.list answered ${JSON.stringify(threads.map((th) => [th.id, th.status]))}`);
          for (const th of threads) {
            const again = await c.beta.sessions.threads.retrieve(th.id, { session_id: session });
            if (again.id !== th.id) fail(`threads.retrieve(${th.id}) answered ${again.id}`);
            const own: string[] = [];
            for await (const e of c.beta.sessions.threads.events.list(th.id, { session_id: session })) own.push(e.type);
            if (!own.includes('agent.tool_result')) fail(`thread ${th.id} ran no tool: ${own.join(', ')}`);
          }
          // A thread's stream is served by the streaming function (a buffered one would never answer):
          // from the start of its log, its tool result arrives.
          const stream = await c.beta.sessions.threads.events.stream(threads[0].id, { session_id: session }, { headers: { 'Last-Event-ID': '0' }, signal: ctx.signal });
          const streamed: string[] = [];
          try {
            for await (const e of stream) {
              streamed.push(e.type);
              if (e.type === 'agent.tool_result') break;
            }
          } finally {
            stream.controller.abort();
          }
          if (!streamed.includes('agent.tool_result')) fail(`thread ${threads[0].id}'s stream ended without its tool result: ${streamed.join(', ')}`);
          return `2 threads ran their commands (${threads.map((th) => th.id).join(', ')}) and answered the coordinator`;
        } finally {
          fake.setFallback(echoModel);
          if (session) await c.beta.sessions.delete(session).catch(() => undefined);
        }
      },
    },
  ];
}
