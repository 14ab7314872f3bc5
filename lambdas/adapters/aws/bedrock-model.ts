/**
 * Claude on Amazon Bedrock, with the calling function's IAM role: no model key anywhere.
 *
 * The Bedrock runtime's InvokeModelWithResponseStream takes the Messages API's body (without
 * `model` and `stream`, with `anthropic_version`) at `POST /model/{modelId}/invoke-with-response-stream`,
 * SigV4-signed for the service `bedrock`, and answers in the AWS event-stream format: `chunk`
 * events whose `bytes` are the Messages API's stream events, base64. So the provider is a `fetch`
 * under the official client (`AnthropicModel`): it translates the model id (model-ids.ts), signs
 * and sends the request, and turns the event stream back into the SSE the client reads. Streaming,
 * time to first token, retries and error classes are then the same code as the Anthropic API's.
 */
import { SignatureV4 } from '@smithy/signature-v4';
import type { HttpRequest } from '@smithy/types';
import { AnthropicModel, ModelError, type ModelCallOptions, type ModelClient, type ModelRequest, type ModelResponse } from '../../core/harness/model.js';
import { UnsupportedModelError, bedrockProfilePrefix, bedrockTarget } from '../../core/harness/model-ids.js';
import { EventStreamDecoder } from './event-stream.js';
import { fromEnv, Sha256, type Credentials } from './signed-http.js';

export const BEDROCK_ANTHROPIC_VERSION = 'bedrock-2023-05-31';

export interface BedrockModelOptions {
  /** Bedrock's region. @default `AWS_REGION` */
  region?: string;
  /** Inference-profile prefix (`us`, `eu`, `apac`, `global`, ...). @default - the region's geography */
  profile?: string;
  /** The Claude ids the deployment is configured (and granted) for; others are refused before a call. */
  allowed?: readonly string[];
  /** @default `AWS_ENDPOINT_URL_BEDROCK_RUNTIME ?? AWS_ENDPOINT_URL`, else Bedrock's own */
  endpoint?: string;
  /** @default the function's own (Lambda's environment) */
  credentials?: Credentials;
  timeoutMs?: number;
}

/** Bedrock's error names -> the Messages API's error types, for messages that say what happened. */
const ERROR_TYPES: Record<string, string> = {
  ThrottlingException: 'rate_limit_error',
  throttlingException: 'rate_limit_error',
  ServiceUnavailableException: 'overloaded_error',
  serviceUnavailableException: 'overloaded_error',
  ModelNotReadyException: 'overloaded_error',
  InternalServerException: 'api_error',
  internalServerException: 'api_error',
  modelStreamErrorException: 'api_error',
  ValidationException: 'invalid_request_error',
  validationException: 'invalid_request_error',
  AccessDeniedException: 'permission_error',
  ResourceNotFoundException: 'not_found_error',
};

const errorJson = (name: string, message: string) =>
  JSON.stringify({ type: 'error', error: { type: ERROR_TYPES[name] ?? 'api_error', message: `Bedrock ${name}: ${message}` } });

