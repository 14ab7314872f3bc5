import { readFileSync } from 'node:fs';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { stackPropsFromContext } from '../../infra/lib/context.js';
import { CorralStack } from '../../infra/lib/corral-stack.js';

/**
 * The OIDC issuers on AWS: the `OidcIssuers` stack parameter feeds `CORRAL_OIDC_ISSUERS` of both
 * API functions (and so of the stream tier, which runs with the API's environment); its default
 * comes from CDK context `oidcIssuers`, checked at synthesis.
 */
const cdkContext = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')).context as Record<string, unknown>;
const synth = (context: Record<string, unknown>, id: string) => {
  const app = new App({ context: { ...cdkContext, 'aws:cdk:bundling-stacks': [] } });
  const stack = new CorralStack(app, id, stackPropsFromContext((k) => context[k]).props);
  return { stack, template: Template.fromStack(stack).toJSON() };
};
const ISSUERS = [{ issuer: 'https://login.example.com/realms/acme', audiences: ['corral'], tenant: 'acme', roles: { 'corral-devs': 'developer' }, client_id: 'corral-cli' }];

describe('the OidcIssuers stack parameter', () => {
  // One synthesis (they take a while on a busy machine): with context, whose JSON becomes the default.
  let s: ReturnType<typeof synth>;
  beforeAll(() => {
    s = synth({ oidcIssuers: JSON.stringify(ISSUERS) }, 'OidcText');
  }, 240_000);

  it('is a String parameter referenced by both API functions, defaulting to context oidcIssuers', () => {
    const { stack, template } = s;
    expect(template.Parameters.OidcIssuers).toMatchObject({ Type: 'String' });
    expect(JSON.parse(template.Parameters.OidcIssuers.Default)).toEqual(ISSUERS);
    for (const fn of [stack.api.handler, stack.api.streamHandler]) {
      const id = stack.getLogicalId(fn.node.defaultChild as never);
      expect(template.Resources[id].Properties.Environment.Variables.CORRAL_OIDC_ISSUERS).toEqual({ Ref: 'OidcIssuers' });
    }
    // the stream tier runs the app with the API's environment
    expect(stack.api.environment.CORRAL_OIDC_ISSUERS).toBeDefined();
    // nothing else gets it but the deployment-fire function, which builds the API's services from the API's environment
    const holders = Object.entries(template.Resources as Record<string, { Type: string; Properties: { Environment?: { Variables?: Record<string, unknown> } } }>).filter(
      ([, r]) => r.Type === 'AWS::Lambda::Function' && r.Properties.Environment?.Variables?.CORRAL_OIDC_ISSUERS !== undefined,
    );
    expect(holders.map(([id]) => id).sort()).toEqual(
      [stack.api.handler, stack.api.streamHandler, stack.deployments.fireFunction].map((fn) => stack.getLogicalId(fn.node.defaultChild as never)).sort(),
    );
  });

  it('reads context as JSON text or a cdk.json array; none means an empty default (API keys only)', () => {
    const fromJson: Record<string, unknown> = { oidcIssuers: ISSUERS };
    expect(JSON.parse(stackPropsFromContext((k) => fromJson[k]).props.oidcIssuers!)).toEqual(ISSUERS);
    expect(stackPropsFromContext(() => undefined).props.oidcIssuers).toBeUndefined();
  });

  it('refuses invalid issuers at synthesis, naming the context key', () => {
    expect(() => synth({ oidcIssuers: JSON.stringify([{ ...ISSUERS[0], issuer: 'http://login.example.com' }]) }, 'OidcBad')).toThrow(/context oidcIssuers: .*CORRAL_OIDC_ISSUERS \(item 0.issuer\)/);
  });
});
