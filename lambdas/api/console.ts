import { Hono, type Context } from 'hono';
import { consolePage } from './console/page.js';

export interface ConsoleOptions {
  /**
   * The OIDC issuers the console signs in with (those `GET /corral/auth` lists with a client id):
   * the page's Content-Security-Policy lets it reach their origins, for discovery and the token
   * request. Read on each request, so a change of configuration needs no new page code.
   */
  oidcIssuers?: () => readonly string[];
}

/**
 * The session console: static pages (no API key needed to load them) whose script asks for the
 * key in the browser and reads and writes everything through the authenticated API. `/console` lists the
 * sessions (its fragment picks the manage views: `#agents`, `#environments`, `#vaults`,
 * `#new-session`); `/console/sessions/{id}` shows one as a live timeline. Deployed, it is
 * `<API URL>/console`.
 */
export function consoleRoutes(opts: ConsoleOptions = {}) {
  const app = new Hono();
  const serve = (c: Context) => {
    const page = consolePage(opts.oidcIssuers?.() ?? []);
    return c.html(page.html, 200, page.headers);
  };
  app.get('/console', serve);
  app.get('/console/sessions/:id', serve);
  return app;
}
