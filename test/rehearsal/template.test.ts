import { beforeAll, describe, expect, it } from 'vitest';
import {
  createContext,
  DefaultPhysicalIds,
  dynamoTables,
  ecsServices,
  ecsTaskDefinitions,
  eventSourceMappings,
  functions,
  loadBalancers,
  resolve,
  resourceExists,
  restApi,
  securityGroups,
  sqsQueues,
  targetGroups,
  TemplateError,
  vpcLinks,
  type CfnTemplate,
} from '../../infra/rehearsal/template.js';
import { synthesizedTemplate } from './synth.js';

/** A small template with one resource of each kind the resolver has to name. */
const small: CfnTemplate = {
  Parameters: {
    Stage: { Type: 'String', Default: 'dev' },
    Zones: { Type: 'CommaDelimitedList', Default: 'a,b' },
    Bootstrap: { Type: 'AWS::SSM::Parameter::Value<String>', Default: '/cdk-bootstrap/version' },
  },
  Mappings: { Sizes: { dev: { Memory: 256 } } },
  Conditions: {
    IsProd: { 'Fn::Equals': [{ Ref: 'Stage' }, 'prod'] },
    NotProd: { 'Fn::Not': [{ Condition: 'IsProd' }] },
    InUsEast1: { 'Fn::Equals': [{ Ref: 'AWS::Region' }, 'us-east-1'] },
    Both: { 'Fn::And': [{ Condition: 'NotProd' }, { Condition: 'InUsEast1' }] },
    Either: { 'Fn::Or': [{ Condition: 'IsProd' }, { 'Fn::Equals': ['x', 'y'] }] },
  },
  Resources: {
    Table: { Type: 'AWS::DynamoDB::Table', Properties: { KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }] } },
    NamedTable: { Type: 'AWS::DynamoDB::Table', Properties: { TableName: { 'Fn::Sub': 'orders-${Stage}' }, KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }] } },
    Queue: { Type: 'AWS::SQS::Queue', Properties: { FifoQueue: true } },
    PlainQueue: { Type: 'AWS::SQS::Queue' },
    Role: { Type: 'AWS::IAM::Role', Properties: { Path: '/service/' } },
    TaskDef: { Type: 'AWS::ECS::TaskDefinition', Properties: { Family: 'fam' } },
    Group: { Type: 'AWS::EC2::SecurityGroup', Properties: { GroupDescription: 'g' } },
    Logs: { Type: 'AWS::Logs::LogGroup', Properties: { LogGroupName: '/corral/x' } },
    Topic: { Type: 'AWS::SNS::Topic' },
    Api: { Type: 'AWS::ApiGateway::RestApi' },
    ProdOnly: { Type: 'AWS::SNS::Topic', Condition: 'IsProd' },
    Fn: {
      Type: 'AWS::Lambda::Function',
      Properties: { Handler: 'index.handler', Runtime: 'nodejs22.x', Role: { 'Fn::GetAtt': ['Role', 'Arn'] } },
      Metadata: { 'aws:asset:path': 'asset.abc' },
    },
  },
};

