/**
 * Model forwarding on AWS: the proxy service's harness-facing route (`/model/v1/messages` on port
 * 8081, which only the harness's security group reaches). The harness calls it with no key
 * (`CORRAL_MODEL_PROXY_URL`); this reads the key from the SSM SecureString parameter with the
 * service's own role, adds it, and forwards the call to the provider's base URL, the answer
 * streamed back as it arrives (`core/vault/model-forward.ts`, shared with the local proxy).
 */
import type http from 'node:http';
import { getRequestListener } from '@hono/node-server';
import { forwardModelCall, type ModelForwardOptions } from '../../core/vault/model-forward.js';
import type { SsmParameters } from './ssm-parameter.js';

/** The path prefix the harness's base URL ends with (`http://<service>:8081/model`). */
export const MODEL_ROUTE_PREFIX = '/model/';

export interface ModelForwarderOptions extends Pick<ModelForwardOptions, 'fetch' | 'maxRequestBytes' | 'timeoutMs'> {
  /** The parameter holding the key (`CORRAL_MODEL_API_KEY_PARAMETER`). */
  keyParameter: string;
  /** How the parameter is read: SSM with the service's role. */
  ssm: Pick<SsmParameters, 'get'>;
  /** The provider's base URL (`ANTHROPIC_BASE_URL`). @default the Claude API */
  baseUrl?: string;
  /**
   * The key is read again after this long, so that a rotated key is taken up without a restart.
   * @default 300000 (5 minutes)
   */
  keyTtlMs?: number;
  /**
   * Model calls one task forwards at once; more are answered 503 (the harness retries those
   * with backoff, as it does the provider's own overloads). @default 512
   */
  maxConcurrent?: number;
  now?: () => number;
}

export interface ModelForwarder {
  readonly prefix: string;
  readonly name: string;
  /** Calls in flight (for the service's connection log and tests). */
  inFlight(): number;
  handle(req: http.IncomingMessage, res: http.ServerResponse): void | Promise<void>;
}

function overloaded(message: string): Response {
  return new Response(JSON.stringify({ type: 'error', error: { type: 'overloaded_error', message } }), {
    status: 503,
    headers: { 'content-type': 'application/json', 'x-should-retry': 'true' },
  });
}

export function createModelForwarder(opts: ModelForwarderOptions): ModelForwarder {
  const now = opts.now ?? Date.now;
  const ttl = opts.keyTtlMs ?? 300_000;
  const max = opts.maxConcurrent ?? 512;
  let key: { value: string; readAt: number } | null = null;
  let reading: Promise<string> | null = null;
  let active = 0;

  const apiKey = async (): Promise<string> => {
    if (key && now() - key.readAt < ttl) return key.value;
    reading ??= opts.ssm
      .get(opts.keyParameter, { withDecryption: true })
      .then((value) => {
        if (!value) throw new Error('the model key parameter has no value');
        key = { value, readAt: now() };
        return value;
      })
      .finally(() => {
        reading = null;
      });
    return reading;
  };

  const listener = getRequestListener(async (request) => {
    if (active >= max) return overloaded('the proxy service forwards too many model calls at once');
    active++;
    let released = false;
    const release = () => {
      if (!released) {
        released = true;
        active--;
      }
    };
    try {
      let value: string;
      try {
        value = await apiKey();
      } catch {
        // The cause may name the parameter's ARN and the role; the harness needs only to retry.
        release();
        return new Response(JSON.stringify({ type: 'error', error: { type: 'api_error', message: 'the proxy service could not read the model key' } }), {
          status: 502,
          headers: { 'content-type': 'application/json' },
        });
      }
      const url = new URL(request.url);
      const answer = await forwardModelCall(request, url.pathname.slice(MODEL_ROUTE_PREFIX.length - 1) + url.search, { apiKey: value, baseUrl: opts.baseUrl }, opts);
      if (!answer.body) {
        release();
        return answer;
      }
      // The call counts until its stream has been passed on (or abandoned).
      const reader = answer.body.getReader();
      const counted = new ReadableStream<Uint8Array>({
        async pull(controller) {
          try {
            const { done, value } = await reader.read();
            if (done) {
              release();
              controller.close();
            } else controller.enqueue(value);
          } catch (err) {
            release();
            controller.error(err);
          }
        },
        cancel(reason) {
          release();
          return reader.cancel(reason);
        },
      });
      request.signal.addEventListener('abort', release, { once: true });
      return new Response(counted, { status: answer.status, statusText: answer.statusText, headers: answer.headers });
    } catch (err) {
      release();
      throw err;
    }
  });

  return {
    prefix: MODEL_ROUTE_PREFIX,
    name: 'model',
    inFlight: () => active,
    handle: (req, res) => listener(req, res),
  };
}
