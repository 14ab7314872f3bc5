/**
 * The settings docs/SCALE.md recommends for 100,000 concurrent sessions ("Recommended settings"),
 * as the `npm run capacity` arguments that show them, so that the document's command and the test
 * of issue 20's goals (test/infra/capacity-template.test.ts) run the same thing.
 */
export const RECOMMENDED = {
  sessions: 100_000,
  tenants: 100,
  /** The quota increases the run assumes granted (ids of scripts/capacity/sources.ts QUOTAS). */
  quota:
    'lambdaConcurrency=70000,apiGatewayAccountRps=20000,dynamodbTableRru=400000,dynamodbTableWru=150000,fargateLaunchRate=100,ecsRunTaskRate=100,ecsDescribeTasksRate=100,fargateSpotVcpu=130000,eniPerRegion=130000',
  /**
   * CDK context, all synthesized: nothing in it is a model-only setting. vpcInterfaceEndpoints
   * because the model shows they pay for themselves at this size (its break-even, printed with the
   * run, is about 21,000 sessions).
   */
  context:
    'streamTier=fargate,streamTierMaxTasks=13,fargateSpot=true,harnessReservedConcurrency=55000,apiThrottleRate=5000,rateLimits=write=2000,sandboxClusters=3,sandboxCidrBlocks=2,vpcInterfaceEndpoints=true',
} as const;
