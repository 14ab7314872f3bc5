import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { HarnessMetrics } from '../adapters/aws/metrics.js';
import { createAwsModel } from '../adapters/aws/model.js';
import { coreLogger, createAwsServices } from '../adapters/aws/services.js';
import { startAwsTelemetry } from '../adapters/aws/telemetry.js';
import { readSessionDimensions, readWakeSafetyMarginMs } from '../core/config.js';
import { createHarnessStepHandler, type HarnessStepRuntime } from './handler.js';

/**
 * Lambda entry of the harness step (SQS FIFO event source, partial batch responses). Its
 * configuration is `readHarnessStepConfig` (lambdas/core/config.ts): the services wiring when the
 * runtime is built, the metric dimensions and the safety margin here at load. Powertools reads its
 * settings from the environment the stack sets: POWERTOOLS_SERVICE_NAME,
 * POWERTOOLS_METRICS_NAMESPACE, POWERTOOLS_LOG_LEVEL.
 */
const logger = new Logger();
const tracer = new Tracer();
const metrics = new HarnessMetrics(new Metrics());

let runtime: Promise<HarnessStepRuntime> | undefined;

function init(): Promise<HarnessStepRuntime> {
  // Trace export (off without OTEL_EXPORTER_OTLP_ENDPOINT) starts before the first wake.
  runtime ??= startAwsTelemetry(process.env, 'corral-harness', { onError: (message) => logger.warn('trace export failed', { message }) })
    .then(() =>
      createAwsServices({
        // The harness alone calls the model: its key is read from SSM here, once per container.
        model: (config) => createAwsModel(config),
        instrument: (client) => tracer.captureAWSv3Client(client),
        harness: { logger: coreLogger(logger), observer: metrics.observer },
        onAppend: (_sessionId, stored) => logger.appendKeys({ position: stored.position }),
      }),
    )
    .then(
    ({ services, config, clients }) => ({ services, sqs: clients.sqs, queueUrl: config.wakeQueueUrl }),
    (err) => {
      runtime = undefined; // the next invocation tries again
      throw err;
    },
  );
  return runtime;
}

export const handler = createHarnessStepHandler({
  runtime: init,
  logger,
  metrics,
  tracer,
  sessionDimensions: readSessionDimensions(process.env),
  safetyMarginMs: readWakeSafetyMarginMs(process.env),
});
