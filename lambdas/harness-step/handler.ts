import { processPartialResponse, SqsFifoPartialProcessorAsync } from '@aws-lambda-powertools/batch';
import type { Logger } from '@aws-lambda-powertools/logger';
import type { Tracer } from '@aws-lambda-powertools/tracer';
import { ChangeMessageVisibilityBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import type { CorralServices } from '../core/services.js';
import { systemPrincipal } from '../core/storage/principal.js';
import type { HarnessMetrics, SessionDimension } from '../adapters/aws/metrics.js';
import { parseWakeMessage } from '../adapters/aws/sqs-queue.js';
import { flushSpans } from '../core/telemetry/trace.js';

/** The harness step reads sessions of every tenant (for its metrics' dimensions). */
const HARNESS = systemPrincipal('harness');

/** What the handler works with; built once per container (see index.ts). */
export interface HarnessStepRuntime {
  services: CorralServices;
  sqs: SQSClient;
  queueUrl: string;
}

export interface HarnessStepDeps {
  /** Called on every invocation; cache inside it (the first call builds the services). */
  runtime: () => Promise<HarnessStepRuntime>;
  logger: Logger;
  metrics: HarnessMetrics;
  tracer?: Tracer;
  /** Session attributes to add as metric dimensions (opt-in; see metrics.ts). */
  sessionDimensions?: SessionDimension[];
  /**
   * A wake stops starting new actions this long before the function's timeout, so the action in
   * flight can finish and the continuation be queued before Lambda stops the process.
   */
  safetyMarginMs?: number;
  /** Longest backoff for a record whose wake threw, in seconds. */
  maxBackoffSeconds?: number;
  /**
   * While the batch runs, its messages' visibility is set to `visibilitySeconds` at once and
   * again every `everyMs`, so that a process Lambda kills (timeout, crash) gives its wakes back
   * within `visibilitySeconds` instead of after the queue's long visibility timeout.
   * @default { visibilitySeconds: 120, everyMs: 60000 }
   */
  heartbeat?: { visibilitySeconds: number; everyMs: number };
}

export const DEFAULT_SAFETY_MARGIN_MS = 60_000;
export const DEFAULT_HEARTBEAT = { visibilitySeconds: 120, everyMs: 60_000 };
/** The longest visibility timeout the handler sets on a record it hands back. */
const MAX_DELAY_SECONDS = 15 * 60;

/** A wake found another harness holding the session: hand the message back for later. */
class SessionBusyError extends Error {
  constructor(readonly retryAfterMs: number) {
    super(`session is busy; retry in ${retryAfterMs} ms`);
    this.name = 'SessionBusyError';
  }
}

/**
 * The harness step on AWS: an SQS FIFO batch of wake messages (message group = session id), each
 * turned into `harness.wake(sessionId, { deadline })`. The logic is the core's; this adapter only
 * maps outcomes onto SQS:
 *
 * - `done`, `yielded` (the harness queued its own continuation), `gone`: the message is deleted.
 * - `busy`: the record is reported in `batchItemFailures` and its visibility timeout set to the
 *   lease's remaining time, so it comes back when the session is free, not after the queue's
 *   (long) visibility timeout.
 * - a wake that throws: reported as failed, back after an exponential backoff; the queue's
 *   redrive policy moves it to the dead-letter queue after `maxReceiveCount` tries.
 * - once a record of a message group fails, every later record of that group in the batch fails
 *   too without running (Powertools' `SqsFifoPartialProcessorAsync` with `skipGroupOnError`), so
 *   a session's wakes are never handled out of order.
 * - a malformed message is logged and dropped: retrying it could never succeed.
 * - while the batch runs, a heartbeat keeps each of its messages invisible for a short while
 *   (`ChangeMessageVisibility`, 2 minutes, renewed every minute). The queue's own visibility
 *   timeout is long (6 x the function timeout, AWS's advice for Lambda event sources), so that
 *   alone would hold a killed step's wake, and every later wake of its session (FIFO), for an
 *   hour and a half; with the heartbeat it comes back within 2 minutes. Records that succeed are
 *   kept invisible until the invocation returns (Lambda deletes them then); busy and failed
 *   records get their hand-back visibility after the heartbeat has stopped.
 */
export function createHarnessStepHandler(deps: HarnessStepDeps) {
  const { logger, metrics, tracer } = deps;
  const safetyMarginMs = deps.safetyMarginMs ?? DEFAULT_SAFETY_MARGIN_MS;
  const maxBackoff = Math.min(deps.maxBackoffSeconds ?? 300, MAX_DELAY_SECONDS);
  const heartbeat = deps.heartbeat ?? DEFAULT_HEARTBEAT;

  return async function handler(event: SQSEvent, context: Context): Promise<SQSBatchResponse> {
    logger.addContext(context);
    let runtime: HarnessStepRuntime;
    try {
      runtime = await deps.runtime();
    } catch (err) {
      // Configuration or SSM trouble: fail the invocation, the whole batch comes back later.
      logger.error('could not build the services', { error: err as Error });
      throw err;
    }
    const delays = new Map<string, number>();
    const groupDelays = new Map<string, number>();

    const wakeRecord = async (record: SQSRecord): Promise<void> => {
      const group = record.attributes?.MessageGroupId ?? '';
      try {
        await handleRecord(record, runtime, context);
      } catch (err) {
        const seconds =
          err instanceof SessionBusyError
            ? clampDelay(Math.ceil(err.retryAfterMs / 1000))
            : clampDelay(Math.min(maxBackoff, 2 ** Math.max(0, Number(record.attributes?.ApproximateReceiveCount ?? 1) - 1)));
        delays.set(record.messageId, seconds);
        if (!groupDelays.has(group)) groupDelays.set(group, seconds);
        throw err;
      }
    };

    const beating = keepInvisible(runtime, event.Records);
    let response: SQSBatchResponse;
    try {
      response = await processPartialResponse(event, wakeRecord, new SqsFifoPartialProcessorAsync(), {
        context,
        skipGroupOnError: true,
        // A batch whose every record failed is still a partial response, not a failed invocation.
        throwOnFullBatchFailure: false,
      });
    } finally {
      // Stopped (and its last call settled) before any hand-back, which must be the last word.
      await beating.stop();
      // The batch's spans go before the function is frozen (a no-op when tracing is off).
      await flushSpans();
    }

    const failed = new Set(response.batchItemFailures.map((f) => f.itemIdentifier));
    const handBack = event.Records.filter((r) => failed.has(r.messageId)).map((r) => ({
      record: r,
      seconds: delays.get(r.messageId) ?? groupDelays.get(r.attributes?.MessageGroupId ?? '') ?? 1,
    }));
    for (const { record } of handBack) {
      if (!delays.has(record.messageId)) {
        logger.info('wake handed back: an earlier message of its session failed in this batch', {
          sessionId: record.attributes?.MessageGroupId,
          messageId: record.messageId,
        });
      }
    }
    await setVisibility(runtime, handBack);
    return response;
  };

  async function handleRecord(record: SQSRecord, runtime: HarnessStepRuntime, context: Context): Promise<void> {
    const message = parseWakeMessage(record.body);
    if (!message) {
      logger.error('malformed wake message dropped', { messageId: record.messageId, body: record.body.slice(0, 500) });
      metrics.error();
      metrics.flush();
      return;
    }
    const { sessionId, traceparent } = message;
    const { services } = runtime;
    logger.appendKeys({ sessionId, messageId: record.messageId });
    const parent = tracer?.isTracingEnabled() ? tracer.getSegment() : undefined;
    const segment = parent?.addNewSubsegment('## wake');
    if (segment) {
      tracer!.setSegment(segment);
      tracer!.putAnnotation('sessionId', sessionId);
    }
    try {
      logger.appendKeys({ position: await services.events.lastPosition(sessionId) });
      metrics.beginWake(await sessionDimensions(services, sessionId));
      const remaining = context.getRemainingTimeInMillis();
      const margin = Math.min(safetyMarginMs, remaining / 2);
      const deadline = Date.now() + remaining - margin;
      const started = Date.now();
      // The step continues the trace of the wake's span (the message's `traceparent`, when tracing is on).
      const result = await services.harness.wake(sessionId, { deadline, traceparent });
      logger.info('wake finished', { status: result.status, durationMs: Date.now() - started });
      if (segment) tracer!.putAnnotation('wakeStatus', result.status);
      if (result.status === 'busy') throw new SessionBusyError(result.retryAfterMs);
    } catch (err) {
      if (!(err instanceof SessionBusyError)) {
        logger.error('wake failed; the message will be retried', { error: err as Error });
        metrics.error();
        segment?.addError(err as Error);
      }
      throw err;
    } finally {
      metrics.endWake();
      segment?.close();
      if (parent) tracer!.setSegment(parent);
      logger.removeKeys(['sessionId', 'messageId', 'position']);
    }
  }

  async function sessionDimensions(services: CorralServices, sessionId: string): Promise<Record<string, string>> {
    const wanted = deps.sessionDimensions ?? [];
    if (!wanted.length) return {};
    const session = await services.sessions.get(HARNESS, sessionId).catch(() => null);
    if (!session) return {};
    const dims: Record<string, string> = {};
    if (wanted.includes('agent')) dims.Agent = String(session.agent.name ?? session.agent.id);
    if (wanted.includes('environment')) dims.Environment = String(session.environment_id);
    return dims;
  }

  /** The heartbeat: the batch's messages stay invisible for `heartbeat.visibilitySeconds` from now. */
  function keepInvisible(runtime: HarnessStepRuntime, records: SQSRecord[]): { stop(): Promise<void> } {
    if (!records.length) return { stop: async () => undefined };
    const entries = records.map((record) => ({ record, seconds: heartbeat.visibilitySeconds }));
    let last = setVisibility(runtime, entries, 'heartbeat');
    const timer = setInterval(() => {
      last = last.then(() => setVisibility(runtime, entries, 'heartbeat'));
    }, heartbeat.everyMs);
    return {
      async stop() {
        clearInterval(timer);
        await last;
      },
    };
  }

  async function setVisibility(
    runtime: HarnessStepRuntime,
    handBack: Array<{ record: SQSRecord; seconds: number }>,
    why: 'hand back' | 'heartbeat' = 'hand back',
  ) {
    for (let i = 0; i < handBack.length; i += 10) {
      const chunk = handBack.slice(i, i + 10);
      try {
        const out = await runtime.sqs.send(
          new ChangeMessageVisibilityBatchCommand({
            QueueUrl: runtime.queueUrl,
            Entries: chunk.map(({ record, seconds }, j) => ({
              Id: String(i + j),
              ReceiptHandle: record.receiptHandle,
              VisibilityTimeout: seconds,
            })),
          }),
        );
        if (out.Failed?.length) logger.warn(`could not set the visibility of some wakes (${why})`, { failed: out.Failed });
      } catch (err) {
        // The messages still come back, after the visibility set last (or the queue's) instead.
        logger.warn(`could not set the visibility of wakes (${why})`, { error: err as Error });
      }
    }
  }
}

function clampDelay(seconds: number): number {
  return Math.max(1, Math.min(MAX_DELAY_SECONDS, Math.round(seconds)));
}
