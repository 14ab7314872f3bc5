/**
 * IAM for the rehearsal's AWS endpoint: each SDK call is turned into the checks AWS makes
 * (`aws-requests.ts`) and each check is evaluated against the calling function's role policies
 * from the template, with the resource's own policy where it has one (queue policies, Lambda
 * permissions), as IAM evaluates them (`iam.ts`).
 */
import type { AwsCall, Authorization, Caller } from './aws-gateway.js';
import type { CfnTemplate } from './build-model.js';
import { rehearsalContext, type ModelOverrides } from './build-model.js';
import type { KmsEmulator, SecretsManagerEmulator } from './emulators.js';
import { classifyRequest } from './aws-requests.js';
import { accessDeniedMessage, assumedRoleArn, evaluate, evaluateKeyPolicy, principalContext, resourcePolicies, resourcePolicyFor, role, type ContextValue, type RoleInfo } from './iam.js';
import type { RehearsalModel } from './model.js';

export interface AuthorizerDeps {
  secrets: SecretsManagerEmulator;
  /** Which key a ciphertext names (a `Decrypt` is checked on that key). */
  kms?: KmsEmulator;
  /** The id the next RunTask's task gets (so `ecs:TagResource` is checked on its real ARN). */
  newTaskId?: () => string;
}

/** Authorizes a call (every check its request needs), or one check a backend makes itself. */
export interface Authorizer {
  (call: AwsCall): Authorization[];
  /**
   * One IAM check for a caller, outside any request's own: S3 asks whether the caller may
   * `s3:ListBucket` before it answers a read of a missing key with 404 rather than 403.
   */
  check(caller: Caller, action: string, resource: string, context?: Record<string, ContextValue>): Authorization;
}

export function createAuthorizer(
  template: CfnTemplate,
  model: Pick<RehearsalModel, 'account' | 'tables' | 'taskDefinitions'>,
  overrides: ModelOverrides,
  deps: AuthorizerDeps,
): Authorizer {
  const ctx = rehearsalContext(template, overrides);
  const policies = resourcePolicies(ctx);
  const rolesById = new Map<string, RoleInfo>();
  const roleOf = (logicalId: string) => {
    let r = rolesById.get(logicalId);
    if (!r) rolesById.set(logicalId, (r = role(ctx, logicalId)));
    return r;
  };
  const tables = new Map(model.tables.map((t) => [t.name, t]));
  const keySchema = (tableName: string, indexName?: string) => {
    const t = tables.get(tableName);
    if (!t) return undefined;
    const keys = indexName ? t.globalSecondaryIndexes.find((g) => g.IndexName === indexName)?.KeySchema : t.keySchema;
    const hash = keys?.find((k) => k.KeyType === 'HASH');
    return hash ? { partitionKey: hash.AttributeName } : undefined;
  };
  const taskDefinition = (arn: string) => model.taskDefinitions.find((d) => d.arn === arn || d.family === arn);

  const check = (caller: Caller, c: { action: string; resource: string; context: Record<string, ContextValue> }): Authorization => {
    const r = roleOf(caller.roleLogicalId);
    // A Lambda function calls as the role's session named after the function.
    const principalArn = assumedRoleArn(r.arn, caller.name.replace(/^event source mapping of /, ''));
    const request = {
      principalArn,
      action: c.action,
      resource: c.resource,
      // The SDK talks HTTPS to AWS.
      context: { ...principalContext(r.arn), 'aws:SecureTransport': true, ...c.context },
    };
    const resourcePolicy = resourcePolicyFor(policies, c.resource);
    // A KMS key's policy decides who may use it, IAM policies only where it delegates to them.
    const decision = resourcePolicy?.keyPolicy
      ? evaluateKeyPolicy(request, r.statements, resourcePolicy.statements)
      : c.action.startsWith('kms:')
        ? { decision: 'implicit-deny' as const, allowed: false, resourcePolicyEvaluated: true }
        : evaluate(request, r.statements, resourcePolicy?.statements);
    // Same account: an identity allow suffices unless a resource policy denies (handled above).
    return decision.allowed ? { allowed: true as const } : { allowed: false as const, action: c.action, resource: c.resource, message: accessDeniedMessage(request, decision) };
  };

  const authorize = (call: AwsCall): Authorization[] => {
    // Unsupported and malformed requests throw; the gateway answers them with an error naming them.
    const { checks } = classifyRequest(
      { method: call.method, path: call.path, headers: call.headers, body: call.json },
      { accountId: model.account, keySchema, taskDefinition, secretArn: (name) => deps.secrets.arnOf(name), newTaskId: deps.newTaskId, ciphertextKeyArn: (blob) => deps.kms?.keyArnOf(blob) },
    );
    return checks.map((c) => check(call.caller, c));
  };
  return Object.assign(authorize, { check: (caller: Caller, action: string, resource: string, context: Record<string, ContextValue> = {}) => check(caller, { action, resource, context }) });
}
