// @ts-check
/**
 * `__NAME__`: a weft source, the component's glue (the logic is in
 * `logic.js`). It reads a JSON API that lists items page by page:
 * `GET {base_url}/{stream}?limit=100[&cursor=…]` answering
 * `{ "items": [{ "id": …, "updated_at": "RFC 3339", … }], "next": "…" | null }`.
 * Each item becomes an upsert keyed by its `id`, versioned by `updated_at`
 * (newer wins at the host), or a delete when it carries `"deleted": true`.
 * The weft cursor is the API's `next`; with no `next` the run ends and the
 * next run starts again from the cursor it was given.
 *
 * `fetch` returns a `result`: it returns the page, and what it throws (a
 * `WeftError`: `invalid(…)`, an HTTP answer's `errorForStatus`) is the error.
 */

import { configSchema, connectorInfo, http, invalid, tenantConfig } from '__SDK_DIR__/index.js';
import { listUrl, pageFrom } from './logic.js';

const CONFIG_SCHEMA = configSchema({ base_url: { type: 'string', pattern: '^https?://' } }, ['base_url']);

export const metadata = {
  describe() {
    return connectorInfo('__NAME__', '0.1.0', 'A weft __WORLD__ connector', CONFIG_SCHEMA, {
      streams: [{ name: 'items', description: 'Every item, oldest change first' }],
      // The origins this connector may ask for; the tenant grants the ones
      // it really calls.
      outboundHosts: ['*'],
    });
  },
};

export const source = {
  /**
   * @param {string} stream
   * @param {string | undefined} cursor
   */
  fetch(stream, cursor) {
    const config = tenantConfig();
    // 429/5xx transient, 401/403 config, other statuses invalid.
    const listing = http
      .send({ url: listUrl(config.base_url, stream, cursor) })
      .errorForStatus(`listing ${stream}`)
      .json();
    return pageFrom(stream, listing, cursor);
  },

  onWebhook() {
    throw invalid('this source takes no webhooks');
  },
};
