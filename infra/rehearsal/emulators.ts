/**
 * Small emulations of the AWS services the rehearsal has no local server for: Secrets Manager,
 * SSM Parameter Store and Lambda's Invoke API. They keep to the wire shapes and the errors the
 * AWS SDK expects, and honour ARNs the way the policies see them; they do not try to be complete.
 */
import { randomBytes, randomUUID } from 'node:crypto';
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
