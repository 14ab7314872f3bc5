/**
 * Egress grants: how the proxy service (lambdas/proxy-service/) knows whose a connection is. A
 * local sandbox is told apart by its own Unix socket; a Fargate sandbox reaches the service over
 * TCP, so it proves who it is with a capability: 32 random bytes the provider makes when it
 * provisions the task, passed to the sandbox agent in the task's environment (never to the tools:
 * the agent's egress forwarder adds it, in `Proxy-Authorization`, as the git forwarder adds its own).
 *
 * The grant the capability opens is written to the state table by the provider, keyed by the
 * capability's SHA-256 (the table never holds the capability itself), with the sandbox's policy
 * and the references of its `environment_variable` credentials (placeholder, vault and credential
 * ids, hosts, injection: never a secret). It expires with the sandbox: the provider revokes it on
 * release, and `expiresAt` bounds it besides (DynamoDB's TTL removes the item; reads check it too,
 * since TTL deletes late and dynalite has none).
 */
import crypto from 'node:crypto';
import type { StateTable } from '../store.js';
import { keys } from '../storage/keys.js';
import { ageOf, versionField } from '../storage/schema.js';
import type { EgressPolicy } from './egress.js';
import type { EgressCredential } from './egress-relay.js';

/** What a capability opens. No secret. */
export interface EgressGrant {
  /** The session's tenant, where the provider knows it (for the log; envcred-aws's vault reads). */
  readonly tenant?: string;
  readonly sessionId: string;
  /** The sandbox's name in its session (`default`, …). */
  readonly sandbox: string;
  readonly policy: EgressPolicy;
  /** The sandbox's `environment_variable` credentials, by reference (filled by the provider; empty: none). */
  readonly credentials: readonly EgressCredential[];
  /** Epoch ms after which the capability opens nothing. */
  readonly expiresAt: number;
}

/** The grants: written by the sandbox provider, read by the proxy service. */
export interface EgressGrantStore {
  put(capability: string, grant: EgressGrant): Promise<void>;
  /** The grant, or undefined when unknown, revoked or expired. */
  get(capability: string, now?: number): Promise<EgressGrant | undefined>;
  revoke(capability: string): Promise<void>;
  /** Remembers which sandbox (`ref`: its task ARN) holds `capability`, so that releasing it by ref revokes its grant. */
  bind(ref: string, capability: string, expiresAt: number): Promise<void>;
  /** Revokes the grant of the sandbox `ref` (nothing if it has none). */
  revokeRef(ref: string): Promise<void>;
}

/** The container's variable with the egress channel (`sandbox/agent/egress-forwarder.ts` reads it). */
export const EGRESS_CHANNEL_ENV = 'CORRAL_EGRESS_CHANNEL';

/** The egress channel a Fargate sandbox's agent is given: where the proxy service is, and the capability. */
export function egressChannelValue(address: string, capability: string): string {
  return JSON.stringify({ address, capability });
}

/** The header the agent's egress forwarder sends the capability in (`Proxy-Authorization: Bearer <capability>`). */
export const EGRESS_CAPABILITY_SCHEME = 'Bearer';

/** A new capability: 32 random bytes, base64url. */
export function newEgressCapability(): string {
  return crypto.randomBytes(32).toString('base64url');
}

/** What the table is keyed by: a capability is never stored. */
export function egressCapabilityHash(capability: string): string {
  return crypto.createHash('sha256').update(capability).digest('hex');
}

/** The capability in a `Proxy-Authorization` header value, or undefined. */
export function capabilityFromProxyAuthorization(value: string | undefined): string | undefined {
  const m = /^Bearer ([A-Za-z0-9_-]{16,128})$/.exec(value ?? '');
  return m?.[1];
}

const refHash = (ref: string) => crypto.createHash('sha256').update(ref).digest('hex');

/** Grants in the state table (DynamoDB on AWS; the same interface anywhere). */
export class StateTableEgressGrants implements EgressGrantStore {
  constructor(private readonly table: StateTable) {}

  async put(capability: string, grant: EgressGrant): Promise<void> {
    const k = keys.egressGrant(egressCapabilityHash(capability));
    await this.table.put({
      pk: k.pk,
      sk: k.sk,
      ...versionField('egress_grant'),
      grant: JSON.stringify(grant),
      // DynamoDB's TTL (epoch seconds): the item goes some time after the grant ends.
      expiresAt: Math.ceil(grant.expiresAt / 1000),
    });
  }

  async get(capability: string, now = Date.now()): Promise<EgressGrant | undefined> {
    const k = keys.egressGrant(egressCapabilityHash(capability));
    const item = await this.table.get(k.pk, k.sk);
    // A grant of a newer schema opens nothing here (the proxy answers 407; the sandbox retries on a newer task).
    if (!item || ageOf('egress_grant', item, 'read as absent') === 'newer' || typeof item.grant !== 'string') return undefined;
    const grant = JSON.parse(item.grant) as EgressGrant;
    return grant.expiresAt > now ? grant : undefined;
  }

  async revoke(capability: string): Promise<void> {
    const k = keys.egressGrant(egressCapabilityHash(capability));
    await this.table.delete(k.pk, k.sk);
  }

  async bind(ref: string, capability: string, expiresAt: number): Promise<void> {
    // Beside the grant, in its partition's namespace: the proxy service's role reads `egress#*` items only.
    const k = keys.egressGrantRef(refHash(ref));
    await this.table.put({ pk: k.pk, sk: k.sk, ...versionField('egress_grant'), capabilityHash: egressCapabilityHash(capability), expiresAt: Math.ceil(expiresAt / 1000) });
  }

  async revokeRef(ref: string): Promise<void> {
    const k = keys.egressGrantRef(refHash(ref));
    const item = await this.table.get(k.pk, k.sk);
    if (typeof item?.capabilityHash === 'string') {
      const g = keys.egressGrant(item.capabilityHash);
      await this.table.delete(g.pk, g.sk);
    }
    await this.table.delete(k.pk, k.sk);
  }
}
