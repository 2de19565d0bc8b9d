import test from 'node:test';
import assert from 'node:assert/strict';
import { sortProducts } from '../sort.mjs';

const products = [
  { name: 'mug', price: 8 },
  { name: 'lamp', price: 5 },
];

test('by name', () => {
  assert.deepEqual(sortProducts(products, 'name').map((p) => p.name), ['lamp', 'mug']);
});

test('single-digit prices', () => {
  assert.deepEqual(sortProducts(products, 'price-asc').map((p) => p.name), ['lamp', 'mug']);
});

test('unknown order', () => {
  assert.throws(() => sortProducts(products, 'colour'), /unknown order/);
});
