import type { Role } from '../core/auth/roles.js';

/**
 * The one table of who may call what: every route of the app (`createApp`), as Hono registers it
 * (`METHOD path`), and the least role it needs (docs/SIGN-IN.md repeats it). `public` routes need
 * no credential at all. `test/api/route-roles.test.ts` fails when a route of the app is missing
 * here, so a new route cannot ship without a decision.
 *
 * API keys act with every right of their tenant (as `admin`); the roles limit signed-in people.
 */
export const ROUTE_ROLES: Readonly<Record<string, Role | 'public'>> = {
  'GET /health': 'public',
  'GET /openapi.json': 'public',
  'GET /console': 'public',
  'GET /console/sessions/:id': 'public',
  'GET /corral/auth': 'public',

  'POST /v1/agents': 'developer',
  'GET /v1/agents': 'user',
  'GET /v1/agents/:id': 'user',
  'POST /v1/agents/:id': 'developer',
  'POST /v1/agents/:id/archive': 'developer',
  'GET /v1/agents/:id/versions': 'user',

  'POST /v1/environments': 'developer',
  'GET /v1/environments': 'user',
  'GET /v1/environments/:id': 'user',
  'POST /v1/environments/:id': 'developer',
  'DELETE /v1/environments/:id': 'developer',
  'POST /v1/environments/:id/archive': 'developer',

  // Running and watching sessions is what a `user` does; changing or removing them is a developer's.
  'POST /v1/sessions': 'user',
  'GET /v1/sessions': 'user',
  'GET /v1/sessions/:id': 'user',
  'POST /v1/sessions/:id': 'developer',
  'DELETE /v1/sessions/:id': 'developer',
  'POST /v1/sessions/:id/fork': 'developer',
  'POST /v1/sessions/:id/archive': 'developer',
  'GET /v1/sessions/:id/resources': 'user',
  'POST /v1/sessions/:id/resources': 'developer',
  'GET /v1/sessions/:id/resources/:resource_id': 'user',
  'POST /v1/sessions/:id/resources/:resource_id': 'developer',
  'DELETE /v1/sessions/:id/resources/:resource_id': 'developer',
  'GET /v1/sessions/:id/events': 'user',
  'POST /v1/sessions/:id/events': 'user',
  'GET /v1/sessions/:id/events/stream': 'user',
  'GET /v1/sessions/:id/sandboxes': 'user',
  // A coordinator session's threads: watched by a `user`, archived by a developer.
  'GET /v1/sessions/:id/threads': 'user',
  'GET /v1/sessions/:id/threads/:thread_id': 'user',
  'POST /v1/sessions/:id/threads/:thread_id/archive': 'developer',
  'GET /v1/sessions/:id/threads/:thread_id/events': 'user',
  'GET /v1/sessions/:id/threads/:thread_id/stream': 'user',
  // Moves a session's sandbox (its workspace) to another session.
  'POST /v1/sessions/:id/sandboxes/:name/handoff': 'developer',

  // Vaults hold credentials: only developers change them (secrets are write-only for everyone).
  'POST /v1/vaults': 'developer',
  'GET /v1/vaults': 'user',
  'GET /v1/vaults/:id': 'user',
  'POST /v1/vaults/:id': 'developer',
  'DELETE /v1/vaults/:id': 'developer',
  'POST /v1/vaults/:id/archive': 'developer',
  'POST /v1/vaults/:id/credentials': 'developer',
  'GET /v1/vaults/:id/credentials': 'user',
  'GET /v1/vaults/:id/credentials/:credential_id': 'user',
  'POST /v1/vaults/:id/credentials/:credential_id': 'developer',
  'DELETE /v1/vaults/:id/credentials/:credential_id': 'developer',
  'POST /v1/vaults/:id/credentials/:credential_id/archive': 'developer',
  'POST /v1/vaults/:id/credentials/:credential_id/mcp_oauth_validate': 'developer',

  // A user may upload a file to attach to a session they start (a session's `resources`).
  'POST /v1/files': 'user',
  'GET /v1/files': 'user',
  'GET /v1/files/:id': 'user',
  'GET /v1/files/:id/content': 'user',
  'DELETE /v1/files/:id': 'developer',

  // A deployment starts sessions on a schedule: setting one up is a developer's; a user may watch
  // its runs and start one now, as they may start a session.
  'POST /v1/deployments': 'developer',
  'GET /v1/deployments': 'user',
  'GET /v1/deployments/:id': 'user',
  'POST /v1/deployments/:id': 'developer',
  'POST /v1/deployments/:id/archive': 'developer',
  'POST /v1/deployments/:id/pause': 'developer',
  'POST /v1/deployments/:id/unpause': 'developer',
  'POST /v1/deployments/:id/run': 'user',
  'GET /v1/deployment_runs': 'user',
  'GET /v1/deployment_runs/:id': 'user',

  // Importing a tenant's history (`corral import`) writes whole session logs: an admin's move.
  'POST /v1/corral/imports/sessions': 'admin',
  // Memory stores: reading them is a user's; writing, deleting and redacting a developer's.
  'POST /v1/memory_stores': 'developer',
  'GET /v1/memory_stores': 'user',
  'GET /v1/memory_stores/:id': 'user',
  'POST /v1/memory_stores/:id': 'developer',
  'DELETE /v1/memory_stores/:id': 'developer',
  'POST /v1/memory_stores/:id/archive': 'developer',
  'POST /v1/memory_stores/:id/memories': 'developer',
  'GET /v1/memory_stores/:id/memories': 'user',
  'GET /v1/memory_stores/:id/memories/:memory_id': 'user',
  'POST /v1/memory_stores/:id/memories/:memory_id': 'developer',
  'DELETE /v1/memory_stores/:id/memories/:memory_id': 'developer',
  'GET /v1/memory_stores/:id/memory_versions': 'user',
  'GET /v1/memory_stores/:id/memory_versions/:version_id': 'user',
  'POST /v1/memory_stores/:id/memory_versions/:version_id/redact': 'developer',

  // Webhook endpoints send the tenant's events to a URL: a developer's decision; the log is readable by users.
  'POST /v1/organizations/webhooks': 'developer',
  'GET /v1/organizations/webhooks': 'user',
  'GET /v1/organizations/webhooks/:id': 'user',
  'POST /v1/organizations/webhooks/:id': 'developer',
  'DELETE /v1/organizations/webhooks/:id': 'developer',
  'POST /v1/organizations/webhooks/:id/regenerate_signing_secret': 'developer',
  'GET /v1/corral/webhooks/:id/deliveries': 'user',
};

interface Compiled {
  method: string;
  pattern: RegExp;
  role: Role | 'public';
}

const compiled: Compiled[] = Object.entries(ROUTE_ROLES).map(([route, role]) => {
  const [method, path] = route.split(' ');
  const source = path
    .split('/')
    .map((seg) => (seg.startsWith(':') ? '[^/]+' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return { method, pattern: new RegExp(`^${source}/?$`), role };
});

/**
 * The least role a request needs. A request that matches no route of the table needs `admin`:
 * failing closed, a route added to the app but not to the table is no wider than an API key's.
 */
export function requiredRole(method: string, path: string): Role | 'public' {
  const m = method === 'HEAD' ? 'GET' : method;
  return compiled.find((r) => r.method === m && r.pattern.test(path))?.role ?? 'admin';
}
