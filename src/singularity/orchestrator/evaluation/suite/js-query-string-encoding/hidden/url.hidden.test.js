'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { buildQuery, searchUrl } = require('./url.js');

test('values are percent-encoded', () => {
  assert.strictEqual(buildQuery({ q: 'salt & pepper' }), 'q=salt%20%26%20pepper');
  assert.strictEqual(buildQuery({ q: '50% off' }), 'q=50%25%20off');
  assert.strictEqual(buildQuery({ 'a b': ['x=y'] }), 'a%20b=x%3Dy');
});

test('unset values are left out', () => {
  assert.strictEqual(buildQuery({ q: 'tea', brand: undefined, size: null }), 'q=tea');
  assert.strictEqual(searchUrl('/search', { brand: undefined }), '/search');
  assert.strictEqual(buildQuery({ page: 0, q: '' }), 'page=0&q=');
});
