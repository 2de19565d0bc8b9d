'use strict';

// Durations in job files: a number and a unit, turned into milliseconds.

const UNITS = { ms: 1, s: 1000, m: 60 * 1000, h: 60 * 60 * 1000, d: 24 * 60 * 60 * 1000 };

function parseDuration(text) {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(String(text).trim());
  if (!match) throw new Error(`invalid duration: ${JSON.stringify(text)}`);
  return Number(match[1]) * UNITS[match[2]];
}

function formatDuration(ms) {
  for (const unit of ['d', 'h', 'm', 's']) {
    if (ms >= UNITS[unit] && ms % UNITS[unit] === 0) return `${ms / UNITS[unit]}${unit}`;
  }
  return `${ms}ms`;
}

module.exports = { UNITS, parseDuration, formatDuration };
