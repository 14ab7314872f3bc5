import { describe, expect, it } from 'vitest';
import {
  PACKAGE_REGISTRY_HOSTS,
  addressList,
  decideEgress,
  isPrivateAddress,
  mcpServerHost,
  parseHostPattern,
  planEgress,
  type EgressPolicy,
} from '../../lambdas/core/sandbox/egress.js';
import { fitRecipe, planRecipe } from '../../lambdas/core/sandbox/recipe.js';
import { EnvironmentCreate } from '../../lambdas/core/api/schemas.js';
import { DELIVERS_EVERYTHING } from './recipe-support.js';

/**
 * The egress policy of a sandbox (the environment's `networking`, as the SDK's types describe it)
 * and the decisions an egress proxy takes with it: host patterns, the package registries, the
 * agent's MCP servers, and the addresses no sandbox connects to.
 */
const limited = (allowed_hosts: string[], extra: Record<string, unknown> = {}, mcp: Array<{ url: string }> = []) =>
  planEgress({ type: 'cloud', networking: { type: 'limited', allowed_hosts, allow_package_managers: false, allow_mcp_servers: false, ...extra } }, mcp);
const allowed = (p: EgressPolicy, host: string, port = 443) => decideEgress(p, host, port).allowed;

describe('allowed_hosts entries', () => {
  it('parses names, wildcards, ports and addresses', () => {
    expect(parseHostPattern('Example.COM.')).toEqual({ host: 'example.com', wildcard: false });
    expect(parseHostPattern('*.example.com:8443')).toEqual({ host: 'example.com', wildcard: true, port: 8443 });
    expect(parseHostPattern('203.0.113.7:80')).toEqual({ host: '203.0.113.7', wildcard: false, port: 80 });
    expect(parseHostPattern('[2001:DB8::1]:443')).toEqual({ host: '2001:db8::1', wildcard: false, port: 443 });
    expect(parseHostPattern('2001:db8::1')).toEqual({ host: '2001:db8::1', wildcard: false });
  });

  it('refuses URLs, bare or inner wildcards, wildcards over a top-level domain, bad ports and labels', () => {
    for (const bad of ['https://example.com', 'example.com/path', 'user@example.com', '*', '*.com', 'a.*.example.com', 'ex*ample.com', 'example.com:0', 'example.com:70000', '-bad.example.com', 'a..b', '[example.com]']) {
      expect(parseHostPattern(bad), bad).toHaveProperty('error');
    }
  });

  it('are checked at the API edge: an entry that is not a host is refused, naming it', () => {
    const r = EnvironmentCreate.safeParse({ name: 'e', config: { type: 'cloud', networking: { type: 'limited', allowed_hosts: ['pypi.org', 'https://example.com/x'] } } });
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error?.issues)).toContain('https://example.com/x');
    expect(EnvironmentCreate.safeParse({ name: 'e', config: { type: 'cloud', networking: { type: 'limited', allowed_hosts: ['*.example.com:443'] } } }).success).toBe(true);
  });
});

