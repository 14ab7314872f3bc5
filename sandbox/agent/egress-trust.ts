import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { Log } from './log.js';

/**
 * The egress CA's trust bundle, made by the agent itself where no provider puts one in place (a
 * Fargate sandbox: its task has no host directory to bind-mount). The agent asks the proxy service
 * for the CA's certificate (`GET /egress-ca.pem` through its own egress forwarder, which adds the
 * sandbox's capability), appends it to the image's system bundle, writes the result readable by
 * every user (the tools may run as another uid) and points the tools' CA variables at it, as the
 * local provider does with `/run/corral-ca/ca-bundle.pem`. The certificate is public; the CA's
 * key never leaves the proxy service.
 */

/** The variables that make the usual clients trust a CA bundle (as `CA_BUNDLE_VARIABLES` of the local provider). */
export const CA_BUNDLE_VARIABLES = ['SSL_CERT_FILE', 'NODE_EXTRA_CA_CERTS', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE', 'GIT_SSL_CAINFO'] as const;

/** The path the proxy service serves the CA's certificate at (sandbox-facing port). */
export const EGRESS_CA_PATH = '/egress-ca.pem';

/** Where distributions keep the system's CA bundle (Debian/Ubuntu/Alpine, then Fedora/RHEL). */
const SYSTEM_BUNDLES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt'];
const MAX_PEM = 16 * 1024;
const PEM = /^-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\r?\n?$/;

/** GET `url` once; the body if it is one PEM certificate, else an error saying why. */
function getPem(url: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_PEM) req.destroy(new Error('the egress CA certificate is too large'));
        else chunks.push(c);
      });
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) reject(new Error(`the proxy answered ${res.statusCode} for the egress CA`));
        else if (!PEM.test(text)) reject(new Error('the proxy\'s egress CA is not one PEM certificate'));
        else resolve(text.endsWith('\n') ? text : `${text}\n`);
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('the proxy did not answer in time')));
    req.on('error', reject);
  });
}

/** The system's bundle (the image's), or '' if it has none. */
function systemBundle(): string {
  for (const file of SYSTEM_BUNDLES) {
    try {
      return fs.readFileSync(file, 'utf8');
    } catch {
      // not this distribution's
    }
  }
  return '';
}

/**
 * Fetches the egress CA from the proxy at `proxyUrl` (the forwarder's loopback address), writes
 * `<dir>/ca-bundle.pem` (system CAs + the egress CA) and returns the tools' variables pointing at
 * it. Tries `attempts` times; on failure returns no variables and logs why (the tools then fail
 * TLS only towards hosts where a credential is substituted, with their own certificate error).
 */
export async function installEgressTrust(proxyUrl: string, dir: string, log: Log = () => {}, opts: { attempts?: number; pauseMs?: number; timeoutMs?: number } = {}): Promise<Record<string, string>> {
  const attempts = opts.attempts ?? 5;
  let lastError = '';
  for (let i = 0; i < attempts; i++) {
    try {
      const pem = await getPem(`${proxyUrl.replace(/\/$/, '')}${EGRESS_CA_PATH}`, opts.timeoutMs ?? 5_000);
      fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
      fs.chmodSync(dir, 0o755);
      const file = path.join(dir, 'ca-bundle.pem');
      const system = systemBundle().trimEnd();
      fs.writeFileSync(file, system ? `${system}\n${pem}` : pem, { mode: 0o644 });
      fs.chmodSync(file, 0o644);
      return Object.fromEntries(CA_BUNDLE_VARIABLES.map((name) => [name, file]));
    } catch (err) {
      lastError = (err as Error).message;
      if (i + 1 < attempts) await new Promise((r) => setTimeout(r, opts.pauseMs ?? 1_000));
    }
  }
  log('warn', 'egress CA: could not be fetched from the proxy; tools will not trust it', { error: lastError });
  return {};
}
