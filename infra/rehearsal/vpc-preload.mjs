// Loaded with `--import` into every process of the deploy rehearsal that lives in the VPC (the
// functions the template attaches to subnets, and nothing else). It gives the process its own
// private address: every TCP connection it opens to the rehearsal's private range leaves from
// that address, so the rehearsal's network can tell who is calling and apply the security
// groups. A process without it (a function outside the VPC) connects from 127.0.0.1, which the
// network treats as the internet: it reaches no private address at all.
import net from 'node:net';

const source = process.env.CORRAL_REHEARSAL_SOURCE_ADDRESS;
const prefix = process.env.CORRAL_REHEARSAL_PRIVATE_PREFIX;

if (source && prefix) {
  const connect = net.Socket.prototype.connect;
  net.Socket.prototype.connect = function patchedConnect(...args) {
    const [first] = args;
    // net.connect() and http hand over their arguments normalized: [options, callback], an array.
    if (Array.isArray(first)) {
      const options = first[0];
      if (options && typeof options.host === 'string' && options.host.startsWith(prefix) && !options.localAddress) first[0] = { ...options, localAddress: source };
    } else if (first && typeof first === 'object') {
      if (typeof first.host === 'string' && first.host.startsWith(prefix) && !first.localAddress) {
        args[0] = { ...first, localAddress: source };
      }
    } else if (typeof first === 'number' && typeof args[1] === 'string' && args[1].startsWith(prefix)) {
      const [port, host, ...rest] = args;
      return connect.call(this, { port, host, localAddress: source }, ...rest.filter((a) => typeof a === 'function'));
    }
    return connect.apply(this, args);
  };
}

// A service task (the stream tier, the proxy service) listens on its container ports, as in its
// own network namespace on Fargate; here every task of the service shares one machine, so a
// listen on one of those ports goes to the task's own socket instead, which the rehearsal serves
// at the task's private address and container port
// (`CORRAL_REHEARSAL_LISTEN=<port>=<socket path>[,<port>=<socket path>...]`).
const listen = process.env.CORRAL_REHEARSAL_LISTEN;
if (listen) {
  const sockets = new Map(
    listen.split(',').map((pair) => {
      const at = pair.indexOf('=');
      return [Number(pair.slice(0, at)), pair.slice(at + 1)];
    }),
  );
  const original = net.Server.prototype.listen;
  net.Server.prototype.listen = function patchedListen(...args) {
    const [first] = args;
    const asked = typeof first === 'object' && first !== null ? Number(first.port) : Number(first);
    const socketPath = sockets.get(asked);
    if (socketPath) return original.call(this, { path: socketPath }, ...args.filter((a) => typeof a === 'function'));
    return original.apply(this, args);
  };
}

// Stand-in names (`CORRAL_REHEARSAL_HOSTS=<name>=<address>[,...]`): the rehearsal's internet is
// loopback, so a registry's name (registry.npmjs.org) must lead there for the process that looks
// it up (the proxy service). Other names resolve as usual.
const hosts = process.env.CORRAL_REHEARSAL_HOSTS;
if (hosts) {
  const { default: dns } = await import('node:dns');
  const table = new Map(hosts.split(',').map((pair) => pair.split('=')).map(([n, a]) => [n.toLowerCase(), a]));
  const answer = (name, options) => {
    const address = table.get(String(name).toLowerCase());
    if (!address) return undefined;
    const all = typeof options === 'object' && options !== null && options.all;
    return all ? [{ address, family: 4 }] : { address, family: 4 };
  };
  const lookup = dns.lookup;
  dns.lookup = function patchedLookup(name, options, callback) {
    const cb = typeof options === 'function' ? options : callback;
    const found = answer(name, typeof options === 'function' ? {} : options);
    if (!found) return lookup.apply(this, arguments);
    process.nextTick(() => (Array.isArray(found) ? cb(null, found) : cb(null, found.address, found.family)));
    return {};
  };
  const lookupPromise = dns.promises.lookup;
  dns.promises.lookup = function patchedPromiseLookup(name, options) {
    const found = answer(name, options);
    return found ? Promise.resolve(found) : lookupPromise.apply(this, arguments);
  };
}
