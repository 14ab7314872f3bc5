import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import dynalite from 'dynalite';
import { UNIX_ENDPOINT_PREFIX, localDynamoClient } from './dynamo-client.js';
import { InProcessDynaliteHandler, type DynaliteServe } from './in-process-handler.js';

export interface EmbeddedDynamo {
  /** A client for this process: its requests reach dynalite without a socket (InProcessDynaliteHandler). */
  client: DynamoDBClient;
  /** `http://127.0.0.1:<port>`, or `unix:<path>` when listening on a unix socket (see `localDynamoClient`). */
  endpoint: string;
  close(): Promise<void>;
}

/**
 * dynalite, started in-process. With `path` it persists to disk (LevelDB), so data survives a
 * restart; without it, it keeps everything in memory (tests).
 *
 * dynalite checks no credentials: whoever can connect can read and change every tenant's data.
 * With `socketPath` it listens on a unix socket (mode 0600, to be placed in a directory only
 * this user can enter), so no other local user can reach it; without one it listens on a
 * loopback TCP port, which every local user can reach (tests only).
 */
// The AWS SDK warns about Node 20 on every client; the local runtime knows.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** The longest `close` waits for requests being handled before it closes the database. */
const CLOSE_DRAIN_MS = 5_000;

export async function startDynalite(opts: { path?: string; port?: number; socketPath?: string } = {}): Promise<EmbeddedDynamo> {
  if (opts.path) mkdirSync(opts.path, { recursive: true, mode: 0o700 });
  const server: Server = dynalite({
    path: opts.path,
    createTableMs: 0,
    deleteTableMs: 0,
    updateTableMs: 0,
  });
  // dynalite closes its database once the HTTP server has no connections left, but a request whose
  // connection a client cut (as `client.destroy()` does) is still being handled then, and a query it
  // had begun throws LEVEL_DATABASE_NOT_OPEN from a timer: an uncaught error that ends the process.
  // So count the requests being handled, by when dynalite answers them, and let `close` wait for
  // them; once closing, refuse new requests before dynalite sees them.
  let handling = 0;
  let closing = false;
  let drained: (() => void) | undefined;
  const handlers = server.listeners('request') as DynaliteServe[];
  server.removeAllListeners('request');
  const serve: DynaliteServe = (req, res) => {
    handling++;
    let done = false;
    const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
    res.end = ((...args: unknown[]) => {
      if (!done) {
        done = true;
        if (--handling === 0) drained?.();
      }
      return end(...args);
    }) as ServerResponse['end'];
    for (const handle of handlers) handle.call(server, req, res);
  };
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (closing) {
      res.destroy();
      return;
    }
    serve(req, res);
  });
  let endpoint: string;
  if (opts.socketPath) {
    const socketPath = opts.socketPath;
    rmSync(socketPath, { force: true }); // a socket left by a process that died
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => resolve());
    });
    chmodSync(socketPath, 0o600);
    endpoint = `${UNIX_ENDPOINT_PREFIX}${socketPath}`;
  } else {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
    });
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }
  // This process's own client skips the socket; the endpoint serves other processes (the credential proxy).
  const client = localDynamoClient(endpoint, { inProcess: new InProcessDynaliteHandler(serve, () => closing) });
  return {
    client,
    endpoint,
    async close() {
      closing = true;
      client.destroy();
      if (handling > 0) {
        // Bounded: a request dynalite never answers must not hold the close forever.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, CLOSE_DRAIN_MS);
          drained = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (opts.socketPath) rmSync(opts.socketPath, { force: true });
    },
  };
}
