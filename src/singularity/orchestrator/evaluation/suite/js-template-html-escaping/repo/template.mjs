// A tiny template engine: {{key}} inserts a value, {{{key}}} inserts trusted HTML,
// and dotted keys reach into nested objects ({{user.name}}).

const TAG = /\{\{\{\s*([\w.]+)\s*\}\}\}|\{\{\s*([\w.]+)\s*\}\}/g;

function lookup(data, path) {
  let value = data;
  for (const part of path.split('.')) {
    if (value === null || value === undefined) return '';
    value = value[part];
  }
  return value === null || value === undefined ? '' : String(value);
}

export function render(template, data) {
  return template.replace(TAG, (_, raw, escaped) => {
    if (raw !== undefined) return lookup(data, raw);
    return lookup(data, escaped);
  });
}
