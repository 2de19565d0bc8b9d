import test from 'node:test';
import assert from 'node:assert/strict';
import { sortProducts } from '../sort.mjs';

const products = [
  { name: 'lamp', price: 100 },
  { name: 'mug', price: 20 },
  { name: 'pen', price: 3.5 },
  { name: 'cup', price: 20 },
];

test('numeric order, low to high', () => {
  const names = sortProducts(products, 'price-asc').map((p) => p.name);
  assert.deepEqual(names, ['pen', 'mug', 'cup', 'lamp']);
});

test('numeric order, high to low, ties keep their order', () => {
  const names = sortProducts(products, 'price-desc').map((p) => p.name);
  assert.deepEqual(names, ['lamp', 'mug', 'cup', 'pen']);
});

test('the input is not changed', () => {
  const copy = structuredClone(products);
  sortProducts(products, 'price-desc');
  assert.deepEqual(products, copy);
});