describe('resolve: intrinsic functions', () => {
  const ctx = createContext(small, { accountId: '111122223333', region: 'eu-west-1', stackName: 'S' });
  const r = (v: unknown) => resolve(v, ctx, 'Test');

  it('answers every pseudo parameter', () => {
    expect(r({ Ref: 'AWS::AccountId' })).toBe('111122223333');
    expect(r({ Ref: 'AWS::Region' })).toBe('eu-west-1');
    expect(r({ Ref: 'AWS::Partition' })).toBe('aws');
    expect(r({ Ref: 'AWS::URLSuffix' })).toBe('amazonaws.com');
    expect(r({ Ref: 'AWS::StackName' })).toBe('S');
    expect(r({ Ref: 'AWS::StackId' })).toMatch(/^arn:aws:cloudformation:eu-west-1:111122223333:stack\/S\/[0-9a-f]{8}-[0-9a-f]{4}-/);
    expect(createContext(small, { region: 'cn-north-1' }).env).toMatchObject({ partition: 'aws-cn', urlSuffix: 'amazonaws.com.cn' });
  });

  it('drops a property or list element that is AWS::NoValue', () => {
    expect(r({ a: 1, b: { Ref: 'AWS::NoValue' } })).toEqual({ a: 1 });
    expect(r(['x', { Ref: 'AWS::NoValue' }, 'y'])).toEqual(['x', 'y']);
    expect(r({ a: { 'Fn::If': ['IsProd', 'p', { Ref: 'AWS::NoValue' }] } })).toEqual({});
  });

  it('joins, selects and splits', () => {
    expect(r({ 'Fn::Join': ['-', ['a', { Ref: 'AWS::Region' }, 3]] })).toBe('a-eu-west-1-3');
    expect(r({ 'Fn::Select': ['1', { 'Fn::Split': [',', 'x,y,z'] }] })).toBe('y');
    expect(r({ 'Fn::Select': [1, { 'Fn::GetAZs': '' }] })).toBe('eu-west-1b');
    expect(() => r({ 'Fn::Select': [5, ['a']] })).toThrow(/out of range/);
  });

  it('substitutes variables, pseudo parameters, Refs, attributes and ${!literals}', () => {
    expect(r({ 'Fn::Sub': 'arn:${AWS::Partition}:x:${AWS::Region}:${AWS::AccountId}:${Stage}' })).toBe('arn:aws:x:eu-west-1:111122223333:dev');
    expect(r({ 'Fn::Sub': ['${A}/${B}', { A: 'one', B: { Ref: 'AWS::Region' } }] })).toBe('one/eu-west-1');
    expect(r({ 'Fn::Sub': '${NamedTable} ${NamedTable.Arn}' })).toBe('orders-dev arn:aws:dynamodb:eu-west-1:111122223333:table/orders-dev');
    expect(r({ 'Fn::Sub': '${!Literal} and ${!AWS::Region}' })).toBe('${Literal} and ${AWS::Region}');
    expect(() => r({ 'Fn::Sub': '${Nope}' })).toThrow(/Nope/);
  });

  it('reads parameters: defaults, given values, lists; SSM-typed ones must be given', () => {
    expect(r({ Ref: 'Stage' })).toBe('dev');
    expect(resolve({ Ref: 'Stage' }, createContext(small, { parameters: { Stage: 'prod' } }))).toBe('prod');
    expect(r({ Ref: 'Zones' })).toEqual(['a', 'b']);
    expect(() => r({ Ref: 'Bootstrap' })).toThrow(/read from SSM/);
    expect(resolve({ Ref: 'Bootstrap' }, createContext(small, { parameters: { Bootstrap: '21' } }))).toBe('21');
    expect(r({ 'Fn::FindInMap': ['Sizes', { Ref: 'Stage' }, 'Memory'] })).toBe(256);
  });

  it('evaluates conditions with Equals, Not, And, Or and Condition', () => {
    expect(r({ 'Fn::If': ['IsProd', 'p', 'd'] })).toBe('d');
    expect(r({ 'Fn::If': ['NotProd', 'p', 'd'] })).toBe('p');
    expect(r({ 'Fn::If': ['Both', 'yes', 'no'] })).toBe('no'); // eu-west-1
    expect(resolve({ 'Fn::If': ['Both', 'yes', 'no'] }, createContext(small, { region: 'us-east-1' }))).toBe('yes');
    expect(r({ 'Fn::If': ['Either', 'yes', 'no'] })).toBe('no');
    const prod = createContext(small, { parameters: { Stage: 'prod' } });
    expect(resolve({ 'Fn::If': ['Either', 'yes', 'no'] }, prod)).toBe('yes');
    expect(resourceExists('ProdOnly', ctx)).toBe(false);
    expect(resourceExists('ProdOnly', prod)).toBe(true);
    expect(() => r({ Ref: 'ProdOnly' })).toThrow(/not created/);
    expect(() => r({ 'Fn::If': ['Missing', 1, 2] })).toThrow(/no condition named Missing/);
  });

  it('rejects ImportValue and unknown intrinsics, naming them and the path', () => {
    expect(() => resolve({ a: { b: { 'Fn::ImportValue': 'X' } } }, ctx, 'Resources.R.Properties')).toThrow(
      /Fn::ImportValue is not supported.*at Resources\.R\.Properties\.a\.b\.Fn::ImportValue/,
    );
    let err: unknown;
    try {
      resolve({ x: [{ 'Fn::Frobnicate': [] }] }, ctx, 'Outputs.O');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TemplateError);
    expect((err as TemplateError).message).toContain('Fn::Frobnicate');
    expect((err as TemplateError).path).toBe('Outputs.O.x[0].Fn::Frobnicate');
    expect(() => r({ Ref: 'Nothing' })).toThrow(/neither a resource nor a parameter/);
    expect(() => r({ 'Fn::GetAtt': ['Table', 'Bogus'] })).toThrow(/AWS::DynamoDB::Table Table has no attribute Bogus/);
  });
});

