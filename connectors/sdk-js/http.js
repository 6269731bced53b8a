// @ts-check
/**
 * A small blocking HTTP client over `wasi:http/outgoing-handler`, as the Rust
 * SDK's `weft_sdk::http`.
 *
 * The host enforces the tenant's grants, adds credentials, waits out rate
 * limits and retries idempotent requests on server errors, so this client
 * only builds requests and reads answers; it never follows redirects.
 * Failures come back as {@link WeftError}s: a request the host refuses
 * (origin not granted, private address, refused credential) is `config`,
 * other transport failures `transient`; {@link Response#errorForStatus}
 * maps statuses (`429`/`5xx` transient with `Retry-After`, `401`/`403`
 * config, other `4xx` invalid).
 *
 * Calls block the component until the answer is read, so they work in
 * synchronous exports. (The `fetch` global of componentize-js also goes
 * over `wasi:http`, but it is asynchronous and its errors do not say
 * whether the host refused a request, which decides `config` over
 * `transient`.)
 *
 * ```js
 * import { http } from '../sdk-js/index.js';
 * const items = http.send({ url: `${base}/items?limit=100` })
 *   .errorForStatus('listing items')
 *   .json();
 * ```
 *
 * @module
 */

import { handle } from 'wasi:http/outgoing-handler@0.2.12';
import { Fields, OutgoingBody, OutgoingRequest } from 'wasi:http/types@0.2.12';
import { WeftError, configError, invalid, transient } from './errors.js';

/**
 * A request: `url` is absolute; `headers` an object or a list of pairs;
 * `body` text or bytes, or `json` (serialised, with its content type).
 * @typedef {object} Request
 * @property {string} url
 * @property {string} [method] `GET` when absent.
 * @property {Record<string, string> | [string, string][]} [headers]
 * @property {string | Uint8Array} [body]
 * @property {unknown} [json]
 */

const dispose = /** @type {typeof Symbol.dispose} */ (Symbol.dispose || Symbol.for('dispose'));
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/** @param {any} resource */
function drop(resource) {
  if (resource && typeof resource[dispose] === 'function') resource[dispose]();
}

/** An HTTP answer, read whole. */
export class Response {
  /**
   * @param {number} status
   * @param {[string, string][]} headers names in lowercase
   * @param {Uint8Array} body
   */
  constructor(status, headers, body) {
    this.status = status;
    this.headers = headers;
    this.body = body;
  }

  /** Whether the status is 2xx. */
  get ok() {
    return this.status >= 200 && this.status < 300;
  }

  /**
   * The first value of header `name` (case-insensitive), or `undefined`.
   * @param {string} name
   */
  header(name) {
    const n = name.toLowerCase();
    return this.headers.find(([k]) => k === n)?.[1];
  }

  /** The body as text (UTF-8, lossy). */
  text() {
    return fromUtf8.decode(this.body);
  }

  /**
   * The body parsed as JSON; a malformed body is an `invalid` error that
   * says what was wrong.
   * @returns {any}
   */
  json() {
    const text = this.text();
    try {
      return JSON.parse(text);
    } catch (e) {
      throw invalid(
        `malformed JSON in HTTP ${this.status} answer: ${e instanceof Error ? e.message : e} (body starts ${JSON.stringify(text.slice(0, 120))})`,
      );
    }
  }

  /** `Retry-After` in milliseconds, when it is a number of seconds. */
  retryAfterMs() {
    const v = this.header('retry-after')?.trim();
    return v && /^\d+$/.test(v) ? Number(v) * 1000 : undefined;
  }

  /**
   * The weft error for this (non-2xx) answer: `429`/`5xx` transient (with
   * `Retry-After`), `401`/`403` config (the host already refreshed OAuth
   * tokens, so this is a refused key), anything else invalid. `context`
   * starts the message.
   * @param {string} context
   */
  toError(context) {
    const message = `${context}: HTTP ${this.status}: ${this.text().slice(0, 300)}`;
    if (this.status === 429 || (this.status >= 500 && this.status <= 599)) {
      return transient(message, this.retryAfterMs());
    }
    if (this.status === 401 || this.status === 403) return configError(message);
    return invalid(message);
  }

  /**
   * This answer when it is 2xx; otherwise throws {@link Response#toError}.
   * @param {string} context
   * @returns {Response}
   */
  errorForStatus(context) {
    if (this.ok) return this;
    throw this.toError(context);
  }
}

/**
 * Sends `req` and reads the whole answer (any status).
 * @param {Request} req
 * @returns {Response}
 * @throws {WeftError}
 */
