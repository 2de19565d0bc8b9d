import unittest

from pages import PageOutOfRange, paginate


class PagesTest(unittest.TestCase):
    def test_first_page(self) -> None:
        page = paginate(list(range(20)), 1, per_page=10)
        self.assertEqual(page.items, list(range(10)))
        self.assertEqual(page.total_pages, 2)

    def test_second_page(self) -> None:
        self.assertEqual(paginate(list(range(20)), 2, per_page=10).items, list(range(10, 20)))

    def test_page_zero_is_refused(self) -> None:
        with self.assertRaises(PageOutOfRange):
            paginate(list(range(20)), 0)


if __name__ == "__main__":
    unittest.main()
