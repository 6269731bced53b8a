// @ts-check
/**
 * weft SDK for connectors written in JavaScript.
 *
 * A connector is an ES module that `componentize-js` turns into a
 * `wasm32-wasip2` component for one world of `wit/v0.1.0`; it exports one
 * object per exported interface (`metadata`, and `source`, `mapper` or
 * `destination`) and imports this module by a relative path
 * (`../sdk-js/index.js`; `js/build.mjs` builds from the repository root, so
 * any path inside the repository resolves). What it adds to the raw imports:
 *
 * - errors by what fixes them: `invalid`, `transient`, `configError` build a
 *   {@link WeftError}; throw it (from `fetch`, `on-webhook`, or inside
 *   {@link eachRecord}) and the host gets that error class;
 * - {@link tenantConfig}, {@link eachRecord} (one outcome per record, as
 *   `map` and `emit` answer), record helpers ({@link records});
 * - `describe`'s answer: {@link connectorInfo} and {@link configSchema};
 * - {@link kv} and {@link log} over the host's `kv` and `log` imports;
 * - `http` (`./http.js`): a blocking HTTP client over
 *   `wasi:http/outgoing-handler` whose answers map onto error classes
 *   as the Rust SDK's do.
 *
 * How WIT values look in JavaScript (componentize-js, as jco): records are
 * objects with camelCase fields, enums are strings (`'upsert'`), variants
 * and results are `{ tag, val }`, `s64`/`u64` are `BigInt` (numbers are
 * accepted where the guest hands a value back), `list<u8>` is a
 * `Uint8Array`, `option<T>` is `T | undefined`.
 *
 * Exports may be `async`: componentize-js (0.23) runs the component's event
 * loop until the promise an export returns settles, so awaiting inside
 * `map` or `emit` is fine. Imports (kv, log, config, wasi:http) are
 * synchronous.
 *
 * @module
 */

import * as config from 'weft:connector/config@0.1.0';
import * as kvHost from 'weft:connector/kv@0.1.0';
import { log as hostLog } from 'weft:connector/log@0.1.0';

import { WeftError, configError, errorValue, invalid, transient } from './errors.js';

export { WeftError, configError, errorValue, invalid, transient };
export * as http from './http.js';

/** @typedef {'upsert' | 'delete'} Operation */

/**
 * One record, as the host passes it (`version` is a `BigInt`) and as a
 * connector hands it back (`version` may be a number or a `BigInt`).
 * @typedef {object} WeftRecord
 * @property {string} key The record's identity in the system it came from.
 * @property {string} kind What the record is (`appointment`, ...).
 * @property {bigint | number} version Orders the revisions of one record.
 * @property {Operation} op Upsert or delete.
 * @property {string} body The record's content as JSON text.
 */

/** @typedef {import('./errors.js').ErrorValue} ErrorValue */

/**
 * One outcome of `map` or `emit`.
 * @template T
 * @typedef {{ tag: 'ok', val: T } | { tag: 'err', val: ErrorValue }} Outcome
 */

/**
 * This tenant's configuration of the connector, parsed (`{}` when the
 * tenant set nothing). The host validated it against `describe`'s schema.
 * @returns {any}
 * @throws {WeftError} `config`, when it is not JSON.
 */
export function tenantConfig() {
  const raw = config.getJson();
  try {
    return JSON.parse(raw);
  } catch (e) {
    throw configError(`connector configuration: ${e instanceof Error ? e.message : e}`);
  }
}

/**
 * One top-level key of the configuration, parsed, or `undefined`.
 * @param {string} key
 * @returns {any}
 */
export function configValue(key) {
  const raw = config.get(key);
  if (raw === undefined) return undefined;
  try {
    return JSON.parse(raw);
  } catch (e) {
    throw configError(`connector configuration key ${key}: ${e instanceof Error ? e.message : e}`);
  }
}

/**
 * Runs `f` on each record with this tenant's configuration and returns one
 * outcome per record, in order, as `map` and `emit` answer: return it from
 * the export. What `f` returns (or resolves to) is the record's `ok` value:
 * an array of records for `map`, nothing for `emit`. What it throws is that
 * record's error only (see {@link errorValue}); an exception that is not a
 * {@link WeftError} is also logged with its stack. A configuration that
 * cannot be read fails every record with the same `config` error.
 *
 * `f` may be `async`; the answer is always a promise (exports may return
 * one).
 *
 * @template T
 * @param {WeftRecord[]} records
 * @param {(record: WeftRecord, config: any) => T | Promise<T>} f
 * @returns {Promise<Outcome<T>[]>}
 */
export async function eachRecord(records, f) {
  let cfg;
  try {
    cfg = tenantConfig();
  } catch (e) {
    const val = errorValue(e);
    return records.map(() => ({ tag: 'err', val }));
  }
  /** @type {Outcome<T>[]} */
  const out = [];
  for (const record of records) {
    try {
      out.push({ tag: 'ok', val: await f(record, cfg) });
    } catch (e) {
      if (!(e instanceof WeftError)) {
        const stack = e instanceof Error && e.stack ? e.stack : '';
        log.error(`uncaught exception on record ${record.kind} ${record.key}`, {
          error: e instanceof Error ? `${e.name}: ${e.message}` : String(e),
          stack,
        });
      }
      out.push({ tag: 'err', val: errorValue(e) });
    }
  }
  return out;
}

/**
 * The JSON Schema of a connector's configuration, as `describe` answers it
 * (`configSchema`, JSON text): an object (draft 2020-12) with `properties`,
 * of which those named in `required` must be set, and no other key, so
 * that a misspelt key is refused by the host instead of silently ignored.
 * @param {Record<string, unknown>} properties
 * @param {string[]} [required]
 * @returns {string}
 */
