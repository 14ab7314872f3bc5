import { describe, expect, it } from 'vitest';
import { createApp } from '../../lambdas/api/app.js';
import { requiredRole, ROUTE_ROLES } from '../../lambdas/api/route-roles.js';
import { OidcVerifier } from '../../lambdas/core/auth/oidc.js';
import type { CorralServices } from '../../lambdas/core/services.js';

/** The route -> role table (lambdas/api/route-roles.ts) against the routes the app really has. */
describe('the route -> role table', () => {
  // Building the app registers its routes; nothing is served, so no service is touched.
  const app = createApp({} as CorralServices, { oidc: new OidcVerifier([]) });
  const routes = [...new Set(app.routes.filter((r) => r.method !== 'ALL').map((r) => `${r.method} ${r.path}`))];

  it('holds every route of the app, and nothing the app does not serve', () => {
    expect(routes.length).toBeGreaterThan(40);
    const missing = routes.filter((r) => !Object.hasOwn(ROUTE_ROLES, r));
    expect(missing, 'routes without a role: add them to ROUTE_ROLES').toEqual([]);
    expect(Object.keys(ROUTE_ROLES).filter((r) => !routes.includes(r))).toEqual([]);
  });

  it('leaves only the unauthenticated pages public', () => {
    const pub = Object.entries(ROUTE_ROLES).filter(([, role]) => role === 'public').map(([r]) => r);
    expect(pub.every((r) => !r.includes(' /v1/'))).toBe(true);
  });

  it('resolves requests to their route, and an unknown one to admin', () => {
    expect(requiredRole('POST', '/v1/agents')).toBe('developer');
    expect(requiredRole('POST', '/v1/agents/')).toBe('developer');
    expect(requiredRole('GET', '/v1/agents/agent_1')).toBe('user');
    expect(requiredRole('POST', '/v1/agents/agent_1/archive')).toBe('developer');
    expect(requiredRole('POST', '/v1/sessions')).toBe('user');
    expect(requiredRole('POST', '/v1/sessions/sesn_1/events')).toBe('user');
    expect(requiredRole('GET', '/v1/sessions/sesn_1/events/stream')).toBe('user');
    expect(requiredRole('HEAD', '/v1/sessions/sesn_1')).toBe('user');
    expect(requiredRole('POST', '/v1/vaults/v_1/credentials')).toBe('developer');
    expect(requiredRole('PUT', '/v1/agents/agent_1')).toBe('admin');
    expect(requiredRole('GET', '/v1/tenants')).toBe('admin');
  });
});
