/**
 * The coupled, single-container design, for measuring against Corral's: the session's default
 * sandbox is provisioned (and its repository cloned) when a turn starts, so thinking waits for
 * a container. Corral provisions on the first tool call that needs a sandbox instead
 * (lambdas/core/harness/steps/tool-sandbox.ts); this wrapper exists only in the benchmark.
 *
 * It wraps the harness's event log: before the harness writes the `session.status_running` that
 * starts a turn, it provisions the default sandbox (a no-op when one is ready), and only then lets
 * the write through, so the turn's first model call comes after the container, as in the coupled
 * design. A provisioning that fails fails the step, as the coupled design would.
 */
import type { HarnessDeps } from '../../lambdas/core/harness/harness.js';
import { sandboxRecipe } from '../../lambdas/core/harness/recipe.js';
import { HARNESS } from '../../lambdas/core/harness/step.js';
import { DEFAULT_SANDBOX } from '../../lambdas/core/sandbox/manager.js';
import type { SessionEvent } from '../../lambdas/core/session/events.js';
import type { EventLog } from '../../lambdas/core/session/log.js';

const startsTurn = (e: SessionEvent) => e.type === 'session.status_running';

export function withEagerSandbox(deps: HarnessDeps): HarnessDeps {
  const log = deps.events;
  const provision = async (sessionId: string) => {
    const session = await deps.sessions.get(HARNESS, sessionId);
    await deps.sandboxes.ensure(sessionId, DEFAULT_SANDBOX, await sandboxRecipe(deps, session));
  };
  const events: EventLog = {
    async emitEvent(sessionId, event, opts) {
      if (startsTurn(event)) await provision(sessionId);
      return log.emitEvent(sessionId, event, opts);
    },
    async appendBatch(sessionId, batch, opts) {
      if (batch.some(startsTurn)) await provision(sessionId);
      return log.appendBatch(sessionId, batch, opts);
    },
    getEvents: (sessionId, opts) => log.getEvents(sessionId, opts),
    lastPosition: (sessionId) => log.lastPosition(sessionId),
    deleteAll: (sessionId) => log.deleteAll(sessionId),
  };
  return { ...deps, events };
}
