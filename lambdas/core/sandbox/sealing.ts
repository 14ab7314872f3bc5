import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { SandboxOwner } from './types.js';

/**
 * Sandbox capabilities at rest. The harness must present a sandbox's capability to call it, so a
 * hash cannot replace it; instead the state table keeps it sealed (AES-256-GCM, bound to the
 * session and sandbox name), and a read of the table alone opens nothing. Who holds the key
 * depends on the runtime: the local runtime makes one at start (`KeySealer`); on AWS the harness
 * and the API get data keys from a KMS key only their roles may use
 * (lambdas/adapters/aws/kms-capability-sealer.ts).
 */
export interface CapabilitySealer {
  /** The capability as it is stored. */
  seal(owner: SandboxOwner, capability: string): Promise<string>;
  /**
   * The capability, or null when `stored` was not sealed for this owner with a key this sealer
   * can use (the sandbox is then as good as gone). Rejects when the key cannot be reached right
   * now (a call to try again, not a sandbox to forget).
   */
  open(owner: SandboxOwner, stored: string): Promise<string | null>;
}

export const SEALED_PREFIX = 'sealed:v1:';

/**
 * The encryption context a key service binds sealing keys to where it supports one (AWS KMS): the
 * grants of the key require it, so the key serves nothing else.
 */
export const CAPABILITY_ENCRYPTION_CONTEXT: Readonly<Record<string, string>> = { 'corral:purpose': 'sandbox-capability' };

const aad = (owner: SandboxOwner) => Buffer.from(`${owner.sessionId}\0${owner.name}`);

/** `capability` sealed with `key` (32 bytes) for `owner`: `sealed:v1:<iv|tag|ciphertext, base64url>`. */
export function sealCapability(key: Buffer, owner: SandboxOwner, capability: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(aad(owner));
  const body = Buffer.concat([cipher.update(capability, 'utf8'), cipher.final()]);
  return `${SEALED_PREFIX}${Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url')}`;
}

/** The capability, or null when it was sealed with another key or for another owner. */
export function openCapability(key: Buffer, owner: SandboxOwner, stored: string): string | null {
  if (!stored.startsWith(SEALED_PREFIX)) return null;
  try {
    const raw = Buffer.from(stored.slice(SEALED_PREFIX.length), 'base64url');
    const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
    decipher.setAAD(aad(owner));
    decipher.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
  } catch {
    return null;
  }
}

/**
 * Seals with one key held in this process (the local runtime's, made at start: its sandboxes die
 * with the process, and a record sealed by an earlier one reads as a sandbox that is gone).
 */
export class KeySealer implements CapabilitySealer {
  constructor(private readonly key: Buffer) {
    if (key.length !== 32) throw new Error('a capability sealing key has 32 bytes');
  }

  async seal(owner: SandboxOwner, capability: string): Promise<string> {
    return sealCapability(this.key, owner, capability);
  }

  async open(owner: SandboxOwner, stored: string): Promise<string | null> {
    return openCapability(this.key, owner, stored);
  }
}
