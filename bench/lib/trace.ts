/** The step-cost suite's call trace as the report prints it (bench/suites/log-reads.ts records it). */

/** `ops` with the calls of one round trip grouped: `(Query:events PutItem:state)` went out together. */
export function groupedTrace(ops: string[], rounds: number[]): string {
  const out: string[] = [];
  for (let i = 0; i < ops.length; ) {
    let j = i + 1;
    while (j < ops.length && rounds[j] === rounds[i]) j++;
    out.push(j - i > 1 ? `(${ops.slice(i, j).join(' ')})` : ops[i]);
    i = j;
  }
  return out.join(' ');
}
