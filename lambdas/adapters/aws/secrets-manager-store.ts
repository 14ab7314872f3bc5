import {
  CreateSecretCommand,
  DeleteSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  ResourceExistsException,
  ResourceNotFoundException,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import type { SecretStore } from '../../core/vault/secret-store.js';
import type { SecretFields } from '../../core/vault/types.js';

/**
 * The vault's secrets in AWS Secrets Manager, one secret per credential, named by the core
 * (`corral/vault/<tenant>/<vault>/<credential>`): the credential proxy's role is the only one
 * allowed to read names under that prefix. The value is the JSON of the secret fields.
 */
export class SecretsManagerStore implements SecretStore {
  constructor(
    private readonly client: SecretsManagerClient,
    private readonly opts: { kmsKeyId?: string; tags?: Record<string, string> } = {},
  ) {}

  async get(ref: string): Promise<SecretFields | undefined> {
    try {
      const out = await this.client.send(new GetSecretValueCommand({ SecretId: ref }));
      if (out.SecretString === undefined) return undefined;
      return JSON.parse(out.SecretString) as SecretFields;
    } catch (err) {
      if (err instanceof ResourceNotFoundException || (err as Error)?.name === 'ResourceNotFoundException') return undefined;
      throw err;
    }
  }

  async put(ref: string, value: SecretFields): Promise<void> {
    const SecretString = JSON.stringify(value);
    try {
      await this.client.send(new PutSecretValueCommand({ SecretId: ref, SecretString }));
      return;
    } catch (err) {
      if (!(err instanceof ResourceNotFoundException || (err as Error)?.name === 'ResourceNotFoundException')) throw err;
    }
    try {
      await this.client.send(
        new CreateSecretCommand({
          Name: ref,
          SecretString,
          KmsKeyId: this.opts.kmsKeyId,
          Description: 'Corral vault secret (read only by the credential proxy)',
          Tags: Object.entries({ 'corral:managed-by': 'credential-proxy', ...this.opts.tags }).map(([Key, Value]) => ({ Key, Value })),
        }),
      );
    } catch (err) {
      // Created meanwhile by a concurrent put: write the value as a new version.
      if (!(err instanceof ResourceExistsException || (err as Error)?.name === 'ResourceExistsException')) throw err;
      await this.client.send(new PutSecretValueCommand({ SecretId: ref, SecretString }));
    }
  }

  async delete(ref: string): Promise<void> {
    try {
      // No recovery window: a deleted credential must stop working now, and its name be reusable.
      await this.client.send(new DeleteSecretCommand({ SecretId: ref, ForceDeleteWithoutRecovery: true }));
    } catch (err) {
      if (err instanceof ResourceNotFoundException || (err as Error)?.name === 'ResourceNotFoundException') return;
      throw err;
    }
  }
}
