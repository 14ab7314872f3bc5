import { describe, expect, it } from 'vitest';
import { buildMessages, withCacheBreakpoints } from '../../lambdas/core/harness/context.js';
import type { SessionEvent, StoredEvent } from '../../lambdas/core/session/events.js';

/** A log from terse event bodies (only the fields the view reads), hence the cast. */
const log = (...events: Array<{ type: string; [field: string]: unknown }>): StoredEvent[] =>
  events.map((e, i) => ({ position: i + 1, event: { id: `e${i + 1}`, processed_at: 'x', ...e } as SessionEvent }));

describe('buildMessages', () => {
  it('turns a tool round trip into alternating messages with matching ids', () => {
    const messages = buildMessages(
      log(
        { type: 'user.message', content: [{ type: 'text', text: 'list files' }] },
        { type: 'session.status_running' },
        { type: 'span.model_request_start' },
        { type: 'agent.message', content: [{ type: 'text', text: 'ok' }] },
        { type: 'agent.tool_use', id: 'tool1', name: 'bash', input: { command: 'ls' } },
        { type: 'span.model_request_end' },
        { type: 'agent.tool_result', tool_use_id: 'tool1', content: [{ type: 'text', text: 'a.txt' }], is_error: false },
      ),
    );
    expect(messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'list files' }] },
      {
        role: 'assistant',
        content: [
          { type: 'text', text: 'ok' },
          { type: 'tool_use', id: 'tool1', name: 'bash', input: { command: 'ls' } },
        ],
      },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'tool1', content: [{ type: 'text', text: 'a.txt' }] }] },
    ]);
  });

  it('puts tool results before a user message that arrived while the tool ran', () => {
    const messages = buildMessages(
      log(
        { type: 'user.message', content: [{ type: 'text', text: 'go' }] },
        { type: 'agent.tool_use', id: 't', name: 'bash', input: {} },
        { type: 'user.message', content: [{ type: 'text', text: 'also this' }] },
        { type: 'agent.tool_result', tool_use_id: 't', content: [{ type: 'text', text: 'out' }], is_error: true },
      ),
    );
    expect(messages[2]).toEqual({
      role: 'user',
      content: [
        { type: 'tool_result', tool_use_id: 't', content: [{ type: 'text', text: 'out' }], is_error: true },
        { type: 'text', text: 'also this' },
      ],
    });
  });

  it('merges consecutive user messages and ignores bookkeeping events', () => {
    const messages = buildMessages(
      log(
        { type: 'user.message', content: [{ type: 'text', text: 'a' }] },
        { type: 'user.interrupt' },
        { type: 'session.error', error: { type: 'unknown_error' } },
        { type: 'user.message', content: [{ type: 'text', text: 'b' }] },
      ),
    );
    expect(messages).toEqual([{ role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] }]);
  });
});

describe('buildMessages ordering', () => {
  it('shows a message that arrived during a model answer after that answer', () => {
    const messages = buildMessages(
      log(
        { type: 'user.message', content: [{ type: 'text', text: 'one' }] },
        { type: 'span.model_request_start' },
        { type: 'user.message', content: [{ type: 'text', text: 'two' }] },
        { type: 'agent.message', content: [{ type: 'text', text: 'answer to one' }] },
        { type: 'span.model_request_end' },
      ),
    );
    expect(messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'one' }] },
      { role: 'assistant', content: [{ type: 'text', text: 'answer to one' }] },
      { role: 'user', content: [{ type: 'text', text: 'two' }] },
    ]);
  });
});

describe('buildMessages and sandbox handoffs', () => {
  it('tells the model when a sandbox was handed to or from its session', () => {
    const messages = buildMessages(
      log(
        { type: 'corral.sandbox_handoff_received', sandbox: 'work', from_session_id: 'sesn_A', from_sandbox: 'default' },
        { type: 'user.message', content: [{ type: 'text', text: 'review it' }] },
      ),
    );
    expect(messages).toHaveLength(1);
    expect(messages[0].content[0]).toMatchObject({ type: 'text', text: expect.stringContaining('"default" of session sesn_A was handed to this session') });
    expect(messages[0].content[1]).toEqual({ type: 'text', text: 'review it' });
  });
});

describe('buildMessages and thinking', () => {
  const thinking = [
    { type: 'thinking', thinking: 'x'.repeat(60_000), signature: 'sig' },
    { type: 'redacted_thinking', data: 'opaque' },
  ];
  const events = log(
    { type: 'user.message', content: [{ type: 'text', text: 'go' }] },
    { type: 'span.model_request_start' },
    { type: 'agent.thinking', blocks: thinking },
    { type: 'agent.message', content: [{ type: 'text', text: 'ok' }] },
    { type: 'agent.tool_use', id: 't', name: 'bash', input: {} },
    { type: 'span.model_request_end' },
    { type: 'agent.tool_result', tool_use_id: 't', content: [{ type: 'text', text: 'done' }] },
    { type: 'span.model_request_start' },
    { type: 'agent.thinking' },
    { type: 'agent.message', content: [{ type: 'text', text: 'finished' }] },
    { type: 'span.model_request_end' },
  );

  it('opens each answer with its thinking blocks, unclipped and unchanged; an event without blocks adds none', () => {
    const messages = buildMessages(events, { maxBlockChars: 1000 });
    expect(messages[1]).toEqual({
      role: 'assistant',
      content: [...thinking, { type: 'text', text: 'ok' }, { type: 'tool_use', id: 't', name: 'bash', input: {} }],
    });
    expect(messages[3]).toEqual({ role: 'assistant', content: [{ type: 'text', text: 'finished' }] });
  });

  it('puts no cache breakpoint on a thinking block', () => {
    const [, answer] = withCacheBreakpoints(buildMessages(events.slice(0, 5)), false);
    expect(answer.content.map((b) => b.cache_control ?? null)).toEqual([null, null, null, { type: 'ephemeral' }]);
    const onlyThinking = withCacheBreakpoints([{ role: 'assistant', content: [...thinking] }], false);
    expect(onlyThinking[0].content.every((b) => b.cache_control === undefined)).toBe(true);
  });
});
