// A text classifier handler in plain JavaScript, for byte-level models such as
// reddit_bytelstm.pt (16 Reddit topics).
//
// Input: text, the raw request body (or the `data`/`body` form field; a JSON body
// `{"text": "..."}` also works). Preprocess: its UTF-8 bytes as a uint8 tensor [1, L].
// Postprocess: the model already outputs [1, N] probabilities; the answer is
// `{"topic": best, "probabilities": {label: p, ...}}` in the labels' order.
//
// Labels: one per line in a file of the archive (`--extra-files reddit_topics.txt`),
// read at init from the preopened directory /model through WASI's filesystem API. The
// file name is the model-config.yaml key `labels` (default `reddit_topics.txt`); `labels`
// may also be a YAML list of the names themselves.
//
// Build: scripts/build-js-handler.sh (componentize-js). The component's exports are the
// three functions at the bottom, over the TorchServe-shaped class.

import { log } from 'wasmserve:handler/host@0.1.3';
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';

const MODEL_DIR = '/model';

// Fails one request with `status` (the WIT `error` record): throw `new HandlerError(...)`.
class HandlerError {
  constructor(status, message) {
    this.status = status;
    this.message = message;
  }
}

// A file of the archive, as bytes.
function readModelFile(name) {
  const preopen = getDirectories().find(([, path]) => path === MODEL_DIR);
  if (!preopen) throw new Error(`${MODEL_DIR} is not available`);
  let file;
  try {
    file = preopen[0].openAt({}, name, {}, { read: true });
  } catch (e) {
    throw new Error(`cannot open ${MODEL_DIR}/${name}: ${e.payload ?? e}`);
  }
  const chunks = [];
  try {
    let offset = 0n;
    for (;;) {
      const [bytes, end] = file.read(65536n, offset);
      chunks.push(bytes);
      offset += BigInt(bytes.length);
      if (end || bytes.length === 0) break;
    }
  } finally {
    // The bindings' resources dispose under Symbol.dispose, or Symbol.for('dispose').
    file[Symbol.dispose ?? Symbol.for('dispose')]?.();
  }
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return all;
}

// TorchServe's convention: the `data` part, else `body`, else the only part.
function inputPart(row) {
  const part = row.data ?? row.body ?? (Object.keys(row).length === 1 ? Object.values(row)[0] : undefined);
  if (!part) throw new HandlerError(400, "the request has no 'data' or 'body' part");
  return part;
}

class TextClassifier {
  initialize(context) {
    const config = context.config;
    if (Array.isArray(config.labels)) {
      this.labels = config.labels.map(String);
    } else {
      const name = config.labels ?? 'reddit_topics.txt';
      const text = new TextDecoder().decode(readModelFile(name));
      this.labels = text.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
    }
    log('info', `text classifier with ${this.labels.length} labels`);
  }

  // `data`: TorchServe's batch of rows, here always one: part name -> {contentType, data}.
  preprocess(data) {
    const part = inputPart(data[0]);
    let bytes = part.data;
    if ((part.contentType ?? '').startsWith('application/json')) {
      let json;
      try {
        json = JSON.parse(new TextDecoder().decode(bytes));
      } catch (e) {
        throw new HandlerError(400, `invalid JSON: ${e.message}`);
      }
      const text = typeof json === 'string' ? json : (json?.text ?? json?.data);
      if (typeof text !== 'string') throw new HandlerError(400, 'expected {"text": "..."}');
      bytes = new TextEncoder().encode(text);
    }
    if (bytes.length === 0) throw new HandlerError(400, 'empty text');
    return [{ name: '', dtype: 'uint8', shape: new BigUint64Array([1n, BigInt(bytes.length)]), data: bytes }];
  }

  // `outputs`: this request's output tensors; returns one answer per row.
  postprocess(outputs) {
    const out = outputs[0];
    if (!out || out.dtype !== 'float32') throw new HandlerError(500, 'expected one float32 output');
    const bytes = out.data;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const n = bytes.byteLength / 4;
    if (n !== this.labels.length) {
      throw new HandlerError(500, `the model gave ${n} scores for ${this.labels.length} labels`);
    }
    const probabilities = {};
    let best = 0;
    let bestP = -Infinity;
    for (let i = 0; i < n; i++) {
      const p = view.getFloat32(4 * i, true);
      probabilities[this.labels[i]] = p;
      if (p > bestP) {
        bestP = p;
        best = i;
      }
    }
    return [{ topic: this.labels[best], probabilities }];
  }
}

// The WIT exports (init, preprocess, postprocess) over the class above. A thrown object
// with `status` and `message` becomes the WIT `error`; anything else a 500.
let handler;

function toError(e) {
  if (e instanceof HandlerError) return { status: e.status, message: e.message };
  log('error', `${e?.stack ?? e}`);
  return { status: 500, message: `${e?.message ?? e}` };
}

function row(req) {
  const r = {};
  for (const p of req.parts) r[p.name] = p;
  return r;
}

export function init(ctx) {
  try {
    const h = new TextClassifier();
    h.initialize({
      modelName: ctx.modelName,
      modelVersion: ctx.modelVersion,
      manifest: JSON.parse(ctx.manifest || '{}'),
      config: JSON.parse(ctx.config || '{}'),
      systemProperties: { model_dir: MODEL_DIR, batch_size: ctx.batchSize, device: ctx.device },
    });
    handler = h;
  } catch (e) {
    throw `${e?.message ?? e}`;
  }
}

export function preprocess(req) {
  try {
    return handler.preprocess([row(req)]);
  } catch (e) {
    throw toError(e);
  }
}

export function postprocess(req, outputs) {
  try {
    const [answer] = handler.postprocess(outputs);
    return { status: 200, headers: [], body: new TextEncoder().encode(JSON.stringify(answer)) };
  } catch (e) {
    throw toError(e);
  }
}
