import unittest

from pages import PageOutOfRange, page_count, paginate


class PaginationTest(unittest.TestCase):
    def test_partial_last_page(self) -> None:
        page = paginate(list(range(25)), 3, per_page=10)
        self.assertEqual(page.items, [20, 21, 22, 23, 24])
        self.assertEqual(page.total_pages, 3)
        with self.assertRaises(PageOutOfRange):
            paginate(list(range(25)), 4, per_page=10)

    def test_page_count_rounds_up(self) -> None:
        self.assertEqual(page_count(1, 10), 1)
        self.assertEqual(page_count(11, 10), 2)
        self.assertEqual(page_count(30, 10), 3)

    def test_empty_listing(self) -> None:
        self.assertEqual(paginate([], 1).items, [])
        self.assertEqual(page_count(0, 10), 0)


if __name__ == "__main__":
    unittest.main()
