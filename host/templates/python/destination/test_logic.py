"""Tests of ``logic.py``, natively: ``python3 -m unittest``."""

import unittest

import logic


class Logic(unittest.TestCase):
    def test_upserts_are_put_and_keys_are_encoded(self):
        method, url = logic.request_for("https://api.example.com/items/", "a b/c", False)
        self.assertEqual(method, "PUT")
        self.assertEqual(url, "https://api.example.com/items/a%20b%2Fc")

    def test_deletes_are_deleted_and_a_404_means_gone_already(self):
        method, url = logic.request_for("https://api.example.com/items", "k1", True)
        self.assertEqual((method, url), ("DELETE", "https://api.example.com/items/k1"))
        self.assertTrue(logic.gone_already("DELETE", 404))
        self.assertFalse(logic.gone_already("PUT", 404))


if __name__ == "__main__":
    unittest.main()
