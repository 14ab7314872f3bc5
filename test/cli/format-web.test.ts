import { describe, expect, it } from 'vitest';
import { EventFormatter, makeStyle } from '../../cli/format.js';
import type { SessionEvent } from '../../lambdas/core/session/events.js';

describe('the CLI transcript of a server tool result', () => {
  it('shows web search hits by title and address, and a fetched document by its address', () => {
    const f = new EventFormatter(makeStyle(false));
    const out = f.format(
      {
        id: 'sevt_1',
        type: 'agent.tool_result',
        processed_at: '2026-04-01T00:00:00Z',
        tool_use_id: 'sevt_0',
        is_error: false,
        content: [
          { type: 'search_result', source: 'https://docs.example.com/a', title: 'Doc A', content: [], citations: { enabled: false } },
          { type: 'document', source: { type: 'url', url: 'https://docs.example.com/b' }, title: 'Doc B' },
        ],
      } as SessionEvent,
      7,
    );
    expect(out).toContain('Doc A — https://docs.example.com/a');
    expect(out).toContain('[document] Doc B — https://docs.example.com/b');
  });
});
