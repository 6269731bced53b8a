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

const RFC3339 = /^(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * The version of an item: the instant its `updated_at` names, in
 * microseconds since 1970 (UTC), so that a later change always wins: two
 * edits within one second keep their order (their fractions of a second
 * count), and offsets count (`10:00+02:00` is before `09:00Z`).
 * @param {any} item
 * @returns {bigint}
 */
export function versionOf(item) {
  const at = item.updated_at;
  if (typeof at !== 'string') throw invalid('an item has no updated_at');
  const m = RFC3339.exec(at);
  // Whole seconds from Date (its fractions stop at milliseconds), the
  // fraction's first six digits by hand.
  const seconds = m ? Date.parse(`${m[1].replace(/[t ]/, 'T')}${m[3].toUpperCase()}`) : NaN;
  if (!m || Number.isNaN(seconds)) throw invalid(`updated_at ${JSON.stringify(at)} is not an RFC 3339 instant`);
  const micros = BigInt((m[2] ?? '').padEnd(6, '0').slice(0, 6));
  return BigInt(seconds) * 1000n + micros;
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
