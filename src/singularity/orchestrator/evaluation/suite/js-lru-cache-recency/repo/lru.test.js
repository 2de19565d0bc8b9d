'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { LruCache } = require('./lru.js');

test('keeps at most capacity entries', () => {
  const cache = new LruCache(2);
  cache.set('a', 1).set('b', 2).set('c', 3);
  assert.strictEqual(cache.size, 2);
  assert.strictEqual(cache.has('a'), false);
  assert.strictEqual(cache.get('c'), 3);
});

test('refuses a zero capacity', () => {
  assert.throws(() => new LruCache(0), RangeError);
});
