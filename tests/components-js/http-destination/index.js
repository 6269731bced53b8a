// @ts-check
/**
 * Test destination in JavaScript, exercising the SDK: each record is a
 * `PUT` (upsert, its body) or `DELETE` of `{url}/records/{key}`, sent
 * concurrently with `http.sendAll`; answers map to error classes with
 * `errorForStatus` (a `404` to a delete is success). It counts the records
 * it delivered in kv (`delivered`) and sends the count from before the
 * batch as `x-delivered-before`, and logs one line per batch. With
 * `with_version: true` it sends `{ version, body }` through the SDK's
 * `json`, where the version is a `BigInt` that JSON cannot hold: the SDK
 * must fail that request as `invalid` before it leaves the guest.
 */

import { WeftError, errorValue, http, kv, log, tenantConfig } from '../../../connectors/sdk-js/index.js';

export const metadata = {
  describe() {
    return {
      name: 'http-destination',
      version: '0.1.0',
      description: 'Test destination over the JavaScript SDK',
      streams: [],
      configSchema: JSON.stringify({
        type: 'object',
        required: ['url'],
        properties: { url: { type: 'string' }, with_version: { type: 'boolean' } },
        additionalProperties: false,
      }),
      outboundHosts: ['*'],
    };
  },
};

export const destination = {
  /** @param {import('../../../connectors/sdk-js/index.js').WeftRecord[]} batch */
  emit(batch) {
    let cfg;
    let before;
    try {
      cfg = tenantConfig();
      before = kv.getJson('delivered') ?? 0;
    } catch (e) {
      const val = errorValue(e);
      return batch.map(() => ({ tag: 'err', val }));
    }
    const requests = batch.map((r) => {
      const url = `${cfg.url}/records/${encodeURIComponent(r.key)}`;
      if (r.op !== 'delete' && cfg.with_version) {
        return { method: 'PUT', url, json: { version: r.version, body: r.body } };
      }
      return r.op === 'delete'
        ? { method: 'DELETE', url }
        : {
            method: 'PUT',
            url,
            body: r.body,
            headers: { 'content-type': 'application/json', 'x-delivered-before': String(before) },
          };
    });
    let delivered = 0;
    const outcomes = http.sendAll(requests, 4).map((answer, i) => {
      try {
        if (answer instanceof WeftError) throw answer;
        if (!(batch[i].op === 'delete' && answer.status === 404)) {
          answer.errorForStatus(`delivering ${batch[i].key}`);
        }
        delivered += 1;
        return { tag: 'ok', val: undefined };
      } catch (e) {
        return { tag: 'err', val: errorValue(e) };
      }
    });
    kv.setJson('delivered', before + delivered);
    log.info('batch emitted', { records: batch.length, delivered });
    return outcomes;
  },
};
