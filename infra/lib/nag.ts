import { Validations } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type { IConstruct } from 'constructs';

/** A cdk-nag finding acknowledged on purpose. `id` is a rule (`AwsSolutions-L1`) or one finding of it (`AwsSolutions-IAM5[Resource::*]`). */
export interface Acknowledgment {
  readonly id: string;
  /** Why the finding is acceptable here. Required: an acknowledgment without a reason is a hidden problem. */
  readonly reason: string;
}

/**
 * The default policy of a function's role: where CDK's grants to it land, and so the narrowest
 * scope for acknowledging a finding one of those grants produces.
 */
export function defaultPolicyOf(grantee: iam.IGrantable): IConstruct {
  const role = grantee.grantPrincipal as Partial<iam.IRole>;
  const policy = role.node?.tryFindChild('DefaultPolicy');
  if (!policy) throw new Error(`${String(grantee)} has no role with a default policy to acknowledge findings on`);
  return policy;
}

/** Acknowledge cdk-nag findings on `scope` and everything under it (cdk-nag v3 reads CDK's native acknowledgments). */
export function acknowledge(scope: IConstruct, ...rules: Acknowledgment[]): void {
  for (const rule of rules) {
    if (!rule.reason.trim()) throw new Error(`acknowledgment of ${rule.id} needs a reason`);
    Validations.of(scope).acknowledge(rule);
  }
}
