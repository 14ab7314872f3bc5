import type { SecretFields } from './types.js';

/**
 * Where secret values live: Secrets Manager on AWS, an AES-256-GCM encrypted file locally. Only
 * the credential proxy holds one of these; the API and the harness never do.
 */
export interface SecretStore {
  /** The secret named `ref`, or undefined when there is none. */
  get(ref: string): Promise<SecretFields | undefined>;
  /** Create or replace the secret named `ref`. */
  put(ref: string, value: SecretFields): Promise<void>;
  /** Remove it; removing a secret that does not exist is not an error. */
  delete(ref: string): Promise<void>;
}

/**
 * What the API may do with secrets: hand a new or changed one to the credential proxy, or have
 * it removed. There is deliberately no way to read one back.
 */
export interface SecretSink {
  /**
   * Store `value` under `ref`. With `merge`, the fields given replace those of the stored secret
   * and the others are kept (a partial update: the caller never needs to know the old values);
   * a field set to the empty string is removed.
   */
  storeSecret(ref: string, value: SecretFields, opts?: { merge?: boolean }): Promise<void>;
  deleteSecret(ref: string): Promise<void>;
  /** Copy the secret `from` to `to` inside the proxy (a forked session's repository tokens). */
  copySecret(from: string, to: string): Promise<void>;
}

/** Replace every occurrence of any of `secrets` in `text` (a last line of defence for messages). */
export function redactSecrets(text: string, secrets: Iterable<string>): string {
  let out = text;
  for (const s of secrets) {
    if (s && s.length >= 4) out = out.split(s).join('[redacted]');
  }
  return out;
}
