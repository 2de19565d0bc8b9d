'use strict';

// Build the catalogue's search URLs from the form's values.

function buildQuery(params) {
  const parts = [];
  for (const key of Object.keys(params).sort()) {
    const value = params[key];
    if (Array.isArray(value)) {
      for (const item of value) parts.push(`${key}=${item}`);
    } else {
      parts.push(`${key}=${value}`);
    }
  }
  return parts.join('&');
}

function searchUrl(base, params) {
  const query = buildQuery(params);
  return query ? `${base}?${query}` : base;
}

module.exports = { buildQuery, searchUrl };
