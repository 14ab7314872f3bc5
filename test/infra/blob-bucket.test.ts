import { readFileSync } from 'node:fs';
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { stackPropsFromContext } from '../../infra/lib/context.js';
import { CorralStack } from '../../infra/lib/corral-stack.js';

/**
 * The blob bucket in the synthesized template: encryption, TLS, public access, versioning and
 * lifecycle. Who may do what in it is checked with the rehearsal's IAM evaluator in
 * test/rehearsal/s3.test.ts.
 */
const cdkContext = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')).context as Record<string, unknown>;

function synth(context: Record<string, unknown> = {}, id = 'BlobTest') {
  const app = new App({ context: { ...cdkContext, 'aws:cdk:bundling-stacks': [] } });
  const stack = new CorralStack(app, id, stackPropsFromContext((k) => context[k]).props);
  return { stack, template: Template.fromStack(stack) };
}

type Rule = { Id: string; Status: string; Prefix?: string; ExpirationInDays?: number; ExpiredObjectDeleteMarker?: boolean; NoncurrentVersionExpiration?: { NoncurrentDays: number }; AbortIncompleteMultipartUpload?: { DaysAfterInitiation: number } };

describe('the blob bucket', () => {
  const { stack, template } = synth();
  const buckets = template.findResources('AWS::S3::Bucket');

  it('is one bucket, encrypted with S3-managed keys, private, ACLs off, versioned, retained', () => {
    expect(Object.keys(buckets)).toHaveLength(1);
    const [[, bucket]] = Object.entries(buckets);
    expect(bucket.DeletionPolicy).toBe('Retain');
    expect(bucket.Properties.BucketEncryption).toEqual({ ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] });
    expect(bucket.Properties.PublicAccessBlockConfiguration).toEqual({ BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true });
    expect(bucket.Properties.OwnershipControls).toEqual({ Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] });
    expect(bucket.Properties.VersioningConfiguration).toEqual({ Status: 'Enabled' });
    expect(stack.resolve(stack.blobs.bucket.bucketName)).toEqual({ Ref: Object.keys(buckets)[0] });
  });

  it('refuses every request without TLS, or below TLS 1.2, whoever sends it', () => {
    const [[id]] = Object.entries(buckets);
    const policies = Object.values(template.findResources('AWS::S3::BucketPolicy'));
    expect(policies).toHaveLength(1);
    expect(policies[0].Properties.Bucket).toEqual({ Ref: id });
    const statements = policies[0].Properties.PolicyDocument.Statement as Array<Record<string, unknown>>;
    const objects = { 'Fn::Join': ['', [{ 'Fn::GetAtt': [id, 'Arn'] }, '/*']] };
    expect(statements).toEqual(
      expect.arrayContaining([
        { Action: 's3:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } }, Effect: 'Deny', Principal: { AWS: '*' }, Resource: [{ 'Fn::GetAtt': [id, 'Arn'] }, objects] },
        { Action: 's3:*', Condition: { NumericLessThan: { 's3:TlsVersion': 1.2 } }, Effect: 'Deny', Principal: { AWS: '*' }, Resource: [{ 'Fn::GetAtt': [id, 'Arn'] }, objects] },
      ]),
    );
    // Nothing in it allows anyone: access comes from the function roles only.
    expect(statements.filter((s) => s.Effect === 'Allow')).toEqual([]);
  });

  it('aborts incomplete uploads, expires workspace snapshots after 30 days, keeps deleted files 7 days', () => {
    const [[, bucket]] = Object.entries(buckets);
    const rules = bucket.Properties.LifecycleConfiguration.Rules as Rule[];
    const byPrefix = (p: string | undefined) => rules.filter((r) => r.Prefix === p);
    expect(rules.every((r) => r.Status === 'Enabled')).toBe(true);
    expect(byPrefix(undefined)).toEqual([expect.objectContaining({ AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 }, ExpiredObjectDeleteMarker: true })]);
    expect(byPrefix('files/')).toEqual([expect.objectContaining({ NoncurrentVersionExpiration: { NoncurrentDays: 7 } })]);
    expect(byPrefix('files/')[0].ExpirationInDays).toBeUndefined(); // a file lives until it is deleted
    expect(byPrefix('workspaces/')).toEqual([expect.objectContaining({ ExpirationInDays: 30, NoncurrentVersionExpiration: { NoncurrentDays: 1 } })]);
  });

  it('takes both retentions from CDK context, and refuses values out of range', () => {
    const { template: t } = synth({ workspaceSnapshotDays: '10', deletedFileRetentionDays: 2 }, 'BlobContext');
    t.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: {
        Rules: Match.arrayWith([
          Match.objectLike({ Prefix: 'files/', NoncurrentVersionExpiration: { NoncurrentDays: 2 } }),
          Match.objectLike({ Prefix: 'workspaces/', ExpirationInDays: 10 }),
        ]),
      },
    });
    const from = (context: Record<string, unknown>) => () => stackPropsFromContext((k) => context[k]);
    expect(from({ workspaceSnapshotDays: '0' })).toThrow(/workspaceSnapshotDays: expected an integer from 1 to 3650/);
    expect(from({ deletedFileRetentionDays: '1.5' })).toThrow(/deletedFileRetentionDays/);
  });

  it('names the bucket in the functions that use it, and an output', () => {
    const fns = template.toJSON().Resources as Record<string, { Type: string; Properties: { Environment?: { Variables?: Record<string, unknown> } } }>;
    const env = (c: { node: { defaultChild?: unknown } }) => fns[stack.getLogicalId(c.node.defaultChild as never)].Properties.Environment?.Variables ?? {};
    const ref = { Ref: Object.keys(buckets)[0] };
    for (const fn of [stack.api.handler, stack.harness.function, stack.sandboxReaper.function]) expect(env(fn).CORRAL_BLOB_BUCKET, fn.node.path).toEqual(ref);
    for (const fn of [stack.api.streamHandler, stack.credentialProxy.function]) expect(env(fn).CORRAL_BLOB_BUCKET, fn.node.path).toBeUndefined();
    template.hasOutput('BlobBucketName', { Value: ref });
  });
});
