/**
 * Small emulations of the AWS services the rehearsal has no local server for: Secrets Manager,
 * SSM Parameter Store, KMS (symmetric keys of the template) and Lambda's Invoke API. They keep to the wire shapes and the errors the
 * AWS SDK expects, and honour ARNs the way the policies see them; they do not try to be complete.
 */
import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import type { AwsCall, Backend } from './aws-gateway.js';
import { jsonError } from './aws-gateway.js';
import type { InvokeResult } from './lambda-runtime.js';

type Reply = Awaited<ReturnType<Backend['handle']>>;
const ok = (body: unknown): Reply => ({ status: 200, headers: { 'content-type': 'application/x-amz-json-1.1' }, body: JSON.stringify(body) });

interface Secret {
  arn: string;
  name: string;
  value: string;
  versionId: string;
  createdAt: number;
  kmsKeyId?: string;
  deleted?: boolean;
}

/** Secrets Manager: secrets by name, each with an ARN that ends in a random 6-character suffix. */
export class SecretsManagerEmulator implements Backend {
  private readonly secrets = new Map<string, Secret>();

  constructor(private readonly arnPrefix: string /* arn:aws:secretsmanager:<region>:<account>:secret: */) {}

  /** The ARN a secret of this name has (or would have once created). */
  arnOf(name: string): string | undefined {
    return this.secrets.get(name)?.arn;
  }

  private find(id: unknown): Secret | undefined {
    if (typeof id !== 'string') return undefined;
    const s = this.secrets.get(id) ?? [...this.secrets.values()].find((x) => x.arn === id);
    return s && !s.deleted ? s : undefined;
  }

  /** Every stored secret value (the canary tests look for them where they must not be). */
  values(): string[] {
    return [...this.secrets.values()].filter((s) => !s.deleted).map((s) => s.value);
  }

  async handle(call: AwsCall): Promise<Reply> {
    const b = call.json ?? {};
    const notFound = () => jsonError(400, 'ResourceNotFoundException', "Secrets Manager can't find the specified secret.", 'secretsmanager');
    switch (call.operation) {
      case 'CreateSecret': {
        const name = String(b.Name ?? '');
        if (!name) return jsonError(400, 'InvalidParameterException', 'Name is required', 'secretsmanager');
        if (this.secrets.get(name) && !this.secrets.get(name)!.deleted) {
          return jsonError(400, 'ResourceExistsException', `The operation failed because the secret ${name} already exists.`, 'secretsmanager');
        }
        const s: Secret = {
          arn: `${this.arnPrefix}${name}-${randomBytes(3).toString('hex')}`,
          name,
          value: String(b.SecretString ?? ''),
          versionId: randomUUID(),
          createdAt: Date.now() / 1000,
          kmsKeyId: b.KmsKeyId as string | undefined,
        };
        this.secrets.set(name, s);
        return ok({ ARN: s.arn, Name: s.name, VersionId: s.versionId });
      }
      case 'GetSecretValue': {
        const s = this.find(b.SecretId);
        if (!s) return notFound();
        return ok({ ARN: s.arn, Name: s.name, SecretString: s.value, VersionId: s.versionId, VersionStages: ['AWSCURRENT'], CreatedDate: s.createdAt });
      }
      case 'PutSecretValue': {
        const s = this.find(b.SecretId);
        if (!s) return notFound();
        s.value = String(b.SecretString ?? '');
        s.versionId = randomUUID();
        return ok({ ARN: s.arn, Name: s.name, VersionId: s.versionId, VersionStages: ['AWSCURRENT'] });
      }
      case 'DescribeSecret': {
        const s = this.find(b.SecretId);
        if (!s) return notFound();
        return ok({ ARN: s.arn, Name: s.name, KmsKeyId: s.kmsKeyId, CreatedDate: s.createdAt });
      }
      case 'DeleteSecret': {
        const s = this.find(b.SecretId);
        if (!s) return notFound();
        s.deleted = true;
        if (b.ForceDeleteWithoutRecovery) this.secrets.delete(s.name);
        return ok({ ARN: s.arn, Name: s.name, DeletionDate: Date.now() / 1000 });
      }
      case 'TagResource':
        return this.find(b.SecretId) ? ok({}) : notFound();
      default:
        return jsonError(400, 'UnknownOperationException', `the rehearsal's Secrets Manager has no ${call.operation}`, 'secretsmanager');
    }
  }
}

