import type Anthropic from '@anthropic-ai/sdk';
import { BaseAnthropic } from '@anthropic-ai/sdk/client';
import { Messages } from '@anthropic-ai/sdk/resources/messages/messages';
import type { ModelOptions } from './model-options.js';

/**
 * The official client with the one resource Corral calls, Messages. The SDK's default export
 * builds every resource (beta agents, sessions, organization, skills...), which a bundle cannot
 * drop: about 300 KB of the harness's and the API's Lambda bundles. This is the SDK's own base
 * client (same requests, headers, timeouts, errors) with only `messages` attached.
 */
class MessagesClient extends BaseAnthropic {
  readonly messages = new Messages(this);
}

/** A content block of a model response, as the Messages API returns it. */
export type ModelBlock =
  | { type: 'text'; text: string }
  | { type: 'tool_use'; id: string; name: string; input: unknown }
  | { type: 'thinking'; thinking: string; signature?: string }
  | { type: string; [k: string]: unknown };

export interface ModelUsage {
  input_tokens: number;
  output_tokens: number;
  cache_read_input_tokens: number;
  cache_creation_input_tokens: number;
}

export interface ModelResponse {
  content: ModelBlock[];
  stopReason: string | null;
  usage: ModelUsage;
  /** Milliseconds from sending the request to the first streamed token. */
  timeToFirstTokenMs: number | null;
}

/** A tool the model may call: one the harness runs (with an input schema), or a server tool the provider runs (by its `type`). */
export type ModelTool =
  | { name: string; description: string; input_schema: Record<string, unknown> }
  | { type: string; name: string; [field: string]: unknown };

export interface ModelRequest {
  model: string;
  system?: string;
  messages: Array<{ role: 'user' | 'assistant'; content: unknown[] }>;
  tools: ModelTool[];
  maxTokens: number;
  /** Mark the system prompt and the tools as a cacheable prefix (prompt caching). */
  cache?: boolean;
  /** The agent's model configuration as request fields (model-options.ts). */
  options?: ModelOptions;
}

/**
 * A model error, classified the way `session.error` reports it. `retryable` errors (429, 5xx,
 * 529, a dropped stream) are retried with backoff; the others end the turn at once.
 */
export class ModelError extends Error {
  constructor(
    readonly errorType: 'model_overloaded_error' | 'model_rate_limited_error' | 'model_request_failed_error' | 'billing_error',
    readonly retryable: boolean,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'ModelError';
  }
}

/**
 * A fragment of the answer as the model streams it, by content block (`block` is the block's
 * index in the response's `content`): text, the start of a thinking block (its text is not
 * previewed: the log keeps none), or a piece of a tool call's input JSON. Fragments are only a
 * preview; the `ModelResponse` is the answer.
 */
export type ModelDelta =
  | { type: 'text'; block: number; text: string }
  | { type: 'thinking'; block: number }
  | { type: 'tool_input'; block: number; partial_json: string };

export interface ModelCallOptions {
  /** Aborts the call (an interrupt); nothing partial is returned then. */
  signal?: AbortSignal;
  /** Called with each fragment as it streams in; must not throw or block. */
  onDelta?: (delta: ModelDelta) => void;
}

export interface ModelClient {
  /** One streamed model call. */
  complete(request: ModelRequest, opts?: ModelCallOptions): Promise<ModelResponse>;
}

export function classifyModelError(err: unknown): ModelError {
  if (err instanceof ModelError) return err;
  const status = (err as { status?: number })?.status;
  const message = err instanceof Error ? err.message : String(err);
  if (status === 529) return new ModelError('model_overloaded_error', true, 'the model is overloaded (529)', status);
  if (status === 429) return new ModelError('model_rate_limited_error', true, 'the model rate-limited the request (429)', status);
  if (status === 402) return new ModelError('billing_error', false, 'the model provider refused the request for billing reasons', status);
  if (status !== undefined && status >= 500) return new ModelError('model_request_failed_error', true, `the model request failed (${status})`, status);
  if (status !== undefined && status >= 400) {
    return new ModelError('model_request_failed_error', false, `the model rejected the request (${status}): ${message.slice(0, 500)}`, status);
  }
  // An error event inside a stream has no status, only its type (the API's overload, Bedrock's
  // throttlingException or serviceUnavailableException mid-stream): named as the status would be.
  const type = (err as { type?: string | null })?.type;
  if (type === 'overloaded_error') return new ModelError('model_overloaded_error', true, `the model is overloaded: ${message.slice(0, 500)}`);
  if (type === 'rate_limit_error') return new ModelError('model_rate_limited_error', true, `the model rate-limited the request: ${message.slice(0, 500)}`);
  return new ModelError('model_request_failed_error', true, `the model request failed: ${message.slice(0, 500)}`);
}

