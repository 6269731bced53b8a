// @ts-check
/**
 * `__NAME__`: a weft destination, the component's glue (the logic is in
 * `logic.js`). It delivers each record as JSON to the tenant's endpoint:
 * `PUT {base_url}/{key}` with the body for upserts, `DELETE {base_url}/{key}`
 * for deletes (`404` means gone already). The batch's requests go out
 * concurrently. The host adds the tenant's credential and waits out rate
 * limits; answers map onto weft's error classes (`429`/`5xx` transient,
 * `401`/`403` config, other `4xx` invalid).
 */

import { WeftError, configSchema, connectorInfo, eachRecord, errorValue, http } from '__SDK_DIR__/index.js';
import { goneAlready, requestFor } from './logic.js';

/** Requests of one batch in flight at once. */
const IN_FLIGHT = 8;

const CONFIG_SCHEMA = configSchema({ base_url: { type: 'string', pattern: '^https?://' } }, ['base_url']);

export const metadata = {
  describe() {
    // The origins this connector may ask for ('*'); the tenant grants the
    // ones it really calls.
    return connectorInfo('__NAME__', '0.1.0', 'A weft __WORLD__ connector', CONFIG_SCHEMA, { outboundHosts: ['*'] });
  },
};

export const destination = {
  /** @param {import('__SDK_DIR__/index.js').WeftRecord[]} batch */
  async emit(batch) {
    // Every record's request first (one that cannot become a request fails
    // alone), then all of them concurrently, then each record's outcome
    // from its answer.
    const planned = await eachRecord(batch, requestFor);
    const ready = planned.flatMap((p) => (p.tag === 'ok' ? [p.val] : []));
    const answers = http.sendAll(ready, IN_FLIGHT);
    let next = 0;
    return planned.map((p, i) => {
      if (p.tag === 'err') return p;
      const answer = answers[next++];
      try {
        if (answer instanceof WeftError) throw answer;
        if (!goneAlready(p.val.method, answer.status)) answer.errorForStatus(`delivering ${batch[i].key}`);
        return { tag: 'ok', val: undefined };
      } catch (e) {
        return { tag: 'err', val: errorValue(e) };
      }
    });
  },
};
