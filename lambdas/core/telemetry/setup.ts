import { OtlpHttpJsonExporter, type OtlpExporterOptions, type OtlpTraceConfig } from './otlp.js';
import { installSpanExporter } from './trace.js';

export interface Telemetry {
  /** Send every span finished so far (a Lambda entry awaits it before returning). */
  flush(): Promise<void>;
  /** Flush, then stop exporting. */
  stop(): Promise<void>;
}

/**
 * Start exporting this process's spans to `config`'s OTLP endpoint, or nothing (null) when
 * `config` is null: the composition roots (the Lambda entries, the local runtime) call it once.
 */
export function startTelemetry(config: OtlpTraceConfig | null, opts: OtlpExporterOptions = {}): Telemetry | null {
  if (!config) return null;
  const exporter = new OtlpHttpJsonExporter(config, opts);
  const uninstall = installSpanExporter(exporter);
  return {
    flush: () => exporter.flush(),
    async stop() {
      uninstall();
      await exporter.flush();
    },
  };
}
