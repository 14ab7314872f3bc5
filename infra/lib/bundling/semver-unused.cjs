'use strict';
/**
 * Stands in for `semver` in the Lambda bundles (see infra/lib/bundling.ts). Its one user there is
 * aws-xray-sdk-core's patcher for the AWS SDK v2 (`captureAWS`), which requires it at load and
 * calls `semver.gte` only when a v2 SDK is patched. Corral instruments v3 clients
 * (`captureAWSv3Client`) and never patches v2, so the real module (about 29 KB minified) is dead
 * weight; a call would say so instead of misbehaving.
 */
function unused() {
  throw new Error('semver is not bundled: Corral does not patch the AWS SDK v2 (tracer.captureAWS)');
}
module.exports = { gte: unused };
