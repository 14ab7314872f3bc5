import { readFileSync } from 'node:fs';
import { App, Duration } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { CorralStack, type CorralStackProps } from '../../infra/lib/corral-stack.js';

/**
 * The wake queue's visibility against the harness step's timeout, on the synthesized template
 * (bundling skipped, as in stack.test.ts): at least 6 x the timeout, AWS's advice for a Lambda
 * event source, and the harness role may change a message's visibility (its heartbeat).
 */
const cdkContext = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')).context as Record<string, unknown>;

function synth(props: CorralStackProps = {}) {
  const app = new App({ context: { ...cdkContext, 'aws:cdk:bundling-stacks': [] } });
  const stack = new CorralStack(app, 'CorralVisibility', props);
  const resources = Template.fromStack(stack).toJSON().Resources as Record<string, { Type: string; Properties: Record<string, any> }>;
  const id = (c: { node: { defaultChild?: unknown } }) => stack.getLogicalId(c.node.defaultChild as never);
  return { stack, resources, queue: resources[id(stack.wakeQueue.queue)].Properties, harness: resources[id(stack.harness.function)].Properties, id };
}

// Each case synthesizes the stack: up to a minute or two on a loaded two-core machine.
describe('wake queue visibility', { timeout: 120_000 }, () => {
  it.each([
    ['the default 15-minute step', {}, 900],
    ['a 5-minute step', { harness: { timeout: Duration.minutes(5) } }, 300],
  ] as const)('is at least 6 x the harness timeout for %s', (_what, props, timeout) => {
    const { queue, harness } = synth(props as CorralStackProps);
    expect(harness.Timeout).toBe(timeout);
    expect(queue.VisibilityTimeout).toBeGreaterThanOrEqual(6 * harness.Timeout);
    expect(queue.VisibilityTimeout).toBeLessThanOrEqual(12 * 3600);
  });

  it('lets the harness role change the visibility of the wake queue’s messages (the heartbeat)', () => {
    const { stack, resources, id } = synth();
    const roleId = id(stack.harness.function.role as never);
    const queueArn = { 'Fn::GetAtt': [id(stack.wakeQueue.queue), 'Arn'] };
    const statements = Object.values(resources)
      .filter((r) => r.Type === 'AWS::IAM::Policy' && (r.Properties.Roles as Array<{ Ref: string }>).some((x) => x.Ref === roleId))
      .flatMap((r) => r.Properties.PolicyDocument.Statement as Array<{ Effect: string; Action: string | string[]; Resource: unknown }>);
    const grants = statements.filter(
      (s) => s.Effect === 'Allow' && [s.Action].flat().includes('sqs:ChangeMessageVisibility') && JSON.stringify(s.Resource) === JSON.stringify(queueArn),
    );
    expect(grants).toHaveLength(1);
  });
});
