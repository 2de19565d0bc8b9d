'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { deepMerge } = require('../lib/merge.js');
const { DEFAULTS, widgetOptions } = require('../lib/widget.js');

test('one tenant does not change another', () => {
  const a = widgetOptions({ chart: { colors: ['red'], legend: { show: false } } });
  assert.deepStrictEqual(a.chart.colors, ['red']);
  assert.strictEqual(a.chart.legend.show, false);
  const b = widgetOptions();
  assert.deepStrictEqual(b.chart.colors, ['blue', 'green']);
  assert.strictEqual(b.chart.legend.show, true);
  assert.deepStrictEqual(DEFAULTS.chart.colors, ['blue', 'green']);
});

test('arguments are left alone and results share nothing', () => {
  const target = { a: { x: 1 }, list: [1] };
  const source = { a: { y: 2 } };
  const merged = deepMerge(target, source);
  assert.deepStrictEqual(target, { a: { x: 1 }, list: [1] });
  assert.deepStrictEqual(merged, { a: { x: 1, y: 2 }, list: [1] });
  merged.list.push(2);
  merged.a.x = 9;
  assert.deepStrictEqual(target, { a: { x: 1 }, list: [1] });
  widgetOptions().chart.colors.push('pink');
  assert.deepStrictEqual(widgetOptions().chart.colors, ['blue', 'green']);
});