export function send(req) {
  return start(req).wait();
}

/**
 * Sends every request, at most `inFlight` at once (the host runs them
 * concurrently within the tenant's rate and `max_http_in_flight`), and
 * returns, in order, each one's {@link Response} or the {@link WeftError}
 * it failed with.
 * @param {Request[]} reqs
 * @param {number} [inFlight]
 * @returns {(Response | WeftError)[]}
 */
export function sendAll(reqs, inFlight = 8) {
  const limit = Math.max(1, inFlight);
  /** @type {(Response | WeftError)[]} */
  const out = new Array(reqs.length);
  /** @type {[number, Pending][]} */
  const pending = [];
  let next = 0;
  while (next < reqs.length || pending.length > 0) {
    while (next < reqs.length && pending.length < limit) {
      try {
        pending.push([next, start(reqs[next])]);
      } catch (e) {
        out[next] = asWeftError(e);
      }
      next += 1;
    }
    const first = pending.shift();
    if (first) {
      const [i, p] = first;
      try {
        out[i] = p.wait();
      } catch (e) {
        out[i] = asWeftError(e);
      }
    }
  }
  return out;
}

/** @param {unknown} e */
function asWeftError(e) {
  if (e instanceof WeftError) return e;
  return transient(`HTTP request failed: ${errorText(e)}`);
}

/** A request on its way: sent, its answer not read yet. */
export class Pending {
  /**
   * @param {string} url
   * @param {any} future a `future-incoming-response`
   */
  constructor(url, future) {
    this.url = url;
    this.future = future;
  }

  /**
   * Waits for the answer and reads it whole.
   * @returns {Response}
   */
  wait() {
    const { url, future } = this;
    try {
      let got = future.get();
      while (got === undefined) {
        const pollable = future.subscribe();
        pollable.block();
        drop(pollable);
        got = future.get();
      }
      if (got.tag === 'err') throw transient(`request to ${url}: response already taken`);
      if (got.val.tag === 'err') throw transportError(url, got.val.val);
      return readResponse(url, got.val.val);
    } finally {
      drop(future);
    }
  }
}

const METHODS = ['get', 'head', 'post', 'put', 'delete', 'connect', 'options', 'trace', 'patch'];

/**
 * Builds `req`, hands it to the host and sends its body; read the answer
 * with {@link Pending#wait}.
 * @param {Request} req
 * @returns {Pending}
 */
export function start(req) {
  try {
    return startChecked(req);
  } catch (e) {
    // Whatever fails before the request leaves the guest (a body that
    // cannot be serialized, a header value that is not text, a bug in the
    // caller's request) is this request's fault: `invalid`, never
    // `transient`, so that one bad record cannot stall its flow.
    if (e instanceof WeftError) throw e;
    throw invalid(`request to ${req?.url}: ${errorText(e)}`);
  }
}

/**
 * An exception as text with its class: `TypeError: Do not know how to
 * serialize a BigInt`.
 * @param {unknown} e
 */
export function errorText(e) {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return describe(e);
}

/**
 * {@link start}, throwing whatever building the request throws.
 * @param {Request} req
 * @returns {Pending}
 */
