"""The logic of `__NAME__`, kept apart from the component's glue (``app.py``)
so that ``python3 -m unittest`` runs it natively: it imports nothing of weft.
Adapt ``page_from`` to your API.
"""

import re
from datetime import datetime, timedelta, timezone
from typing import Any, List, NamedTuple, Optional
from urllib.parse import quote


class Invalid(Exception):
    """An answer that can never be read as it is: ``app.py`` hands it to
    weft as an ``invalid`` error."""


class Change(NamedTuple):
    """One item of a page, as a record: ``app.py`` makes it an upsert, or a
    delete when ``deleted``."""

    key: str
    version: int
    deleted: bool
    item: Any


class Changes(NamedTuple):
    """One page: its items, the weft cursor after it, whether more follow."""

    items: List[Change]
    next_cursor: Optional[str]
    has_more: bool


def list_url(base_url: str, stream: str, cursor: Optional[str]) -> str:
    """``GET {base_url}/{stream}?limit=100[&cursor=…]``."""
    url = f"{base_url.rstrip('/')}/{stream}?limit=100"
    if cursor is not None:
        url += "&cursor=" + quote(cursor, safe="")
    return url


def version_of(item: dict) -> int:
    """The version of an item: the instant its ``updated_at`` names, in
    microseconds since 1970 (UTC), so that a later change always wins: two
    edits within one second keep their order (their fractions of a second
    count), and offsets count (``10:00+02:00`` is before ``09:00Z``)."""
    at = item.get("updated_at")
    if not isinstance(at, str):
        raise Invalid("an item has no updated_at")
    match = _RFC3339.fullmatch(at)
    if match is None:
        raise Invalid(f"updated_at {at!r} is not an RFC 3339 instant")
    head, fraction, zone = match.groups()
    try:
        instant = datetime.fromisoformat(head + ("+00:00" if zone in "Zz" else zone))
    except ValueError as e:
        raise Invalid(f"updated_at {at!r} is not an RFC 3339 instant: {e}") from None
    micros = int((fraction or "").ljust(6, "0")[:6])
    return (instant - _EPOCH) // timedelta(microseconds=1) + micros


_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def page_from(listing: Any, cursor: Optional[str]) -> Changes:
    """Turns one answer of the API into a page of changes."""
    items = listing.get("items") if isinstance(listing, dict) else None
    nxt = listing.get("next") if isinstance(listing, dict) else None
    if not isinstance(items, list) or not (nxt is None or isinstance(nxt, str)):
        raise Invalid('the answer is not {"items": [...], "next": "..." | null}')
    changes = []
    for item in items:
        item_id = item.get("id") if isinstance(item, dict) else None
        if isinstance(item_id, str):
            key = item_id
        elif isinstance(item_id, (int, float)) and not isinstance(item_id, bool):
            key = str(item_id)
        else:
            raise Invalid("an item has no id")
        changes.append(Change(key, version_of(item), item.get("deleted") is True, item))
    return Changes(changes, nxt if nxt is not None else cursor, nxt is not None)
