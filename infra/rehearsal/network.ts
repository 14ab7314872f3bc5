/**
 * The VPC of the deploy rehearsal. Every member of the VPC (a function attached to subnets, a
 * sandbox task) gets a private address in 127.77.0.0/16; functions outside the VPC keep
 * 127.0.0.1, which stands for the internet. A task's port is served by a listener on its private
 * address that lets a connection through only where the security groups allow it, as a VPC
 * does: the caller must be in the VPC, one of the target's groups must have an ingress rule
 * for the port from one of the caller's groups (or a CIDR that covers the VPC), and the caller's
 * groups must allow the traffic out. Anything else is refused and recorded.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export const PRIVATE_PREFIX = '127.77.';

/** Relays two connections both ways; either one ending or failing ends both. */
export function splice(a: Socket, b: Socket): void {
  a.pipe(b).pipe(a);
  const end = () => {
    a.destroy();
    b.destroy();
  };
  for (const s of [a, b]) {
    s.on('error', end);
    s.on('close', end);
  }
}

export interface SecurityGroupRule {
  /** `tcp`, `udp`, `icmp` or `-1` (all). */
  protocol: string;
  fromPort?: number;
  toPort?: number;
  /** Another security group (its id). */
  peerGroup?: string;
  /** An IPv4 CIDR. */
  cidr?: string;
}

export interface SecurityGroup {
  id: string;
  /** Logical id in the template, for messages. */
  name: string;
  ingress: SecurityGroupRule[];
  egress: SecurityGroupRule[];
}

export interface Member {
  name: string;
  securityGroups: string[];
  /**
   * No security group filters its traffic out (a network load balancer without security groups);
   * its targets' groups still judge it by its address.
   */
  unfiltered?: boolean;
}

export interface Refusal {
  from: string;
  to: string;
  port: number;
  reason: string;
  at: string;
}

function ipToInt(ip: string): number {
  return ip.split('.').reduce((n, part) => (n << 8) + Number(part), 0) >>> 0;
}

function cidrCovers(cidr: string, ip: string): boolean {
  const [base, bits] = cidr.split('/');
  const n = Number(bits ?? 32);
  if (n === 0) return true;
  const mask = (~0 << (32 - n)) >>> 0;
  return (ipToInt(base) & mask) === (ipToInt(ip) & mask);
}

function ruleCoversPort(rule: SecurityGroupRule, protocol: string, port: number): boolean {
  if (rule.protocol !== '-1' && rule.protocol !== protocol && rule.protocol !== '6') return false;
  if (rule.protocol === '-1') return true;
  const from = rule.fromPort ?? 0;
  const to = rule.toPort ?? 65535;
  return port >= from && port <= to;
}

export class VpcNetwork {
  readonly refusals: Refusal[] = [];
  readonly accepted: Array<{ from: string; to: string; port: number }> = [];
  private readonly members = new Map<string, Member>();
  private readonly servers = new Set<Server>();
  // Where this rehearsal's addresses start: at random, so two rehearsals on one machine (two
  // engineers, two CI jobs) rarely hand out the same address and port.
  private next = 1 + Math.floor(Math.random() * 200 * 250);

  constructor(
    private readonly groups: Map<string, SecurityGroup>,
    /** The VPC's own CIDR: a rule whose CIDR covers it covers every member. */
    private readonly vpcCidr: string,
  ) {}

  /** A fresh private address for a new member (a function's environments share one; each task has its own). */
  join(member: Member): string {
    for (const g of member.securityGroups) if (!this.groups.has(g)) throw new Error(`security group ${g} of ${member.name} is not in the template`);
    const n = this.next++;
    if (n >= 250 * 250) throw new Error('the rehearsal VPC ran out of addresses');
    const address = `${PRIVATE_PREFIX}${Math.floor(n / 250)}.${(n % 250) + 1}`;
    this.members.set(address, member);
    return address;
  }

  leave(address: string) {
    this.members.delete(address);
  }

  memberAt(address: string): Member | undefined {
    return this.members.get(address);
  }

