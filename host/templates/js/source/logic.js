// @ts-check
/**
 * The logic of `__NAME__`, kept apart from the component's glue (`index.js`)
 * so that `node --test` runs it natively: it imports only the SDK's errors,
 * which need nothing of the component. Adapt `pageFrom` to your API.
 */

import { invalid } from '__SDK_DIR__/errors.js';

/**
 * Percent-encodes `s` for a URL (every byte but `A-Z a-z 0-9 - . _ ~`).
 * @param {string} s
 */
export function encode(s) {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * `GET {baseUrl}/{stream}?limit=100[&cursor=…]`.
 * @param {string} baseUrl
 * @param {string} stream
 * @param {string | undefined} cursor
 */
export function listUrl(baseUrl, stream, cursor) {
  const url = `${baseUrl.replace(/\/+$/, '')}/${stream}?limit=100`;
  return cursor === undefined || cursor === null ? url : `${url}&cursor=${encode(cursor)}`;
}

/**
 * The version of an item: its `updated_at` as a number, so that a later
 * change always wins (`YYYY-MM-DDTHH:MM:SSZ` compares as a number once the
 * separators go).
 * @param {any} item
 * @returns {bigint}
 */
export function versionOf(item) {
  const at = item.updated_at;
  if (typeof at !== 'string') throw invalid('an item has no updated_at');
  const digits = at.replace(/[^0-9]/g, '').slice(0, 14);
  if (!digits) throw invalid(`updated_at ${JSON.stringify(at)} is not an RFC 3339 instant`);
  return BigInt(digits);
}

/**
 * Turns one answer of the API into a page of records: each item an upsert
 * keyed by its `id`, or a delete when it carries `"deleted": true`. The
 * cursor is the API's `next`; with no `next`, the page ends the run and
 * keeps the cursor it was given.
 * @param {string} stream
 * @param {any} listing `{ "items": [...], "next": "..." | null }`
 * @param {string | undefined} cursor
 */
export function pageFrom(stream, listing, cursor) {
  const next = listing?.next ?? undefined;
  if (!Array.isArray(listing?.items) || !(next === undefined || typeof next === 'string')) {
    throw invalid('the answer is not {"items": [...], "next": "..." | null}');
  }
  const records = listing.items.map((/** @type {any} */ item) => {
    const id = item?.id;
    if (typeof id !== 'string' && typeof id !== 'number') throw invalid('an item has no id');
    return {
      key: String(id),
      kind: stream,
      version: versionOf(item),
      op: item.deleted === true ? 'delete' : 'upsert',
      body: JSON.stringify(item),
    };
  });
  return { records, nextCursor: next ?? cursor, hasMore: next !== undefined };
}
