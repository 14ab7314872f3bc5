import { readFileSync } from 'node:fs';
import { App, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { stackPropsFromContext } from '../../infra/lib/context.js';
import { CorralStack } from '../../infra/lib/corral-stack.js';
import { PROXY_HARNESS_PORT, PROXY_SANDBOX_PORT } from '../../lambdas/proxy-service/env.js';
import type { CfnTemplate } from '../../infra/rehearsal/template.js';
import { deployedShape } from '../../scripts/capacity/shape.js';

/**
 * The proxy service's deployed shape (the default deployment: no context), on one synthesis (bundling skipped):
 * which security group may reach which port — a sandbox reaches the proxy's sandbox port and
 * what a task needs to start, nothing else; only the harness reaches the harness port — the
 * service itself, its role, the environment the sandbox provider gets, and cdk-nag.
 */
const cdkContext = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')).context as Record<string, unknown>;
/** No context: `cdk deploy` as is deploys the proxy service, the S3 prefix list looked up at deploy time. */
const CONTEXT: Record<string, unknown> = {};

type Resource = { Type: string; Properties: Record<string, any> };
interface Rule {
  group: string;
  direction: 'in' | 'out';
  protocol?: string;
  from?: number;
  to?: number;
  peer: string;
}

/** Every rule of every security group, inline or standalone, with its peer as a logical id, CIDR or prefix list. */
function rulesOf(resources: Record<string, Resource>): Rule[] {
  const ref = (v: any): string => (typeof v === 'string' ? v : v?.Ref ? v.Ref : v?.['Fn::GetAtt'] ? v['Fn::GetAtt'][0] : JSON.stringify(v));
  const peerOf = (p: any, direction: 'in' | 'out') =>
    p.CidrIp ?? p.CidrIpv6 ?? (direction === 'in' ? (p.SourcePrefixListId ?? (p.SourceSecurityGroupId ? ref(p.SourceSecurityGroupId) : '?')) : (p.DestinationPrefixListId !== undefined ? ref(p.DestinationPrefixListId) : (p.DestinationSecurityGroupId ? ref(p.DestinationSecurityGroupId) : '?')));
  const out: Rule[] = [];
  for (const [id, r] of Object.entries(resources)) {
    const p = r.Properties ?? {};
    const rule = (group: string, direction: 'in' | 'out', x: any): Rule => ({ group, direction, protocol: x.IpProtocol, from: x.FromPort, to: x.ToPort, peer: peerOf(x, direction) });
    if (r.Type === 'AWS::EC2::SecurityGroup') {
      for (const x of p.SecurityGroupIngress ?? []) out.push(rule(id, 'in', x));
      for (const x of p.SecurityGroupEgress ?? []) out.push(rule(id, 'out', x));
    } else if (r.Type === 'AWS::EC2::SecurityGroupIngress') out.push(rule(ref(p.GroupId), 'in', p));
    else if (r.Type === 'AWS::EC2::SecurityGroupEgress') out.push(rule(ref(p.GroupId), 'out', p));
  }
  return out;
}

describe('the proxy service (the default; proxyService=fargate)', () => {
  let resources: Record<string, Resource>;
  let template: Template;
  let rules: Rule[];
  const acknowledged: Array<{ id: string; path: string; reason: string }> = [];
  let found: Array<{ id: string; path: string }> = [];
  const idOf = (prefix: string, type: string) => {
    const ids = Object.keys(resources).filter((id) => id.startsWith(prefix) && resources[id].Type === type);
    expect(ids, `${prefix} ${type}`).toHaveLength(1);
    return ids[0];
  };

  beforeAll(() => {
    // Acknowledgments are recorded instead of applied, so every cdk-nag finding shows.
    const spy = vi.spyOn(Validations.prototype, 'acknowledge').mockImplementation(function (this: Validations, ...rules) {
      const scope = (this as unknown as { scope: IConstruct }).scope;
      for (const r of rules) if (r.id.startsWith('AwsSolutions-')) acknowledged.push({ id: r.id, path: scope.node.path, reason: r.reason });
    });
    try {
      const app = new App({ context: { ...cdkContext, 'aws:cdk:bundling-stacks': [] } });
      const stack = new CorralStack(app, 'ProxyTest', stackPropsFromContext((k) => CONTEXT[k]).props);
      template = Template.fromStack(stack);
      resources = template.toJSON().Resources;
      found = new AwsSolutionsChecks(app).validateScope(app).violations.flatMap((v) => v.violatingResources.map((r) => ({ id: v.ruleName, path: r.constructPath ?? '' })));
    } finally {
      spy.mockRestore();
    }
    rules = rulesOf(resources);
  }, 120_000);

  it('lets a sandbox reach the proxy service\'s sandbox port and what a Fargate task needs to start, and nothing else', () => {
    const sandbox = idOf('SandboxesSecurityGroup', 'AWS::EC2::SecurityGroup');
    const nlb = idOf('ProxyServiceLoadBalancerSecurityGroup', 'AWS::EC2::SecurityGroup');
    const endpoints = idOf('NetworkEndpointSecurityGroup', 'AWS::EC2::SecurityGroup');
    const s3PrefixList = idOf('ProxyServiceS3PrefixList', 'Custom::AWS');
    const out = rules.filter((r) => r.group === sandbox && r.direction === 'out' && r.peer !== '255.255.255.255/32').map(({ protocol, from, to, peer }) => ({ protocol, from, to, peer }));
    expect(out.sort((a, b) => a.peer.localeCompare(b.peer))).toEqual(
      [
        { protocol: 'tcp', from: PROXY_SANDBOX_PORT, to: PROXY_SANDBOX_PORT, peer: nlb },
        { protocol: 'tcp', from: 443, to: 443, peer: endpoints },
        { protocol: 'tcp', from: 443, to: 443, peer: s3PrefixList },
      ].sort((a, b) => a.peer.localeCompare(b.peer)),
    );
    // The group lists an egress rule of its own that matches nothing: without one, EC2 would give
    // it the default allow-all rule (the rules above are separate resources).
    for (const group of [sandbox, nlb]) {
      expect(resources[group].Properties.SecurityGroupEgress, group).toEqual([{ IpProtocol: 'icmp', CidrIp: '255.255.255.255/32', FromPort: 252, ToPort: 86, Description: 'Disallow all traffic' }]);
    }
    // the interface endpoints are on (ECR, ECR's registry, CloudWatch Logs) and admit 443 from the VPC only
    expect(Object.values(resources).filter((r) => r.Type === 'AWS::EC2::VPCEndpoint' && r.Properties.VpcEndpointType === 'Interface')).toHaveLength(3);
    expect(rules.filter((r) => r.group === endpoints && r.direction === 'in').every((r) => r.from === 443 && /^10\.\d+\.0\.0\/16$/.test(r.peer))).toBe(true);
  });

  it('lets sandboxes reach only the sandbox port of the load balancer and the harness only the harness port; the tasks only from the load balancer', () => {
    const sandbox = idOf('SandboxesSecurityGroup', 'AWS::EC2::SecurityGroup');
    const harness = idOf('HarnessStepSecurityGroup', 'AWS::EC2::SecurityGroup');
    const nlb = idOf('ProxyServiceLoadBalancerSecurityGroup', 'AWS::EC2::SecurityGroup');
    const tasks = idOf('ProxyServiceSecurityGroup', 'AWS::EC2::SecurityGroup');
    const into = (group: string) => rules.filter((r) => r.group === group && r.direction === 'in').map(({ from, to, peer }) => `${peer}:${from}-${to}`).sort();
    expect(into(nlb)).toEqual([`${harness}:${PROXY_HARNESS_PORT}-${PROXY_HARNESS_PORT}`, `${sandbox}:${PROXY_SANDBOX_PORT}-${PROXY_SANDBOX_PORT}`].sort());
    expect(into(tasks)).toEqual([`${nlb}:${PROXY_HARNESS_PORT}-${PROXY_HARNESS_PORT}`, `${nlb}:${PROXY_SANDBOX_PORT}-${PROXY_SANDBOX_PORT}`].sort());
    const nlbOut = rules.filter((r) => r.group === nlb && r.direction === 'out' && r.peer !== '255.255.255.255/32').map(({ from, peer }) => `${peer}:${from}`).sort();
    expect(nlbOut).toEqual([`${tasks}:${PROXY_HARNESS_PORT}`, `${tasks}:${PROXY_SANDBOX_PORT}`].sort());
    // The load balancer wears that group and listens on both ports; the tasks go out to the internet.
    const lb = idOf('ProxyServiceLoadBalancer', 'AWS::ElasticLoadBalancingV2::LoadBalancer');
    expect(resources[lb].Properties).toMatchObject({ Type: 'network', Scheme: 'internal', SecurityGroups: [{ 'Fn::GetAtt': [nlb, 'GroupId'] }] });
    const ports = Object.values(resources).filter((r) => r.Type === 'AWS::ElasticLoadBalancingV2::Listener' && JSON.stringify(r.Properties.LoadBalancerArn).includes(lb)).map((r) => r.Properties.Port);
    expect(ports.sort()).toEqual([PROXY_SANDBOX_PORT, PROXY_HARNESS_PORT].sort());
    expect(resources[tasks].Properties.SecurityGroupEgress).toEqual([expect.objectContaining({ CidrIp: '0.0.0.0/0' })]);
  });

  it('runs the service on arm64 in the private subnets without public IPs, 2 to 10 tasks, with a role that reads egress grants, git channels, session heads and vault secrets, and writes nothing', () => {
    const service = idOf('ProxyService', 'AWS::ECS::Service');
    expect(resources[service].Properties).toMatchObject({ DesiredCount: 2, LaunchType: 'FARGATE', NetworkConfiguration: { AwsvpcConfiguration: { AssignPublicIp: 'DISABLED' } } });
    const target = Object.values(resources).find((r) => r.Type === 'AWS::ApplicationAutoScaling::ScalableTarget' && JSON.stringify(r.Properties.ResourceId).includes(service));
    expect(target?.Properties).toMatchObject({ MinCapacity: 2, MaxCapacity: 10 });
    const def = idOf('ProxyServiceTask', 'AWS::ECS::TaskDefinition');
    expect(resources[def].Properties).toMatchObject({ Cpu: '512', Memory: '1024', RuntimePlatform: { CpuArchitecture: 'ARM64' } });
    const env = Object.fromEntries((resources[def].Properties.ContainerDefinitions[0].Environment as Array<{ Name: string; Value: unknown }>).map((e) => [e.Name, e.Value]));
    expect(Object.keys(env)).not.toContain('CORRAL_PROXY_ALLOW_PRIVATE_ADDRESSES');
    const role = idOf('ProxyServiceTaskRole', 'AWS::IAM::Role');
    const statements = Object.values(resources)
      .filter((r) => r.Type === 'AWS::IAM::Policy' && (r.Properties.Roles as Array<{ Ref: string }>).some((x) => x.Ref === role))
      .flatMap((r) => r.Properties.PolicyDocument.Statement);
    expect(statements).toEqual([
      expect.objectContaining({ Action: 'dynamodb:GetItem', Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['egress#*'] } } }),
      // environment_variable credentials (test/infra/proxy-service-secrets.test.ts): the CA, vault secrets read only, the session's records read only.
      expect.objectContaining({ Sid: 'EgressCa', Action: ['secretsmanager:CreateSecret', 'secretsmanager:GetSecretValue', 'secretsmanager:PutSecretValue', 'secretsmanager:TagResource'] }),
      expect.objectContaining({ Sid: 'VaultSecretsRead', Action: 'secretsmanager:GetSecretValue' }),
      expect.objectContaining({ Sid: 'SessionRecordsRead', Action: ['dynamodb:GetItem', 'dynamodb:Query'] }),
      // The model key, for the harness's model calls (it alone reads it: test/infra/secret-readers.test.ts).
      expect.objectContaining({ Sid: 'ModelKey', Action: 'ssm:GetParameter', Resource: { 'Fn::Join': ['', expect.arrayContaining([':parameter/corral/anthropic-api-key'])] } }),
      // The git channel: the channels and the session heads read (the tokens through VaultSecretsRead), nothing written.
      expect.objectContaining({ Sid: 'GitChannelsAndSessions', Action: 'dynamodb:GetItem', Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['gitchan#*', 'session#*'] } } }),
    ]);
    expect(env.CORRAL_MODEL_API_KEY_PARAMETER).toBe('/corral/anthropic-api-key');
  });

  it('gives the credential proxy function the git channel\'s URL (the service\'s sandbox port, /git) and writes to the channels\' partitions only', () => {
    const lb = idOf('ProxyServiceLoadBalancer', 'AWS::ElasticLoadBalancingV2::LoadBalancer');
    const fn = Object.keys(resources).find((id) => id.startsWith('CredentialProxyFunction') && resources[id].Type === 'AWS::Lambda::Function')!;
    expect(resources[fn].Properties.Environment.Variables.CORRAL_GIT_PROXY_URL).toEqual({ 'Fn::Join': ['', ['http://', { 'Fn::GetAtt': [lb, 'DNSName'] }, `:${PROXY_SANDBOX_PORT}/git`]] });
    const role = resources[fn].Properties.Role['Fn::GetAtt'][0];
    const statements = Object.values(resources)
      .filter((r) => r.Type === 'AWS::IAM::Policy' && (r.Properties.Roles as Array<{ Ref: string }>).some((x) => x.Ref === role))
      .flatMap((r) => r.Properties.PolicyDocument.Statement as Array<{ Action: string | string[]; Condition?: unknown; Sid?: string }>);
    const writes = statements.filter((st) => [st.Action].flat().some((a) => /^dynamodb:(Put|Delete|Update|BatchWrite)/.test(a)));
    expect(writes).toEqual([expect.objectContaining({ Sid: 'GitChannels', Action: ['dynamodb:DeleteItem', 'dynamodb:PutItem'], Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['gitchan#*'] } } })]);
  });

  it('is what the capacity model reads for its fixed cost: task size, task bounds, one NLB', () => {
    expect(deployedShape(template.toJSON() as CfnTemplate).proxyService).toEqual({ vcpu: 0.5, memoryGb: 1, arch: 'arm64', minTasks: 2, maxTasks: 10, loadBalancers: 1 });
  });

  it('tells the sandbox provider (the harness, the API) where sandboxes reach the proxy', () => {
    const lb = idOf('ProxyServiceLoadBalancer', 'AWS::ElasticLoadBalancingV2::LoadBalancer');
    const address = { 'Fn::Join': ['', [{ 'Fn::GetAtt': [lb, 'DNSName'] }, `:${PROXY_SANDBOX_PORT}`]] };
    for (const prefix of ['HarnessStepFunction', 'ApiHandler']) {
      const fn = Object.keys(resources).find((id) => id.startsWith(prefix) && resources[id].Type === 'AWS::Lambda::Function')!;
      expect(resources[fn].Properties.Environment.Variables.CORRAL_PROXY_SERVICE_ADDRESS, prefix).toEqual(address);
    }
  });

  it('passes the cdk-nag AwsSolutions checks: every finding acknowledged with a reason, no acknowledgment of the service stale', () => {
    const covers = (a: { id: string; path: string }, f: { id: string; path: string }) => f.id === a.id && (f.path === a.path || f.path.startsWith(`${a.path}/`));
    expect(found.filter((f) => !acknowledged.some((a) => covers(a, f)))).toEqual([]);
    const mine = acknowledged.filter((a) => a.path.includes('/ProxyService'));
    expect(mine.length).toBeGreaterThan(0);
    expect(mine.filter((a) => !found.some((f) => covers(a, f)))).toEqual([]);
  });

  it('looks the region\'s S3 prefix list up at deploy time, with a role that may make that one read-only call', () => {
    const lookup = idOf('ProxyServiceS3PrefixList', 'Custom::AWS');
    expect(resources[lookup].Properties.Update).toEqual(resources[lookup].Properties.Create);
    // The call is a Fn::Join (the region is a token): joined with a region, it is the SDK call.
    const [sep, parts] = resources[lookup].Properties.Create['Fn::Join'] as [string, unknown[]];
    const joined = parts.map((p) => (typeof p === 'string' ? p : JSON.stringify(p) === '{"Ref":"AWS::Region"}' ? 'eu-west-1' : '?')).join(sep);
    expect(JSON.parse(joined)).toMatchObject({
      service: 'EC2',
      action: 'describeManagedPrefixLists',
      parameters: { Filters: [{ Name: 'prefix-list-name', Values: ['com.amazonaws.eu-west-1.s3'] }] },
      outputPaths: ['PrefixLists.0.PrefixListId'],
    });
    const policies = Object.values(resources).filter((r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties.PolicyName).includes('S3PrefixList'));
    expect(policies.map((p) => p.Properties.PolicyDocument.Statement)).toEqual([[{ Action: 'ec2:DescribeManagedPrefixLists', Effect: 'Allow', Resource: '*' }]]);
  });

  it('refuses incomplete or contradictory context', () => {
    const props = (c: Record<string, unknown>) => () => stackPropsFromContext((k) => c[k]);
    expect(props({})().props.proxyService).toEqual({ s3PrefixListId: undefined, minTasks: undefined, maxTasks: undefined });
    expect(props({ s3PrefixListId: 'pl-6da54004' })().props.proxyService?.s3PrefixListId).toBe('pl-6da54004');
    expect(props({ s3PrefixListId: 'sg-6da54004' })).toThrow(/managed prefix list id/);
    expect(props({ proxyService: 'none' })().props.proxyService).toBeUndefined();
    expect(props({ proxyService: 'yes', s3PrefixListId: 'pl-6da54004' })).toThrow(/none or fargate/);
    expect(props({ vpcInterfaceEndpoints: 'false' })).toThrow(/needs them/);
    expect(props({ proxyService: 'none', s3PrefixListId: 'pl-6da54004' })).toThrow(/not with proxyService=none/);
    expect(props({ proxyService: 'none', proxyServiceMinTasks: '3' })).toThrow(/not with proxyService=none/);
    expect(props({})().props.network?.interfaceEndpoints).toBe(true);
    // A user VPC: the proxy service (default or asked for) is refused with what to do instead.
    const vpc = { vpcId: 'vpc-1', privateSubnetIds: 'subnet-1,subnet-2', availabilityZones: 'us-east-1a,us-east-1b' };
    expect(props(vpc)).toThrow(/proxy service \(the default\) needs a VPC the stack creates.*leave out vpcId, or set proxyService=none/);
    expect(props({ ...vpc, proxyService: 'fargate' })).toThrow(/leave out vpcId, or set proxyService=none/);
    expect(props({ ...vpc, proxyService: 'none' })().props.network?.existingVpc?.vpcId).toBe('vpc-1');
  });
});
