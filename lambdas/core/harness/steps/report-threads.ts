import type { EventBody } from '../../session/events.js';
import { appendAfter } from '../append.js';
import type { Decision } from '../state.js';
import type { StepContext } from '../step.js';

/**
 * Report the turns the session's threads ended (threads/collect.ts): per turn the thread's idle
 * and its answer, which the coordinator takes as input (a new turn, or more of this one). One
 * batch right after the last position read; each report carries the thread's position, so a
 * step repeated after a crash reports nothing twice.
 */
export async function reportThreads(ctx: StepContext, d: Extract<Decision, { kind: 'report_threads' }>): Promise<void> {
  const bodies: EventBody[] = d.reports.flatMap((r): EventBody[] => [
    { type: 'session.thread_status_idle', session_thread_id: r.threadId, agent_name: r.agentName, stop_reason: r.stopReason, stop_details: null },
    { type: 'agent.thread_message_received', from_session_thread_id: r.threadId, from_agent_name: r.agentName, content: r.content, thread_position: r.position },
  ]);
  await appendAfter(ctx.deps, ctx.session.id, ctx.state.position, bodies);
}
