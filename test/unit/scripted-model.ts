import type { ModelError, ModelClient, ModelRequest, ModelResponse } from '../../lambdas/core/harness/model.js';

/** A model that answers from a script, recording each request (for unit tests of the harness). */
export type Step = ModelResponse | ModelError | ((req: ModelRequest, signal?: AbortSignal) => Promise<ModelResponse>);

export class ScriptedModel implements ModelClient {
  readonly requests: ModelRequest[] = [];
  private readonly script: Step[] = [];
  push(...steps: Step[]) {
    this.script.push(...steps);
  }
  async complete(request: ModelRequest, opts: { signal?: AbortSignal } = {}): Promise<ModelResponse> {
    this.requests.push(JSON.parse(JSON.stringify(request)) as ModelRequest);
    const step = this.script.shift();
    if (!step) throw new Error('the script ran out');
    if (step instanceof Error) throw step;
    if (typeof step === 'function') return step(request, opts.signal);
    return step;
  }
}

export const usage = (input = 10, output = 5) => ({ input_tokens: input, output_tokens: output, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 });
export const text = (t: string, u = usage()): ModelResponse => ({ content: [{ type: 'text', text: t }], stopReason: 'end_turn', usage: u, timeToFirstTokenMs: 1 });
export const toolUse = (id: string, name: string, input: unknown): ModelResponse => ({
  content: [{ type: 'text', text: 'calling' }, { type: 'tool_use', id, name, input }],
  stopReason: 'tool_use',
  usage: usage(),
  timeToFirstTokenMs: 1,
});

