import unittest

from settings import ConfigError, Settings, load_settings


class SettingsTest(unittest.TestCase):
    def test_defaults(self) -> None:
        self.assertEqual(load_settings(""), Settings())

    def test_values_and_comments(self) -> None:
        text = "# server\nhost = 0.0.0.0\nport = 9000  # public\nworkers = 4\n"
        self.assertEqual(load_settings(text), Settings("0.0.0.0", 9000, 4))

    def test_unknown_key(self) -> None:
        with self.assertRaises(ConfigError):
            load_settings("colour = blue")

    def test_bad_workers(self) -> None:
        with self.assertRaises(ConfigError):
            load_settings("workers = 0")


if __name__ == "__main__":
    unittest.main()
