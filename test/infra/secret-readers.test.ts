import { beforeAll, describe, expect, it } from 'vitest';
import { assumedRoleArn, evaluate, roles, type AuthorizationRequest, type RoleInfo } from '../../infra/rehearsal/iam.js';
import { createContext, type CfnTemplate } from '../../infra/rehearsal/template.js';
import { DEFAULT_MODEL_KEY_PARAMETER } from '../../infra/lib/constructs/harness-step.js';
import { synthesizedTemplate } from '../rehearsal/synth.js';

const REGION = 'us-east-1';
const ACCOUNT = '123456789012';
/** A vault secret as the credential proxy names it at run time (`corral/vault/<tenant>/<vault>/<credential>`). */
const VAULT_SECRET = `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:corral/vault/tenant/vlt_1/cred_1-AbCdEf`;
const MODEL_KEY = `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter${DEFAULT_MODEL_KEY_PARAMETER}`;
/** A key that is not the template's: the AWS managed aws/ssm or aws/secretsmanager key, or an operator's own. */
const FOREIGN_KEY = `arn:aws:kms:${REGION}:${ACCOUNT}:key/0f1e2d3c-aaaa-bbbb-cccc-000000000000`;

/** The checks that would let a role read a vault secret or the model key. */
const VAULT_READS: Array<Pick<AuthorizationRequest, 'action' | 'resource' | 'context'>> = [
  { action: 'secretsmanager:GetSecretValue', resource: VAULT_SECRET },
  { action: 'kms:Decrypt', resource: FOREIGN_KEY, context: { 'kms:ViaService': `secretsmanager.${REGION}.amazonaws.com` } },
];
const MODEL_KEY_READS: Array<Pick<AuthorizationRequest, 'action' | 'resource' | 'context'>> = [
  { action: 'ssm:GetParameter', resource: MODEL_KEY },
  { action: 'ssm:GetParameters', resource: MODEL_KEY },
  { action: 'ssm:GetParameterHistory', resource: MODEL_KEY },
  { action: 'ssm:GetParametersByPath', resource: MODEL_KEY.replace(/\/[^/]+$/, '') },
  { action: 'kms:Decrypt', resource: FOREIGN_KEY, context: { 'kms:ViaService': `ssm.${REGION}.amazonaws.com` } },
];

/** The roles of the proxy: the credential proxy Lambda's and the proxy service's (task and execution). */
const isProxyRole = (logicalId: string) => /^(CredentialProxy|ProxyService)/.test(logicalId);

/** Which roles of the template IAM would let read a vault secret, and the model key (logical ids). */
function readers(template: CfnTemplate): { vault: string[]; modelKey: string[] } {
  const all = roles(createContext(template, { region: REGION, accountId: ACCOUNT }));
  const can = (r: RoleInfo, checks: typeof VAULT_READS) =>
    checks.some((c) => evaluate({ principalArn: assumedRoleArn(r.arn, 'session'), context: {}, ...c }, r.statements).allowed);
  return {
    vault: all.filter((r) => can(r, VAULT_READS)).map((r) => r.logicalId),
    modelKey: all.filter((r) => can(r, MODEL_KEY_READS)).map((r) => r.logicalId),
  };
}

