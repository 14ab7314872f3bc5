/**
 * Sandbox capabilities sealed with a KMS key (envelope encryption), the AWS side of
 * lambdas/core/sandbox/sealing.ts. Only the harness's and the API's roles may use the key
 * (`kms:GenerateDataKey`, `kms:Decrypt`; infra/lib/constructs/sandboxes.ts), and the reaper's may
 * only open with it (`kms:Decrypt`, to snapshot a workspace), so a read of the state table (the
 * event stream, an operator's query, a leaked backup) opens no sandbox.
 *
 * Each process asks KMS for a data key when it first seals, seals with it (AES-256-GCM, bound to
 * session and sandbox name) for an hour, and stores the data key's KMS ciphertext next to each
 * sealed capability: `kms:v1:<data key ciphertext>.<sealed:v1:...>`. Opening asks KMS to decrypt a
 * data key once per process and keeps it; the key material never leaves KMS, and no secret is in
 * the template or the environment. Every request names the key and carries the encryption
 * context `corral:purpose=sandbox-capability`, which the roles' grants require.
 */
import { DecryptCommand, GenerateDataKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import { CAPABILITY_ENCRYPTION_CONTEXT, openCapability, sealCapability, type CapabilitySealer } from '../../core/sandbox/sealing.js';
import type { SandboxOwner } from '../../core/sandbox/types.js';

export const KMS_SEALED_PREFIX = 'kms:v1:';
export { CAPABILITY_ENCRYPTION_CONTEXT };

export interface KmsCapabilitySealerOptions {
  readonly kms: KMSClient;
  /** The key's ARN. */
  readonly keyId: string;
  /** How long one data key seals new capabilities. @default 1 hour */
  readonly dataKeyTtlMs?: number;
  /** How many opened data keys (of this and other processes) are kept. @default 256 */
  readonly cacheSize?: number;
  readonly clock?: () => number;
}

interface DataKey {
  plaintext: Buffer;
  /** Its KMS ciphertext, base64url. */
  wrapped: string;
  until: number;
}

/** KMS's answers that mean "this ciphertext is not for this key": the sandbox is as good as gone. */
const NOT_OURS = new Set(['InvalidCiphertextException', 'IncorrectKeyException']);

export class KmsCapabilitySealer implements CapabilitySealer {
  private current?: Promise<DataKey>;
  private readonly opened = new Map<string, Promise<Buffer | null>>();
  private readonly ttlMs: number;
  private readonly cacheSize: number;
  private readonly clock: () => number;

  constructor(private readonly opts: KmsCapabilitySealerOptions) {
    this.ttlMs = opts.dataKeyTtlMs ?? 3_600_000;
    this.cacheSize = opts.cacheSize ?? 256;
    this.clock = opts.clock ?? Date.now;
  }

  async seal(owner: SandboxOwner, capability: string): Promise<string> {
    const key = await this.dataKey();
    return `${KMS_SEALED_PREFIX}${key.wrapped}.${sealCapability(key.plaintext, owner, capability)}`;
  }

  async open(owner: SandboxOwner, stored: string): Promise<string | null> {
    if (!stored.startsWith(KMS_SEALED_PREFIX)) return null;
    const dot = stored.indexOf('.', KMS_SEALED_PREFIX.length);
    if (dot < 0) return null;
    const key = await this.unwrap(stored.slice(KMS_SEALED_PREFIX.length, dot));
    return key ? openCapability(key, owner, stored.slice(dot + 1)) : null;
  }

  /** The data key new capabilities are sealed with (a fresh one every `dataKeyTtlMs`). */
  private async dataKey(): Promise<DataKey> {
    const now = this.clock();
    if (this.current) {
      const key = await this.current.catch(() => undefined);
      if (key && key.until > now) return key;
    }
    const pending = this.generate(now);
    this.current = pending;
    pending.catch(() => {
      if (this.current === pending) this.current = undefined;
    });
    return pending;
  }

  private async generate(now: number): Promise<DataKey> {
    let out;
    try {
      out = await this.opts.kms.send(
        new GenerateDataKeyCommand({ KeyId: this.opts.keyId, KeySpec: 'AES_256', EncryptionContext: { ...CAPABILITY_ENCRYPTION_CONTEXT } }),
      );
    } catch (err) {
      throw kmsError('GenerateDataKey', err);
    }
    if (!out.Plaintext || !out.CiphertextBlob) throw new Error('KMS GenerateDataKey returned no data key');
    const key: DataKey = { plaintext: Buffer.from(out.Plaintext), wrapped: Buffer.from(out.CiphertextBlob).toString('base64url'), until: now + this.ttlMs };
    this.remember(key.wrapped, Promise.resolve(key.plaintext));
    return key;
  }

  /** A data key from its KMS ciphertext, or null when KMS says it is not this key's. */
  private unwrap(wrapped: string): Promise<Buffer | null> {
    const known = this.opened.get(wrapped);
    if (known) return known;
    const pending = this.opts.kms
      .send(new DecryptCommand({ KeyId: this.opts.keyId, CiphertextBlob: Buffer.from(wrapped, 'base64url'), EncryptionContext: { ...CAPABILITY_ENCRYPTION_CONTEXT } }))
      .then(
        (out) => (out.Plaintext && out.Plaintext.length === 32 ? Buffer.from(out.Plaintext) : null),
        (err: Error) => {
          this.opened.delete(wrapped); // a failure other than "not ours" is tried again next time
          if (NOT_OURS.has(err.name)) return null;
          throw kmsError('Decrypt', err);
        },
      );
    this.remember(wrapped, pending);
    return pending;
  }

  private remember(wrapped: string, key: Promise<Buffer | null>): void {
    this.opened.set(wrapped, key);
    while (this.opened.size > this.cacheSize) this.opened.delete(this.opened.keys().next().value!);
  }
}

/** KMS's error, without the request (which holds no secret, but the message is kept short). */
function kmsError(operation: string, err: unknown): Error {
  const e = err as Error;
  return new Error(`KMS ${operation} failed for the sandbox capability key: ${e.name ?? 'Error'}: ${e.message}`);
}