/** SSM Parameter Store: `GetParameter` of parameters the rehearsal puts (the model key). */
export class SsmEmulator implements Backend {
  private readonly parameters = new Map<string, { value: string; type: string }>();

  constructor(private readonly arnPrefix: string /* arn:aws:ssm:<region>:<account>:parameter */) {}

  put(name: string, value: string, type = 'SecureString') {
    this.parameters.set(name, { value, type });
  }

  async handle(call: AwsCall): Promise<Reply> {
    const b = call.json ?? {};
    if (call.operation !== 'GetParameter') {
      return jsonError(400, 'UnknownOperationException', `the rehearsal's SSM has no ${call.operation}`, 'ssm');
    }
    const name = String(b.Name ?? '');
    const p = this.parameters.get(name);
    if (!p) return jsonError(400, 'ParameterNotFound', `Parameter ${name} not found.`, 'ssm');
    const decrypted = p.type !== 'SecureString' || b.WithDecryption === true;
    return ok({
      Parameter: {
        Name: name,
        Type: p.type,
        Value: decrypted ? p.value : Buffer.from(p.value).toString('base64'),
        Version: 1,
        ARN: `${this.arnPrefix}${name.startsWith('/') ? name : `/${name}`}`,
        DataType: 'text',
      },
    });
  }
}

/**
 * KMS for symmetric keys: `GenerateDataKey`, `Encrypt`, `Decrypt`, each with an encryption
 * context that must match to decrypt. A ciphertext names its key (as KMS's do), so `Decrypt`
 * needs no `KeyId`; one that names another key answers `IncorrectKeyException`, a tampered or
 * foreign one `InvalidCiphertextException`. Keys are the template's (by ARN); their material is
 * made here and never leaves the emulator.
 */
export class KmsEmulator implements Backend {
  private readonly keys = new Map<string, Buffer>();
  private static readonly MAGIC = Buffer.from('rhkms1');

  /** `keyArns`: the ARNs of the template's `AWS::KMS::Key` resources. */
  constructor(keyArns: readonly string[]) {
    for (const arn of keyArns) this.keys.set(arn, randomBytes(32));
  }

  /** The key ARN a ciphertext blob (base64, as on the wire) was made with, if it is one of ours. */
  keyArnOf(ciphertextBase64: string): string | undefined {
    const raw = Buffer.from(ciphertextBase64, 'base64');
    if (!raw.subarray(0, KmsEmulator.MAGIC.length).equals(KmsEmulator.MAGIC)) return undefined;
    const len = raw[KmsEmulator.MAGIC.length];
    const arn = raw.subarray(KmsEmulator.MAGIC.length + 1, KmsEmulator.MAGIC.length + 1 + len).toString('utf8');
    return this.keys.has(arn) ? arn : undefined;
  }

  /** A key id, key ARN (no aliases) -> the key's ARN. */
  private resolve(keyId: unknown): string | undefined {
    if (typeof keyId !== 'string') return undefined;
    if (this.keys.has(keyId)) return keyId;
    return [...this.keys.keys()].find((arn) => arn.endsWith(`:key/${keyId}`));
  }

  private static context(ctx: unknown): Buffer {
    const entries = Object.entries((ctx ?? {}) as Record<string, string>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return Buffer.from(JSON.stringify(entries));
  }

  private encrypt(arn: string, plaintext: Buffer, ctx: unknown): Buffer {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.keys.get(arn)!, iv);
    cipher.setAAD(KmsEmulator.context(ctx));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    const name = Buffer.from(arn, 'utf8');
    return Buffer.concat([KmsEmulator.MAGIC, Buffer.from([name.length]), name, iv, cipher.getAuthTag(), body]);
  }

