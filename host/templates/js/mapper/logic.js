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
 * Maps one record: upper-cases the string field `config.field` of an
 * upsert's JSON body; deletes pass through. A body that is not a JSON object
 * throws `invalid` (that record is dead-lettered, the rest go on).
 * @param {WeftRecord} record
 * @param {{ field: string }} config
 * @returns {WeftRecord[]}
 */
export function mapOne(record, config) {
  if (record.op === 'delete') return [record];
  let body;
  try {
    body = JSON.parse(record.body);
  } catch (e) {
    throw invalid(`record ${record.key}: the body is not JSON: ${e instanceof Error ? e.message : e}`);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw invalid(`record ${record.key}: the body is not a JSON object`);
  }
  const value = body[config.field];
  if (typeof value === 'string') body[config.field] = value.toUpperCase();
  return [{ ...record, body: JSON.stringify(body) }];
}
