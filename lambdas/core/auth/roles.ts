/**
 * Roles of a signed-in person (docs/SIGN-IN.md). Ordered: each role may do everything the roles
 * before it may.
 *
 * - `user`: run and watch sessions of agents others made (create sessions, send events, stream,
 *   list and read).
 * - `developer`: also create, update and archive agents, environments, vaults and credentials, and
 *   manage sessions.
 * - `admin`: everything, including API keys and tenants.
 */
export const ROLES = ['user', 'developer', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** Whether `held` grants what `required` asks for. */
export function roleAllows(held: Role, required: Role): boolean {
  return ROLES.indexOf(held) >= ROLES.indexOf(required);
}

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}
