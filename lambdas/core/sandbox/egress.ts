/**
 * The egress policy of a sandbox: which hosts its outbound connections may reach, planned once
 * (with the recipe) from the environment's `networking` and the agent's MCP servers, and the
 * decisions an egress proxy makes with it. Pure: no sockets, no DNS; the proxies (the local one
 * in `adapters/local/egress-proxy.ts`) resolve names and connect, and ask this module first.
 *
 * The environment's `networking`, as the SDK's types describe it:
 * - `unrestricted`: any host. The proxy still refuses private, loopback and link-local addresses.
 * - `limited`: only `allowed_hosts` ("domains the container can reach"), plus the public package
 *   registries when `allow_package_managers` (`PACKAGE_REGISTRY_HOSTS`), plus the hosts of the
 *   agent's MCP servers when `allow_mcp_servers` (each at its URL's port).
 *
 * An `allowed_hosts` entry (see `parseHostPattern`), matched case-insensitively, a trailing dot
 * ignored:
 * - `example.com`: that name exactly (not its subdomains), on any port;
 * - `*.example.com`: any name under `example.com` at any depth (not `example.com` itself);
 * - either with `:port` (`example.com:8443`): that port only;
 * - an IP address (`203.0.113.7`, `[2001:db8::1]:443`): connections that name it literally.
 * A bare `*`, a URL (`https://…`), a path or a user part is not an entry: the API refuses it.
 *
 * Whatever the policy, the address actually connected to must be public (`isPrivateAddress`);
 * this is checked after name resolution, on the address the proxy connects to.
 */
import net from 'node:net';

/** The environment's `networking` as a sandbox's proxy applies it. Serializable; no secret. */
export type EgressPolicy =
  | { type: 'unrestricted' }
  | {
      type: 'limited';
      /** The environment's `allowed_hosts`, normalized (entries that are not hosts dropped). */
      allowedHosts: string[];
      allowPackageManagers: boolean;
      allowMcpServers: boolean;
      /** `host:port` of each of the agent's MCP servers; empty unless `allowMcpServers`. */
      mcpServerHosts: string[];
    };

/** What allowed a connection (for the operator's log) or why it was denied. */
export type EgressDecision = { allowed: true; by: 'unrestricted' | 'allowed_hosts' | 'package_managers' | 'mcp_servers' } | { allowed: false; message: string };

/**
 * The public package registries `allow_package_managers` opens, by manager (the managers of an
 * environment's `packages`). Mirrors and private registries are `allowed_hosts` entries.
 */
export const PACKAGE_REGISTRY_HOSTS: Readonly<Record<string, readonly string[]>> = {
  apt: ['deb.debian.org', 'security.debian.org', 'archive.ubuntu.com', '*.archive.ubuntu.com', 'security.ubuntu.com', 'ports.ubuntu.com'],
  pip: ['pypi.org', 'files.pythonhosted.org'],
  npm: ['registry.npmjs.org', 'registry.yarnpkg.com'],
  cargo: ['crates.io', 'index.crates.io', 'static.crates.io', 'static.rust-lang.org'],
  gem: ['rubygems.org', 'index.rubygems.org'],
  go: ['proxy.golang.org', 'sum.golang.org', 'index.golang.org'],
};

/** One `allowed_hosts` entry, parsed. */
export interface HostPattern {
  /** Lower case, no trailing dot; for a wildcard the part after `*.`; IPv6 without brackets. */
  host: string;
  wildcard: boolean;
  /** Only this port; any when absent. */
  port?: number;
}

const LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;

/** A host name (not an address) of valid labels, lower case, no trailing dot; else null. */
function hostName(text: string): string | null {
  const h = text.toLowerCase().replace(/\.$/, '');
  if (!h || h.length > 253) return null;
  return h.split('.').every((l) => LABEL.test(l)) ? h : null;
}

function portOf(text: string): number | null {
  if (!/^\d{1,5}$/.test(text)) return null;
  const n = Number(text);
  return n >= 1 && n <= 65535 ? n : null;
}

/**
 * A host as a client names it (a CONNECT authority's host, a URL's hostname): lower case, no
 * trailing dot, IPv6 without brackets and in canonical form; null when it is neither a name nor an
 * address.
 */
export function normalizeHost(text: string): string | null {
  const bare = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  if (net.isIPv4(bare)) return bare;
  if (net.isIPv6(bare)) return canonicalIPv6(bare);
  return hostName(bare);
}

