import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SecretsManagerEmulator } from '../../infra/rehearsal/emulators.js';

/**
 * The rehearsal's Secrets Manager emulator served over HTTP on loopback (the JSON protocol,
 * `x-amz-target`), and a real SDK client pointed at it. No authorization: tests of code, not roles.
 */
export async function startSecretsManager(): Promise<{ client: SecretsManagerClient; emulator: SecretsManagerEmulator; close(): Promise<void> }> {
  const emulator = new SecretsManagerEmulator('arn:aws:secretsmanager:eu-west-1:123456789012:secret:');
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const operation = String(req.headers['x-amz-target'] ?? '').split('.').pop() ?? '';
      void emulator
        .handle({ caller: {} as never, service: 'secretsmanager', operation, method: req.method ?? 'POST', path: req.url ?? '/', headers: req.headers, body, json: JSON.parse(body.toString() || '{}') })
        .then((reply) => res.writeHead(reply.status, reply.headers ?? {}).end(reply.body));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = new SecretsManagerClient({
    region: 'eu-west-1',
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test' },
  });
  return { client, emulator, close: () => new Promise<void>((r) => server.close(() => r())) };
}
