import { connect, createServer, type Server } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { route, type RestResource } from '../../infra/rehearsal/api-gateway.js';
import { NetworkLoadBalancerEmulator } from '../../infra/rehearsal/load-balancer.js';
import { VpcNetwork, type SecurityGroup } from '../../infra/rehearsal/network.js';

const groups: SecurityGroup[] = [
  { id: 'sg-harness', name: 'Harness', ingress: [], egress: [{ protocol: '-1', cidr: '0.0.0.0/0' }] },
  { id: 'sg-proxy', name: 'Proxy', ingress: [], egress: [{ protocol: '-1', cidr: '0.0.0.0/0' }] },
  { id: 'sg-locked', name: 'Locked', ingress: [], egress: [] },
  { id: 'sg-sandbox', name: 'Sandbox', ingress: [{ protocol: 'tcp', fromPort: 8080, toPort: 8080, peerGroup: 'sg-harness' }, { protocol: 'tcp', fromPort: 8080, toPort: 8080, peerGroup: 'sg-locked' }], egress: [{ protocol: '-1', cidr: '0.0.0.0/0' }] },
  { id: 'sg-vpc', name: 'VpcWide', ingress: [{ protocol: 'tcp', fromPort: 9000, toPort: 9010, cidr: '10.0.0.0/16' }], egress: [] },
];