describe('decideEgress', () => {
  it('unrestricted allows every host', () => {
    expect(decideEgress({ type: 'unrestricted' }, 'anything.example', 1234)).toEqual({ allowed: true, by: 'unrestricted' });
  });

  it('an exact name matches itself on any port, case-insensitively, not its subdomains', () => {
    const p = limited(['api.example.com']);
    expect(decideEgress(p, 'API.example.com.', 8080)).toEqual({ allowed: true, by: 'allowed_hosts' });
    expect(allowed(p, 'x.api.example.com')).toBe(false);
    expect(allowed(p, 'example.com')).toBe(false);
    expect(allowed(p, 'api.example.com.evil.test')).toBe(false);
  });

  it('a wildcard matches subdomains at any depth, not the domain itself nor a lookalike', () => {
    const p = limited(['*.example.com']);
    expect(allowed(p, 'a.example.com')).toBe(true);
    expect(allowed(p, 'a.b.example.com')).toBe(true);
    expect(allowed(p, 'example.com')).toBe(false);
    expect(allowed(p, 'badexample.com')).toBe(false);
  });

  it('a port restricts the entry to that port', () => {
    const p = limited(['example.com:8443', '*.svc.test:443']);
    expect(allowed(p, 'example.com', 8443)).toBe(true);
    expect(allowed(p, 'example.com', 443)).toBe(false);
    expect(allowed(p, 'a.svc.test', 443)).toBe(true);
    expect(allowed(p, 'a.svc.test', 80)).toBe(false);
  });

  it('an address entry matches a connection naming that address', () => {
    const p = limited(['203.0.113.7', '[2001:db8::1]:443']);
    expect(allowed(p, '203.0.113.7', 80)).toBe(true);
    expect(allowed(p, '[2001:0db8:0:0::1]', 443)).toBe(true);
    expect(allowed(p, '203.0.113.8', 80)).toBe(false);
  });

  it('a denial names the host, the port and the policy, for the model to read', () => {
    const d = decideEgress(limited(['pypi.org']), 'evil.test', 443);
    expect(d.allowed).toBe(false);
    if (!d.allowed) {
      expect(d.message).toContain('evil.test:443');
      expect(d.message).toContain('allowed_hosts: pypi.org');
      expect(d.message).toContain('allow_package_managers: false');
    }
    expect(decideEgress({ type: 'unrestricted' }, 'not a host', 443).allowed).toBe(false);
  });

  it('allow_package_managers opens the public registries of every manager, and only with it', () => {
    const on = limited([], { allow_package_managers: true });
    const off = limited([]);
    for (const host of ['pypi.org', 'files.pythonhosted.org', 'registry.npmjs.org', 'deb.debian.org', 'us.archive.ubuntu.com', 'index.crates.io', 'rubygems.org', 'proxy.golang.org']) {
      expect(decideEgress(on, host, 443), host).toEqual({ allowed: true, by: 'package_managers' });
      expect(allowed(off, host), host).toBe(false);
    }
    expect(Object.keys(PACKAGE_REGISTRY_HOSTS).sort()).toEqual(['apt', 'cargo', 'gem', 'go', 'npm', 'pip']);
    expect(allowed(on, 'evil.test')).toBe(false);
  });

  it("allow_mcp_servers opens the agent's MCP servers, each at its URL's port, and only with it", () => {
    const mcp = [{ url: 'https://mcp.example.com/sse' }, { url: 'http://tools.internal.test:8080/mcp' }];
    const on = limited([], { allow_mcp_servers: true }, mcp);
    expect(on).toMatchObject({ mcpServerHosts: ['mcp.example.com:443', 'tools.internal.test:8080'] });
    expect(decideEgress(on, 'mcp.example.com', 443)).toEqual({ allowed: true, by: 'mcp_servers' });
    expect(allowed(on, 'mcp.example.com', 80)).toBe(false);
    expect(allowed(on, 'tools.internal.test', 8080)).toBe(true);
    const off = limited([], {}, mcp);
    expect(off).toMatchObject({ mcpServerHosts: [] });
    expect(allowed(off, 'mcp.example.com', 443)).toBe(false);
    expect(mcpServerHost('ftp://x.test/')).toBeNull();
  });
});

describe('planEgress and the recipe', () => {
  it('an environment without networking, or gone, is unrestricted; stored entries that are not hosts allow nothing', () => {
    expect(planEgress({ type: 'cloud' })).toEqual({ type: 'unrestricted' });
    expect(planEgress(null)).toEqual({ type: 'unrestricted' });
    expect(limited(['https://old.example/', 'ok.example'])).toMatchObject({ allowedHosts: ['ok.example'] });
  });

  it('is planned with the recipe from the environment and the agent, and handed to every provider', () => {
    const plan = planRecipe({
      session: { environment_id: 'env_1', resources: [], agent: { mcp_servers: [{ url: 'https://mcp.example.com/' }] } },
      environment: { config: { type: 'cloud', networking: { type: 'limited', allowed_hosts: ['a.test'], allow_mcp_servers: true, allow_package_managers: false } } },
      credentials: [],
    });
    const policy = { type: 'limited', allowedHosts: ['a.test'], allowPackageManagers: false, allowMcpServers: true, mcpServerHosts: ['mcp.example.com:443'] };
    expect(plan.networking).toEqual(policy);
    expect(fitRecipe(plan, DELIVERS_EVERYTHING).recipe.networking).toEqual(policy);
  });
});

describe('private addresses', () => {
  it('refuses loopback, private, link-local (metadata), CGNAT, multicast, and IPv6 forms of them', () => {
    for (const ip of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '224.0.0.1', '255.255.255.255', '::1', '::', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '::ffff:169.254.169.254', '64:ff9b::a00:1', 'not-an-ip']) {
      expect(isPrivateAddress(ip), ip).toBe(true);
    }
  });

  it('lets public addresses through', () => {
    for (const ip of ['93.184.216.34', '1.1.1.1', '2606:4700::1111', '::ffff:8.8.8.8', '172.32.0.1']) {
      expect(isPrivateAddress(ip), ip).toBe(false);
    }
  });

  it('an explicit exception list matches addresses and blocks, IPv4-mapped ones included', () => {
    const allow = addressList(['127.0.0.1', '10.9.0.0/16']);
    expect(allow('127.0.0.1')).toBe(true);
    expect(allow('::ffff:127.0.0.1')).toBe(true);
    expect(allow('127.0.0.2')).toBe(false);
    expect(allow('10.9.200.1')).toBe(true);
    expect(() => addressList(['localhost'])).toThrow(/not an IP/);
  });
});
