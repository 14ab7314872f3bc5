import { createHash } from 'node:crypto';
import { CONSOLE_JS } from './script.js';
import { CONSOLE_CSS } from './style.js';

/**
 * The console page: one HTML document for every console address (`/console`,
 * `/console/sessions/{id}`); its script picks the view from the address. The stylesheet and the
 * script are inlined, so the page works at any path prefix (API Gateway's stage) and in the Lambda
 * bundle, and the Content-Security-Policy allows exactly those two by hash, nothing else inline.
 */
export const CONSOLE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>Corral console</title>
<style>${CONSOLE_CSS}</style>
</head>
<body>
<header>
  <a class="brand" href="#" id="brand">corral<span>.</span>console</a>
  <nav id="crumb"></nav>
  <span class="spacer"></span>
  <button type="button" id="forget" title="Remove the API key from this tab">Forget key</button>
</header>
<main id="app"><p class="muted">Loading…</p></main>
<script type="module">${CONSOLE_JS}</script>
</body>
</html>
`;

const sha256 = (s: string) => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`;

export const CONSOLE_HEADERS: Record<string, string> = {
  'Content-Security-Policy': [
    "default-src 'none'",
    `script-src ${sha256(CONSOLE_JS)}`,
    `style-src ${sha256(CONSOLE_CSS)}`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; '),
  'Cache-Control': 'no-cache',
  'Referrer-Policy': 'no-referrer',
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
};
