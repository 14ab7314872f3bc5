/**
 * A network load balancer of the template, as the deploy rehearsal runs it: a member of the VPC
 * (its own private address; without security groups, as the template's NLB has none, nothing
 * filters what it sends), whose listeners forward TCP connections to the healthy targets of their
 * target group. ECS registers a service's tasks (their private address and container port) as
 * they start and deregisters them as they stop; the load balancer checks each target's health as
 * the target group says (protocol, path, healthy and unhealthy thresholds) and sends connections
 * only to healthy ones, from its own address (for IP targets over TCP the client's address is not
 * preserved), so the target's security groups judge the load balancer, as in a VPC.
 *
 * The one liberty: health checks run every `healthCheckIntervalMs` (500 ms) rather than the target
 * group's interval (10 s and up), so a task is in service within a second or two, not 20 s.
 */
import { request as httpRequest } from 'node:http';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { ModelLoadBalancer, ModelTargetGroup } from './model.js';
import { splice, type VpcNetwork } from './network.js';

interface Target {
  id: string;
  address: string;
  port: number;
  healthy: boolean;
  successes: number;
  failures: number;
  /** Connections forwarded to it and still open. */
  open: number;
  timer?: NodeJS.Timeout;
}

export class NetworkLoadBalancerEmulator {
  /** Its private address in the VPC. */
  readonly address: string;
  private readonly targets = new Map<string, Map<string, Target>>();
  private readonly next = new Map<string, number>();
  /** The target each forwarded connection went to (its id), in order. */
  readonly forwarded: string[] = [];
  /** Connections it could not forward (no healthy target), for the report. */
  readonly refused: Array<{ port: number; reason: string }> = [];
  private readonly relays: Server[] = [];
  private readonly unexpose: Array<() => Promise<void>> = [];

  constructor(
    readonly lb: ModelLoadBalancer,
    private readonly groups: ModelTargetGroup[],
    private readonly network: VpcNetwork,
    private readonly healthCheckIntervalMs = 500,
  ) {
    if (lb.type !== 'network') throw new Error(`load balancer ${lb.logicalId} is of type ${lb.type}: the rehearsal runs network load balancers only`);
    this.address = network.join({ name: `load balancer ${lb.logicalId}`, securityGroups: lb.securityGroups, unfiltered: lb.securityGroups.length === 0 });
    for (const l of lb.listeners) {
      if (!groups.some((g) => g.arn === l.targetGroupArn)) throw new Error(`listener ${l.port} of ${lb.logicalId} forwards to ${l.targetGroupArn}, not a target group of the template`);
      this.targets.set(l.targetGroupArn, new Map());
    }
  }

  /** Whether this load balancer forwards to `targetGroupArn`. */
  serves(targetGroupArn: string): boolean {
    return this.targets.has(targetGroupArn);
  }

  register(targetGroupArn: string, target: { id: string; address: string; port: number }) {
    const group = this.groups.find((g) => g.arn === targetGroupArn)!;
    const t: Target = { ...target, healthy: false, successes: 0, failures: 0, open: 0 };
    this.targets.get(targetGroupArn)!.set(target.id, t);
    const check = async () => {
      const ok = await this.probe(group, t);
      if (ok) {
        t.failures = 0;
        if (++t.successes >= group.healthCheck.healthyThreshold) t.healthy = true;
      } else {
        t.successes = 0;
        if (++t.failures >= group.healthCheck.unhealthyThreshold) t.healthy = false;
      }
      if (this.targets.get(targetGroupArn)?.get(t.id) === t) t.timer = setTimeout(check, this.healthCheckIntervalMs);
    };
    t.timer = setTimeout(check, 0);
  }

  /** Takes a target out of service: no new connection goes to it. */
  deregister(targetGroupArn: string, id: string) {
    const t = this.targets.get(targetGroupArn)?.get(id);
    if (t) clearTimeout(t.timer);
    this.targets.get(targetGroupArn)?.delete(id);
  }

  /** The targets of a group that hold open connections forwarded by this load balancer, by id. */
  openConnections(targetGroupArn: string): Map<string, number> {
    return new Map([...(this.targets.get(targetGroupArn)?.values() ?? [])].filter((t) => t.open > 0).map((t) => [t.id, t.open]));
  }

  healthyTargets(targetGroupArn: string): number {
    return [...(this.targets.get(targetGroupArn)?.values() ?? [])].filter((t) => t.healthy).length;
  }

  private probe(group: ModelTargetGroup, t: Target): Promise<boolean> {
    const hc = group.healthCheck;
    if (hc.protocol === 'TCP') {
      return new Promise((resolve) => {
        const s = connect({ host: t.address, port: t.port, localAddress: this.address }, () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      });
    }
    return new Promise((resolve) => {
      const req = httpRequest({ host: t.address, port: t.port, localAddress: this.address, path: hc.path ?? '/', method: 'GET', timeout: 2_000 }, (res) => {
        res.resume();
        // ELB's default success codes: 200-399 for an NLB's HTTP health check.
        resolve((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 400);
      });
      req.once('error', () => resolve(false));
      req.once('timeout', () => req.destroy());
      req.end();
    });
  }

  /**
   * A connection to the listener on `port`, forwarded to a healthy target (round robin), or an
   * error when none is healthy.
   */
  connect(port: number): Promise<Socket> {
    const listener = this.lb.listeners.find((l) => l.port === port);
    if (!listener) return Promise.reject(new Error(`load balancer ${this.lb.logicalId} has no listener on ${port}`));
    const healthy = [...this.targets.get(listener.targetGroupArn)!.values()].filter((t) => t.healthy);
    if (!healthy.length) {
      const reason = `no healthy target in ${listener.targetGroupArn}`;
      this.refused.push({ port, reason });
      return Promise.reject(new Error(reason));
    }
    const n = this.next.get(listener.targetGroupArn) ?? 0;
    this.next.set(listener.targetGroupArn, n + 1);
    const t = healthy[n % healthy.length];
    return new Promise((resolve, reject) => {
      const s = connect({ host: t.address, port: t.port, localAddress: this.address }, () => {
        t.open++;
        this.forwarded.push(t.id);
        s.once('close', () => t.open--);
        resolve(s);
      });
      s.once('error', reject);
    });
  }

  /**
   * Serves its listeners at its private address, as its DNS name answers in the VPC: a member
   * connecting to `address:port` (the harness to the proxy service's model port) passes the
   * security groups' check there, then is forwarded as `connect` forwards.
   */
  async listen(): Promise<void> {
    for (const l of this.lb.listeners) {
      const relay = createServer((client) => {
        client.on('error', () => undefined);
        this.connect(l.port).then(
          (upstream) => splice(client, upstream),
          () => client.destroy(),
        );
      });
      await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
      this.relays.push(relay);
      this.unexpose.push(await this.network.expose(this.address, l.port, { port: (relay.address() as AddressInfo).port }));
    }
  }

  close() {
    for (const u of this.unexpose.splice(0)) void u();
    for (const r of this.relays.splice(0)) r.close();
    for (const group of this.targets.values()) for (const t of group.values()) clearTimeout(t.timer);
    this.targets.clear();
    this.network.leave(this.address);
  }
}