  /**
   * Whether a member with these security groups may connect to the internet at all (an egress
   * rule to 0.0.0.0/0). A sandbox task without one runs in a network namespace of its own.
   */
  reachesInternet(securityGroups: readonly string[]): boolean {
    return securityGroups.some((gid) => this.groups.get(gid)?.egress.some((r) => r.cidr === '0.0.0.0/0'));
  }

  /** Whether a connection from `from` (an address, 127.0.0.1 for the internet) to `to:port` is allowed. */
  check(from: string, to: string, port: number, protocol = 'tcp'): { ok: true } | { ok: false; reason: string } {
    const target = this.members.get(to);
    if (!target) return { ok: false, reason: `nothing in the VPC answers at ${to}` };
    const source = this.members.get(from);
    if (!source) return { ok: false, reason: `the caller (${from}) is not in the VPC: only members of the VPC reach private addresses` };
    // Every member stands inside the VPC's CIDR: a CIDR rule covers it when it covers the VPC.
    const sourceInCidr = (cidr: string) => cidrCovers(cidr, this.vpcCidr.split('/')[0]);
    // A load balancer without security groups (an NLB's default) filters nothing coming in either.
    const inbound = (target.unfiltered && target.securityGroups.length === 0) || target.securityGroups.some((gid) =>
      this.groups.get(gid)!.ingress.some(
        (r) => ruleCoversPort(r, protocol, port) && ((r.peerGroup && source.securityGroups.includes(r.peerGroup)) || (r.cidr && sourceInCidr(r.cidr))),
      ),
    );
    if (!inbound) {
      const names = (ids: string[]) => ids.map((id) => this.groups.get(id)?.name ?? id).join(', ');
      return {
        ok: false,
        reason: `no ingress rule of ${target.name}'s security groups (${names(target.securityGroups)}) allows ${protocol}/${port} from ${source.name} (${names(source.securityGroups)})`,
      };
    }
    const outbound = (source.unfiltered && source.securityGroups.length === 0) || source.securityGroups.some((gid) =>
      this.groups.get(gid)!.egress.some(
        (r) => ruleCoversPort(r, protocol, port) && ((r.peerGroup && target.securityGroups.includes(r.peerGroup)) || (r.cidr && sourceInCidr(r.cidr))),
      ),
    );
    if (!outbound) return { ok: false, reason: `no egress rule of ${source.name}'s security groups allows ${protocol}/${port} to ${target.name}` };
    return { ok: true };
  }

  /**
   * Serve `address:port` for a member, forwarding allowed connections to `target` (a unix socket
   * path, a loopback port, or a connection it makes: a load balancer's to a target). Refused
   * connections are reset before a byte goes through.
   */
  async expose(address: string, port: number, target: { socketPath: string } | { port: number } | { connect(): Promise<Socket> }): Promise<() => Promise<void>> {
    // A task that stops drops its connections; a client's kept-alive one must not hold the stop.
    const open = new Set<Socket>();
    const server = createServer((socket: Socket) => {
      open.add(socket);
      socket.on('close', () => open.delete(socket));
      const from = socket.remoteAddress?.replace(/^::ffff:/, '') ?? '?';
      const verdict = this.check(from, address, port);
      if (!verdict.ok) {
        this.refusals.push({ from, to: address, port, reason: verdict.reason, at: new Date().toISOString() });
        socket.resetAndDestroy();
        return;
      }
      this.accepted.push({ from, to: address, port });
      const pipe = (upstream: Socket) => {
        splice(socket, upstream);
      };
      if ('connect' in target) {
        // Nothing to forward to (no healthy target): the connection is reset, as an NLB does.
        socket.pause();
        target.connect().then(
          (upstream) => {
            pipe(upstream);
            socket.resume();
          },
          () => socket.resetAndDestroy(),
        );
      } else pipe('socketPath' in target ? connect(target.socketPath) : connect(target.port, '127.0.0.1'));
    });
    this.servers.add(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, address, () => resolve());
    });
    return () =>
      new Promise<void>((resolve) => {
        this.servers.delete(server);
        server.close(() => resolve());
        for (const socket of open) socket.destroy();
      });
  }

  async close() {
    await Promise.all([...this.servers].map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.servers.clear();
  }
}
