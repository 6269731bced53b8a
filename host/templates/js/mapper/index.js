// @ts-check
/**
 * `__NAME__`: a weft mapper, the component's glue (the logic is in
 * `logic.js`). It upper-cases the string field named by the tenant's
 * configuration (`{ "field": "title" }`) in each upserted record's JSON
 * body; deletes pass through. A record whose body is not a JSON object is
 * `invalid` (dead-lettered alone; the rest of the batch goes on).
 */

import { eachRecord } from '__SDK_DIR__/index.js';
import { mapOne } from './logic.js';

const CONFIG_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  required: ['field'],
  properties: { field: { type: 'string', minLength: 1 } },
  additionalProperties: false,
};

export const metadata = {
  describe() {
    return {
      name: '__NAME__',
      version: '0.1.0',
      description: 'A weft __WORLD__ connector',
      streams: [],
      configSchema: JSON.stringify(CONFIG_SCHEMA),
      outboundHosts: [],
    };
  },
};

export const mapper = {
  /** @param {import('__SDK_DIR__/index.js').WeftRecord[]} batch */
  map(batch) {
    // One outcome per record: what mapOne throws fails that record only.
    return eachRecord(batch, mapOne);
  },
};
