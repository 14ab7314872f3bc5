import { InvokeCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import type { ProxyRequest, ProxyResponse, ProxyTransport } from '../../core/vault/protocol.js';

/**
 * The harness's and the API's way to the credential proxy on AWS: a synchronous Lambda Invoke of
 * the proxy function (their roles may invoke it; only its role reads the vault's secrets).
 */
export class LambdaProxyTransport implements ProxyTransport {
  constructor(
    private readonly client: LambdaClient,
    private readonly functionName: string,
  ) {}

  async call(request: ProxyRequest): Promise<ProxyResponse> {
    const out = await this.client.send(
      new InvokeCommand({
        FunctionName: this.functionName,
        InvocationType: 'RequestResponse',
        Payload: new TextEncoder().encode(JSON.stringify(request)),
      }),
    );
    const text = out.Payload ? new TextDecoder().decode(out.Payload) : '';
    if (out.FunctionError) {
      // The function crashed: its error payload is not passed on (it could quote its input).
      return { ok: false, error: { kind: 'internal', message: `the credential proxy function failed (${out.FunctionError})` } };
    }
    try {
      return JSON.parse(text) as ProxyResponse;
    } catch {
      return { ok: false, error: { kind: 'internal', message: 'the credential proxy function answered without JSON' } };
    }
  }
}
