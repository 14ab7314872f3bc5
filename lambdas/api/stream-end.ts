/**
 * Ending an event stream on time, shared by the stream function (lambdas/api/lambda.ts) and the
 * stream tier (lambdas/stream-tier/server.ts): both sit behind API Gateway, which cuts a streamed
 * response at 15 minutes.
 */

/** Ends a streamed body cleanly `ms` from now, so the client sees the end of the stream (and
 * reconnects with `Last-Event-ID`) before Lambda's timeout cuts the connection. Cancelling the
 * source also stops the SSE loop (Hono aborts a stream whose body is cancelled). With `signal`, it
 * also ends when the signal aborts (the stream tier draining before its task stops). */
export function endStreamAfter(res: Response, ms: number, signal?: AbortSignal): Response {
  if (!res.body) return res;
  const reader = res.body.getReader();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let finished = false;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      const end = () => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', end);
        reader.cancel().catch(() => undefined);
        controller.close();
      };
      timer = setTimeout(end, Math.max(0, ms));
      if (signal?.aborted) end();
      else signal?.addEventListener('abort', end, { once: true });
    },
    async pull(controller) {
      const { done, value } = await reader.read();
      if (finished) return;
      if (done) {
        finished = true;
        clearTimeout(timer);
        controller.close();
      } else {
        controller.enqueue(value);
      }
    },
    cancel(reason) {
      finished = true;
      clearTimeout(timer);
      return reader.cancel(reason);
    },
  });
  return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
}