/** A copy of the template with one more policy, of one statement, on the role whose id starts with `rolePrefix`. */
function withGrant(template: CfnTemplate, rolePrefix: string, statement: Record<string, unknown>): CfnTemplate {
  const copy = structuredClone(template);
  const role = Object.keys(copy.Resources).find((id) => id.startsWith(rolePrefix) && copy.Resources[id].Type === 'AWS::IAM::Role');
  if (!role) throw new Error(`no role ${rolePrefix}*`);
  copy.Resources.AddedPolicy = {
    Type: 'AWS::IAM::Policy',
    Properties: { PolicyName: 'added', Roles: [{ Ref: role }], PolicyDocument: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', ...statement }] } },
  };
  return copy;
}

/** The opt-out (`proxyService=none`, docs/EGRESS.md): the default deploys the proxy service. */
const WITHOUT_PROXY_SERVICE = { proxyService: 'none' };

/**
 * Issue 14: only the proxy holds credentials. On the synthesized template, IAM (as the rehearsal
 * evaluates it: every identity policy of every role, managed ones included) lets only the
 * credential proxy's and the proxy service's roles read a vault secret or the model key; the
 * harness, the API, the stream tier, the sandboxes (task and execution roles) and the reaper
 * cannot (the S3 prefix list lookup's provider neither). With `proxyService=none` the harness still
 * reads the model key (it calls the model itself): the one exception, asserted as such so that it
 * cannot spread.
 */
describe('who can read a vault secret or the model key', () => {
  let template: CfnTemplate;
  let withoutService: CfnTemplate;
  beforeAll(async () => {
    template = await synthesizedTemplate(); // the default deployment
    withoutService = await synthesizedTemplate(WITHOUT_PROXY_SERVICE);
  }, 240_000);

  it('only the proxy\'s roles can read vault secrets', () => {
    for (const t of [template, withoutService]) {
      const { vault } = readers(t);
      expect(vault.length).toBeGreaterThan(0); // the credential proxy can: the check is not vacuous
      expect(vault.filter((id) => !isProxyRole(id))).toEqual([]);
    }
  });

  it('by default, only the proxy service\'s task role can read the model key; the harness is pointed at it', () => {
    const { modelKey } = readers(template);
    expect(modelKey).toEqual([expect.stringMatching(/^ProxyServiceTaskRole/)]);
    const harness = Object.values(template.Resources).find((r) => r.Type === 'AWS::Lambda::Function' && JSON.stringify(r.Properties).includes('corral-harness'));
    const env = (harness!.Properties!.Environment as { Variables: Record<string, unknown> }).Variables;
    expect(env.CORRAL_MODEL_API_KEY_PARAMETER).toBeUndefined();
    expect(JSON.stringify(env.CORRAL_MODEL_PROXY_URL)).toMatch(/ProxyServiceLoadBalancer.*:8081\/model/);
  });

  it('with proxyService=none, the harness alone reads the model key', () => {
    expect(readers(withoutService).modelKey).toEqual([expect.stringMatching(/^HarnessStepFunctionServiceRole/)]);
  });

  it('notices a grant added to any other role', () => {
    for (const role of ['HarnessStep', 'ApiHandler', 'ApiStreamHandler', 'SandboxReaper', 'SandboxesTaskRole', 'SandboxesExecutionRole', 'ProxyServiceExecutionRole', 'AWS679f53fac002430cb0da5b7982bd2287']) {
      expect(readers(withGrant(template, role, { Action: 'secretsmanager:Get*', Resource: '*' })).vault.some((id) => id.startsWith(role))).toBe(true);
      expect(readers(withGrant(template, role, { Action: 'ssm:GetParameter', Resource: `arn:aws:ssm:*:*:parameter/corral/*` })).modelKey.some((id) => id.startsWith(role))).toBe(true);
      expect(readers(withGrant(template, role, { Action: 'kms:*', Resource: '*' })).modelKey.some((id) => id.startsWith(role))).toBe(true);
    }
  });

  it('only the webhook delivery function can read webhook signing secrets; the API may write them', () => {
    const all = roles(createContext(template, { region: REGION, accountId: ACCOUNT }));
    const secret = `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:corral/webhook/whep_1-AbCdEf`;
    const may = (r: RoleInfo, action: string) => evaluate({ principalArn: assumedRoleArn(r.arn, 'session'), context: {}, action, resource: secret }, r.statements).allowed;
    expect(all.filter((r) => may(r, 'secretsmanager:GetSecretValue')).map((r) => r.logicalId)).toEqual([expect.stringMatching(/^WebhooksFunctionServiceRole/)]);
    expect(all.filter((r) => may(r, 'secretsmanager:PutSecretValue')).map((r) => r.logicalId).filter((id) => !id.startsWith('ApiHandler'))).toEqual([]);
    expect(all.some((r) => r.logicalId.startsWith('ApiHandler') && may(r, 'secretsmanager:CreateSecret'))).toBe(true);
    // The deliverer cannot read vault secrets.
    expect(readers(template).vault.filter((id) => id.startsWith('Webhooks'))).toEqual([]);
  });
});
