import { Arn, ArnFormat, Duration, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { CORRAL_ENV, configEnvironment } from '../../../lambdas/core/config.js';
import { keys } from '../../../lambdas/core/storage/keys.js';
import { acknowledge, defaultPolicyOf } from '../nag.js';
import { CorralFunction } from './corral-function.js';
import type { Network } from './network.js';
import type { SessionLog } from './session-log.js';

/** The Secrets Manager name prefix of every vault secret (lambdas/core/vault/types.ts `SECRET_PREFIX`). */
export const VAULT_SECRET_PREFIX = 'corral/vault/';

export interface CredentialProxyProps {
  readonly sessionLog: SessionLog;
  /** The proxy runs in the private subnets, so it reaches MCP servers and git hosts the harness can. */
  readonly network: Network;
  readonly serviceName: string;
  readonly metricsNamespace: string;
  readonly logRetention?: logs.RetentionDays;
  /**
   * Longest one call runs: an MCP tool call is waited for synchronously by the harness.
   * @default Duration.minutes(5)
   */
  readonly timeout?: Duration;
  /** @default 512 */
  readonly memorySize?: number;
}

/**
 * The credential proxy: a Lambda function whose role is the only principal in the stack allowed
 * to read (and write) the vault's secrets, named under `corral/vault/` in Secrets Manager. The
 * harness and the API may only invoke it (`grantInvoke`); it checks, in the state table it reads,
 * that the session's vaults grant what is asked, uses the secret, and returns only the result.
 * No resource policy lets anything else invoke it.
 */
export class CredentialProxy extends Construct {
  readonly function: CorralFunction;
  readonly securityGroup: ec2.SecurityGroup;

  constructor(scope: Construct, id: string, props: CredentialProxyProps) {
    super(scope, id);
    this.securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.network.vpc,
      description: 'Corral credential proxy: calls MCP servers and git hosts with the vault credentials',
      allowAllOutbound: true,
    });
    this.function = new CorralFunction(this, 'Function', {
      entry: 'lambdas/credential-proxy/handler.ts',
      handler: 'handler',
      description: 'Corral credential proxy: the only reader of vault secrets',
      serviceName: props.serviceName,
      metricsNamespace: props.metricsNamespace,
      logRetention: props.logRetention,
      timeout: props.timeout ?? Duration.minutes(5),
      memorySize: props.memorySize ?? 512,
      vpc: props.network.vpc,
      vpcSubnets: props.network.subnets,
      securityGroups: [this.securityGroup],
      environment: configEnvironment({ stateTable: props.sessionLog.state.tableName }),
    });
    // Sessions and vault metadata: read only.
    props.sessionLog.state.grant(this.function, 'dynamodb:GetItem', 'dynamodb:Query');
    this.function.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'VaultSecrets',
        actions: [
          'secretsmanager:GetSecretValue',
          'secretsmanager:DescribeSecret',
          'secretsmanager:CreateSecret',
          'secretsmanager:PutSecretValue',
          'secretsmanager:DeleteSecret',
          'secretsmanager:TagResource',
        ],
        resources: [this.secretArnPattern()],
      }),
    );
    acknowledge(defaultPolicyOf(this.function), {
      id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:${VAULT_SECRET_PREFIX}*]`,
      reason:
        'Vault secrets are created at run time, one per credential, so their ARNs are unknown at deploy time; the prefix corral/vault/ confines the proxy to them.',
    });
  }

  /** Every vault secret (Secrets Manager appends a random suffix to each name). */
  secretArnPattern(): string {
    return Arn.format(
      { service: 'secretsmanager', resource: 'secret', resourceName: `${VAULT_SECRET_PREFIX}*`, arnFormat: ArnFormat.COLON_RESOURCE_NAME },
      Stack.of(this),
    );
  }

  /** Let `grantee` (the harness, the API) call the proxy, and nothing more. */
  grantInvoke(grantee: iam.IGrantable): void {
    iam.Grant.addToPrincipal({ grantee, actions: ['lambda:InvokeFunction'], resourceArns: [this.function.functionArn] });
  }

  /**
   * Git from Fargate sandboxes through the proxy service (its `/git/` route on the sandbox port,
   * lambdas/proxy-service/git-route.ts): this function opens and closes the channels (items of
   * their own partitions of the state table) and gives their URL; the service's role reads the
   * channels, the sessions' heads (which repositories, which secret), the signing key and the
   * repository tokens, and nothing else of the vault's (no write, no other table partition).
   */
  serveGitFrom(service: { readonly taskRole: iam.IRole; readonly sandboxAddress: string }, sessionLog: SessionLog): void {
    this.function.addEnvironment(CORRAL_ENV.gitProxyUrl, `http://${service.sandboxAddress}/git`);
    const table = sessionLog.state.tableArn;
    this.function.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'GitChannels',
        actions: ['dynamodb:PutItem', 'dynamodb:DeleteItem'],
        resources: [table],
        conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [`${keys.gitChannels('')}*`] } },
      }),
    );
    service.taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'GitChannelsAndSessions',
        actions: ['dynamodb:GetItem'],
        resources: [table],
        conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [`${keys.gitChannels('')}*`, `${keys.partition('session', '')}*`] } },
      }),
    );
    // The repository tokens are vault secrets: the service's role reads them already (its
    // `VaultSecretsRead`, infra/lib/constructs/proxy-service.ts), read only.
  }

  /** How the harness and the API reach the proxy, in their environment (lambdas/core/config.ts). */
  get environment(): Record<string, string> {
    return configEnvironment({ credentialProxyFunction: this.function.functionName });
  }
}
