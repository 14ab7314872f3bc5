import { Hono } from 'hono';
import { CONSOLE_HEADERS, CONSOLE_HTML } from './console/page.js';

/**
 * The session console: static pages (no API key needed to load them) whose script asks for the
 * key in the browser and reads everything through the authenticated API. `/console` lists the
 * sessions; `/console/sessions/{id}` shows one as a live timeline. Deployed, it is
 * `<API URL>/console`.
 */
export function consoleRoutes() {
  const app = new Hono();
  app.get('/console', (c) => c.html(CONSOLE_HTML, 200, CONSOLE_HEADERS));
  app.get('/console/sessions/:id', (c) => c.html(CONSOLE_HTML, 200, CONSOLE_HEADERS));
  return app;
}