export function configSchema(properties, required = []) {
  return JSON.stringify({
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    type: 'object',
    ...(required.length > 0 ? { required } : {}),
    properties,
    additionalProperties: false,
  });
}

/**
 * What `describe` answers: no streams and no outbound hosts unless `more`
 * names them; `schema` as {@link configSchema} writes it.
 * @param {string} name
 * @param {string} version
 * @param {string} description
 * @param {string} schema
 * @param {{ streams?: { name: string, description: string }[], outboundHosts?: string[] }} [more]
 */
export function connectorInfo(name, version, description, schema, { streams = [], outboundHosts = [] } = {}) {
  return { name, version, description, streams, configSchema: schema, outboundHosts };
}

/**
 * The body field of the host's *retract* convention: a mapper that outputs a
 * delete whose body carries this field (a string, the reason) asks the host
 * to remove what the record delivered before and to dead-letter the source
 * record with that reason.
 */
export const DEAD_LETTER_FIELD = 'weft_dead_letter';

/** Building and reading records. */
export const records = {
  /**
   * An upsert of `body` (serialised as JSON).
   * @param {string} key
   * @param {string} kind
   * @param {number | bigint} version
   * @param {unknown} body
   * @returns {WeftRecord}
   */
  upsert(key, kind, version, body) {
    return { key, kind, version: BigInt(version), op: 'upsert', body: JSON.stringify(body) ?? 'null' };
  },

  /**
   * A delete, carrying `body` (the last known content, or `null`).
   * @param {string} key
   * @param {string} kind
   * @param {number | bigint} version
   * @param {unknown} [body]
   * @returns {WeftRecord}
   */
  delete(key, kind, version, body = null) {
    return { ...records.upsert(key, kind, version, body), op: 'delete' };
  },

  /**
   * The record's body parsed as JSON.
   * @param {WeftRecord} record
   * @returns {any}
   * @throws {WeftError} `invalid`, naming the record, when it is not JSON.
   */
  json(record) {
    try {
      return JSON.parse(record.body);
    } catch (e) {
      throw invalid(`${record.kind} ${record.key}: body is not JSON: ${e instanceof Error ? e.message : e}`);
    }
  },
};

/**
 * @param {unknown} e
 * @param {string} what
 * @returns {never}
 */
function kvFailed(e, what) {
  const p = /** @type {any} */ (e)?.payload;
  if (!p || typeof p.tag !== 'string') throw e;
  const msg = `kv ${what}: ${p.tag}: ${p.val}`;
  switch (p.tag) {
    case 'unavailable':
      throw transient(msg);
    case 'quota-exceeded':
      throw configError(msg);
    default:
      throw invalid(msg);
  }
}

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/**
 * The connector's private key-value space (per tenant). Failures throw a
 * {@link WeftError}: `unavailable` is transient, `quota-exceeded` config
 * (a person must make room), `too-large` invalid.
 */
export const kv = {
  /**
   * The bytes under `key`, or `undefined`.
   * @param {string} key
   * @returns {Uint8Array | undefined}
   */
  getBytes(key) {
    try {
      return kvHost.get(key);
    } catch (e) {
      kvFailed(e, `get ${key}`);
    }
  },
  /**
   * The text under `key` (UTF-8), or `undefined`.
   * @param {string} key
   * @returns {string | undefined}
   */
  get(key) {
    const v = kv.getBytes(key);
    return v === undefined ? undefined : fromUtf8.decode(v);
  },
  /**
   * The JSON value under `key`, or `undefined`.
   * @param {string} key
   * @returns {any}
   */
  getJson(key) {
    const v = kv.get(key);
    return v === undefined ? undefined : JSON.parse(v);
  },
  /**
   * Stores `value` (text as UTF-8, or bytes) under `key`.
   * @param {string} key
   * @param {string | Uint8Array} value
   */
  set(key, value) {
    try {
      kvHost.set(key, typeof value === 'string' ? utf8.encode(value) : value);
    } catch (e) {
      kvFailed(e, `set ${key}`);
    }
  },
  /**
   * Stores `value` as JSON under `key`.
   * @param {string} key
   * @param {unknown} value
   */
  setJson(key, value) {
    kv.set(key, JSON.stringify(value));
  },
  /**
   * Removes `key` (a missing key is fine).
   * @param {string} key
   */
  delete(key) {
    try {
      kvHost.delete(key);
    } catch (e) {
      kvFailed(e, `delete ${key}`);
    }
  },
  /**
   * The keys starting with `prefix`, in byte order, at most `limit`.
   * @param {string} prefix
   * @param {number} [limit]
   * @returns {string[]}
   */
  keys(prefix, limit = 1000) {
    try {
      return kvHost.listKeys(prefix, limit);
    } catch (e) {
      kvFailed(e, `list ${prefix}`);
    }
  },
};

/**
 * @param {'trace' | 'debug' | 'info' | 'warn' | 'error'} level
 * @returns {(message: string, fields?: Record<string, unknown>) => void}
 */
function logAt(level) {
  return (message, fields = {}) =>
    hostLog(
      level,
      String(message),
      Object.entries(fields).map(([k, v]) => [k, typeof v === 'string' ? v : String(v)]),
    );
}

/**
 * Structured log lines; the host adds tenant, flow, run and connector.
 * `fields` is an object of names to values (turned into strings).
 * `console.log` and `console.error` work too (as `info` and `warn` lines).
 */
export const log = {
  trace: logAt('trace'),
  debug: logAt('debug'),
  info: logAt('info'),
  warn: logAt('warn'),
  error: logAt('error'),
};
