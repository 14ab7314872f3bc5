/**
 * Latency distributions as SVG, written by hand (no plotting dependency): empirical cumulative
 * distribution functions on a logarithmic time axis, one line per series, p50 and p95 marked.
 */
import { quantile } from './stats.js';

export interface Series {
  label: string;
  values: number[];
  color: string;
  dashed?: boolean;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const fmt = (ms: number) => (ms >= 1000 ? `${+(ms / 1000).toPrecision(3)} s` : `${+ms.toPrecision(3)} ms`);

/** Ticks at 1, 2, 5 x 10^k inside [lo, hi]. */
function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let k = Math.floor(Math.log10(lo)); k <= Math.ceil(Math.log10(hi)); k++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** k;
      if (v >= lo && v <= hi) out.push(v);
    }
  }
  return out;
}

/** Splits a subtitle into lines of at most `max` characters, at spaces. */
function wrap(text: string, max: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > max) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}

export function ecdfSvg(opts: {
  title: string;
  subtitle?: string;
  xLabel: string;
  series: Series[];
  /** Vertical reference lines (e.g. the model's own latency, the floor). */
  marks?: Array<{ value: number; label: string }>;
  width?: number;
  height?: number;
}): string {
  const W = opts.width ?? 760;
  const sub = opts.subtitle ? wrap(opts.subtitle, Math.floor((W - 80) / 6.2)) : [];
  const H = (opts.height ?? 420) + 16 * Math.max(0, sub.length - 1);
  const m = { left: 64, right: 24, top: 44 + 16 * sub.length + 4, bottom: 58 + 18 * opts.series.length };
  const pw = W - m.left - m.right;
  const all = [...opts.series.flatMap((s) => s.values), ...(opts.marks ?? []).map((k) => k.value)].filter((v) => Number.isFinite(v) && v > 0);
  const lo = all.length ? Math.min(...all) : 1;
  const hi = all.length ? Math.max(...all) : 10;
  const xmin = 10 ** (Math.floor((Math.log10(lo) - 0.05) * 4) / 4);
  const xmax = 10 ** (Math.ceil((Math.log10(hi) + 0.05) * 4) / 4);
  const plotH = H - m.top - m.bottom;
  const x = (v: number) => m.left + ((Math.log10(Math.max(v, xmin)) - Math.log10(xmin)) / (Math.log10(xmax) - Math.log10(xmin))) * pw;
  const y = (p: number) => m.top + (1 - p) * plotH;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  parts.push(`<text x="${m.left}" y="22" font-size="15" font-weight="600" fill="#111">${esc(opts.title)}</text>`);
  sub.forEach((line, i) => parts.push(`<text x="${m.left}" y="${42 + 16 * i}" font-size="12" fill="#555">${esc(line)}</text>`));
  // Grid and axes.
  for (const t of logTicks(xmin, xmax)) {
    parts.push(`<line x1="${x(t).toFixed(1)}" y1="${m.top}" x2="${x(t).toFixed(1)}" y2="${m.top + plotH}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${x(t).toFixed(1)}" y="${m.top + plotH + 16}" text-anchor="middle" fill="#444">${esc(fmt(t))}</text>`);
  }
  for (const p of [0, 0.25, 0.5, 0.75, 0.95, 1]) {
    parts.push(`<line x1="${m.left}" y1="${y(p).toFixed(1)}" x2="${m.left + pw}" y2="${y(p).toFixed(1)}" stroke="${p === 0.5 || p === 0.95 ? '#cfcfcf' : '#eeeeee'}"${p === 0.5 || p === 0.95 ? ' stroke-dasharray="3 3"' : ''}/>`);
    if (p !== 1) parts.push(`<text x="${m.left - 8}" y="${(y(p) + 4).toFixed(1)}" text-anchor="end" fill="#444">${p === 0.5 ? 'p50' : p === 0.95 ? 'p95' : `${Math.round(p * 100)}%`}</text>`);
  }
  for (const k of opts.marks ?? []) {
    const px = x(k.value).toFixed(1);
    parts.push(`<line x1="${px}" y1="${m.top}" x2="${px}" y2="${m.top + plotH}" stroke="#6b7280" stroke-dasharray="2 4"/>`);
    const left = x(k.value) - m.left > 7 * k.label.length;
    parts.push(
      `<text x="${(x(k.value) + (left ? -4 : 4)).toFixed(1)}" y="${m.top + plotH - 8}" text-anchor="${left ? 'end' : 'start'}" fill="#6b7280">${esc(k.label)}</text>`,
    );
  }
  parts.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${plotH}" fill="none" stroke="#999"/>`);
  parts.push(`<text x="${m.left + pw / 2}" y="${m.top + plotH + 36}" text-anchor="middle" fill="#222">${esc(opts.xLabel)} (log scale)</text>`);
  parts.push(`<text transform="translate(16 ${m.top + plotH / 2}) rotate(-90)" text-anchor="middle" fill="#222">share of samples at or below</text>`);
  // The curves: a step function through the sorted samples.
  for (const s of opts.series) {
    const v = s.values.filter((n) => Number.isFinite(n)).sort((a, b) => a - b);
    if (!v.length) continue;
    let d = `M${x(v[0]).toFixed(1)},${y(0).toFixed(1)}`;
    v.forEach((val, i) => {
      const px = x(val).toFixed(1);
      d += ` L${px},${y(i / v.length).toFixed(1)} L${px},${y((i + 1) / v.length).toFixed(1)}`;
    });
    parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    for (const q of [0.5, 0.95]) {
      const at = quantile(v, q);
      parts.push(`<circle cx="${x(at).toFixed(1)}" cy="${y(q).toFixed(1)}" r="3.5" fill="${s.color}"/>`);
    }
  }
  // Legend with the figures.
  opts.series.forEach((s, i) => {
    const v = s.values.filter((n) => Number.isFinite(n)).sort((a, b) => a - b);
    const ly = m.top + plotH + 52 + i * 18;
    parts.push(`<line x1="${m.left}" y1="${ly - 4}" x2="${m.left + 26}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    const figures = v.length ? `p50 ${fmt(quantile(v, 0.5))}, p95 ${fmt(quantile(v, 0.95))}, p99 ${fmt(quantile(v, 0.99))} (n=${v.length})` : 'no samples';
    parts.push(`<text x="${m.left + 34}" y="${ly}" fill="#222">${esc(s.label)}: ${esc(figures)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
