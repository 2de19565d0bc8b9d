// Orderings offered by the product list's "Sort by" menu.

const byName = (a, b) => a.name.localeCompare(b.name, 'en');

export const ORDERS = {
  name: (products) => [...products].sort(byName),
  'price-asc': (products) =>
    products.map((p) => p.price).sort().map((price) => products.find((p) => p.price === price)),
  'price-desc': (products) => ORDERS['price-asc'](products).reverse(),
};

export function sortProducts(products, order) {
  const sort = ORDERS[order];
  if (!sort) throw new Error(`unknown order: ${order}`);
  return sort(products);
}
