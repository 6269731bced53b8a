"""Tests of ``logic.py``, natively: ``python3 -m unittest``."""

import unittest

import logic


class UpperCase(unittest.TestCase):
    def test_upper_cases_the_configured_field(self):
        body = {"title": "hello", "n": 1}
        self.assertEqual(logic.upper_case("k1", body, "title"), {"title": "HELLO", "n": 1})

    def test_other_fields_and_values_stay(self):
        self.assertEqual(logic.upper_case("k1", {"title": 3}, "title"), {"title": 3})
        self.assertEqual(logic.upper_case("k1", {"name": "x"}, "title"), {"name": "x"})

    def test_a_body_that_is_not_an_object_is_invalid(self):
        with self.assertRaises(logic.Invalid):
            logic.upper_case("k1", [1, 2], "title")


if __name__ == "__main__":
    unittest.main()
