import { Aws, Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import { acknowledge } from '../nag.js';
import { Construct } from 'constructs';
import { consoleScriptDefine } from '../../../lambdas/api/console/bundle.js';
import { configEnvironment } from '../../../lambdas/core/config.js';
import { parseRepositoryUrlAllow } from '../../../lambdas/core/resources/repository-url.js';
import { PREVIEW_WATCH_PARTITIONS, RATE_LIMIT_PARTITIONS } from '../../../lambdas/core/storage/keys.js';
import { DEFAULT_RATE_LIMIT_SHARDS, DEFAULT_RATE_LIMITS, formatRateLimits, type RateLimits } from '../../../lambdas/core/resources/rate-limits.js';
import { CorralFunction } from './corral-function.js';
import type { Network } from './network.js';
import type { Sandboxes } from './sandboxes.js';
import type { SessionLog } from './session-log.js';
import type { WakeQueue } from './wake-queue.js';

export interface ApiProps {
  readonly sessionLog: SessionLog;
  /**
   * The API function (not the stream's) runs in the private subnets: handing a sandbox to another
   * session rotates its capability, which means reaching the sandbox agent.
   */
  readonly network: Network;
  readonly wakeQueue: WakeQueue;
  readonly sandboxes: Sandboxes;
  readonly serviceName: string;
  readonly metricsNamespace: string;
  readonly logRetention?: logs.RetentionDays;
  /**
   * Repository origins sessions may name besides public `https://` ones (`CORRAL_REPOSITORY_URL_ALLOW`,
   * e.g. `https://git.internal.example`). @default - none: only public https repositories
   */
  readonly repositoryUrlAllow?: string[];
  /**
   * Longest an event stream stays open (API Gateway allows 15 minutes). It then ends cleanly and
   * the client reconnects with `Last-Event-ID`, missing nothing.
   * @default Duration.minutes(15)
   */
  readonly streamTimeout?: Duration;
  /**
   * Most event streams open at once (the stream function's reserved concurrency): each open
   * stream holds one execution for up to `streamTimeout`, so without a cap enough clients could
   * take every execution of the account and starve the harness, the API and the credential
   * proxy. A stream over the cap is throttled, which API Gateway answers with a 5xx (it maps no
   * Lambda throttle to 429); the SDK retries it with backoff. Lambda keeps at least 10 executions of the
   * account unreserved, so a new account whose concurrency limit is 10 cannot reserve any.
   * @default - no cap
   */
  readonly streamMaxConcurrency?: number;
  /**
   * Steady-state requests per second the stage accepts, across all tenants (API Gateway answers
   * requests over it 429 before any function runs). @default DEFAULT_API_THROTTLING.rateLimit (100)
   */
  readonly throttlingRateLimit?: number;
  /** Requests the stage accepts at once above the steady rate. @default DEFAULT_API_THROTTLING.burstLimit (200) */
  readonly throttlingBurstLimit?: number;
  /**
   * Per-tenant requests per minute by class (`CORRAL_RATE_LIMITS`), counted in the state table.
   * @default DEFAULT_RATE_LIMITS: create 300, write 1200, read 6000
   */
  readonly rateLimits?: RateLimits;
  /**
   * Most shards a tenant's counter of one class is spread over (`CORRAL_RATE_LIMIT_SHARDS`; see
   * `shardPlan` in lambdas/core/resources/rate-limits.ts). @default DEFAULT_RATE_LIMIT_SHARDS (10)
   */
  readonly rateLimitShards?: number;
  /**
   * Who serves `GET /v1/sessions/{id}/events/stream`: the stream function (`lambda`), or another
   * construct that adds that method to `streamResource` (`external`: the stream tier,
   * infra/lib/constructs/stream-tier.ts). With `external` the stream function is still deployed,
   * unrouted (it costs nothing idle), so going back is a change of this setting alone.
   * @default 'lambda'
   */
  readonly streamRoute?: 'lambda' | 'external';
  /** `CORRAL_OIDC_ISSUERS`: the OIDC issuers' JSON, or a token of it (the stack's parameter). @default none */
  readonly oidcIssuers?: string;
}

/** The REST API's binary media types: every type (see the comment where it is set). */
export const API_BINARY_MEDIA_TYPES = ['*/*'] as const;

/** The stage's throttling when none is set. */
export const DEFAULT_API_THROTTLING = { rateLimit: 100, burstLimit: 200 } as const;

/** Partition keys of the rate-limit counters (lambdas/core/storage/keys.ts), the only items the stream writes. */
export const RATE_LIMIT_KEYS = RATE_LIMIT_PARTITIONS;

/**
 * The public API: API Gateway (REST, regional) in front of the Hono app (lambdas/api/app.ts),
 * which authenticates every `/v1` route with the tenants' hashed API keys. Two functions run the
 * same bundle: one for every route (buffered) and one for `GET /v1/sessions/{id}/events/stream`,
 * whose integration streams the Lambda response (`responseTransferMode: STREAM`) so events
 * reach the client as they are appended.
 */
export class Api extends Construct {
  readonly restApi: apigw.RestApi;
  readonly handler: CorralFunction;
  readonly streamHandler: CorralFunction;
  /** The API function's security group: the sandboxes admit it on the agent port (handoff). */
  readonly securityGroup: ec2.SecurityGroup;
  /** Longest an event stream stays open (the stream function's timeout). */
  readonly streamTimeout: Duration;
  /** `/v1/sessions/{id}/events/stream`: with `streamRoute: 'external'` its GET method is the caller's to add. */
  readonly streamResource: apigw.Resource;
  /** The API functions' environment (the stream tier runs the same app with it). */
  readonly environment: Record<string, string>;
  private readonly sessionLog: SessionLog;

  constructor(scope: Construct, id: string, props: ApiProps) {
    super(scope, id);
    const streamTimeout = props.streamTimeout ?? Duration.minutes(15);
    this.streamTimeout = streamTimeout;
    this.sessionLog = props.sessionLog;
    const environment = {
      ...props.sessionLog.environment,
      ...props.wakeQueue.environment,
      ...props.sandboxes.environment,
      ...configEnvironment({
        repositoryUrlAllow: props.repositoryUrlAllow?.length ? parseRepositoryUrlAllow(props.repositoryUrlAllow.join(',')).join(',') : undefined,
        // Written out even at their defaults, so the template shows the limits the API enforces.
        rateLimits: formatRateLimits(props.rateLimits ?? DEFAULT_RATE_LIMITS),
        rateLimitShards: String(props.rateLimitShards ?? DEFAULT_RATE_LIMIT_SHARDS),
        oidcIssuers: props.oidcIssuers,
      }),
    };
    this.environment = environment;
    const common = {
      entry: 'lambdas/api/lambda.ts',
      serviceName: props.serviceName,
      metricsNamespace: props.metricsNamespace,
      logRetention: props.logRetention,
      environment,
      // The console's script (TypeScript for the browser) bundled now, carried into the bundle as
      // a constant (lambdas/api/console/bundle.ts), so the function never runs esbuild.
      bundling: { define: consoleScriptDefine() },
    };
    this.securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.network.vpc,
      description: 'Corral API: AWS APIs, the credential proxy, and sandbox agents (handoff)',
      allowAllOutbound: true,
    });
    this.handler = new CorralFunction(this, 'Handler', {
      ...common,
      handler: 'handler',
      description: 'Corral API (every route but the event stream)',
      timeout: Duration.seconds(29),
      memorySize: 1024,
      vpc: props.network.vpc,
      vpcSubnets: props.network.subnets,
      securityGroups: [this.securityGroup],
    });
    // Handoff rotates the sandbox's capability from here (lambdas/core/sandbox/manager.ts), and
    // stores the new one sealed. The stream function gets neither the key nor the route.
    props.sandboxes.allowAgentAccessFrom(this.securityGroup, 'the API hands sandboxes to other sessions');
    props.sandboxes.grantCapabilitySealing(this.handler);
    this.streamHandler = new CorralFunction(this, 'StreamHandler', {
      ...common,
      handler: 'streamHandler',
      description: 'Corral API: GET /v1/sessions/{id}/events/stream (response streaming)',
      timeout: streamTimeout,
      memorySize: 512,
      reservedConcurrentExecutions: props.streamMaxConcurrency,
    });
    props.sessionLog.grantReadWrite(this.handler);
    props.wakeQueue.grantSend(this.handler);
    props.sandboxes.grantRelease(this.handler); // deleting a session stops its sandboxes
    this.grantStreamRoute(this.streamHandler);

    const accessLogs = new logs.LogGroup(this, 'AccessLogs', {
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.restApi = new apigw.RestApi(this, 'RestApi', {
      description: 'Corral: Claude Managed Agents compatible API',
      endpointTypes: [apigw.EndpointType.REGIONAL],
      // Files travel as bytes: an upload is multipart/form-data, a download any file's type. With
      // a binary media type matching, API Gateway hands a request body to the function as base64
      // (without, it re-encodes it as UTF-8 and breaks every byte that is not) and turns a
      // response the function marks `isBase64Encoded` back into bytes when the client's first
      // `Accept` value matches (the SDK's download sends `application/binary`, curl `*/*`, a
      // browser `text/html,...`): hence every type. JSON routes are unharmed: their bodies reach
      // the app base64 and are decoded by the handler (a 4 MiB body is 5.6 MB of base64, under
      // Lambda's 6 MB), and their responses are not marked base64, so they pass as text.
      binaryMediaTypes: [...API_BINARY_MEDIA_TYPES],
      // API Gateway needs an account-level role to write logs; CDK sets it (and keeps it on delete).
      cloudWatchRole: true,
      cloudWatchRoleRemovalPolicy: RemovalPolicy.RETAIN,
      deployOptions: {
        stageName: 'prod',
        tracingEnabled: true,
        loggingLevel: apigw.MethodLoggingLevel.ERROR,
        dataTraceEnabled: false,
        metricsEnabled: true,
        throttlingRateLimit: props.throttlingRateLimit ?? DEFAULT_API_THROTTLING.rateLimit,
        throttlingBurstLimit: props.throttlingBurstLimit ?? DEFAULT_API_THROTTLING.burstLimit,
        accessLogDestination: new apigw.LogGroupLogDestination(accessLogs),
        accessLogFormat: apigw.AccessLogFormat.jsonWithStandardFields(),
      },
    });

    // One resource-policy statement per function instead of two per method.
    const buffered = new apigw.LambdaIntegration(this.handler, { proxy: true, scopePermissionToMethod: false });
    const streaming = new apigw.LambdaIntegration(this.streamHandler, {
      proxy: true,
      scopePermissionToMethod: false,
      responseTransferMode: apigw.ResponseTransferMode.STREAM,
      timeout: streamTimeout,
    });

    // API Gateway routes a request to the most specific resource and does not fall back to a
    // greedy parent, so every resource on the way to the stream path forwards itself and
    // (where no path variable sibling forbids it) everything below it to the app.
    const forward = (resource: apigw.IResource, proxyChildren = true) => {
      resource.addMethod('ANY', buffered);
      if (proxyChildren) resource.addResource('{proxy+}').addMethod('ANY', buffered);
    };
    const root = this.restApi.root;
    forward(root);
    const v1 = root.addResource('v1');
    forward(v1);
    const sessions = v1.addResource('sessions');
    forward(sessions, false); // `{id}` is the one variable child it may have
    const session = sessions.addResource('{id}');
    forward(session);
    const events = session.addResource('events');
    forward(events);
    const stream = events.addResource('stream');
    if ((props.streamRoute ?? 'lambda') === 'lambda') stream.addMethod('GET', streaming);
    stream.addMethod('ANY', buffered);
    this.streamResource = stream;
    // A coordinator's thread streams too (`client.beta.sessions.threads.events.stream`,
    // docs/THREADS.md): on the stream function whichever serves the session's stream.
    const threads = session.addResource('threads');
    forward(threads, false); // `{thread_id}` is the one variable child it may have
    const thread = threads.addResource('{thread_id}');
    forward(thread);
    const threadStream = thread.addResource('stream');
    threadStream.addMethod('GET', streaming);
    threadStream.addMethod('ANY', buffered);

    acknowledge(
      this.restApi,
      { id: 'AwsSolutions-APIG2', reason: 'Requests are validated by the app (zod schemas) and answered with Managed Agents error bodies.' },
      { id: 'AwsSolutions-APIG3', reason: 'WAF is left to the operator (it is billed at rest); throttling is set on the stage.' },
      {
        id: 'AwsSolutions-APIG4',
        reason: 'Every /v1 route is authenticated by the app against hashed tenant API keys in the state table or OIDC tokens of the configured issuers (docs/SIGN-IN.md); /health, /openapi.json, /console and /corral/auth are public by design.',
      },
      { id: 'AwsSolutions-COG4', reason: 'Callers authenticate with Corral API keys (Managed Agents compatible), not Cognito.' },
      {
        id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]',
        reason: 'AmazonAPIGatewayPushToCloudWatchLogs is the AWS-maintained policy for API Gateway account logging.',
      },
    );
  }

  /**
   * What serving the event stream needs, for the stream function and the stream tier alike: read
   * the log, the session head, the API key hashes and the preview chunks the harness writes for
   * `event_deltas` (lambdas/core/session/previews.ts). Its one write is the `/v1` middleware
   * charging the tenant's rate limit: an atomic increment (UpdateItem) of a rate-limit counter item
   * (lambdas/core/storage/keys.ts, `keys.rateCounter`: every shard's partition key matches
   * RATE_LIMIT_KEYS); and a stream with `event_deltas` renews its watch item (keys.previewWatch),
   * so that the harness writes preview chunks only for sessions someone watches; the leading-key
   * condition keeps it from writing any other item.
   */
  grantStreamRoute(grantee: iam.IGrantable): void {
    this.sessionLog.events.grantReadData(grantee);
    this.sessionLog.state.grantReadData(grantee);
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'RateLimitCounters',
        actions: ['dynamodb:UpdateItem'],
        resources: [this.sessionLog.state.tableArn],
        conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [RATE_LIMIT_KEYS, PREVIEW_WATCH_PARTITIONS] } },
      }),
    );
  }

  /** The base URL for the SDK's `baseURL` (the stage, without a trailing slash). */
  get url(): string {
    return `https://${this.restApi.restApiId}.execute-api.${Aws.REGION}.${Aws.URL_SUFFIX}/${this.restApi.deploymentStage.stageName}`;
  }
}
