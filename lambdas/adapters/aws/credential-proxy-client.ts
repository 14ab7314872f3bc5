import type { ProxyRequest, ProxyResponse, ProxyTransport } from '../../core/vault/protocol.js';
import type { LambdaInvoker } from './lambda-invoke.js';

/**
 * The harness's and the API's way to the credential proxy on AWS: a synchronous Lambda Invoke of
 * the proxy function (their roles may invoke it; only its role reads the vault's secrets).
 */
export class LambdaProxyTransport implements ProxyTransport {
  constructor(
    private readonly client: Pick<LambdaInvoker, 'invoke'>,
    private readonly functionName: string,
  ) {}

  async call(request: ProxyRequest): Promise<ProxyResponse> {
    const out = await this.client.invoke(this.functionName, new TextEncoder().encode(JSON.stringify(request)));
    const text = new TextDecoder().decode(out.payload);
    if (out.functionError) {
      // The function crashed: its error payload is not passed on (it could quote its input).
      return { ok: false, error: { kind: 'internal', message: `the credential proxy function failed (${out.functionError})` } };
    }
    try {
      return JSON.parse(text) as ProxyResponse;
    } catch {
      return { ok: false, error: { kind: 'internal', message: 'the credential proxy function answered without JSON' } };
    }
  }
}
