import { createHash } from 'node:crypto';
import { InvalidRequestError, NotFoundError } from '../errors.js';
import type { MultiagentParam } from '../api/thread-schemas.js';

/**
 * Multi-agent threads, the pure half: the resolved `multiagent` roster, thread ids, and the
 * coordinator's two tools. See docs/THREADS.md for the design (a thread is a session of its own
 * under the hood: its own log, lease, cursor, wakes and sandbox).
 */

/** A roster entry as stored and returned: `BetaManagedAgentsAgentReference`. */
export interface AgentReference {
  type: 'agent';
  id: string;
  version: number;
}

/** `multiagent` as stored and returned (`BetaManagedAgentsMultiagentCoordinator`). */
export interface Coordinator {
  type: 'coordinator';
  agents: AgentReference[];
}

/** What roster resolution needs of the agents: the agent at a version (latest without one). */
export type AgentLookup = (id: string, version?: number) => Promise<{ id: string; version: number; archived_at: string | null; multiagent: unknown }>;

/**
 * Resolve a `multiagent` request to the stored roster: string ids and unversioned references pin
 * the agent's latest version, `self` is the agent being written (`self` at its new version).
 * Every agent must exist in the tenant, not be archived, and not itself have `multiagent` (depth
 * limit 1); entries must be distinct after resolution, with at most one `self`.
 */
export async function resolveMultiagent(param: MultiagentParam, self: { id: string; version: number }, lookup: AgentLookup): Promise<Coordinator | null> {
  if (!param) return null;
  const agents: AgentReference[] = [];
  let selves = 0;
  for (const [i, entry] of param.agents.entries()) {
    const field = `multiagent.agents.${i}`;
    if (typeof entry === 'object' && entry.type === 'self') {
      if (++selves > 1) throw new InvalidRequestError(`${field}: at most one 'self' entry`);
      agents.push({ type: 'agent', id: self.id, version: self.version });
      continue;
    }
    const ref = typeof entry === 'string' ? { id: entry, version: undefined } : { id: entry.id, version: entry.version ?? undefined };
    if (ref.id === self.id) throw new InvalidRequestError(`${field}: the agent itself is named by {"type": "self"}`);
    const agent = await lookup(ref.id, ref.version).catch((err) => {
      if (err instanceof NotFoundError) throw new InvalidRequestError(`${field}: ${err.message}`);
      throw err;
    });
    if (agent.archived_at) throw new InvalidRequestError(`${field}: agent ${agent.id} is archived`);
    if (agent.multiagent) throw new InvalidRequestError(`${field}: agent ${agent.id} has multiagent set itself (the roster is one level deep)`);
    agents.push({ type: 'agent', id: agent.id, version: agent.version });
  }
  const ids = agents.map((a) => a.id);
  const twice = ids.find((id, i) => ids.indexOf(id) !== i);
  if (twice) throw new InvalidRequestError(`multiagent.agents: agent ${twice} is named twice`);
  return { type: 'coordinator', agents };
}

/** The stored roster, if the agent is a coordinator. */
export function coordinatorOf(multiagent: unknown): Coordinator | null {
  const m = multiagent as Coordinator | null | undefined;
  return m?.type === 'coordinator' && Array.isArray(m.agents) ? m : null;
}

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/**
 * The id of the thread a tool call spawns: derived from the session and the call, so a step
 * repeated after a crash creates (or finds) the same thread, never a second one.
 */
export function threadIdFor(sessionId: string, toolUseId: string): string {
  const digest = createHash('sha256').update(`${sessionId}\0${toolUseId}`).digest();
  let out = '';
  for (let i = 0; i < 26; i++) out += ALPHABET[digest[i] % 32];
  return `sthr_${out}`;
}

/** The id of the event a tool call delivers to a thread's log (idempotent as above). */
export function deliveredEventId(toolUseId: string): string {
  const digest = createHash('sha256').update(`deliver\0${toolUseId}`).digest();
  let out = '';
  for (let i = 0; i < 26; i++) out += ALPHABET[digest[i] % 32];
  return `sevt_${out}`;
}

/** The coordinator's tools (Corral's names: the hosted service does not publish its own). */
export const SPAWN_THREAD_TOOL = 'spawn_thread';
export const MESSAGE_THREAD_TOOL = 'message_thread';
export const THREAD_TOOLS: readonly string[] = [SPAWN_THREAD_TOOL, MESSAGE_THREAD_TOOL];

/** The model-facing specs of the coordinator's tools, naming the roster's agents. */
export function threadToolSpecs(names: string[]) {
  return [
    {
      name: SPAWN_THREAD_TOOL,
      description:
        'Start a session thread: another agent works on the task you give it, in its own context and sandbox, ' +
        "while you go on. Its final answer comes back to you as a message from the thread. Returns the thread's id.",
      input_schema: {
        type: 'object',
        properties: {
          agent: { type: 'string', enum: names, description: 'Which agent of the roster runs the thread (its name).' },
          message: { type: 'string', description: 'The task: the first message the thread receives.' },
        },
        required: ['agent', 'message'],
      },
    },
    {
      name: MESSAGE_THREAD_TOOL,
      description: 'Send a follow-up message to a thread you spawned; it keeps everything from its earlier turns. Its answer comes back to you as a message.',
      input_schema: {
        type: 'object',
        properties: { thread_id: { type: 'string' }, message: { type: 'string' } },
        required: ['thread_id', 'message'],
      },
    },
  ];
}
