import { Hono, type Context } from 'hono';
import { consolePage } from './console/page.js';

/**
 * The session console: static pages (no API key needed to load them) whose script asks for the
 * key in the browser and reads and writes everything through the authenticated API. `/console` lists the
 * sessions (its fragment picks the manage views: `#agents`, `#environments`, `#vaults`,
 * `#new-session`); `/console/sessions/{id}` shows one as a live timeline. Deployed, it is
 * `<API URL>/console`.
 */
export function consoleRoutes() {
  const app = new Hono();
  const serve = (c: Context) => {
    const page = consolePage();
    return c.html(page.html, 200, page.headers);
  };
  app.get('/console', serve);
  app.get('/console/sessions/:id', serve);
  return app;
}
