"""The logic of `__NAME__`, kept apart from the component's glue (``app.py``)
so that ``python3 -m unittest`` runs it natively: it imports nothing of weft.
"""

from typing import Any


class Invalid(Exception):
    """This record can never succeed as it is: ``app.py`` hands it to weft as
    an ``invalid`` error (the record is dead-lettered, the rest go on)."""


def upper_case(key: str, body: Any, field: str) -> dict:
    """``body`` (a record's parsed JSON) with the string at ``field``
    upper-cased; any other value of ``field``, or none, is left as it is."""
    if not isinstance(body, dict):
        raise Invalid(f"record {key}: the body is not a JSON object")
    value = body.get(field)
    if isinstance(value, str):
        body = {**body, field: value.upper()}
    return body
