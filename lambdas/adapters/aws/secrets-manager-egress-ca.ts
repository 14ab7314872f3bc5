/**
 * The deployment's egress CA on AWS, kept in Secrets Manager as one secret (default
 * `corral/egress-ca`, JSON `{certificate, private_key}`), read by the proxy service's own role
 * (the only role allowed to: `infra/lib/constructs/proxy-service.ts`, asserted on the template).
 * Made on first use by the first proxy service task that finds no secret; a task that loses the
 * race to create it (`ResourceExistsException`) reads the winner's, so every task of the service
 * presents leaves of one CA. A CA with 30 days or less left is remade and written as a new version.
 *
 * The template never holds the key: the stack names the secret's ARN pattern in the service's
 * policy, and the secret itself appears when the service first starts. To rotate: delete the
 * secret (without recovery window) or put a fresh value, then redeploy the service
 * (docs/CREDENTIALS.md says so).
 */
import {
  CreateSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { caNeedsRenewal, PemEgressCa, type EgressCaPem } from '../../core/sandbox/egress-ca.js';

/** The CA's secret's name unless configured (`CORRAL_EGRESS_CA_SECRET`). */
export const DEFAULT_EGRESS_CA_SECRET = 'corral/egress-ca';

export interface SecretsManagerEgressCaOptions {
  /** The secret's name. @default DEFAULT_EGRESS_CA_SECRET */
  readonly secretId?: string;
  /** KMS key the secret is encrypted with when created. @default the account's aws/secretsmanager key */
  readonly kmsKeyId?: string;
  readonly now?: Date;
  readonly logger?: { info?(message: string, extra?: Record<string, unknown>): void };
}

const isName = (err: unknown, name: string) => (err as Error)?.name === name;

function parse(text: string | undefined, secretId: string): EgressCaPem | undefined {
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`the egress CA secret ${secretId} is not JSON`);
  }
  const v = value as { certificate?: unknown; private_key?: unknown };
  if (typeof v?.certificate !== 'string' || typeof v.private_key !== 'string') {
    throw new Error(`the egress CA secret ${secretId} must hold {certificate, private_key} (PEM strings)`);
  }
  return { certificate: v.certificate, privateKey: v.private_key };
}

const serialize = (pem: EgressCaPem) => JSON.stringify({ certificate: pem.certificate, private_key: pem.privateKey });

/** The CA from Secrets Manager, made (and stored) if there is none yet or it is about to expire. */
export async function openSecretsManagerEgressCa(client: SecretsManagerClient, opts: SecretsManagerEgressCaOptions = {}): Promise<PemEgressCa> {
  const secretId = opts.secretId ?? DEFAULT_EGRESS_CA_SECRET;
  const now = opts.now ?? new Date();
  const read = async (): Promise<EgressCaPem | undefined> => {
    try {
      return parse((await client.send(new GetSecretValueCommand({ SecretId: secretId }))).SecretString, secretId);
    } catch (err) {
      if (isName(err, 'ResourceNotFoundException')) return undefined;
      throw err;
    }
  };
  const stored = await read();
  if (stored && !caNeedsRenewal(stored.certificate, now)) return PemEgressCa.fromPem(stored);
  const made = PemEgressCa.create(now);
  if (stored) {
    // About to expire: a new version. Sandboxes started from now on trust the new CA.
    await client.send(new PutSecretValueCommand({ SecretId: secretId, SecretString: serialize(made.toPem()) }));
    opts.logger?.info?.('egress CA renewed', { secretId });
    return made;
  }
  try {
    await client.send(
      new CreateSecretCommand({
        Name: secretId,
        SecretString: serialize(made.toPem()),
        KmsKeyId: opts.kmsKeyId,
        Description: 'Corral egress CA (read only by the proxy service)',
        Tags: [{ Key: 'corral:managed-by', Value: 'proxy-service' }],
      }),
    );
    opts.logger?.info?.('egress CA created', { secretId });
    return made;
  } catch (err) {
    if (!isName(err, 'ResourceExistsException')) throw err;
    // Another task of the service made it meanwhile: use that one, so all tasks present one CA.
    const theirs = await read();
    if (!theirs) throw new Error(`the egress CA secret ${secretId} exists but has no value`);
    return PemEgressCa.fromPem(theirs);
  }
}
