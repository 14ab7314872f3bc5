import { RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { configEnvironment } from '../../../lambdas/core/config.js';

export interface SessionLogProps {
  /**
   * What happens to the tables when the stack is deleted. The event log is the only durable state
   * of every session, so it outlives the stack unless you say otherwise.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
  /** @default true */
  readonly pointInTimeRecovery?: boolean;
  /**
   * A DynamoDB stream on the events table, of this view type (the stream tier reads it to learn
   * of appends: infra/lib/constructs/stream-tier.ts). @default - none
   */
  readonly eventsStream?: dynamodb.StreamViewType;
}

/** Name of the state table's secondary index (lambdas/adapters/aws/dynamodb-state-table.ts). */
export const STATE_INDEX = 'gsi1';

/**
 * The state table's TTL attribute (epoch seconds): DynamoDB deletes an item some time after it
 * passes. The rate-limit counters (lambdas/core/resources/rate-limits.ts) and the preview chunks
 * of `event_deltas` (lambdas/core/session/previews.ts) set it; no other item may use the name for
 * anything else.
 */
export const STATE_TTL_ATTRIBUTE = 'expiresAt';

/**
 * The session log and the records derived from it, on DynamoDB (on demand, so nothing is billed
 * while nobody calls it, point-in-time recovery, encrypted with the AWS-managed KMS key, retained):
 *
 * - `events`: one item per event, partition key `sessionId` (S), sort key `position` (N).
 *   Appends are conditional on the position, so two writers can never own the same one.
 * - `state`: agents, environments, session heads, leases, sandboxes, API key hashes, rate-limit
 *   counters: `pk`/`sk` (S), the index `gsi1` (`gsi1pk`/`gsi1sk`, all attributes projected) for
 *   listings, and TTL on `expiresAt`.
 *
 * The key schemas are the ones `ensureTables` creates locally (lambdas/adapters/aws/tables.ts).
 */
export class SessionLog extends Construct {
  readonly events: dynamodb.Table;
  readonly state: dynamodb.Table;

  constructor(scope: Construct, id: string, props: SessionLogProps = {}) {
    super(scope, id);
    const common = {
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: props.pointInTimeRecovery ?? true },
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    };
    this.events = new dynamodb.Table(this, 'Events', {
      ...common,
      partitionKey: { name: 'sessionId', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'position', type: dynamodb.AttributeType.NUMBER },
      stream: props.eventsStream,
    });
    this.state = new dynamodb.Table(this, 'State', {
      ...common,
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
      // Items that carry it (the per-minute rate-limit counters, the preview chunks) expire on their own.
      timeToLiveAttribute: STATE_TTL_ATTRIBUTE,
    });
    this.state.addGlobalSecondaryIndex({
      indexName: STATE_INDEX,
      partitionKey: { name: 'gsi1pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'gsi1sk', type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.ALL,
    });
  }

  /** Read and write both tables (the API and the harness). */
  grantReadWrite(grantee: iam.IGrantable): void {
    this.events.grantReadWriteData(grantee);
    this.state.grantReadWriteData(grantee);
  }

  /** The tables, in the environment of the functions that use both (lambdas/core/config.ts). */
  get environment(): Record<string, string> {
    return configEnvironment({ eventsTable: this.events.tableName, stateTable: this.state.tableName });
  }
}
