import type { AwsCall, Authorization } from './aws-gateway.js';
import type { RehearsalModel } from './model.js';
import type { SecretsManagerEmulator } from './emulators.js';
import type { CfnTemplate } from './build-model.js';

/** Placeholder until the IAM evaluator lands: allows everything. */
export function createAuthorizer(_template: CfnTemplate, _model: RehearsalModel, _deps: { secrets: SecretsManagerEmulator }) {
  return (_call: AwsCall): Authorization[] => [{ allowed: true }];
}
