import { CORRAL_ENV, type Env } from '../../core/config.js';
import { parseOtlpHeaders, readTelemetryConfig } from '../../core/telemetry/config.js';
import { startTelemetry, type Telemetry } from '../../core/telemetry/setup.js';
import { SsmParameters } from './ssm-parameter.js';

/**
 * Trace export in a Lambda function (docs/TELEMETRY.md): the standard OTEL_* variables the stack
 * sets (`otlpEndpoint` context), and the exporter's headers from the SSM SecureString parameter
 * `CORRAL_OTLP_HEADERS_PARAMETER` names, read here once per cold start (a collector's key stays
 * out of the template and the function's configuration). Null, and no SSM call, when no endpoint
 * is configured. The entry flushes at the end of each invocation (`flushSpans`).
 */
export async function startAwsTelemetry(
  env: Env,
  defaultServiceName: string,
  opts: { ssm?: Pick<SsmParameters, 'get'>; onError?: (message: string) => void; fetch?: typeof fetch } = {},
): Promise<Telemetry | null> {
  const config = readTelemetryConfig(env, env.POWERTOOLS_SERVICE_NAME || defaultServiceName);
  if (!config) return null;
  const parameter = env[CORRAL_ENV.otlpHeadersParameter]?.trim();
  if (parameter) {
    const ssm = opts.ssm ?? new SsmParameters();
    const value = await ssm.get(parameter, { withDecryption: true });
    if (value === undefined) throw new Error(`${CORRAL_ENV.otlpHeadersParameter}: the parameter ${parameter} has no value`);
    config.headers = { ...config.headers, ...parseOtlpHeaders(value, `the parameter ${parameter}`) };
  }
  return startTelemetry(config, { onError: opts.onError, ...(opts.fetch ? { fetch: opts.fetch } : {}) });
}
