'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { buildQuery, searchUrl } = require('./url.js');

test('keys are sorted', () => {
  assert.strictEqual(buildQuery({ q: 'tea', page: 2 }), 'page=2&q=tea');
});

test('arrays repeat the key', () => {
  assert.strictEqual(buildQuery({ tag: ['red', 'blue'] }), 'tag=red&tag=blue');
});

test('no parameters, no question mark', () => {
  assert.strictEqual(searchUrl('/search', {}), '/search');
});
