'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { parseDuration } = require('./duration.js');
const { jobTimeout } = require('./scheduler.js');

test('combined units', () => {
  assert.strictEqual(parseDuration('1h30m'), 5400000);
  assert.strictEqual(parseDuration('2m5s'), 125000);
  assert.strictEqual(parseDuration('1d12h'), 129600000);
  assert.strictEqual(parseDuration('1m500ms'), 60500);
  assert.strictEqual(jobTimeout({ timeout: '1h30m' }), 5400000);
});

test('wrong order, repeated units and gaps are refused', () => {
  for (const bad of ['30m1h', '1h1h', '1h 30m', '1h30', 'h30m', '1h30mx']) {
    assert.throws(() => parseDuration(bad), /invalid duration/, bad);
  }
});
