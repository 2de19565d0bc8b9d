'use strict';

const { deepMerge } = require('./merge.js');

const DEFAULTS = Object.freeze({
  title: 'Untitled',
  chart: { type: 'line', colors: ['blue', 'green'], legend: { show: true } },
});

function widgetOptions(options = {}) {
  return deepMerge(DEFAULTS.chart && { ...DEFAULTS }, options);
}

module.exports = { DEFAULTS, widgetOptions };
