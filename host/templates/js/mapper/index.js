// @ts-check
/**
 * `__NAME__`: a weft mapper, the component's glue (the logic is in
 * `logic.js`). It upper-cases the string field named by the tenant's
 * configuration (`{ "field": "title" }`) in each upserted record's JSON
 * body; deletes pass through. A record whose body is not a JSON object is
 * `invalid` (dead-lettered alone; the rest of the batch goes on).
 */

import { configSchema, connectorInfo, eachRecord } from '__SDK_DIR__/index.js';
import { mapOne } from './logic.js';

const CONFIG_SCHEMA = configSchema({ field: { type: 'string', minLength: 1 } }, ['field']);

export const metadata = {
  describe() {
    return connectorInfo('__NAME__', '0.1.0', 'A weft __WORLD__ connector', CONFIG_SCHEMA);
  },
};

export const mapper = {
  /** @param {import('__SDK_DIR__/index.js').WeftRecord[]} batch */
  map(batch) {
    // One outcome per record: what mapOne throws fails that record only.
    return eachRecord(batch, mapOne);
  },
};
