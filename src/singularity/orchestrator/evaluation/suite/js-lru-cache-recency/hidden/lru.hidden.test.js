'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { LruCache } = require('./lru.js');

test('reading an entry makes it recent', () => {
  const cache = new LruCache(2);
  cache.set('logo', 'L').set('photo', 'P');
  assert.strictEqual(cache.get('logo'), 'L');
  cache.set('banner', 'B');
  assert.strictEqual(cache.has('logo'), true);
  assert.strictEqual(cache.has('photo'), false);
});

test('overwriting an entry makes it recent without growing', () => {
  const cache = new LruCache(2);
  cache.set('a', 1).set('b', 2).set('a', 10).set('c', 3);
  assert.strictEqual(cache.size, 2);
  assert.strictEqual(cache.get('a'), 10);
  assert.strictEqual(cache.has('b'), false);
});

test('a miss is undefined and evicts nothing', () => {
  const cache = new LruCache(1);
  cache.set('a', 1);
  assert.strictEqual(cache.get('zzz'), undefined);
  assert.strictEqual(cache.get('a'), 1);
});