function canonicalIPv6(ip: string): string {
  // The WHATWG URL parser prints an IPv6 address in its canonical form.
  return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
}

/** An `allowed_hosts` entry, or the reason it is not one. */
export function parseHostPattern(entry: string): HostPattern | { error: string } {
  const text = entry.trim();
  const bad = (why: string) => ({ error: `allowed_hosts entry ${JSON.stringify(entry.slice(0, 100))} ${why}` });
  if (/[/@?#\s]/.test(text) || text.includes('://')) return bad('is not a host: give a name like example.com, *.example.com or example.com:8443, not a URL');
  let host = text;
  let port: number | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (bracketed) {
    host = bracketed[1]!;
    if (bracketed[2] !== undefined) {
      const p = portOf(bracketed[2]);
      if (p === null) return bad('has a port outside 1-65535');
      port = p;
    }
    if (!net.isIPv6(host)) return bad('is not an IPv6 address in brackets');
    return { host: canonicalIPv6(host), wildcard: false, ...(port ? { port } : {}) };
  }
  if (net.isIPv6(text)) return { host: canonicalIPv6(text), wildcard: false };
  const colon = text.lastIndexOf(':');
  if (colon !== -1) {
    const p = portOf(text.slice(colon + 1));
    if (p === null) return bad('has a port outside 1-65535');
    port = p;
    host = text.slice(0, colon);
  }
  if (net.isIPv4(host)) return { host, wildcard: false, ...(port ? { port } : {}) };
  const wildcard = host.startsWith('*.');
  if (host.includes('*') && !wildcard) return bad('has a wildcard that is not a leading "*."');
  const name = hostName(wildcard ? host.slice(2) : host);
  if (!name || name.includes('*')) return bad('is not a valid host name');
  // `*.com` would open a whole top-level domain: a wildcard needs at least two labels under it.
  if (wildcard && !name.includes('.')) return bad('is a wildcard over a whole top-level domain');
  return { host: name, wildcard, ...(port ? { port } : {}) };
}

/** Whether a host (normalized) and port match a pattern. */
export function hostMatches(pattern: HostPattern, host: string, port: number): boolean {
  if (pattern.port !== undefined && pattern.port !== port) return false;
  if (pattern.wildcard) return host.endsWith(`.${pattern.host}`);
  return host === pattern.host;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `host:port` of an MCP server URL (the scheme's port when it names none); null if not http(s). */
export function mcpServerHost(url: string): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return null;
  const port = u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
  const host = normalizeHost(u.hostname);
  if (!host) return null;
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/**
 * The egress policy of a session's sandboxes, from its environment's config (as stored; null
 * when the environment is gone, whose default networking is `unrestricted`) and the agent's MCP
 * servers. Entries that are not hosts (stored before the API checked them) allow nothing.
 */
export function planEgress(config: unknown, mcpServers: ReadonlyArray<{ url?: unknown }> = []): EgressPolicy {
  const networking = isObject(config) ? config.networking : undefined;
  if (!isObject(networking) || networking.type !== 'limited') return { type: 'unrestricted' };
  const allowedHosts = (Array.isArray(networking.allowed_hosts) ? networking.allowed_hosts : [])
    .filter((h): h is string => typeof h === 'string' && !('error' in parseHostPattern(h)))
    .map((h) => h.trim());
  const allowMcpServers = networking.allow_mcp_servers === true;
  const mcpServerHosts = allowMcpServers
    ? [...new Set(mcpServers.map((s) => (typeof s.url === 'string' ? mcpServerHost(s.url) : null)).filter((h): h is string => h !== null))]
    : [];
  return { type: 'limited', allowedHosts, allowPackageManagers: networking.allow_package_managers === true, allowMcpServers, mcpServerHosts };
}

const patternsOf = (entries: readonly string[]) =>
  entries.map(parseHostPattern).filter((p): p is HostPattern => !('error' in p));

/** Every registry host `allow_package_managers` opens. */
export const PACKAGE_REGISTRY_PATTERNS: readonly HostPattern[] = patternsOf(Object.values(PACKAGE_REGISTRY_HOSTS).flat());

/**
 * Whether a sandbox with `policy` may connect to `host` (as the client named it) on `port`.
 * The message of a denial is meant for the model (it reaches the sandbox's tools): it names the
 * host and the policy, and what would allow it.
 */
export function decideEgress(policy: EgressPolicy, rawHost: string, port: number): EgressDecision {
  const host = normalizeHost(rawHost);
  if (!host || !Number.isInteger(port) || port < 1 || port > 65535) {
    return { allowed: false, message: `${JSON.stringify(rawHost.slice(0, 255))}:${port} is not a valid host and port` };
  }
  if (policy.type === 'unrestricted') return { allowed: true, by: 'unrestricted' };
  if (patternsOf(policy.allowedHosts).some((p) => hostMatches(p, host, port))) return { allowed: true, by: 'allowed_hosts' };
  if (policy.allowPackageManagers && PACKAGE_REGISTRY_PATTERNS.some((p) => hostMatches(p, host, port))) return { allowed: true, by: 'package_managers' };
  if (policy.allowMcpServers && patternsOf(policy.mcpServerHosts).some((p) => hostMatches(p, host, port))) return { allowed: true, by: 'mcp_servers' };
  const shown = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  return {
    allowed: false,
    message:
      `${shown} is not allowed by this environment's networking policy (limited; ` +
      `allowed_hosts: ${policy.allowedHosts.length ? policy.allowedHosts.join(', ') : 'none'}; ` +
      `allow_package_managers: ${policy.allowPackageManagers}; allow_mcp_servers: ${policy.allowMcpServers}). ` +
      `Add the host to the environment's networking.allowed_hosts to reach it.`,
  };
}

/**
 * Addresses no sandbox connects to, whatever its policy: this-network, private (RFC 1918, unique
 * local), shared (CGNAT), loopback, link-local (cloud metadata services among them), benchmarking,
 * documentation, multicast and reserved ranges, and IPv6 forms that embed one of the IPv4 ones.
 */
const PRIVATE_V4: Array<[string, number]> = [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
];
const PRIVATE_V6: Array<[string, number]> = [
  ['::', 128],
  ['::1', 128],
  ['100::', 64],
  ['2001:db8::', 32],
  ['fc00::', 7],
  ['fe80::', 10],
  ['fec0::', 10],
  ['ff00::', 8],
];
const privateBlocks = new net.BlockList();
for (const [a, p] of PRIVATE_V4) privateBlocks.addSubnet(a, p, 'ipv4');
for (const [a, p] of PRIVATE_V6) privateBlocks.addSubnet(a, p, 'ipv6');

/** The IPv4 address an IPv6 one carries (mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, compatible `::a.b.c.d`), if any. */
function embeddedIPv4(ip: string): string | null {
  const c = canonicalIPv6(ip);
  const m = /^(?:::ffff:|64:ff9b::|::)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(c) ?? /^(?:::ffff:|64:ff9b::|::)(\d+\.\d+\.\d+\.\d+)$/.exec(c);
  if (!m) return null;
  if (m[2] === undefined) return m[1]!;
  const hi = parseInt(m[1]!, 16);
  const lo = parseInt(m[2], 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

/** Whether an address is one no sandbox may connect to (see above). Anything not an IP is private. */
export function isPrivateAddress(ip: string): boolean {
  if (net.isIPv4(ip)) return privateBlocks.check(ip, 'ipv4');
  if (!net.isIPv6(ip)) return true;
  const v4 = embeddedIPv4(ip);
  if (v4 !== null) return privateBlocks.check(v4, 'ipv4');
  return privateBlocks.check(ip, 'ipv6');
}

/**
 * A list of addresses and CIDR blocks (`127.0.0.1`, `10.1.0.0/16`, `::1/128`) as a predicate.
 * Only for a proxy's explicit exceptions to `isPrivateAddress` (tests reach loopback servers with
 * it); no API field or configuration reaches it.
 */
export function addressList(entries: readonly string[]): (ip: string) => boolean {
  const list = new net.BlockList();
  for (const e of entries) {
    const [addr, bits] = e.split('/');
    const type = net.isIPv4(addr!) ? 'ipv4' : net.isIPv6(addr!) ? 'ipv6' : null;
    if (!type) throw new Error(`${JSON.stringify(e)} is not an IP address or CIDR block`);
    const prefix = bits === undefined ? (type === 'ipv4' ? 32 : 128) : Number(bits);
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > (type === 'ipv4' ? 32 : 128)) throw new Error(`${JSON.stringify(e)} has an invalid prefix length`);
    list.addSubnet(addr!, prefix, type);
  }
  return (ip) => {
    if (net.isIPv4(ip)) return list.check(ip, 'ipv4');
    if (!net.isIPv6(ip)) return false;
    const v4 = embeddedIPv4(ip);
    return v4 !== null ? list.check(v4, 'ipv4') : list.check(ip, 'ipv6');
  };
}
