"""The logic of `__NAME__`, kept apart from the component's glue (``app.py``)
so that ``python3 -m unittest`` runs it natively: it imports nothing of weft.
"""

from typing import Tuple
from urllib.parse import quote


def request_for(base_url: str, key: str, deleted: bool) -> Tuple[str, str]:
    """The method and URL that deliver a record: ``PUT {base_url}/{key}``
    (the body goes with it), or ``DELETE`` for a delete; the key is
    percent-encoded as one path segment."""
    url = f"{base_url.rstrip('/')}/{quote(key, safe='')}"
    return ("DELETE" if deleted else "PUT"), url


def gone_already(method: str, status: int) -> bool:
    """Whether an answer that is not ``2xx`` is still a success: a delete of
    what is not there (``404``)."""
    return method == "DELETE" and status == 404