describe('DefaultPhysicalIds', () => {
  const ctx = createContext(small, { accountId: '111122223333', region: 'eu-west-1', stackName: 'S' });
  const ref = (id: string) => resolve({ Ref: id }, ctx);
  const att = (id: string, a: string) => resolve({ 'Fn::GetAtt': [id, a] }, ctx);

  it('names resources the way CloudFormation does, stably', () => {
    expect(ref('Table')).toMatch(/^S-Table-[A-Z0-9]{13}$/);
    expect(ref('Table')).toBe(resolve({ Ref: 'Table' }, createContext(small, { accountId: '111122223333', region: 'eu-west-1', stackName: 'S' })));
    expect(resolve({ Ref: 'Table' }, createContext(small, { stackName: 'Other' }))).not.toBe(ref('Table'));
    expect(att('Table', 'Arn')).toBe(`arn:aws:dynamodb:eu-west-1:111122223333:table/${ref('Table') as string}`);
    expect(() => att('Table', 'StreamArn')).toThrow(/no stream/);
    expect(ref('NamedTable')).toBe('orders-dev');
  });

  it('gives queues URLs (FIFO ones end in .fifo), ARNs and names', () => {
    expect(ref('Queue')).toMatch(/^https:\/\/sqs\.eu-west-1\.amazonaws\.com\/111122223333\/S-Queue-[A-Za-z0-9]{12}\.fifo$/);
    expect(ref('PlainQueue')).not.toMatch(/\.fifo$/);
    expect(att('Queue', 'Arn')).toBe(`arn:aws:sqs:eu-west-1:111122223333:${att('Queue', 'QueueName') as string}`);
    expect(String(ref('Queue')).endsWith(`/${att('Queue', 'QueueName') as string}`)).toBe(true);
  });

  it('gives roles ARNs with their path, task definitions revision ARNs, groups sg- ids', () => {
    expect(att('Role', 'Arn')).toMatch(/^arn:aws:iam::111122223333:role\/service\/S-Role-[A-Z0-9]{12}$/);
    expect(ref('TaskDef')).toBe('arn:aws:ecs:eu-west-1:111122223333:task-definition/fam:1');
    expect(ref('Group')).toMatch(/^sg-0[0-9a-f]{16}$/);
    expect(att('Group', 'GroupId')).toBe(ref('Group'));
    expect(att('Logs', 'Arn')).toBe('arn:aws:logs:eu-west-1:111122223333:log-group:/corral/x:*');
    expect(ref('Topic')).toBe(att('Topic', 'TopicArn'));
    expect(ref('Api')).toMatch(/^[a-z0-9]{10}$/);
    expect(att('Api', 'RootResourceId')).toMatch(/^[a-z0-9]{10}$/);
    expect(att('Api', 'RootResourceId')).not.toBe(ref('Api'));
  });

  it('answers the S3 prefix list lookup (a CDK AwsCustomResource) as EC2 would, and no other custom call', () => {
    const call = (filter: unknown, action = 'describeManagedPrefixLists') => ({
      Type: 'Custom::AWS',
      Properties: {
        Create: { 'Fn::Join': ['', [`{"service":"EC2","action":"${action}","parameters":{"Filters":[${JSON.stringify(filter).slice(0, -1)},"Values":["com.amazonaws.`, { Ref: 'AWS::Region' }, '.s3"]}]}}']] },
      },
    });
    const t: CfnTemplate = {
      Resources: {
        Lookup: call({ Name: 'prefix-list-name' }),
        Other: call({ Name: 'prefix-list-name' }, 'describeVpcs'),
        WrongFilter: call({ Name: 'owner-id' }),
      },
    };
    const at = (region: string, id: string, a = 'PrefixLists.0.PrefixListId') => resolve({ 'Fn::GetAtt': [id, a] }, createContext(t, { region }));
    expect(at('eu-west-1', 'Lookup')).toMatch(/^pl-[0-9a-f]{8}$/);
    expect(at('eu-west-1', 'Lookup')).toBe(at('eu-west-1', 'Lookup'));
    expect(at('us-east-1', 'Lookup')).not.toBe(at('eu-west-1', 'Lookup'));
    expect(() => at('eu-west-1', 'Lookup', 'PrefixLists.0.PrefixListName')).toThrow(/no attribute/);
    expect(() => at('eu-west-1', 'Other')).toThrow(/no attribute/);
    expect(() => at('eu-west-1', 'WrongFilter')).toThrow(/no attribute/);
  });

  it('takes overrides: names (ARNs follow), refs, attributes and a queue URL base', () => {
    const o = createContext(small, {
      physicalIds: new DefaultPhysicalIds({
        queueUrlBase: 'http://127.0.0.1:9324/000000000000',
        overrides: { Table: { name: 'local-table' }, Group: { ref: 'sg-local' }, Api: { attributes: { RootResourceId: 'root' } } },
      }),
    });
    expect(resolve({ Ref: 'Table' }, o)).toBe('local-table');
    expect(resolve({ 'Fn::GetAtt': ['Table', 'Arn'] }, o)).toBe('arn:aws:dynamodb:us-east-1:123456789012:table/local-table');
    expect(resolve({ Ref: 'Queue' }, o)).toMatch(/^http:\/\/127\.0\.0\.1:9324\/000000000000\/Corral-Queue-\w+\.fifo$/);
    expect(resolve({ Ref: 'Group' }, o)).toBe('sg-local');
    expect(resolve({ 'Fn::GetAtt': ['Api', 'RootResourceId'] }, o)).toBe('root');
  });

  it('reads a function: handler, defaults, role, asset', () => {
    const [fn] = functions(small);
    expect(fn).toMatchObject({ logicalId: 'Fn', handler: 'index.handler', runtime: 'nodejs22.x', timeout: 3, memorySize: 128, roleLogicalId: 'Role', assetPath: 'asset.abc', environment: {} });
    expect(fn.roleArn).toMatch(/:role\/service\/Corral-Role-/);
  });
});

