import * as iam from 'aws-cdk-lib/aws-iam';
import type { Construct } from 'constructs';
import { acknowledge } from './nag.js';

/**
 * Actions AWS offers no resource-level permission for, so a grant of them can only name `*`.
 * Each is added by CDK itself: X-Ray for active tracing, the ECR token for pulling an image.
 */
export const RESOURCELESS_ACTIONS: Readonly<Record<string, string>> = {
  'xray:PutTraceSegments': 'X-Ray tracing (added by CDK for active tracing)',
  'xray:PutTelemetryRecords': 'X-Ray tracing (added by CDK for active tracing)',
  'ecr:GetAuthorizationToken': 'pulling the sandbox image from ECR (added by CDK; the pull itself is scoped to the repository)',
};

/** An Allow of resourceless actions only, on `*`, with nothing else in it. */
function isResourcelessGrant(statement: iam.PolicyStatement): boolean {
  const s = statement.toStatementJson() as Record<string, unknown>;
  const resources = [s.Resource].flat();
  const actions = [s.Action].flat();
  return (
    s.Effect === 'Allow' &&
    resources.length === 1 &&
    resources[0] === '*' &&
    actions.length > 0 &&
    actions.every((a) => typeof a === 'string' && Object.hasOwn(RESOURCELESS_ACTIONS, a)) &&
    s.NotAction === undefined &&
    s.NotResource === undefined &&
    s.Condition === undefined &&
    s.Principal === undefined
  );
}

/**
 * A role that grants the resourceless actions above through a policy of their own
 * (`ResourcelessActions`), the one place where cdk-nag's `AwsSolutions-IAM5[Resource::*]` is
 * acknowledged. Every other statement goes to the role's default policy, where a wildcard
 * resource is still reported: a later `s3:GetObject` on `*` fails synthesis instead of hiding
 * behind the X-Ray acknowledgment.
 */
export class CorralRole extends iam.Role {
  private resourceless?: iam.Policy;

  constructor(scope: Construct, id: string, props: iam.RoleProps) {
    super(scope, id, props);
  }

  override addToPrincipalPolicy(statement: iam.PolicyStatement): iam.AddToPrincipalPolicyResult {
    if (!isResourcelessGrant(statement)) return super.addToPrincipalPolicy(statement);
    if (!this.resourceless) {
      this.resourceless = new iam.Policy(this, 'ResourcelessActions', { roles: [this] });
    }
    this.resourceless.addStatements(statement);
    const actions = [statement.toStatementJson().Action].flat() as string[];
    acknowledge(this.resourceless, {
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason: `Only ${actions.join(', ')} here, which support no resource-level permission: ${[...new Set(actions.map((a) => RESOURCELESS_ACTIONS[a]))].join('; ')}.`,
    });
    return { statementAdded: true, policyDependable: this.resourceless };
  }
}