function startChecked(req) {
  let url;
  try {
    url = new URL(req.url);
  } catch (e) {
    throw invalid(`bad URL ${JSON.stringify(req.url)}: ${e instanceof Error ? e.message : e}`);
  }
  let scheme;
  if (url.protocol === 'http:') scheme = { tag: 'HTTP' };
  else if (url.protocol === 'https:') scheme = { tag: 'HTTPS' };
  else throw invalid(`unsupported URL scheme ${JSON.stringify(url.protocol)} in ${req.url}`);
  if (!url.hostname) throw invalid(`URL has no host: ${req.url}`);

  /** @type {[string, string][]} */
  const headerList = Array.isArray(req.headers) ? [...req.headers] : Object.entries(req.headers ?? {});
  let body = req.body;
  if (req.json !== undefined) {
    body = JSON.stringify(req.json);
    headerList.push(['content-type', 'application/json']);
  }
  const bytes = typeof body === 'string' ? utf8.encode(body) : body;

  const headers = new Fields();
  for (const [k, v] of headerList) {
    try {
      headers.append(k, utf8.encode(String(v)));
    } catch (e) {
      drop(headers);
      throw invalid(`header ${JSON.stringify(k)} refused: ${describe(e)}`);
    }
  }
  const outgoing = new OutgoingRequest(headers);
  const method = (req.method ?? 'GET').toLowerCase();
  const bad = (/** @type {string} */ what) => invalid(`request to ${req.url}: bad ${what}`);
  try {
    outgoing.setMethod(METHODS.includes(method) ? { tag: method } : { tag: 'other', val: method.toUpperCase() });
  } catch {
    throw bad('method');
  }
  try {
    outgoing.setScheme(scheme);
  } catch {
    throw bad('scheme');
  }
  try {
    outgoing.setAuthority(url.host);
  } catch {
    throw bad('authority');
  }
  try {
    outgoing.setPathWithQuery(url.pathname + url.search);
  } catch {
    throw bad('path');
  }

  const outBody = outgoing.body();
  let future;
  try {
    future = handle(outgoing, undefined);
  } catch (e) {
    drop(outBody);
    throw transportErrorOf(req.url, e);
  }
  const stream = outBody.write();
  try {
    if (bytes) {
      for (let at = 0; at < bytes.length; at += 4096) {
        stream.blockingWriteAndFlush(bytes.subarray(at, at + 4096));
      }
    }
  } catch (e) {
    drop(stream);
    drop(outBody);
    // The host closes the body when it refuses or fails the request (an
    // origin not granted, no connection): the reason is in the answer.
    new Pending(req.url, future).wait();
    throw transient(`request to ${req.url}: writing body: ${describe(e)}`);
  }
  drop(stream);
  try {
    OutgoingBody.finish(outBody, undefined);
  } catch (e) {
    drop(future);
    throw transportErrorOf(req.url, e);
  }
  return new Pending(req.url, future);
}

/**
 * @param {string} url
 * @param {any} incoming an `incoming-response`
 */
function readResponse(url, incoming) {
  try {
    const status = incoming.status();
    const fields = incoming.headers();
    /** @type {[string, string][]} */
    const headers = fields.entries().map((/** @type {[string, Uint8Array]} */ [k, v]) => [
      k.toLowerCase(),
      fromUtf8.decode(v),
    ]);
    drop(fields);
    let body;
    try {
      body = incoming.consume();
    } catch {
      throw transient(`request to ${url}: body already taken`);
    }
    /** @type {Uint8Array[]} */
    const chunks = [];
    let total = 0;
    const stream = body.stream();
    try {
      for (;;) {
        let chunk;
        try {
          chunk = stream.blockingRead(65536n);
        } catch (e) {
          const p = /** @type {any} */ (e)?.payload;
          if (p?.tag === 'closed') break;
          if (p?.tag === 'last-operation-failed') {
            const detail = p.val.toDebugString();
            drop(p.val);
            throw transient(`request to ${url}: reading body: ${detail}`);
          }
          throw e;
        }
        chunks.push(chunk);
        total += chunk.length;
      }
    } finally {
      drop(stream);
      drop(body);
    }
    const all = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) {
      all.set(c, at);
      at += c.length;
    }
    return new Response(status, headers, all);
  } finally {
    drop(incoming);
  }
}

/**
 * @param {string} url
 * @param {unknown} e what `handle` or `finish` threw
 */
function transportErrorOf(url, e) {
  const p = /** @type {any} */ (e)?.payload;
  if (p && typeof p.tag === 'string') return transportError(url, p);
  return transient(`request to ${url}: ${describe(e)}`);
}

/**
 * A `wasi:http` error code as a weft error: a request the host denied is a
 * `config` problem, anything else may pass and is `transient`.
 * @param {string} url
 * @param {{ tag: string, val?: any }} code
 */
function transportError(url, code) {
  switch (code.tag) {
    case 'HTTP-request-denied':
      return configError(
        `request to ${url} denied by the host: the origin is not granted to this connector for this tenant`,
      );
    case 'destination-IP-prohibited':
      return configError(
        `request to ${url} denied by the host: it resolves to a loopback, private or other non-public address; if that is meant, the operator lists the host in \`private_hosts\` in weft.toml`,
      );
    case 'internal-error':
      if (typeof code.val === 'string' && code.val.startsWith('weft: credential refused: ')) {
        return configError(`request to ${url}: ${code.val}`);
      }
      return transient(`request to ${url}: ${code.val ?? 'internal error'}`);
    default:
      return transient(`request to ${url}: ${describe(code)}`);
  }
}

/** @param {unknown} v */
function describe(v) {
  const p = /** @type {any} */ (v)?.payload ?? v;
  if (p instanceof Error) return p.message;
  try {
    return JSON.stringify(p, (_, x) => (typeof x === 'bigint' ? x.toString() : x)) ?? String(p);
  } catch {
    return String(p);
  }
}
