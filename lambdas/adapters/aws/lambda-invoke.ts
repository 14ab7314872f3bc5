/**
 * Lambda's synchronous Invoke, the one Lambda call Corral makes (the harness and the API reach the
 * credential proxy function with it), as one signed REST request (signed-http.ts) instead of
 * `@aws-sdk/client-lambda`, which weighed about 72 KiB of each of their bundles for it.
 */
import { headerOf, readBody, SignedHttp, jsonError, type SignedHttpOptions } from './signed-http.js';

export type LambdaInvokeOptions = Omit<SignedHttpOptions, 'service'>;

export interface InvokeResult {
  statusCode: number;
  /** Set when the function failed (`Unhandled`, `Handled`): the payload is then its error. */
  functionError?: string;
  payload: Uint8Array;
}

export class LambdaInvoker {
  private readonly http: SignedHttp;

  constructor(opts: LambdaInvokeOptions = {}) {
    this.http = new SignedHttp({ service: 'lambda', ...opts });
  }

  /** `RequestResponse` invoke of the function (name, ARN or partial ARN) with the payload. */
  async invoke(functionName: string, payload: Uint8Array): Promise<InvokeResult> {
    const a = await this.http.send(
      {
        method: 'POST',
        path: `/2015-03-31/functions/${encodeURIComponent(functionName)}/invocations`,
        headers: { 'content-type': 'application/json', 'x-amz-invocation-type': 'RequestResponse', 'content-length': String(payload.byteLength) },
        body: payload,
      },
      jsonError,
    );
    const functionError = headerOf(a.headers, 'x-amz-function-error');
    return { statusCode: a.status, ...(functionError ? { functionError } : {}), payload: new Uint8Array(await readBody(a.body)) };
  }

  destroy(): void {
    this.http.destroy();
  }
}
