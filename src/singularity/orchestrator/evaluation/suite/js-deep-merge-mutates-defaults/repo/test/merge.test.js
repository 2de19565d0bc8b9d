'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { deepMerge } = require('../lib/merge.js');
const { widgetOptions } = require('../lib/widget.js');

test('nested objects merge', () => {
  const merged = deepMerge({ a: { x: 1, y: 2 }, b: 1 }, { a: { y: 3 }, c: 4 });
  assert.deepStrictEqual(merged, { a: { x: 1, y: 3 }, b: 1, c: 4 });
});

test('widget defaults', () => {
  const options = widgetOptions({ title: 'Sales' });
  assert.strictEqual(options.title, 'Sales');
  assert.strictEqual(options.chart.type, 'line');
});
