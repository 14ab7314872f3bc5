/**
 * The `webhooks` scenario: a receiver on loopback gets a session's webhook events through the
 * rehearsed stack — the API publishing to the outbox and kicking the delivery function through
 * its SQS queue, the harness publishing the log's status changes, the delivery function (with its
 * own role, the only one that reads signing secrets) signing and POSTing — and verifies each with
 * the SDK's `client.beta.webhooks.unwrap`. The rehearsal synthesizes with `WEBHOOK_CONTEXT`, so
 * the API and the deliverer accept the loopback receiver.
 */
import { createServer } from 'node:http';
import { SUBSCRIBERS_TTL_MS } from '../../lambdas/core/webhooks/endpoints.js';
import type { AddressInfo } from 'node:net';
import type Anthropic from '@anthropic-ai/sdk';
import type { Rehearsal } from './rehearsal.js';
import { fail, runTurn, type Scenario } from './scenarios.js';

export const WEBHOOK_SCENARIOS = ['webhooks'] as const;

export const WEBHOOK_CONTEXT = { webhookUrlAllow: 'http://127.0.0.1' } as const;

export function webhookScenarios(r: Rehearsal): Scenario[] {
  return [
    {
      name: 'webhooks',
      proves:
        "a session's webhook events reach a loopback receiver through the kick queue and the delivery function with its role, each verified with the SDK's unwrap",
      timeoutMs: 120_000,
      async run(ctx) {
        const received: Array<{ headers: Record<string, string>; body: string }> = [];
        const server = createServer((req, res) => {
          const chunks: Buffer[] = [];
          req.on('data', (c: Buffer) => chunks.push(c));
          req.on('end', () => {
            const headers: Record<string, string> = {};
            for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
            received.push({ headers, body: Buffer.concat(chunks).toString('utf8') });
            res.writeHead(204).end();
          });
        });
        await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
        const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
        let endpointId: string | undefined;
        try {
          const types = ['session.created', 'session.status_run_started', 'session.status_idled'];
          const endpoint = await ctx.client.beta.organization.webhooks.create(
            { url, enabled_events: types as unknown as Anthropic.Beta.Organization.WebhookCreateParams['enabled_events'] },
            { signal: ctx.signal },
          );
          endpointId = endpoint.id;
          // The harness function may have read this tenant's endpoints (none) just before: an
          // endpoint gets the events published from at most SUBSCRIBERS_TTL_MS after it was made.
          await new Promise((resolve) => setTimeout(resolve, SUBSCRIBERS_TTL_MS));
          const session = await ctx.newSession('default');
          await runTurn(ctx, session, 'Say hello.');
          const deadline = Date.now() + 60_000;
          const seen = new Map<string, Anthropic.Beta.BetaWebhookEvent>();
          while (Date.now() < deadline) {
            for (const w of received) {
              const event = ctx.client.beta.webhooks.unwrap(w.body, { headers: w.headers, key: endpoint.signing_secret });
              if (event.data.id === session) seen.set(event.data.type, event);
            }
            if (types.every((t) => seen.has(t))) return `${seen.size} event types verified with unwrap (${received.length} deliveries)`;
            // The minute's sweep, as EventBridge would run it (a lost kick costs no more than this).
            await r.runSchedule('WebhooksSweep').catch(() => undefined);
            await new Promise((resolve) => setTimeout(resolve, 500));
          }
          return fail(`the receiver got ${[...seen.keys()].join(', ') || 'nothing'} of ${types.join(', ')} (${received.length} requests)`);
        } finally {
          if (endpointId) await ctx.client.beta.organization.webhooks.delete(endpointId).catch(() => undefined);
          server.closeAllConnections();
          server.close();
        }
      },
    },
  ];
}
