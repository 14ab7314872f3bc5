/**
 * IAM for the rehearsal's AWS endpoint: each SDK call is turned into the checks AWS makes
 * (`aws-requests.ts`) and each check is evaluated against the calling function's role policies
 * from the template, with the resource's own policy where it has one (queue policies, Lambda
 * permissions), as IAM evaluates them (`iam.ts`).
 */
import type { AwsCall, Authorization } from './aws-gateway.js';
import type { CfnTemplate } from './build-model.js';
import { rehearsalContext, type ModelOverrides } from './build-model.js';
import type { KmsEmulator, SecretsManagerEmulator } from './emulators.js';
import { classifyRequest } from './aws-requests.js';
import { accessDeniedMessage, assumedRoleArn, evaluate, evaluateKeyPolicy, principalContext, resourcePolicies, resourcePolicyFor, role, type RoleInfo } from './iam.js';
import type { RehearsalModel } from './model.js';

export interface AuthorizerDeps {
  secrets: SecretsManagerEmulator;
  /** Which key a ciphertext names (a `Decrypt` is checked on that key). */
  kms?: KmsEmulator;
  /** The id the next RunTask's task gets (so `ecs:TagResource` is checked on its real ARN). */
  newTaskId?: () => string;
}

export function createAuthorizer(template: CfnTemplate, model: RehearsalModel, overrides: ModelOverrides, deps: AuthorizerDeps) {
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

  return (call: AwsCall): Authorization[] => {
    // Unsupported and malformed requests throw; the gateway answers them with an error naming them.
    const { checks } = classifyRequest(
      { method: call.method, path: call.path, headers: call.headers, body: call.json },
      { accountId: model.account, keySchema, taskDefinition, secretArn: (name) => deps.secrets.arnOf(name), newTaskId: deps.newTaskId, ciphertextKeyArn: (blob) => deps.kms?.keyArnOf(blob) },
    );
    const r = roleOf(call.caller.roleLogicalId);
    // A Lambda function calls as the role's session named after the function.
    const principalArn = assumedRoleArn(r.arn, call.caller.name.replace(/^event source mapping of /, ''));
    return checks.map((check) => {
      const request = {
        principalArn,
        action: check.action,
        resource: check.resource,
        // The SDK talks HTTPS to AWS.
        context: { ...principalContext(r.arn), 'aws:SecureTransport': true, ...check.context },
      };
      const resourcePolicy = resourcePolicyFor(policies, check.resource);
      // A KMS key's policy decides who may use it, IAM policies only where it delegates to them.
      const decision = resourcePolicy?.keyPolicy
        ? evaluateKeyPolicy(request, r.statements, resourcePolicy.statements)
        : check.action.startsWith('kms:')
          ? { decision: 'implicit-deny' as const, allowed: false, resourcePolicyEvaluated: true }
          : evaluate(request, r.statements, resourcePolicy?.statements);
      // Same account: an identity allow suffices unless a resource policy denies (handled above).
      return decision.allowed ? { allowed: true as const } : { allowed: false as const, action: check.action, resource: check.resource, message: accessDeniedMessage(request, decision) };
    });
  };
}