describe('the synthesized Corral template', () => {
  let template: CfnTemplate;
  beforeAll(async () => {
    template = await synthesizedTemplate();
  }, 120_000);

  it('resolves every function environment to plain strings', () => {
    const fns = functions(template);
    expect(fns.length).toBeGreaterThanOrEqual(5);
    for (const f of fns) {
      for (const [k, v] of Object.entries(f.environment)) {
        expect(typeof v, `${f.logicalId} ${k}`).toBe('string');
        expect(v, `${f.logicalId} ${k}`).not.toMatch(/Fn::|\[object|\$\{/);
      }
      expect(f.roleArn).toMatch(/^arn:aws:iam::123456789012:role\//);
      expect(f.handler).not.toBe('');
    }
    const byId = (prefix: string) => fns.find((f) => f.logicalId.startsWith(prefix))!;
    const harness = byId('HarnessStepFunction');
    const tables = dynamoTables(template);
    const state = tables.find((t) => t.logicalId.startsWith('SessionLogState'))!;
    expect(harness.environment.CORRAL_STATE_TABLE).toBe(state.tableName);
    expect(harness.environment.CORRAL_WAKE_QUEUE_URL).toBe(sqsQueues(template).find((q) => q.logicalId.startsWith('WakeQueueD6'))!.url);
    expect(harness.environment.CORRAL_SANDBOX_TASK_DEFINITION).toBe(ecsTaskDefinitions(template)[0].arn);
    expect(harness.environment.CORRAL_SANDBOX_SUBNETS.split(',')).toEqual(harness.vpc!.subnetIds);
    expect(harness.environment.CORRAL_CREDENTIAL_PROXY_FUNCTION).toBe(byId('CredentialProxyFunction').functionName);
    expect(harness.timeout).toBe(900);
    expect(byId('ApiStreamHandler').handler).toBe('index.streamHandler');
    expect(byId('ApiStreamHandler').vpc).toBeUndefined();
  });

  it('lets only the harness, the API function (handoff) and the reaper (workspace snapshots) reach the sandbox agent port', () => {
    const groups = securityGroups(template);
    const sandbox = groups.find((g) => g.logicalId.startsWith('SandboxesSecurityGroup'))!;
    const harness = groups.find((g) => g.logicalId.startsWith('HarnessStepSecurityGroup'))!;
    const api = groups.find((g) => g.logicalId.startsWith('ApiSecurityGroup'))!;
    const reaper = groups.find((g) => g.logicalId.startsWith('SandboxReaperSecurityGroup'))!;
    expect(sandbox.ingress).toHaveLength(3);
    expect(sandbox.ingress).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ ipProtocol: 'tcp', fromPort: 8080, toPort: 8080, peerGroupId: harness.groupId, peerGroupLogicalId: harness.logicalId }),
        expect.objectContaining({ ipProtocol: 'tcp', fromPort: 8080, toPort: 8080, peerGroupId: api.groupId, peerGroupLogicalId: api.logicalId }),
        expect.objectContaining({ ipProtocol: 'tcp', fromPort: 8080, toPort: 8080, peerGroupId: reaper.groupId, peerGroupLogicalId: reaper.logicalId }),
      ]),
    );
    for (const g of [harness, reaper]) {
      expect(g.ingress).toEqual([]);
      expect(g.egress).toEqual([expect.objectContaining({ ipProtocol: '-1', cidrIp: '0.0.0.0/0' })]);
    }
  });

  it('reads the REST API: paths, the streaming route and its function', () => {
    const api = restApi(template);
    const fns = functions(template);
    const stream = api.methods.find((m) => m.path === '/v1/sessions/{id}/events/stream' && m.httpMethod === 'GET')!;
    expect(stream.integration).toMatchObject({ type: 'AWS_PROXY', responseTransferMode: 'STREAM', timeoutInMillis: 900_000 });
    expect(stream.integration!.functionLogicalId).toMatch(/^ApiStreamHandler/);
    const root = api.methods.find((m) => m.path === '/' && m.httpMethod === 'ANY')!;
    expect(root.integration).toMatchObject({ responseTransferMode: 'BUFFERED', timeoutInMillis: 29_000 });
    expect(fns.find((f) => f.logicalId === root.integration!.functionLogicalId)!.handler).toBe('index.handler');
    expect(api.resources.map((r) => r.path)).toContain('/v1/sessions/{id}/{proxy+}');
    expect(api.stages.map((s) => s.stageName)).toEqual(['prod']);
    // What the rehearsal's API Gateway passes as bytes (api-gateway.ts).
    expect(api.binaryMediaTypes).toEqual(['*/*']);
  });

  it('reads the sandbox task definition, tables, queues and the wake mapping', () => {
    const [task] = ecsTaskDefinitions(template);
    expect(task.containers[0]).toMatchObject({ name: 'agent', portMappings: [{ containerPort: 8080, protocol: 'tcp' }] });
    expect(task.containers[0].image).toMatch(/^123456789012\.dkr\.ecr\.us-east-1\.amazonaws\.com\//);
    expect(task.taskRoleLogicalId).toMatch(/^SandboxesTaskRole/);
    expect(task.executionRoleArn).toMatch(/:role\/Corral-SandboxesExecutionRole/);
    const state = dynamoTables(template).find((t) => t.logicalId.startsWith('SessionLogState'))!;
    expect(state.keySchema).toEqual({ partitionKey: 'pk', sortKey: 'sk' });
    expect(state.globalSecondaryIndexes).toEqual([{ indexName: 'gsi1', keySchema: { partitionKey: 'gsi1pk', sortKey: 'gsi1sk' }, projectionType: 'ALL' }]);
    const queues = sqsQueues(template);
    const wake = queues.find((q) => q.logicalId.startsWith('WakeQueueD6'))!;
    const dlq = queues.find((q) => q.logicalId.startsWith('WakeQueueDeadLetters'))!;
    expect(wake).toMatchObject({ fifo: true, visibilityTimeout: 5400, redrivePolicy: { deadLetterTargetArn: dlq.arn, deadLetterLogicalId: dlq.logicalId, maxReceiveCount: 10 } });
    expect(wake.url.endsWith('.fifo')).toBe(true);
    const [mapping] = eventSourceMappings(template);
    expect(mapping).toMatchObject({ eventSourceArn: wake.arn, sourceLogicalId: wake.logicalId, batchSize: 1, functionResponseTypes: ['ReportBatchItemFailures'] });
    expect(mapping.functionLogicalId).toMatch(/^HarnessStepFunction/);
  });

  it('resolves every output and every resource property without leaving an intrinsic', () => {
    const ctx = createContext(template, { parameters: { BootstrapVersion: '21' } });
    const text = JSON.stringify(resolve({ Resources: template.Resources, Outputs: template.Outputs }, ctx, ''));
    expect(text).not.toMatch(/"(Ref|Fn::[A-Za-z]+)"/);
  });
});

