'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { parseDuration, formatDuration } = require('./duration.js');
const { jobTimeout } = require('./scheduler.js');

test('single units', () => {
  assert.strictEqual(parseDuration('90s'), 90000);
  assert.strictEqual(parseDuration(' 2h '), 7200000);
  assert.strictEqual(parseDuration('250ms'), 250);
});

test('garbage is refused', () => {
  for (const bad of ['', 'h', '1.5h', '-3s', '10 m', '5w']) {
    assert.throws(() => parseDuration(bad), /invalid duration/, bad);
  }
});

test('format', () => {
  assert.strictEqual(formatDuration(7200000), '2h');
  assert.strictEqual(formatDuration(1500), '1500ms');
});

test('default job timeout', () => {
  assert.strictEqual(jobTimeout({}), 600000);
});