describe('the rehearsal VPC', () => {
  const net = new VpcNetwork(new Map(groups.map((g) => [g.id, g])), '10.0.0.0/16');
  const harness = net.join({ name: 'harness', securityGroups: ['sg-harness'] });
  const proxy = net.join({ name: 'proxy', securityGroups: ['sg-proxy'] });
  const locked = net.join({ name: 'locked', securityGroups: ['sg-locked'] });
  const task = net.join({ name: 'task', securityGroups: ['sg-sandbox'] });
  const wide = net.join({ name: 'wide', securityGroups: ['sg-vpc'] });
  let dir: string;
  let upstream: Server;
  let close: () => Promise<void>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'corral-vpc-'));
    const socketPath = join(dir, 'agent.sock');
    upstream = createServer((s) => s.end('hello')).listen(socketPath);
    close = await net.expose(task, 8080, { socketPath });
  });
  afterAll(async () => {
    await close?.();
    upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('allows what an ingress rule from the caller\'s group allows, and nothing else', () => {
    expect(net.check(harness, task, 8080)).toEqual({ ok: true });
    expect(net.check(harness, task, 8081)).toMatchObject({ ok: false, reason: expect.stringMatching(/no ingress rule .* allows tcp\/8081 from harness/) });
    expect(net.check(proxy, task, 8080)).toMatchObject({ ok: false, reason: expect.stringMatching(/no ingress rule of task's security groups \(Sandbox\) allows tcp\/8080 from proxy \(Proxy\)/) });
    // The target admits it, but the caller's own groups let nothing out.
    expect(net.check(locked, task, 8080)).toMatchObject({ ok: false, reason: expect.stringMatching(/no egress rule of locked's/) });
    // A CIDR rule that covers the VPC admits every member, within its ports.
    expect(net.check(proxy, wide, 9005)).toEqual({ ok: true });
    expect(net.check(proxy, wide, 9011).ok).toBe(false);
    // Outside the VPC nothing private is reachable.
    expect(net.check('127.0.0.1', task, 8080)).toMatchObject({ ok: false, reason: expect.stringMatching(/not in the VPC/) });
  });

  const attempt = (localAddress?: string) =>
    new Promise<string>((resolve) => {
      const s = connect({ host: task, port: 8080, localAddress });
      let got = '';
      s.on('data', (d) => (got += d));
      s.on('close', () => resolve(got || 'refused'));
      s.on('error', () => undefined);
    });

  it('lets an allowed connection through to the member and resets a refused one before a byte passes', async () => {
    expect(await attempt(harness)).toBe('hello');
    const before = net.refusals.length;
    expect(await attempt(proxy)).toBe('refused');
    expect(await attempt()).toBe('refused');
    expect(net.refusals.slice(before).map((r) => r.from)).toEqual([proxy, '127.0.0.1']);
  });

  it('serves a load balancer without security groups at its address to every member, by the connection it makes, and resets when it has none', async () => {
    const lb = net.join({ name: 'load balancer', securityGroups: [], unfiltered: true });
    expect(net.check(harness, lb, 8081)).toEqual({ ok: true });
    // Its targets' groups still judge it: the sandbox admits only the harness's and the locked groups.
    expect(net.check(lb, task, 8080).ok).toBe(false);
    let healthy = true;
    const unexpose = await net.expose(lb, 8081, {
      connect: () => (healthy ? Promise.resolve(connect({ path: join(dir, 'agent.sock') })) : Promise.reject(new Error('no healthy target'))),
    });
    try {
      const through = (localAddress: string) =>
        new Promise<string>((resolve) => {
          const s = connect({ host: lb, port: 8081, localAddress });
          let got = '';
          s.on('data', (d) => (got += d));
          s.on('close', () => resolve(got || 'reset'));
          s.on('error', () => undefined);
        });
      expect(await through(proxy)).toBe('hello');
      healthy = false;
      expect(await through(harness)).toBe('reset');
    } finally {
      await unexpose();
    }
  });
});

describe('API Gateway routing of the rehearsal', () => {
  const r = (id: string, path: string, ...methods: string[]): RestResource => ({ id, path, methods: new Map(methods.map((m) => [m, {} as never])) });
  const resources = [
    r('root', '/', 'ANY'),
    r('proxy', '/{proxy+}', 'ANY'),
    r('v1', '/v1', 'ANY'),
    r('sessions', '/v1/sessions', 'ANY'),
    r('session', '/v1/sessions/{id}', 'ANY'),
    r('sessionProxy', '/v1/sessions/{id}/{proxy+}', 'ANY'),
    r('events', '/v1/sessions/{id}/events', 'ANY'),
    r('stream', '/v1/sessions/{id}/events/stream', 'GET'),
  ];

  it('picks the most specific resource: literal, then variable, then greedy', () => {
    expect(route(resources, '/v1/sessions/s1/events/stream')).toEqual({ resource: resources[7], pathParameters: { id: 's1' } });
    expect(route(resources, '/v1/sessions/s1/events')?.resource.id).toBe('events');
    expect(route(resources, '/v1/sessions/s1/resources/r1')).toEqual({ resource: resources[5], pathParameters: { id: 's1', proxy: 'resources/r1' } });
    expect(route(resources, '/v1/agents/a1')?.resource.id).toBe('proxy');
    expect(route(resources, '/')?.resource.id).toBe('root');
  });

  it('does not fall back to a greedy parent for a method the specific resource lacks', () => {
    const m = route(resources, '/v1/sessions/s1/events/stream')!;
    expect(m.resource.methods.has('POST') || m.resource.methods.has('ANY')).toBe(false);
  });
});

describe('the rehearsal NLB at its VPC address', () => {
  // What the harness does with CORRAL_MODEL_PROXY_URL: connect to the load balancer's name,
  // which the VPC's DNS answers with its private address.
  const lbGroups: SecurityGroup[] = [
    { id: 'sg-harness', name: 'Harness', ingress: [], egress: [{ protocol: '-1', cidr: '0.0.0.0/0' }] },
    { id: 'sg-other', name: 'Other', ingress: [], egress: [{ protocol: '-1', cidr: '0.0.0.0/0' }] },
    { id: 'sg-nlb', name: 'Nlb', ingress: [{ protocol: 'tcp', fromPort: 8081, toPort: 8081, peerGroup: 'sg-harness' }], egress: [{ protocol: '-1', cidr: '0.0.0.0/0' }] },
    { id: 'sg-svc', name: 'Service', ingress: [{ protocol: 'tcp', fromPort: 7000, toPort: 7000, peerGroup: 'sg-nlb' }], egress: [] },
  ];
  const net = new VpcNetwork(new Map(lbGroups.map((g) => [g.id, g])), '10.0.0.0/16');
  const harness = net.join({ name: 'harness', securityGroups: ['sg-harness'] });
  const other = net.join({ name: 'other', securityGroups: ['sg-other'] });
  const svc = net.join({ name: 'service task', securityGroups: ['sg-svc'] });
  const tg = { logicalId: 'Tg', arn: 'arn:tg', port: 7000, protocol: 'TCP', targetType: 'ip', healthCheck: { protocol: 'TCP', intervalSeconds: 10, healthyThreshold: 2, unhealthyThreshold: 2 } };
  const lb = new NetworkLoadBalancerEmulator(
    { logicalId: 'Nlb', arn: 'arn:nlb', dnsName: 'internal-nlb.elb.amazonaws.com', type: 'network', securityGroups: ['sg-nlb'], listeners: [{ port: 8081, protocol: 'TCP', targetGroupArn: tg.arn }] },
    [tg],
    net,
    50,
  );
  let dir: string;
  let upstream: Server;
  let close: () => Promise<void>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'corral-nlb-'));
    const socketPath = join(dir, 'svc.sock');
    // Health checks connect and hang up at once: their resets are not this test's business.
    upstream = createServer((s) => s.on('error', () => undefined).end('from the service')).listen(socketPath);
    close = await net.expose(svc, 7000, { socketPath });
    lb.register(tg.arn, { id: 'task', address: svc, port: 7000 });
    await lb.listen();
    for (let i = 0; i < 100 && !lb.healthyTargets(tg.arn); i++) await new Promise((r) => setTimeout(r, 20));
  });
  afterAll(async () => {
    lb.close();
    await close?.();
    upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const attempt = (localAddress: string) =>
    new Promise<string>((resolve) => {
      const s = connect({ host: lb.address, port: 8081, localAddress });
      let got = '';
      s.on('data', (d) => (got += d));
      s.on('close', () => resolve(got || 'refused'));
      s.on('error', () => undefined);
    });

  it('forwards a connection its security group admits to a healthy target, and refuses the rest', async () => {
    expect(lb.healthyTargets(tg.arn)).toBe(1);
    expect(await attempt(harness)).toBe('from the service');
    const before = net.refusals.length;
    expect(await attempt(other)).toBe('refused');
    expect(net.refusals.slice(before)).toMatchObject([{ from: other, to: lb.address, port: 8081 }]);
  });
});
