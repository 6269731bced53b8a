// @ts-check
/**
 * The logic of `__NAME__`, kept apart from the component's glue (`index.js`)
 * so that `node --test` runs it natively: it imports only the SDK's errors,
 * which need nothing of the component.
 */

import { invalid } from '__SDK_DIR__/errors.js';

/**
 * One record, as the host passes it (see the SDK's `WeftRecord`).
 * @typedef {{ key: string, kind: string, version: bigint | number, op: 'upsert' | 'delete', body: string }} WeftRecord
 */

/**
 * Percent-encodes `s` for one path segment (every byte but
 * `A-Z a-z 0-9 - . _ ~`).
 * @param {string} s
 */
export function segment(s) {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * The request that delivers `record`: `PUT {base_url}/{key}` with its JSON
 * body, or `DELETE {base_url}/{key}` for a delete. A body that is not JSON
 * throws `invalid` (that record is dead-lettered, the rest go on).
 * @param {WeftRecord} record
 * @param {{ base_url: string }} config
 * @returns {{ method: string, url: string, json?: unknown }}
 */
export function requestFor(record, config) {
  const url = `${config.base_url.replace(/\/+$/, '')}/${segment(record.key)}`;
  if (record.op === 'delete') return { method: 'DELETE', url };
  try {
    return { method: 'PUT', url, json: JSON.parse(record.body) };
  } catch (e) {
    throw invalid(`${record.kind} ${record.key}: body is not JSON: ${e instanceof Error ? e.message : e}`);
  }
}

/**
 * Whether an answer that is not `2xx` is still a success: a delete of what
 * is not there (`404`).
 * @param {string} method
 * @param {number} status
 */
export function goneAlready(method, status) {
  return method === 'DELETE' && status === 404;
}
