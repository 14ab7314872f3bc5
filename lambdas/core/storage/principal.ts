/**
 * Who reads a tenant-owned item. Every reader of one takes a principal and returns nothing when
 * the item is another tenant's; there is no value that means "skip the check" by accident.
 *
 * - A tenant principal reads its own tenant's items (the API, for an authenticated key).
 * - The system principal reads any tenant's: only the parts of Corral that act for every tenant
 *   hold one (the harness, the sandbox reaper, the credential proxy, the local runtime's start-up
 *   recovery). `test/unit/storage-principal.test.ts` lists where it may be made and fails if it
 *   is made anywhere else.
 *
 * A system principal is recognised by identity, not by shape: only the objects `systemPrincipal`
 * returned count, so `{ kind: 'system' }` built elsewhere (or parsed from a request) reads nothing.
 */
export interface TenantPrincipal {
  readonly kind: 'tenant';
  readonly id: string;
}

declare const systemBrand: unique symbol;

/** The parts of Corral that may act across tenants. */
export type SystemComponent = 'harness' | 'sandbox-reaper' | 'credential-proxy' | 'recovery';

export interface SystemPrincipal {
  readonly kind: 'system';
  /** Which part holds it (for logs and the test that lists them). */
  readonly component: SystemComponent;
  /** Unforgeable by an object literal: only `systemPrincipal` makes one. */
  readonly [systemBrand]: true;
}

export type Principal = TenantPrincipal | SystemPrincipal;

const issued = new WeakSet<object>();

export function tenantPrincipal(id: string): TenantPrincipal {
  if (typeof id !== 'string' || !id) throw new TypeError('a tenant principal needs a tenant id');
  return Object.freeze({ kind: 'tenant', id });
}

/** The principal of a part of Corral that acts for every tenant. See the module comment for who may call it. */
export function systemPrincipal(component: SystemComponent): SystemPrincipal {
  const p = Object.freeze({ kind: 'system', component }) as SystemPrincipal;
  issued.add(p);
  return p;
}

export function isSystem(who: unknown): who is SystemPrincipal {
  return typeof who === 'object' && who !== null && issued.has(who);
}

/**
 * Whether `who` may read an item owned by `owner`. Fails closed: anything that is not a system
 * principal `systemPrincipal` made, or a tenant principal naming exactly `owner`, may not.
 */
export function mayRead(who: Principal, owner: unknown): boolean {
  if (isSystem(who)) return true;
  const p = who as Partial<TenantPrincipal> | null | undefined;
  return p?.kind === 'tenant' && typeof p.id === 'string' && p.id !== '' && p.id === owner;
}
