/** The agent's log: one JSON line per entry on stderr (never a capability or a credential). */
export type Log = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

export const logLine: Log = (level, msg, fields) => {
  try {
    process.stderr.write(`${JSON.stringify({ level, msg, ...fields, time: new Date().toISOString() })}\n`);
  } catch {
    // stderr gone (parent died): nothing to do
  }
};
