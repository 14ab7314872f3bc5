import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { configEnvironment } from '../../../lambdas/core/config.js';
import { acknowledge, defaultPolicyOf } from '../nag.js';

/** The key prefixes the core builds blob keys under (lambdas/core/storage/blob-store.ts). */
export const BLOB_PREFIXES = {
  /** `files/<tenant>/<file_id>`: uploaded files and the session outputs catalogued as files. */
  files: 'files/',
  /** `workspaces/<tenant>/<session_id>/...`: snapshots of stopped sandboxes' workspaces. */
  workspaces: 'workspaces/',
  /** `packages/<environment_id>/<digest>.tar.gz`: the environments' package caches (pip and npm packages per version). */
  packages: 'packages/',
} as const;

export interface BlobBucketProps {
  /**
   * What happens to the bucket when the stack is deleted. Uploaded files are users' data, so they
   * outlive the stack unless you say otherwise (a bucket that still holds objects cannot be
   * destroyed by CloudFormation; empty it first).
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * How long a workspace snapshot is kept after it was last written: a session idle for longer
   * comes back with an empty workspace.
   * @default 30 days
   */
  readonly workspaceSnapshotRetention?: Duration;
  /**
   * How long the bytes of a deleted or replaced file stay recoverable (as a noncurrent version)
   * before S3 removes them for good.
   * @default 7 days
   */
  readonly deletedFileRetention?: Duration;
}

/**
 * The blob bucket: the bytes of uploaded files, session outputs and workspace snapshots
 * (lambdas/adapters/aws/s3-blob-store.ts). Metadata lives in the state table; this holds bytes only.
 *
 * - Encrypted with S3-managed keys (SSE-S3), not KMS: access is decided by IAM and the bucket
 *   policy either way, and SSE-KMS would add a key policy to keep in step with every grant, a
 *   `kms:Decrypt`/`GenerateDataKey` grant per function, a per-request KMS charge and KMS's request
 *   quota on every file read and snapshot written, for no reader it would keep out here. The state
 *   table is encrypted the same way (AWS-owned keys).
 * - TLS only (a bucket policy denies any request without it, or below TLS 1.2), every form of
 *   public access blocked, ACLs disabled (the bucket owner owns every object).
 * - Versioned, so a file deleted or overwritten by mistake (a bug, a compromised function) can be
 *   recovered by an operator for `deletedFileRetention`; after that the noncurrent version expires
 *   and the bytes are gone. Workspace snapshots, rewritten at every stop, keep old versions one day.
 * - Lifecycle: incomplete multipart uploads (a function killed mid-upload) are aborted after a
 *   day; workspace snapshots expire `workspaceSnapshotRetention` after their last write; package
 *   cache entries 30 days after theirs; delete markers left alone are removed.
 *
 * Grants are by prefix, per function (see the grant methods); none may list keys beyond what S3
 * needs to tell a missing key from a forbidden one.
 */
