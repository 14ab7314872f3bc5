/**
 * SSM's GetParameter, the one SSM call Corral makes (the harness reads the model key once per cold
 * start), as one signed AWS JSON 1.1 request (signed-http.ts) instead of `@aws-sdk/client-ssm`,
 * which weighed 77 KiB of the harness bundle for it.
 */
import { readBody, SignedHttp, jsonError, type SignedHttpOptions } from './signed-http.js';

export type SsmOptions = Omit<SignedHttpOptions, 'service'>;

export class SsmParameters {
  private readonly http: SignedHttp;

  constructor(opts: SsmOptions = {}) {
    this.http = new SignedHttp({ service: 'ssm', ...opts });
  }

  /** The parameter's value (a SecureString decrypted), or undefined when it has none. */
  async get(name: string, opts: { withDecryption: boolean }): Promise<string | undefined> {
    const body = Buffer.from(JSON.stringify({ Name: name, WithDecryption: opts.withDecryption }), 'utf8');
    const a = await this.http.send(
      {
        method: 'POST',
        path: '/',
        headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'AmazonSSM.GetParameter', 'content-length': String(body.byteLength) },
        body,
      },
      jsonError,
    );
    const out = JSON.parse((await readBody(a.body)).toString('utf8')) as { Parameter?: { Value?: string } };
    return out.Parameter?.Value;
  }

  destroy(): void {
    this.http.destroy();
  }
}
