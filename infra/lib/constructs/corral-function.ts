import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat, type NodejsFunctionProps } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { acknowledge } from '../nag.js';
import type { Construct } from 'constructs';
import { repoPath } from '../paths.js';
import { CorralRole } from '../roles.js';

export interface CorralFunctionProps extends Omit<NodejsFunctionProps, 'entry' | 'runtime' | 'architecture' | 'logGroup' | 'tracing' | 'role'> {
  /** Entry file, relative to the repository root (e.g. `lambdas/harness-step/index.ts`). */
  readonly entry: string;
  /** Powertools service name (log `service` key, metrics `service` dimension). */
  readonly serviceName: string;
  /** CloudWatch Metrics namespace for Powertools' EMF output. @default 'Corral' */
  readonly metricsNamespace?: string;
  /** How long the function's logs are kept. @default one month */
  readonly logRetention?: logs.RetentionDays;
}

/**
 * A Lambda function with Corral's defaults baked in: bundled locally by esbuild (never in Docker,
 * so synthesis needs no Docker), ESM, ARM64, Node.js 22, source maps, X-Ray tracing, its own log
 * group with a retention, and Powertools configured through the environment.
 *
 * Its role (`<id>ServiceRole`, beside it) is a CorralRole: the X-Ray grant active tracing needs,
 * which can only name `*`, sits in a policy of its own, so a wildcard resource in any other grant
 * to the function is reported by cdk-nag rather than covered by that acknowledgment.
 */
export class CorralFunction extends NodejsFunction {
  constructor(scope: Construct, id: string, props: CorralFunctionProps) {
    const { entry, serviceName, metricsNamespace, logRetention, environment, bundling, ...rest } = props;
    const logGroup = new logs.LogGroup(scope, `${id}Logs`, {
      retention: logRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    // The managed policies CDK gives a role it creates itself.
    const managed = [
      { name: 'AWSLambdaBasicExecutionRole', reason: 'AWSLambdaBasicExecutionRole is the AWS-maintained minimum for writing the function\'s logs.' },
      ...(rest.vpc
        ? [{ name: 'AWSLambdaVPCAccessExecutionRole', reason: 'AWSLambdaVPCAccessExecutionRole is the AWS-maintained minimum for a function attached to a VPC (its ENIs).' }]
        : []),
    ];
    const role = new CorralRole(scope, `${id}ServiceRole`, {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      managedPolicies: managed.map((m) => iam.ManagedPolicy.fromAwsManagedPolicyName(`service-role/${m.name}`)),
    });
    acknowledge(
      role,
      ...managed.map((m) => ({ id: `AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/${m.name}]`, reason: m.reason })),
    );
    super(scope, id, {
      memorySize: 512,
      timeout: Duration.seconds(29),
      ...rest,
      entry: repoPath(entry),
      projectRoot: repoPath(),
      depsLockFilePath: repoPath('package-lock.json'),
      role,
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: lambda.Architecture.ARM_64,
      tracing: lambda.Tracing.ACTIVE,
      logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      environment: {
        NODE_OPTIONS: '--enable-source-maps',
        POWERTOOLS_SERVICE_NAME: serviceName,
        POWERTOOLS_METRICS_NAMESPACE: metricsNamespace ?? 'Corral',
        POWERTOOLS_LOG_LEVEL: 'INFO',
        ...environment,
      },
      bundling: {
        forceDockerBundling: false,
        format: OutputFormat.ESM,
        target: 'node22',
        minify: true,
        sourceMap: true,
        sourcesContent: false,
        mainFields: ['module', 'main'],
        // Everything, the AWS SDK included, is bundled: the versions tested are the versions run.
        externalModules: [],
        // Some dependencies are CommonJS and call require(); give the ESM bundle one.
        banner: "import { createRequire as __corralCreateRequire } from 'node:module'; const require = __corralCreateRequire(import.meta.url);",
        ...bundling,
      },
    });
    acknowledge(this, {
      id: 'AwsSolutions-L1',
      reason: 'Node.js 22 is the LTS runtime Corral targets and tests against; moving to a newer runtime is a deliberate upgrade.',
    });
  }
}
