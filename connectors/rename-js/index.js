// @ts-check
/**
 * `rename-js`: a mapper that reshapes each record's JSON body by the tenant's
 * configuration, written in JavaScript (the example of the README's
 * "Writing a connector in JavaScript").
 *
 * - `rename`: `{ "from": "to" }`, top-level fields to rename; a renamed
 *   field wins over a field that already had the new name.
 * - `keep`: when set, only these top-level fields (by their names after
 *   renaming) stay.
 * - `kind`: when set, the kind of the records it outputs.
 *
 * Key, version and operation stay as they are. A body that is not JSON, or
 * not a JSON object, is `invalid` for that record (dead-lettered); a delete
 * whose body is `null` passes unchanged.
 */

import { configSchema, connectorInfo, eachRecord, invalid, records } from '../sdk-js/index.js';

const CONFIG_SCHEMA = configSchema({
  rename: {
    description: 'Top-level fields to rename, old name to new name',
    type: 'object',
    additionalProperties: { type: 'string', minLength: 1 },
  },
  keep: {
    description: 'When set, only these top-level fields (names after renaming) are kept',
    type: 'array',
    items: { type: 'string' },
    uniqueItems: true,
  },
  kind: {
    description: 'When set, the kind of the output records',
    type: 'string',
    minLength: 1,
  },
});

/**
 * @param {Record<string, unknown>} body
 * @param {{ rename?: Record<string, string>, keep?: string[] }} cfg
 */
export function reshape(body, cfg) {
  const rename = cfg.rename ?? {};
  /** @type {Record<string, unknown>} */
  const out = {};
  for (const [k, v] of Object.entries(body)) {
    if (!Object.hasOwn(rename, k)) out[k] = v;
  }
  for (const [k, v] of Object.entries(body)) {
    if (Object.hasOwn(rename, k)) out[rename[k]] = v;
  }
  if (!cfg.keep) return out;
  /** @type {Record<string, unknown>} */
  const kept = {};
  for (const k of cfg.keep) {
    if (Object.hasOwn(out, k)) kept[k] = out[k];
  }
  return kept;
}

/**
 * @param {import('../sdk-js/index.js').WeftRecord} record
 * @param {{ rename?: Record<string, string>, keep?: string[], kind?: string }} cfg
 */
function mapOne(record, cfg) {
  const body = records.json(record);
  const kind = cfg.kind ?? record.kind;
  if (body === null && record.op === 'delete') {
    return [{ ...record, kind }];
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw invalid(`${record.kind} ${record.key}: body is not a JSON object`);
  }
  return [{ ...record, kind, body: JSON.stringify(reshape(body, cfg)) }];
}

export const metadata = {
  describe() {
    const description = 'Renames and keeps top-level fields of JSON records (JavaScript)';
    return connectorInfo('rename-js', '1.0.0', description, CONFIG_SCHEMA);
  },
};

export const mapper = {
  /** @param {import('../sdk-js/index.js').WeftRecord[]} batch */
  map(batch) {
    return eachRecord(batch, mapOne);
  },
};