  async handle(call: AwsCall): Promise<Reply> {
    const b = call.json ?? {};
    const error = (type: string, message: string) => jsonError(400, type, message, 'kms');
    switch (call.operation) {
      case 'GenerateDataKey':
      case 'Encrypt': {
        const arn = this.resolve(b.KeyId);
        if (!arn) return error('NotFoundException', `Key '${String(b.KeyId)}' does not exist`);
        let plaintext: Buffer;
        if (call.operation === 'Encrypt') {
          plaintext = Buffer.from(String(b.Plaintext ?? ''), 'base64');
          if (!plaintext.length || plaintext.length > 4096) return error('ValidationException', 'Plaintext must be 1 to 4096 bytes');
        } else {
          const bytes = b.KeySpec === 'AES_256' ? 32 : b.KeySpec === 'AES_128' ? 16 : typeof b.NumberOfBytes === 'number' ? b.NumberOfBytes : 0;
          if (bytes < 1 || bytes > 1024) return error('ValidationException', 'KeySpec or NumberOfBytes is required');
          plaintext = randomBytes(bytes);
        }
        const blob = this.encrypt(arn, plaintext, b.EncryptionContext).toString('base64');
        return ok(call.operation === 'Encrypt' ? { CiphertextBlob: blob, KeyId: arn, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' } : { CiphertextBlob: blob, Plaintext: plaintext.toString('base64'), KeyId: arn });
      }
      case 'Decrypt': {
        const blob = String(b.CiphertextBlob ?? '');
        const arn = this.keyArnOf(blob);
        if (!arn) return error('InvalidCiphertextException', '');
        if (b.KeyId !== undefined && this.resolve(b.KeyId) !== arn) return error('IncorrectKeyException', 'The key ID in the request does not identify a CMK that can perform this operation.');
        const raw = Buffer.from(blob, 'base64');
        const at = KmsEmulator.MAGIC.length + 1 + raw[KmsEmulator.MAGIC.length];
        try {
          const decipher = createDecipheriv('aes-256-gcm', this.keys.get(arn)!, raw.subarray(at, at + 12));
          decipher.setAAD(KmsEmulator.context(b.EncryptionContext));
          decipher.setAuthTag(raw.subarray(at + 12, at + 28));
          const plaintext = Buffer.concat([decipher.update(raw.subarray(at + 28)), decipher.final()]);
          return ok({ KeyId: arn, Plaintext: plaintext.toString('base64'), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' });
        } catch {
          return error('InvalidCiphertextException', '');
        }
      }
      default:
        return jsonError(400, 'UnknownOperationException', `the rehearsal's KMS has no ${call.operation}`, 'kms');
    }
  }
}

/** Lambda's Invoke API (`POST /2015-03-31/functions/<name>/invocations`), synchronous only. */
export class LambdaInvokeEmulator implements Backend {
  constructor(private readonly invoke: (functionNameOrArn: string) => ((event: unknown) => Promise<InvokeResult>) | undefined) {}

  async handle(call: AwsCall): Promise<Reply> {
    const m = call.path.match(/^\/2015-03-31\/functions\/([^/]+)\/invocations/);
    if (call.operation !== 'Invoke' || !m) return jsonError(400, 'UnknownOperationException', `the rehearsal's Lambda has no ${call.operation}`, 'lambda');
    const name = decodeURIComponent(m[1]);
    const type = String(call.headers['x-amz-invocation-type'] ?? 'RequestResponse');
    if (type !== 'RequestResponse') return jsonError(400, 'InvalidParameterValueException', `the rehearsal only runs RequestResponse invocations, not ${type}`, 'lambda');
    const run = this.invoke(name);
    if (!run) return jsonError(404, 'ResourceNotFoundException', `Function not found: ${name}`, 'lambda');
    let event: unknown = null;
    if (call.body.length) {
      try {
        event = JSON.parse(call.body.toString('utf8'));
      } catch {
        return jsonError(400, 'InvalidRequestContentException', 'Could not parse request body into json', 'lambda');
      }
    }
    const result = await run(event);
    const headers: Record<string, string> = { 'content-type': 'application/json', 'x-amz-executed-version': '$LATEST' };
    if (result.ok) return { status: 200, headers, body: JSON.stringify(result.value ?? null) };
    if (result.kind === 'throttled') return jsonError(429, 'TooManyRequestsException', 'Rate Exceeded.', 'lambda');
    headers['x-amz-function-error'] = 'Unhandled';
    return { status: 200, headers, body: JSON.stringify(result.error) };
  }
}
