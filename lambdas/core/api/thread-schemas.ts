import * as z from 'zod';

// Local copies of schemas.ts's helpers: schemas.ts imports this module, so this one cannot import it back.
const Id = z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, 'must be an id: 1-128 letters, digits, _ or -');
function unsupportedVariant<T extends string>(type: T, what: string) {
  const schema = z.looseObject({ type: z.literal(type) }).refine(() => false, { message: `${what} is not supported by Corral` });
  return schema as typeof schema & z.ZodType<never>;
}

/**
 * The agent's `multiagent` setting as requests carry it (`BetaManagedAgentsMultiagentParams`).
 * Corral builds the `coordinator` topology: a roster of agents the session's primary thread may
 * spawn as session threads (core/threads/). What it does not build is a 400 naming it: an
 * `advisor` roster entry, and the `multiagent_20261001` form (its defaults turn on workflows and
 * inline agents, which Corral does not run).
 */
const RosterEntry = z.union([
  Id,
  z.discriminatedUnion('type', [
    z.strictObject({ type: z.literal('agent'), id: Id, version: z.number().int().positive().max(Number.MAX_SAFE_INTEGER).nullish() }),
    z.strictObject({ type: z.literal('self') }),
    unsupportedVariant('advisor', 'an advisor roster entry (multiagent advisor)'),
  ]),
]);

export const MultiagentParam = z
  .discriminatedUnion('type', [
    z.strictObject({ type: z.literal('coordinator'), agents: z.array(RosterEntry).min(1).max(20) }),
    unsupportedVariant('multiagent_20261001', "the 'multiagent_20261001' configuration (subagents, workflows, advisor; use 'coordinator')"),
  ])
  .nullish();
export type MultiagentParam = z.infer<typeof MultiagentParam>;
export type RosterEntryParam = z.infer<typeof RosterEntry>;


/** A session thread as answered (`BetaManagedAgentsSessionThread`), for the OpenAPI document. */
export const SessionThreadResponse = z
  .looseObject({
    id: z.string(),
    type: z.literal('session_thread'),
    session_id: z.string(),
    status: z.enum(['rescheduling', 'running', 'idle', 'terminated']),
    agent: z.looseObject({ id: z.string(), type: z.literal('agent'), version: z.number().int(), name: z.string() }),
    parent_thread_id: z.string().nullable(),
    archived_at: z.string().nullable(),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .meta({ id: 'SessionThread' });
