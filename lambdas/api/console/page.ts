import { createHash } from 'node:crypto';
import { bundleConsoleScript } from './bundle.js';
import { CONSOLE_CSS } from './style.js';

/** Replaced by the Lambda bundle's esbuild with the bundled script, base64 (see bundle.ts). */
declare const __CORRAL_CONSOLE_JS_BASE64__: string | undefined;

/** The console's script: bundled at build time for the Lambda, else on first use (bundle.ts). */
function consoleScript(): string {
  if (typeof __CORRAL_CONSOLE_JS_BASE64__ === 'string') return Buffer.from(__CORRAL_CONSOLE_JS_BASE64__, 'base64').toString('utf8');
  return bundleConsoleScript();
}

/**
 * The console page: one HTML document for every console address (`/console`,
 * `/console/sessions/{id}`); its script picks the view from the address. The stylesheet and the
 * script are inlined, so the page works at any path prefix (API Gateway's stage) and in the Lambda
 * bundle, and the Content-Security-Policy allows exactly those two by hash, nothing else inline.
 */
export interface ConsolePage {
  html: string;
  headers: Record<string, string>;
}

const pages = new Map<string, ConsolePage>();

/**
 * The page and its headers, built on first use (under tsx that bundles the script).
 * `connectOrigins`: the OIDC issuers' origins the page may fetch (discovery and the token
 * request of a sign-in); none by default, so the page connects to its own origin only.
 */
export function consolePage(connectOrigins: readonly string[] = []): ConsolePage {
  const origins = [...new Set(connectOrigins.map(issuerOrigin).filter((o): o is string => o !== null))].sort();
  const key = origins.join(' ');
  let page = pages.get(key);
  if (!page) {
    page = renderPage(consoleScript(), origins);
    pages.set(key, page);
  }
  return page;
}

/**
 * An issuer URL's origin, for the Content-Security-Policy: https, or http on loopback only; null
 * for anything else (the page then cannot reach it, and the API key still works).
 */
export function issuerOrigin(url: string): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  const loopback = u.hostname === '127.0.0.1' || u.hostname === 'localhost' || u.hostname === '[::1]';
  return u.protocol === 'https:' || (u.protocol === 'http:' && loopback) ? u.origin : null;
}

function renderPage(script: string, connectOrigins: string[]): ConsolePage {
  const html = `<!doctype html>
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
  <nav id="menu"></nav>
  <nav id="crumb"></nav>
  <span class="spacer"></span>
  <button type="button" id="forget" title="Remove the API key or the sign-in from this tab">Sign out</button>
</header>
<main id="app"><p class="muted">Loading…</p></main>
<script type="module">${script}</script>
</body>
</html>
`;
  const headers: Record<string, string> = {
    'Content-Security-Policy': [
      "default-src 'none'",
      `script-src ${sha256(script)}`,
      `style-src ${sha256(CONSOLE_CSS)}`,
      ["connect-src 'self'", ...connectOrigins].join(' '),
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
  return { html, headers };
}

const sha256 = (s: string) => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`;
