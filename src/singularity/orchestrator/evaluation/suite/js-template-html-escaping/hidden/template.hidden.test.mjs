import test from 'node:test';
import assert from 'node:assert/strict';
import { render } from './template.mjs';
import { membersPage } from './members.mjs';

test('values are escaped', () => {
  assert.equal(render('{{name}}', { name: '<img src=x onerror=alert(1)>' }),
    '&lt;img src=x onerror=alert(1)&gt;');
  assert.equal(render('{{v}}', { v: `Tom & "Jerry's"` }), 'Tom &amp; &quot;Jerry&#39;s&quot;');
});

test('attribute values cannot break out', () => {
  const page = membersPage([{ name: 'x', role: '" onclick="steal()', badge: '' }]);
  assert.ok(!page.includes('" onclick="'), page);
});

test('triple braces stay raw', () => {
  assert.equal(render('{{{html}}}', { html: '<em>ok</em>' }), '<em>ok</em>');
});