export class BlobBucket extends Construct {
  readonly bucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: BlobBucketProps = {}) {
    super(scope, id);
    const snapshotRetention = props.workspaceSnapshotRetention ?? Duration.days(30);
    const fileRetention = props.deletedFileRetention ?? Duration.days(7);
    for (const [name, d] of [['workspaceSnapshotRetention', snapshotRetention], ['deletedFileRetention', fileRetention]] as const) {
      const days = d.toDays({ integral: false });
      if (!Number.isInteger(days) || days < 1) throw new Error(`BlobBucket ${name} must be a whole number of days, at least 1 (S3 lifecycle rules count in days)`);
    }
    this.bucket = new s3.Bucket(this, 'Bucket', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: true,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
      lifecycleRules: [
        {
          id: 'abort-incomplete-uploads-and-remove-lone-delete-markers',
          abortIncompleteMultipartUploadAfter: Duration.days(1),
          expiredObjectDeleteMarker: true,
        },
        {
          id: 'deleted-files',
          prefix: BLOB_PREFIXES.files,
          noncurrentVersionExpiration: fileRetention,
        },
        {
          id: 'workspace-snapshots',
          prefix: BLOB_PREFIXES.workspaces,
          expiration: snapshotRetention,
          noncurrentVersionExpiration: Duration.days(1),
        },
        {
          // Entries of old environment versions are never read again: 30 days after its last
          // write an entry goes, and the next sandbox of its version installs and stores it anew.
          id: 'package-caches',
          prefix: BLOB_PREFIXES.packages,
          expiration: Duration.days(30),
          noncurrentVersionExpiration: Duration.days(1),
        },
      ],
    });
    acknowledge(this.bucket, {
      id: 'AwsSolutions-S1',
      reason:
        'No server access log bucket: only the stack\'s own function roles can reach this bucket (TLS only, no public access, no ACLs), and their calls are in their logs; an operator who needs an audit trail of object access turns on CloudTrail S3 data events for it.',
    });
  }

  /** The bucket, in the environment of the functions that use it (lambdas/core/config.ts). */
  get environment(): Record<string, string> {
    return configEnvironment({ blobBucket: this.bucket.bucketName });
  }

  private objects(prefix: string): string {
    return this.bucket.arnForObjects(`${prefix}*`);
  }

  /**
   * S3 answers a read of a missing key with 404 only to a caller that may list the bucket (403
   * otherwise), and the blob store must tell "no such blob" from "forbidden". No prefix condition:
   * S3 checks ListBucket for that answer without one.
   */
  private grantMissingKeyAnswer(grantee: iam.IGrantable): void {
    grantee.grantPrincipal.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['s3:ListBucket'], resources: [this.bucket.bucketArn] }));
  }

  private grant(grantee: iam.IGrantable, prefix: string, actions: string[], reason: string): void {
    grantee.grantPrincipal.addToPrincipalPolicy(new iam.PolicyStatement({ actions, resources: [this.objects(prefix)] }));
    acknowledgeObjects(grantee, this.bucket, prefix, reason);
  }

  /** The API function: the Files API uploads, downloads and deletes files (`files/*` only). */
  grantFilesApi(grantee: iam.IGrantable): void {
    this.grant(grantee, BLOB_PREFIXES.files, ['s3:GetObject', 's3:PutObject', 's3:DeleteObject', 's3:AbortMultipartUpload'], 'The Files API stores, reads and deletes uploaded files, whose keys are made per upload under files/.');
    this.grantMissingKeyAnswer(grantee);
  }

  /**
   * The harness: reads files to deliver them into sandboxes and writes the outputs it catalogues
   * (`files/*`, no delete); reads workspace snapshots to restore them into new sandboxes
   * (`workspaces/*`, read only: the reaper and the API write them); reads, writes and deletes the
   * environments' package caches (`packages/*`).
   */
  grantHarness(grantee: iam.IGrantable): void {
    this.grant(grantee, BLOB_PREFIXES.files, ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload'], 'The harness reads files to mount them in sandboxes and stores session outputs as new files, keys made per file under files/.');
    this.grant(grantee, BLOB_PREFIXES.workspaces, ['s3:GetObject'], 'The harness restores workspace snapshots, keys made per session under workspaces/.');
    // The sandbox manager, which runs in the harness, keeps each environment version's packages
    // (package-cache.ts): reads (HeadObject is GetObject's), stores, and deletes an entry that would not restore.
    this.grant(grantee, BLOB_PREFIXES.packages, ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload', 's3:DeleteObject'], 'The harness restores and stores environment package caches, keys made per environment version under packages/.');
    this.grantMissingKeyAnswer(grantee);
  }

  /**
   * The sandbox reaper (`workspaces/*`, no read): writes the snapshot of a workspace it stops (a
   * stream of unknown length: a multipart upload, aborted if it fails), deletes the snapshot it
   * replaces and one it took but could not record. It never reads a blob, so it needs no answer
   * for a missing key (S3's DeleteObject of a missing key succeeds without ListBucket).
   */
  grantSnapshotWrite(grantee: iam.IGrantable): void {
    this.grant(grantee, BLOB_PREFIXES.workspaces, ['s3:PutObject', 's3:AbortMultipartUpload', 's3:DeleteObject'], 'The reaper saves the workspace of a sandbox it stops and deletes the one it replaces, keys made per session under workspaces/.');
  }

  /**
   * The API function (`workspaces/*`): a fork copies its source's latest snapshot (read, then
   * write) or takes one of a running sandbox (a multipart upload); deleting a session deletes its
   * snapshots, and a handoff the source name's. Give it `grantFilesApi` too (its ListBucket tells
   * a missing snapshot from a forbidden one).
   */
  grantWorkspacesApi(grantee: iam.IGrantable): void {
    this.grant(grantee, BLOB_PREFIXES.workspaces, ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload', 's3:DeleteObject'], 'The API copies a workspace snapshot for a fork and deletes the snapshots of a deleted session, keys made per session under workspaces/.');
    this.grantMissingKeyAnswer(grantee);
  }
}

/**
 * cdk-nag's finding on a prefix grant (`<bucket>/files/*`), acknowledged on the grantee's default
 * policy only, for that exact resource: a wider S3 grant there is still reported.
 */
function acknowledgeObjects(grantee: iam.IGrantable, bucket: s3.Bucket, prefix: string, reason: string): void {
  const policy = defaultPolicyOf(grantee);
  const stack = bucket.stack;
  const ref = stack.getLogicalId(bucket.node.defaultChild as s3.CfnBucket);
  acknowledge(policy, { id: `AwsSolutions-IAM5[Resource::<${ref}.Arn>/${prefix}*]`, reason: `${reason} Objects get fresh keys, so the grant names the prefix.` });
}
