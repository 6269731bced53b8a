// Tests of logic.js, natively: `node --test`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { listUrl, pageFrom, versionOf } from './logic.js';

test('items become versioned records and the cursor moves on', () => {
  const page = pageFrom(
    'items',
    {
      items: [
        { id: 1, updated_at: '2026-01-02T03:04:05Z', name: 'a' },
        { id: 'b', updated_at: '2026-01-02T03:04:06Z', deleted: true },
      ],
      next: 'p2',
    },
    undefined,
  );
  assert.deepEqual(
    page.records.map((r) => [r.key, r.kind, r.op]),
    [
      ['1', 'items', 'upsert'],
      ['b', 'items', 'delete'],
    ],
  );
  assert.ok(page.records[1].version > page.records[0].version);
  assert.equal(page.nextCursor, 'p2');
  assert.equal(page.hasMore, true);
});

test('the last page keeps the cursor it was given', () => {
  const page = pageFrom('items', { items: [], next: null }, 'p2');
  assert.equal(page.nextCursor, 'p2');
  assert.equal(page.hasMore, false);
});

test('versions are instants to the microsecond', () => {
  // Versions cut to whole seconds lost the second edit of a second.
  const v = (at) => versionOf({ updated_at: at });
  assert.ok(v('2026-01-02T03:04:05.250Z') > v('2026-01-02T03:04:05.100Z'));
  assert.ok(v('2026-01-02T03:04:05.000001Z') > v('2026-01-02T03:04:05Z'));
  assert.ok(v('2026-01-02T10:00:00+02:00') < v('2026-01-02T09:00:00Z'));
  assert.equal(v('2026-01-02T03:04:05Z'), 1767323045000000n);
  for (const bad of ['2026-01-02', '2026-13-02T03:04:05Z', 'yesterday', '2026-01-02T03:04:05']) {
    assert.throws(() => v(bad), { kind: 'invalid' }, bad);
  }
});

test('an item without updated_at is invalid', () => {
  assert.throws(() => pageFrom('items', { items: [{ id: 1 }], next: null }, undefined), { kind: 'invalid' });
});

test('the URL carries the limit and the cursor, encoded', () => {
  assert.equal(listUrl('https://api.example.com/', 'items', undefined), 'https://api.example.com/items?limit=100');
  assert.equal(
    listUrl('https://api.example.com', 'items', "a b/c'"),
    'https://api.example.com/items?limit=100&cursor=a%20b%2Fc%27',
  );
});
