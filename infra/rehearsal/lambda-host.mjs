// One Lambda execution environment of the deploy rehearsal: a Node.js process that loads a
// function's bundled asset (the exact `index.mjs` in cdk.out that `cdk deploy` would upload),
// resolves its handler the way the Lambda Node.js runtime does (`<file>.<export>`), and runs the
// invocations its parent sends over IPC, one at a time, as Lambda runs them in one environment.
//
// Plain JavaScript on purpose: the asset runs on bare Node, with no loader in between.
//
//   node lambda-host.mjs <asset dir> <handler>
//
// Parent -> child: { type: 'invoke', id, event, deadline, requestId, traceId }
// Child -> parent: { type: 'ready' } | { type: 'init_error', error }
//                  { type: 'result', id, ok: true, value } | { type: 'result', id, ok: false, error }
//                  { type: 'stream_meta', id, meta } | { type: 'stream_chunk', id, data } (base64)
//                  { type: 'stream_end', id }
import { Writable } from 'node:stream';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [assetDir, handlerName] = process.argv.slice(2);
const STREAMING = Symbol.for('corral.rehearsal.streaming');

/** A response stream as the Lambda runtime hands to a `streamifyResponse` handler. */
class ResponseStream extends Writable {
  constructor(id) {
    super();
    this.id = id;
    this.metaSent = false;
  }
  setContentType(type) {
    this.sendMeta({ statusCode: 200, headers: { 'content-type': type } });
  }
  sendMeta(meta) {
    if (this.metaSent) return;
    this.metaSent = true;
    process.send({ type: 'stream_meta', id: this.id, meta });
  }
  _write(chunk, _encoding, callback) {
    this.sendMeta({ statusCode: 200, headers: {} });
    const data = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
    process.send({ type: 'stream_chunk', id: this.id, data: data.toString('base64') }, undefined, undefined, () => callback());
  }
  _final(callback) {
    this.sendMeta({ statusCode: 200, headers: {} });
    process.send({ type: 'stream_end', id: this.id }, undefined, undefined, () => callback());
  }
}

// What the Lambda Node.js runtime puts on `globalThis.awslambda`.
globalThis.awslambda = {
  streamifyResponse(handler) {
    handler[STREAMING] = true;
    return handler;
  },
  HttpResponseStream: {
    from(stream, meta) {
      stream.sendMeta(meta);
      return stream;
    },
  },
};

function serializeError(err) {
  if (err instanceof Error) return { errorType: err.name || 'Error', errorMessage: err.message, stack: (err.stack ?? '').split('\n') };
  return { errorType: 'Error', errorMessage: String(err) };
}

let handler;
try {
  const dot = handlerName.lastIndexOf('.');
  const file = handlerName.slice(0, dot);
  const exportName = handlerName.slice(dot + 1);
  const mod = await import(pathToFileURL(join(assetDir, `${file}.mjs`)).href);
  handler = mod[exportName];
  if (typeof handler !== 'function') throw new Error(`Runtime.HandlerNotFound: ${handlerName} is undefined or not exported`);
} catch (err) {
  process.send({ type: 'init_error', error: serializeError(err) });
  // Lambda reports an init failure for the invocation and throws the environment away.
  setTimeout(() => process.exit(1), 50);
}

if (handler) {
  process.on('message', async (msg) => {
    if (msg?.type !== 'invoke') return;
    const { id, event, deadline, requestId, traceId } = msg;
    process.env._X_AMZN_TRACE_ID = traceId;
    const context = {
      awsRequestId: requestId,
      functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
      functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
      invokedFunctionArn: process.env.CORRAL_REHEARSAL_FUNCTION_ARN,
      memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
      logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
      logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
      callbackWaitsForEmptyEventLoop: true,
      getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
      done() {},
      fail() {},
      succeed() {},
    };
    try {
      if (handler[STREAMING]) {
        const stream = new ResponseStream(id);
        await handler(event, stream, context);
        if (!stream.writableFinished) await new Promise((resolve) => (stream.writableEnded ? stream.once('finish', resolve) : stream.end(resolve)));
        process.send({ type: 'result', id, ok: true, value: null });
      } else {
        const value = await handler(event, context);
        process.send({ type: 'result', id, ok: true, value: value === undefined ? null : value });
      }
    } catch (err) {
      process.send({ type: 'result', id, ok: false, error: serializeError(err) });
    }
  });
  process.send({ type: 'ready' });
}
