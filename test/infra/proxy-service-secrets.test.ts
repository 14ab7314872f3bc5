import { beforeAll, describe, expect, it } from 'vitest';
import { assumedRoleArn, evaluate, roles } from '../../infra/rehearsal/iam.js';
import { secretArnFor } from '../../infra/rehearsal/aws-requests.js';
import { createContext, ecsTaskDefinitions, type CfnTemplate, type ResolveContext } from '../../infra/rehearsal/template.js';
import { synthesizedTemplate } from '../rehearsal/synth.js';

/**
 * Who may read a secret, with the proxy service (the default deployment), on the synthesized
 * template (the rehearsal's cached synthesis): the egress CA's secret only by the proxy service's
 * task role; vault secrets only by it (read only) and the credential proxy function's role; the
 * CA's key nowhere in the template (the service makes it on first use), and every other role,
 * the sandbox's and the harness's among them, with no Secrets Manager permission at all.
 */
type Statement = { Effect: string; Action: string | string[]; Resource?: unknown; Sid?: string };
type Resource = { Type: string; Properties: Record<string, any> };
const asArray = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

describe('the proxy service\'s secrets in the template', () => {
  let resources: Record<string, Resource>;
  let byRole: Map<string, Statement[]>;
  let text: string;
  let ctx: ResolveContext;

  beforeAll(async () => {
    const template: CfnTemplate = await synthesizedTemplate(); // the default deployment has the proxy service
    resources = template.Resources as Record<string, Resource>;
    text = JSON.stringify(template);
    ctx = createContext(template);
    byRole = new Map();
    for (const [id, r] of Object.entries(resources)) {
      if (r.Type === 'AWS::IAM::Role') byRole.set(id, asArray(r.Properties.Policies).flatMap((p: any) => p.PolicyDocument.Statement));
    }
    for (const r of Object.values(resources)) {
      if (r.Type !== 'AWS::IAM::Policy') continue;
      for (const role of asArray(r.Properties.Roles as Array<{ Ref: string }>)) byRole.get(role.Ref)?.push(...r.Properties.PolicyDocument.Statement);
    }
  }, 120_000);

  /** The task role of the task definition whose container is named `name`. */
  const taskRoleOf = (name: string) => {
    const def = Object.values(resources).find((r) => r.Type === 'AWS::ECS::TaskDefinition' && r.Properties.ContainerDefinitions.some((c: any) => c.Name === name));
    return def!.Properties.TaskRoleArn['Fn::GetAtt'][0] as string;
  };
  const credentialProxyRole = () => {
    const [, fn] = Object.entries(resources).find(([id, r]) => r.Type === 'AWS::Lambda::Function' && id.startsWith('CredentialProxy'))!;
    return fn.Properties.Role['Fn::GetAtt'][0] as string;
  };
  /** Roles with an Allow statement giving `action` (or a wildcard covering it) on a resource matching `resource`. */
  const rolesAllowed = (action: string, resource: RegExp) =>
    [...byRole.entries()]
      .filter(([, st]) => st.some((s) => s.Effect === 'Allow' && asArray(s.Action).some((a) => a === action || a === '*' || a === 'secretsmanager:*' || a === 'secretsmanager:Get*') && (s.Resource === '*' || resource.test(JSON.stringify(s.Resource)))))
      .map(([id]) => id)
      .sort();

  it('only the proxy service\'s task role may read (or make) the egress CA\'s secret', () => {
    const proxyRole = taskRoleOf('proxy');
    expect(rolesAllowed('secretsmanager:GetSecretValue', /secret:corral\/egress-ca/)).toEqual([proxyRole]);
    expect(rolesAllowed('secretsmanager:CreateSecret', /secret:corral\/egress-ca/)).toEqual([proxyRole]);
    const ca = byRole.get(proxyRole)!.find((s) => s.Sid === 'EgressCa')!;
    expect(JSON.stringify(ca.Resource)).toContain(':secret:corral/egress-ca-??????');
    // The service is told which secret; the key itself is nowhere in the template.
    const proxyDef = Object.values(resources).find((r) => r.Type === 'AWS::ECS::TaskDefinition' && r.Properties.ContainerDefinitions.some((c: any) => c.Name === 'proxy'))!;
    const env = proxyDef.Properties.ContainerDefinitions[0].Environment as Array<{ Name: string; Value: unknown }>;
    expect(env).toContainEqual({ Name: 'CORRAL_PROXY_EGRESS_CA_SECRET', Value: 'corral/egress-ca' });
    expect(text).not.toMatch(/PRIVATE KEY/);
    expect(Object.values(resources).filter((r) => r.Type === 'AWS::SecretsManager::Secret')).toEqual([]);
  });

  it('vault secrets are read by the proxy service and the credential proxy function, and by no other role', () => {
    const proxyRole = taskRoleOf('proxy');
    expect(rolesAllowed('secretsmanager:GetSecretValue', /secret:corral\/vault\//)).toEqual([proxyRole, credentialProxyRole()].sort());
    // The proxy service only reads vault secrets: it never writes or deletes them.
    const onVault = byRole.get(proxyRole)!.filter((s) => /secret:corral\/vault\//.test(JSON.stringify(s.Resource)));
    // (two statements: environment_variable credentials' and the git channel's tokens)
    expect([...new Set(onVault.flatMap((s) => asArray(s.Action)))]).toEqual(['secretsmanager:GetSecretValue']);
    // Every role with any Secrets Manager permission is one of the two, or one that touches only
    // webhook signing secrets (the API writes them, the delivery function reads them): not the sandbox's, not the harness's.
    const onSecrets = (st: any[]) => st.filter((s) => asArray(s.Action).some((a) => /^secretsmanager:|^\*$/i.test(a)));
    const withSecrets = [...byRole.entries()].filter(([, st]) => onSecrets(st).length > 0).map(([id]) => id);
    const webhookOnly = withSecrets.filter((id) => onSecrets(byRole.get(id)!).every((s) => /:secret:corral\/webhook\//.test(JSON.stringify(s.Resource))));
    expect(webhookOnly.map((id) => id.replace(/[0-9A-F]{8}$/, '')).sort()).toEqual(['ApiHandlerServiceRole', 'WebhooksFunctionServiceRole']);
    expect(withSecrets.filter((id) => !webhookOnly.includes(id)).sort()).toEqual([proxyRole, credentialProxyRole()].sort());
    const sandboxRole = taskRoleOf('agent');
    expect(withSecrets).not.toContain(sandboxRole);
  });

  it('as the rehearsal\'s IAM evaluates the roles on real secret ARNs: only the proxy service reads or makes the CA; vault secrets only it and the credential proxy read', () => {
    const ca = secretArnFor('corral/egress-ca', ctx.env.region, ctx.env.accountId, ctx.env.partition);
    const vault = secretArnFor('corral/vault/t1/vlt_1/vcrd_1', ctx.env.region, ctx.env.accountId, ctx.env.partition);
    const proxyRole = ecsTaskDefinitions(ctx).find((d) => d.containers.some((c) => c.name === 'proxy'))!.taskRoleLogicalId!;
    const allowed = (action: string, resource: string, context: Record<string, string> = {}) =>
      roles(ctx)
        .filter((r) => evaluate({ principalArn: assumedRoleArn(r.arn, 'task'), action, resource, context }, r.statements).decision === 'allow')
        .map((r) => r.logicalId)
        .sort();
    expect(allowed('secretsmanager:GetSecretValue', ca)).toEqual([proxyRole]);
    expect(allowed('secretsmanager:CreateSecret', ca, { 'secretsmanager:Name': 'corral/egress-ca' })).toEqual([proxyRole]);
    expect(allowed('secretsmanager:PutSecretValue', ca)).toEqual([proxyRole]);
    expect(allowed('secretsmanager:GetSecretValue', vault)).toEqual([proxyRole, credentialProxyRole()].sort());
    // The proxy service writes no vault secret, and reads no other secret.
    expect(allowed('secretsmanager:PutSecretValue', vault)).toEqual([credentialProxyRole()]);
    expect(allowed('secretsmanager:GetSecretValue', secretArnFor('corral/other', ctx.env.region, ctx.env.accountId, ctx.env.partition))).toEqual([]);
  });
});
