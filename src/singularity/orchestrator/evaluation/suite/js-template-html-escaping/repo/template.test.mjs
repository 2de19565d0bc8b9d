import test from 'node:test';
import assert from 'node:assert/strict';
import { render } from './template.mjs';
import { membersPage } from './members.mjs';

test('plain values', () => {
  assert.equal(render('Hi {{ name }}, you have {{count}} mails', { name: 'Ann', count: 3 }),
    'Hi Ann, you have 3 mails');
});

test('nested and missing values', () => {
  assert.equal(render('{{user.name}}/{{user.age}}/{{nope.x}}', { user: { name: 'Bo' } }), 'Bo//');
});

test('members page', () => {
  const page = membersPage([{ name: 'Cy', role: 'admin', badge: '<b>*</b>' }]);
  assert.equal(page, '<ul>\n<li class="admin">Cy <b>*</b></li>\n</ul>');
});
