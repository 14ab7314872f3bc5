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

// A service task (the stream tier) listens on its container port, as in its own network
// namespace on Fargate; here every task of the service shares one machine, so a listen on that
// port goes to the task's own socket instead, which the rehearsal serves at the task's private
// address and container port (`CORRAL_REHEARSAL_LISTEN=<port>=<socket path>`).
const listen = process.env.CORRAL_REHEARSAL_LISTEN;
if (listen) {
  const at = listen.indexOf('=');
  const port = Number(listen.slice(0, at));
  const socketPath = listen.slice(at + 1);
  const original = net.Server.prototype.listen;
  net.Server.prototype.listen = function patchedListen(...args) {
    const [first] = args;
    const asked = typeof first === 'object' && first !== null ? Number(first.port) : Number(first);
    if (asked === port) return original.call(this, { path: socketPath }, ...args.filter((a) => typeof a === 'function'));
    return original.apply(this, args);
  };
}
