'use strict';

const { parseDuration } = require('./duration.js');

const DEFAULT_TIMEOUT = '10m';

function jobTimeout(job) {
  return parseDuration(job.timeout ?? DEFAULT_TIMEOUT);
}

module.exports = { jobTimeout };
