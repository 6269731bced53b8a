// Tests of logic.js, natively: `node --test`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { goneAlready, requestFor } from './logic.js';

const config = { base_url: 'https://api.example.com/items/' };

test('upserts are put with their body and keys are encoded', () => {
  const req = requestFor({ key: 'a b/c', kind: 'item', version: 1n, op: 'upsert', body: '{"x":1}' }, config);
  assert.deepEqual(req, { method: 'PUT', url: 'https://api.example.com/items/a%20b%2Fc', json: { x: 1 } });
});

test('deletes are deleted and a 404 means gone already', () => {
  const req = requestFor({ key: 'k1', kind: 'item', version: 1n, op: 'delete', body: 'null' }, config);
  assert.deepEqual(req, { method: 'DELETE', url: 'https://api.example.com/items/k1' });
  assert.equal(goneAlready('DELETE', 404), true);
  assert.equal(goneAlready('PUT', 404), false);
});

test('a body that is not JSON is invalid', () => {
  assert.throws(() => requestFor({ key: 'k1', kind: 'item', version: 1n, op: 'upsert', body: '{' }, config), {
    kind: 'invalid',
  });
});
