import type { EventLog } from '../session/log.js';
import type { AgentMessageEvent } from '../session/events.js';
import type { ThreadReport, TurnState } from '../harness/state.js';

/**
 * What the coordinator's threads did since its log last reported them: for each thread the fold
 * knows as running, the turns its own log ended (each `session.status_idle` after the position
 * last reported) with the thread's last answer in that turn. Reading a thread's log needs no
 * lease (it is append-only); the reports are written to the coordinator's log by its own harness
 * (steps/report-threads.ts), so every log keeps one writer.
 */
export async function collectThreadReports(events: EventLog, state: TurnState): Promise<ThreadReport[]> {
  const running = Object.entries(state.threads ?? {}).filter(([, t]) => t.status === 'running');
  const perThread = await Promise.all(
    running.map(async ([threadId, t]) => {
      const fresh = await events.getEvents(threadId, { from: t.seen + 1 });
      const reports: ThreadReport[] = [];
      let answer: AgentMessageEvent['content'] | null = null;
      for (const { position, event } of fresh) {
        if (event.type === 'agent.message') answer = event.content;
        if (event.type === 'session.status_idle') {
          reports.push({
            threadId,
            agentName: t.agent,
            position,
            stopReason: event.stop_reason,
            content: answer?.length ? answer : [{ type: 'text', text: `(the thread ended its turn without an answer: ${event.stop_reason.type})` }],
          });
          answer = null;
        }
      }
      return reports;
    }),
  );
  return perThread.flat();
}
