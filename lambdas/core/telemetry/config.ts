import type { OtlpTraceConfig } from './otlp.js';

type Env = Record<string, string | undefined>;

/**
 * The OpenTelemetry exporter settings Corral honours, by their standard names (the OTLP exporter
 * specification's): trace export is on when an endpoint is set, and off otherwise.
 *
 * - `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the traces URL, used as is; else
 * - `OTEL_EXPORTER_OTLP_ENDPOINT`: the base URL, `/v1/traces` appended.
 * - `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TRACES_HEADERS` (the latter wins per key):
 *   `key=value,key2=value2`, values percent-decoded.
 * - `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`: milliseconds.
 * - `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`: only `http/json` (the
 *   exporter sends JSON); another value is refused rather than silently ignored.
 * - `OTEL_SERVICE_NAME`: `service.name` (default: the function's own, e.g. `corral-harness`).
 * - `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`: off whatever else is set.
 *
 * Errors never quote a header's value (it may be a key).
 */
export function readTelemetryConfig(env: Env, defaultServiceName: string): OtlpTraceConfig | null {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return null;
  const exporter = env.OTEL_TRACES_EXPORTER?.trim().toLowerCase();
  if (exporter === 'none') return null;
  if (exporter && exporter !== 'otlp') throw new Error(`OTEL_TRACES_EXPORTER: only "otlp" (or "none") is supported, not ${JSON.stringify(exporter)}`);
  const tracesEndpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  if (!tracesEndpoint && !base) return null;
  const url = tracesEndpoint || `${base!.replace(/\/+$/, '')}/v1/traces`;
  const name = tracesEndpoint ? 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT' : 'OTEL_EXPORTER_OTLP_ENDPOINT';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`${name} is not a URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error(`${name} must be an http or https URL`);
  if (parsed.username || parsed.password) throw new Error(`${name} must not carry credentials; use OTEL_EXPORTER_OTLP_HEADERS`);
  for (const p of ['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', 'OTEL_EXPORTER_OTLP_PROTOCOL']) {
    const protocol = env[p]?.trim();
    if (protocol && protocol !== 'http/json') throw new Error(`${p}: Corral exports traces as OTLP/HTTP JSON only; set it to "http/json" or leave it unset (not ${JSON.stringify(protocol)})`);
    if (protocol) break;
  }
  const timeout = env.OTEL_EXPORTER_OTLP_TRACES_TIMEOUT?.trim() || env.OTEL_EXPORTER_OTLP_TIMEOUT?.trim();
  if (timeout !== undefined && !/^[1-9][0-9]{0,6}$/.test(timeout)) throw new Error('OTEL_EXPORTER_OTLP_TIMEOUT must be a positive number of milliseconds');
  return {
    url: parsed.href,
    headers: {
      ...parseOtlpHeaders(env.OTEL_EXPORTER_OTLP_HEADERS, 'OTEL_EXPORTER_OTLP_HEADERS'),
      ...parseOtlpHeaders(env.OTEL_EXPORTER_OTLP_TRACES_HEADERS, 'OTEL_EXPORTER_OTLP_TRACES_HEADERS'),
    },
    serviceName: env.OTEL_SERVICE_NAME?.trim() || defaultServiceName,
    ...(timeout ? { timeoutMs: Number(timeout) } : {}),
  };
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** `key=value,key2=value2` (W3C baggage-like, values percent-encoded), as the OTLP exporter specification has it. */
export function parseOtlpHeaders(value: string | undefined, name = 'OTEL_EXPORTER_OTLP_HEADERS'): Record<string, string> {
  const out: Record<string, string> = {};
  if (!value?.trim()) return out;
  value.split(',').forEach((pair, i) => {
    if (!pair.trim()) return;
    const eq = pair.indexOf('=');
    const key = (eq < 0 ? pair : pair.slice(0, eq)).trim();
    if (eq < 0 || !TOKEN.test(key)) throw new Error(`${name}: entry ${i + 1} is not key=value with a valid header name`);
    let v: string;
    try {
      v = decodeURIComponent(pair.slice(eq + 1).trim());
    } catch {
      throw new Error(`${name}: the value of ${key} is not valid percent-encoding`);
    }
    if (/[\r\n\0]/.test(v)) throw new Error(`${name}: the value of ${key} has a control character`);
    out[key.toLowerCase()] = v;
  });
  return out;
}
