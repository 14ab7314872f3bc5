import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { HarnessMetrics, parseSessionDimensions } from '../adapters/aws/metrics.js';
import { AWS_ENV, coreLogger, createAwsServices } from '../adapters/aws/services.js';
import { createHarnessStepHandler, type HarnessStepRuntime } from './handler.js';

/**
 * Lambda entry of the harness step (SQS FIFO event source, partial batch responses). Powertools
 * reads its settings from the environment the stack sets: POWERTOOLS_SERVICE_NAME,
 * POWERTOOLS_METRICS_NAMESPACE, POWERTOOLS_LOG_LEVEL.
 */
const logger = new Logger();
const tracer = new Tracer();
const metrics = new HarnessMetrics(new Metrics());

let runtime: Promise<HarnessStepRuntime> | undefined;

function init(): Promise<HarnessStepRuntime> {
  runtime ??= createAwsServices({
    loadModelKey: true,
    instrument: (client) => tracer.captureAWSv3Client(client),
    harness: { logger: coreLogger(logger), observer: metrics.observer },
    onAppend: (_sessionId, stored) => logger.appendKeys({ position: stored.position }),
  }).then(
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
  sessionDimensions: parseSessionDimensions(process.env[AWS_ENV.metricsSessionDimensions]),
  safetyMarginMs: positiveInt(process.env.CORRAL_WAKE_SAFETY_MARGIN_MS),
});

function positiveInt(value: string | undefined): number | undefined {
  const n = Number(value);
  return value && Number.isInteger(n) && n > 0 ? n : undefined;
}
