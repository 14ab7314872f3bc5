import type { MiddlewareHandler } from 'hono';
import { InvalidRequestError } from '../core/errors.js';
import { OPERATIONS } from './openapi.js';

/**
 * A query parameter that the matched route does not read is a 400 that names it: a filter Corral
 * does not implement (`deployment_id`, `event_deltas`, ...) must not quietly return unfiltered
 * data. What each route reads is what the OpenAPI document declares for it (`OPERATIONS`), so
 * the document and the check cannot drift. Array parameters match with or without the SDK's `[]`.
 */

/**
 * Accepted on every route and read by none: the SDK marks beta endpoints with `beta=true` in its
 * request options, and a client that forwards it must not be refused.
 */
const EVERY_ROUTE = ['beta'];

function names(list: string[]): Set<string> {
  const bare = list.map((n) => n.replace(/\[\]$/, ''));
  return new Set([...EVERY_ROUTE, ...bare, ...bare.map((n) => `${n}[]`)]);
}

/** `GET /v1/agents/:id` (as routed) → the parameters that route reads. */
export const QUERY_PARAMETERS: ReadonlyMap<string, ReadonlySet<string>> = new Map(
  OPERATIONS.map((op) => [`${op.method.toUpperCase()} ${op.path.replace(/\{(\w+)\}/g, ':$1')}`, names(Object.keys(op.query ?? {}))]),
);
const NONE = names([]);

/** Refuses, before the handler runs, any query parameter the matched route does not read. */
export function strictQuery(): MiddlewareHandler {
  return async (c, next) => {
    const given = Object.keys(c.req.queries());
    if (given.length) {
      // The route the request will reach: the last one matched that is not middleware.
      const route = c.req.matchedRoutes.filter((r) => r.method !== 'ALL').at(-1);
      const known = (route && QUERY_PARAMETERS.get(`${route.method} ${route.path}`)) ?? NONE;
      const unknown = given.filter((n) => !known.has(n));
      if (unknown.length) {
        throw new InvalidRequestError(
          `${unknown.join(', ')}: query parameter${unknown.length > 1 ? 's' : ''} not supported by Corral for ${c.req.method} ${route?.path ?? c.req.path}`,
        );
      }
    }
    await next();
  };
}