describe('the synthesized template with the stream tier (streamTier=fargate)', () => {
  let template: CfnTemplate;
  beforeAll(async () => {
    template = await synthesizedTemplate({ streamTier: 'fargate' });
  }, 180_000);

  it('wires the stream route through the VPC link to the NLB, whose listener forwards to the target group the service registers in', () => {
    const ctx = createContext(template, { parameters: { BootstrapVersion: '21' } });
    const [lb] = loadBalancers(ctx);
    expect(lb).toMatchObject({ type: 'network', internal: true, securityGroups: [] });
    expect(lb.dnsName).toBe(lb.dnsName.toLowerCase());
    const [link] = vpcLinks(ctx);
    expect(link.targetArns).toEqual([lb.arn]);
    const method = restApi(ctx).methods.find((m) => m.path === '/v1/sessions/{id}/events/stream' && m.httpMethod === 'GET')!;
    expect(method.integration).toMatchObject({
      type: 'HTTP_PROXY',
      connectionType: 'VPC_LINK',
      connectionId: link.id,
      uri: `http://${lb.dnsName}/v1/sessions/{id}/events/stream`,
      responseTransferMode: 'STREAM',
      requestParameters: { 'integration.request.path.id': 'method.request.path.id', 'integration.request.header.X-Corral-Client-Address': 'context.identity.sourceIp' },
    });
    const [service] = ecsServices(ctx);
    const [group] = targetGroups(ctx);
    expect(lb.listeners).toEqual([expect.objectContaining({ port: 80, protocol: 'TCP', targetGroupArn: group.arn })]);
    expect(group).toMatchObject({ port: 8080, protocol: 'TCP', targetType: 'ip', healthCheck: { protocol: 'HTTP', path: '/health', healthyThreshold: 2, unhealthyThreshold: 2 } });
    expect(service.loadBalancers).toEqual([{ targetGroupArn: group.arn, containerName: 'tier', containerPort: 8080 }]);
    const def = ecsTaskDefinitions(ctx).find((d) => d.arn === service.taskDefinitionArn)!;
    expect(def.taskRoleLogicalId).toMatch(/^StreamTierTaskRole/);
    expect(def.containers[0].portMappings.map((m) => m.containerPort)).toEqual([8080]);
    // The events table's stream, as the tier reads it.
    expect(dynamoTables(ctx).find((t) => t.logicalId.startsWith('SessionLogEvents'))?.streamViewType).toBe('KEYS_ONLY');
  });
});
