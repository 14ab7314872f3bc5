import { InvalidRequestError } from '../../errors.js';
import { expectEvent, makeEvent, type EventBody } from '../../session/events.js';
import { deliveredEventId, SPAWN_THREAD_TOOL, threadIdFor } from '../../threads/multiagent.js';
import { appendAfter } from '../append.js';
import { toolResultBody } from '../bodies.js';
import type { OpenTool } from '../state.js';
import { HARNESS, type StepContext } from '../step.js';

/**
 * The coordinator's tools (threads/multiagent.ts): `spawn_thread` starts a session thread running
 * a roster agent, `message_thread` sends one of its threads a follow-up. Every write is keyed by
 * the tool call, so a step repeated after a crash at any point finds what the first attempt did:
 * the thread's record (its id is derived from the call), the message in the thread's log (its
 * event id too), and only then the result in the coordinator's log.
 */
export async function runThreadTool(ctx: StepContext, tool: OpenTool) {
  const { session, state } = ctx;
  const [stored] = await ctx.deps.events.getEvents(session.id, { from: tool.position, to: tool.position + 1 });
  const input = expectEvent(stored.event, 'agent.tool_use').input ?? {};
  const text = typeof input.message === 'string' ? input.message : '';
  const fail = async (message: string) => void (await appendAfter(ctx.deps, session.id, state.position, [toolResultBody(tool.id, message, true)]));
  if (!text.trim()) return fail('"message" must be a non-empty string.');
  const content = [{ type: 'text' as const, text }];
  let threadId: string;
  let agentName: string;
  const bodies: EventBody[] = [];
  if (tool.name === SPAWN_THREAD_TOOL) {
    if (typeof input.agent !== 'string') return fail('"agent" must name an agent of the roster.');
    threadId = threadIdFor(session.id, tool.id);
    try {
      agentName = (await ctx.deps.sessions.createThreadRecord(HARNESS, session.id, threadId, input.agent)).thread_of!.agent_name;
    } catch (err) {
      if (err instanceof InvalidRequestError) return fail(err.message);
      throw err;
    }
    bodies.push({ type: 'session.thread_created', session_thread_id: threadId, agent_name: agentName, workflow_run_id: null });
  } else {
    threadId = typeof input.thread_id === 'string' ? input.thread_id : '';
    const known = state.threads?.[threadId];
    if (!known) return fail(`No thread ${JSON.stringify(threadId.slice(0, 100))} of this session; spawn_thread answers with the id.`);
    // Archived through the API (threads/threads.ts): its record says so.
    if (known.status === 'terminated' || (await ctx.deps.sessions.get(HARNESS, threadId)).archived_at) return fail(`Thread ${threadId} is archived.`);
    agentName = known.agent;
  }
  await deliver(ctx, threadId, tool.id, content, state.threads?.[threadId]?.seen ?? 0);
  bodies.push(
    { type: 'session.thread_status_running', session_thread_id: threadId, agent_name: agentName },
    { type: 'agent.thread_message_sent', to_session_thread_id: threadId, to_agent_name: agentName, content },
    toolResultBody(tool.id, tool.name === SPAWN_THREAD_TOOL ? `Started thread ${threadId} (agent ${agentName}). Its answer will come to you as a message.` : `Sent to thread ${threadId}. Its answer will come to you as a message.`, false),
  );
  await appendAfter(ctx.deps, session.id, state.position, bodies);
}

/**
 * The message in the thread's log as a `user.message` (once: its id is the call's), and a wake
 * for the thread's harness. `from`: no earlier position of the thread's log can hold it.
 */
async function deliver(ctx: StepContext, threadId: string, toolUseId: string, content: Array<{ type: 'text'; text: string }>, from: number) {
  const id = deliveredEventId(toolUseId);
  const there = await ctx.deps.events.getEvents(threadId, { from: from + 1 });
  if (!there.some((e) => e.event.id === id)) {
    await ctx.deps.events.emitEvent(threadId, makeEvent({ type: 'user.message', content }, new Date(), id));
  }
  await ctx.deps.queue.wake(threadId);
}
