import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { CorralStack } from '../lib/corral-stack.js';
import { stackPropsFromContext } from '../lib/context.js';

/**
 * `npx cdk synth` / `npx cdk deploy`. Settings come from CDK context (`-c key=value` or
 * `cdk.json`); see docs/DEPLOY.md for the list. Nothing here looks anything up in an AWS account,
 * so synthesis works offline and without credentials.
 */
const app = new App();
const { stackName, props } = stackPropsFromContext((key) => app.node.tryGetContext(key));
// Environment-agnostic on purpose: a concrete account/region would make CDK look up availability
// zones, which needs credentials. The account and region are the ones `cdk deploy` runs with.
new CorralStack(app, stackName, { ...props, description: 'Corral: serverless runtime for long-running Claude agents' });
// cdk-nag: any unacknowledged AwsSolutions finding fails synthesis.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
