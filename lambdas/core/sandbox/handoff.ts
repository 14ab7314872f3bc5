/**
 * Passing hands between brains (a Corral extension): a running sandbox moves from one session to
 * another of the same tenant, workspace, processes and all, without copying. Afterwards the
 * source cannot reach it (its record is gone and the capability it knew no longer opens it; if
 * its model addresses that name again it gets a fresh sandbox) and the target reaches it under
 * the name it was given. Both logs record it, with event types of Corral's own
 * (`corral.sandbox_handoff_sent` / `corral.sandbox_handoff_received`) that the Managed Agents
 * API cannot clash with and that the context builder and `nextAction` ignore.
 */
import { ConflictError, InvalidRequestError } from '../errors.js';
import { nextAction } from '../harness/state.js';
import type { SessionService } from '../resources/sessions.js';
import { makeEvent, type SandboxHandoffReceivedEvent, type SandboxHandoffSentEvent } from '../session/events.js';
import type { EventLog } from '../session/log.js';
import { tenantPrincipal } from '../storage/principal.js';
import { SANDBOX_NAME, type SandboxManager, type SandboxRecord } from './manager.js';

export const HANDOFF_SENT = 'corral.sandbox_handoff_sent';
export const HANDOFF_RECEIVED = 'corral.sandbox_handoff_received';

export interface HandoffRequest {
  sessionId: string;
  name: string;
  toSessionId: string;
  /** Name in the target session; default: the same name. */
  as?: string;
}

export interface HandoffResult {
  record: SandboxRecord;
  sent: SandboxHandoffSentEvent;
  received: SandboxHandoffReceivedEvent;
}

/** True when the log says the session has nothing to do: idle, and no user event waiting. */
async function idle(events: EventLog, sessionId: string): Promise<boolean> {
  return nextAction(await events.getEvents(sessionId)).kind === 'none';
}

export async function handOffSandbox(
  deps: { sessions: SessionService; events: EventLog; sandboxes: SandboxManager },
  tenant: string,
  req: HandoffRequest,
): Promise<HandoffResult> {
  const as = req.as ?? req.name;
  if (!SANDBOX_NAME.test(req.name)) throw new InvalidRequestError(`sandbox name ${JSON.stringify(req.name)} is not valid: use 1-64 letters, digits, - or _`);
  if (!SANDBOX_NAME.test(as)) throw new InvalidRequestError(`as: ${JSON.stringify(as)} is not a valid sandbox name: use 1-64 letters, digits, - or _`);
  if (req.toSessionId === req.sessionId) throw new InvalidRequestError('to_session_id: a sandbox can only be handed to another session');
  // Both must be the caller's (a session of another tenant is "not found").
  const caller = tenantPrincipal(tenant);
  await deps.sessions.get(caller, req.sessionId);
  const target = await deps.sessions.get(caller, req.toSessionId);
  if (target.archived_at) throw new InvalidRequestError(`to_session_id: session ${target.id} is archived`);
  if (target.status === 'terminated') throw new InvalidRequestError(`to_session_id: session ${target.id} is terminated`);

  // Only between turns: a sandbox is never pulled out from under a running tool call, and the
  // events below never race a harness's appends.
  if (!(await idle(deps.events, req.sessionId))) {
    throw new ConflictError(`session ${req.sessionId} is running; a sandbox can be handed off only while both sessions are idle`);
  }
  if (!(await idle(deps.events, req.toSessionId))) {
    throw new ConflictError(`session ${req.toSessionId} is running; a sandbox can be handed off only while both sessions are idle`);
  }

  const record = await deps.sandboxes.handOff({ sessionId: req.sessionId, name: req.name }, { sessionId: req.toSessionId, name: as });
  const now = new Date();
  const sent = makeEvent({ type: HANDOFF_SENT, sandbox: req.name, to_session_id: req.toSessionId, to_sandbox: as }, now);
  const received = makeEvent({ type: HANDOFF_RECEIVED, sandbox: as, from_session_id: req.sessionId, from_sandbox: req.name }, now);
  await deps.events.emitEvent(req.sessionId, sent);
  await deps.events.emitEvent(req.toSessionId, received);
  return { record, sent, received };
}

/** How the API shows a sandbox: never its endpoint, address or capability. */
export function publicSandbox(record: SandboxRecord) {
  return {
    type: 'sandbox' as const,
    name: record.name,
    state: record.state,
    created_at: record.createdAt,
    last_used_at: record.lastUsedAt,
    ...(record.receivedFrom ? { received_from: { session_id: record.receivedFrom.sessionId, sandbox: record.receivedFrom.name, at: record.receivedFrom.at } } : {}),
  };
}
