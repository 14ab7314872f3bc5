// Run inside a sandbox task's own network namespace (bubblewrap --unshare-net) in the deploy
// rehearsal: the task has no network but its loopback, as a Fargate task whose security group
// reaches only the proxy service has no way out but the proxy. This listens on 127.0.0.1:<port>
// inside the namespace and passes each connection to <socket>, a Unix socket the rehearsal serves
// from the host side, where the connection leaves from the task's private address towards the
// proxy service's load balancer, through the security groups' check. Then it runs the container's
// command and exits with it.
//   node netns-egress.mjs <port> <socket> -- <command...>
import { spawn } from 'node:child_process';
import net from 'node:net';

const [port, socketPath, separator, ...command] = process.argv.slice(2);
if (separator !== '--' || !command.length) throw new Error('usage: netns-egress.mjs <port> <socket> -- <command...>');
const server = net.createServer((client) => {
  const upstream = net.connect(socketPath);
  const end = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', end);
  upstream.on('error', end);
  client.on('close', end);
  upstream.on('close', end);
  client.pipe(upstream).pipe(client);
});
server.listen(Number(port), '127.0.0.1', () => {
  const child = spawn(command[0], command.slice(1), { stdio: 'inherit' });
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => process.exit(code ?? (signal === 'SIGTERM' ? 143 : 137)));
});