/** The Messages API through the official SDK, streamed. */
export class AnthropicModel implements ModelClient {
  private readonly client: MessagesClient;

  constructor(
    opts: {
      apiKey?: string;
      baseURL?: string;
      timeoutMs?: number;
      /**
       * How requests are sent (default the global `fetch`). A provider that is not the Messages API
       * on the wire (Bedrock) plugs in here: it rewrites and signs the request and hands back the
       * Messages stream events as SSE, so this class streams, times and classifies every provider
       * the same way.
       */
      fetch?: (input: string | URL | Request, init?: RequestInit) => Promise<Response>;
    } = {},
  ) {
    this.client = new MessagesClient({
      apiKey: opts.apiKey ?? process.env.ANTHROPIC_API_KEY ?? 'missing',
      baseURL: opts.baseURL ?? process.env.ANTHROPIC_BASE_URL,
      ...(opts.fetch ? { fetch: opts.fetch } : {}),
      // The harness retries itself, announcing each retry as a session.error event.
      maxRetries: 0,
      timeout: opts.timeoutMs ?? 10 * 60_000,
    });
  }

  async complete(request: ModelRequest, opts: ModelCallOptions = {}): Promise<ModelResponse> {
    const started = Date.now();
    let firstToken: number | null = null;
    try {
      const ephemeral = { type: 'ephemeral' as const };
      const tools = request.tools.map((t, i) =>
        request.cache && i === request.tools.length - 1 ? { ...t, cache_control: ephemeral } : t,
      ) as Anthropic.ToolUnion[];
      const system =
        request.system && request.cache ? [{ type: 'text' as const, text: request.system, cache_control: ephemeral }] : request.system;
      const { betas, ...options } = request.options ?? {};
      const stream = this.client.messages.stream(
        {
          model: request.model,
          max_tokens: request.maxTokens,
          system,
          messages: request.messages as Anthropic.MessageParam[],
          tools: tools.length ? tools : undefined,
          ...options,
        },
        { signal: opts.signal, ...(betas?.length ? { headers: { 'anthropic-beta': betas.join(',') } } : {}) },
      );
      const onDelta = opts.onDelta;
      stream.on('streamEvent', (event) => {
        if (firstToken === null && event.type === 'content_block_delta') firstToken = Date.now();
        if (!onDelta) return;
        if (event.type === 'content_block_start') {
          const t = event.content_block.type;
          if (t === 'thinking' || t === 'redacted_thinking') onDelta({ type: 'thinking', block: event.index });
          // A text block may start with text of its own (the API sends it empty today).
          if (event.content_block.type === 'text' && event.content_block.text) onDelta({ type: 'text', block: event.index, text: event.content_block.text });
        } else if (event.type === 'content_block_delta') {
          if (event.delta.type === 'text_delta') onDelta({ type: 'text', block: event.index, text: event.delta.text });
          else if (event.delta.type === 'input_json_delta') onDelta({ type: 'tool_input', block: event.index, partial_json: event.delta.partial_json });
        }
      });
      const message = await stream.finalMessage();
      return {
        content: message.content as ModelBlock[],
        stopReason: message.stop_reason,
        usage: {
          input_tokens: message.usage.input_tokens ?? 0,
          output_tokens: message.usage.output_tokens ?? 0,
          cache_read_input_tokens: message.usage.cache_read_input_tokens ?? 0,
          cache_creation_input_tokens: message.usage.cache_creation_input_tokens ?? 0,
        },
        timeToFirstTokenMs: firstToken === null ? null : firstToken - started,
      };
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      throw classifyModelError(err);
    }
  }
}