/** The event stream of a Bedrock answer as the SSE of the Messages API. */
function eventStreamToSse(body: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  const decoder = new EventStreamDecoder();
  const text = new TextEncoder();
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(ctrl) {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) {
          decoder.end();
          ctrl.close();
          return;
        }
        const messages = decoder.push(value);
        if (!messages.length) continue;
        let out = '';
        for (const m of messages) {
          const kind = m.headers[':message-type'];
          const payload = Buffer.from(m.payload).toString('utf8');
          if (kind === 'event' && m.headers[':event-type'] === 'chunk') {
            const bytes = (JSON.parse(payload) as { bytes?: string }).bytes;
            if (typeof bytes !== 'string') continue;
            const event = Buffer.from(bytes, 'base64').toString('utf8');
            const type = (JSON.parse(event) as { type?: string }).type ?? 'message';
            out += `event: ${type}\ndata: ${event}\n\n`;
          } else if (kind === 'exception' || kind === 'error') {
            const name = String(m.headers[':exception-type'] ?? m.headers[':error-code'] ?? 'error');
            let message = payload;
            try {
              message = (JSON.parse(payload) as { message?: string }).message ?? payload;
            } catch {
              // Not JSON: the payload is the message.
            }
            out += `event: error\ndata: ${errorJson(name, message.slice(0, 500))}\n\n`;
          }
        }
        if (out) {
          ctrl.enqueue(text.encode(out));
          return;
        }
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

/**
 * The `fetch` that speaks Bedrock for the client: `/v1/messages` with a Messages body in, the
 * signed InvokeModelWithResponseStream out, its answer back as the client expects it.
 */
export function bedrockFetch(opts: Required<Pick<BedrockModelOptions, 'region' | 'profile'>> & BedrockModelOptions): typeof fetch {
  const base = new URL(opts.endpoint ?? process.env.AWS_ENDPOINT_URL_BEDROCK_RUNTIME ?? process.env.AWS_ENDPOINT_URL ?? `https://bedrock-runtime.${opts.region}.amazonaws.com`);
  const signer = new SignatureV4({ service: 'bedrock', region: opts.region, credentials: opts.credentials ?? fromEnv, sha256: Sha256, uriEscapePath: true });
  return async (input, init = {}) => {
    const body = JSON.parse(String(init.body)) as Record<string, unknown> & { model: string };
    const target = bedrockTarget(body.model, { profile: opts.profile, allowed: opts.allowed });
    const headers = new Headers(init.headers);
    const betas = headers.get('anthropic-beta');
    const { model: _model, stream: _stream, ...rest } = body;
    const payload = JSON.stringify({
      anthropic_version: BEDROCK_ANTHROPIC_VERSION,
      ...rest,
      ...(betas ? { anthropic_beta: betas.split(',').map((b) => b.trim()).filter(Boolean) } : {}),
    });
    const path = `${base.pathname.replace(/\/$/, '')}/model/${encodeURIComponent(target.invokeId)}/invoke-with-response-stream`;
    const request: HttpRequest = {
      method: 'POST',
      protocol: base.protocol,
      hostname: base.hostname,
      ...(base.port ? { port: Number(base.port) } : {}),
      path,
      query: {},
      headers: { host: base.host, 'content-type': 'application/json', accept: 'application/vnd.amazon.eventstream' },
      body: payload,
    };
    const signed = (await signer.sign(request)) as HttpRequest;
    const sent = { ...signed.headers };
    // fetch sets Host itself, from the URL: the same value that was signed.
    delete sent.host;
    const answer = await fetch(`${base.protocol}//${base.host}${path}`, { method: 'POST', headers: sent, body: payload, signal: init.signal });
    if (answer.status >= 300) {
      const text = await answer.text().catch(() => '');
      let parsed: { message?: string; Message?: string } = {};
      try {
        parsed = JSON.parse(text) as typeof parsed;
      } catch {
        parsed = {};
      }
      const name = (answer.headers.get('x-amzn-errortype') ?? `Http${answer.status}`).split(':')[0];
      return new Response(errorJson(name, (parsed.message ?? parsed.Message ?? text).slice(0, 500)), {
        status: answer.status,
        headers: { 'content-type': 'application/json', ...(answer.headers.get('x-amzn-requestid') ? { 'request-id': answer.headers.get('x-amzn-requestid')! } : {}) },
      });
    }
    if (!answer.body) throw new Error('Bedrock answered without a body');
    return new Response(eventStreamToSse(answer.body), { status: 200, headers: { 'content-type': 'text/event-stream' } });
  };
}

/** The `bedrock` provider: a model id Bedrock cannot serve is a model error before any call. */
export class BedrockModel implements ModelClient {
  private readonly inner: AnthropicModel;
  private readonly profile: string;

  constructor(private readonly opts: BedrockModelOptions = {}) {
    const region = opts.region ?? process.env.AWS_REGION;
    if (!region) throw new Error('the bedrock model provider needs a region (CORRAL_BEDROCK_REGION or AWS_REGION)');
    this.profile = opts.profile ?? bedrockProfilePrefix(region);
    this.inner = new AnthropicModel({
      // The client insists on a credential; Bedrock's is the signature, and this never leaves the process.
      apiKey: 'bedrock-iam',
      baseURL: 'http://bedrock.invalid',
      timeoutMs: opts.timeoutMs,
      fetch: bedrockFetch({ ...opts, region, profile: this.profile }),
    });
  }

  complete(request: ModelRequest, opts?: ModelCallOptions): Promise<ModelResponse> {
    try {
      bedrockTarget(request.model, { profile: this.profile, allowed: this.opts.allowed });
    } catch (err) {
      if (err instanceof UnsupportedModelError) return Promise.reject(new ModelError('model_request_failed_error', false, err.message, 400));
      return Promise.reject(err);
    }
    return this.inner.complete(request, opts);
  }
}
