"""Tests of ``logic.py``, natively: ``python3 -m unittest``."""

import unittest

import logic


class Logic(unittest.TestCase):
    def test_items_become_versioned_changes_and_the_cursor_moves_on(self):
        listing = {
            "items": [
                {"id": 1, "updated_at": "2026-01-02T03:04:05Z", "name": "a"},
                {"id": "b", "updated_at": "2026-01-02T03:04:06Z", "deleted": True},
            ],
            "next": "p2",
        }
        page = logic.page_from(listing, None)
        self.assertEqual([c.key for c in page.items], ["1", "b"])
        self.assertEqual([c.deleted for c in page.items], [False, True])
        self.assertGreater(page.items[1].version, page.items[0].version)
        self.assertEqual(page.next_cursor, "p2")
        self.assertTrue(page.has_more)

    def test_the_last_page_keeps_the_cursor_it_was_given(self):
        page = logic.page_from({"items": [], "next": None}, "p2")
        self.assertEqual(page.next_cursor, "p2")
        self.assertFalse(page.has_more)

    def test_versions_are_instants_to_the_microsecond(self):
        # Versions cut to whole seconds lost the second edit of a second.
        v = lambda at: logic.version_of({"updated_at": at})
        self.assertGreater(v("2026-01-02T03:04:05.250Z"), v("2026-01-02T03:04:05.100Z"))
        self.assertGreater(v("2026-01-02T03:04:05.000001Z"), v("2026-01-02T03:04:05Z"))
        self.assertLess(v("2026-01-02T10:00:00+02:00"), v("2026-01-02T09:00:00Z"))
        self.assertEqual(v("2026-01-02T03:04:05Z"), 1_767_323_045_000_000)
        for bad in ["2026-01-02", "2026-13-02T03:04:05Z", "yesterday", "2026-01-02T03:04:05"]:
            with self.assertRaises(logic.Invalid):
                v(bad)

    def test_an_item_without_updated_at_is_invalid(self):
        with self.assertRaises(logic.Invalid):
            logic.page_from({"items": [{"id": 1}], "next": None}, None)

    def test_the_url_carries_the_limit_and_the_cursor_encoded(self):
        self.assertEqual(logic.list_url("https://api.example.com/", "items", None), "https://api.example.com/items?limit=100")
        self.assertEqual(
            logic.list_url("https://api.example.com", "items", "a b/c"),
            "https://api.example.com/items?limit=100&cursor=a%20b%2Fc",
        )


if __name__ == "__main__":
    unittest.main()
