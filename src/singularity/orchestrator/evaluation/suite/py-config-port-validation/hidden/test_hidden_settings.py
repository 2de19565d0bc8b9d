import unittest

from settings import ConfigError, load_settings


class PortTest(unittest.TestCase):
    def test_not_a_number(self) -> None:
        for value in ("80a", "", "-1", "8.0"):
            with self.subTest(value=value), self.assertRaises(ConfigError) as caught:
                load_settings(f"port = {value}")
            self.assertIn("port", str(caught.exception))

    def test_out_of_range(self) -> None:
        for value in ("0", "65536", "70000"):
            with self.subTest(value=value), self.assertRaises(ConfigError):
                load_settings(f"port = {value}")

    def test_bounds_accepted(self) -> None:
        self.assertEqual(load_settings("port = 1").port, 1)
        self.assertEqual(load_settings("port = 65535").port, 65535)


if __name__ == "__main__":
    unittest.main()
