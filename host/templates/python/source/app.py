# world: source-connector
"""`__NAME__`: a weft source, the component's glue (the logic is in ``logic.py``).

It reads a JSON API that lists items page by page:
``GET {base_url}/{stream}?limit=100[&cursor=…]`` answering
``{"items": [{"id": …, "updated_at": "RFC 3339", …}], "next": "…" | null}``.
Each item becomes an upsert keyed by its ``id``, versioned by
``updated_at`` (newer wins at the host), or a delete when it carries
``"deleted": true``. The weft cursor is the API's ``next``; with no ``next``
the run ends and the next run starts again from the cursor it was given.
"""

from typing import List, Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.source import Page, Webhook

import logic
from weft_sdk import ConnectorInfo, Invalid, Record, StreamInfo, WeftError, config_schema, connector_info, delete, tenant_config, upsert
from weft_sdk.http import Request

VERSION = "0.1.0"

CONFIG_SCHEMA = config_schema({"base_url": {"type": "string", "pattern": "^https?://"}}, required=["base_url"])


def fetch_page(stream: str, cursor: Optional[str]) -> Page:
    """The page of ``stream`` after ``cursor``; raises weft errors."""
    cfg = tenant_config()
    url = logic.list_url(cfg["base_url"], stream, cursor)
    # 429/5xx transient, 401/403 config, other statuses invalid.
    listing = Request("GET", url).send().error_for_status(f"listing {stream}").json()
    try:
        changes = logic.page_from(listing, cursor)
    except logic.Invalid as e:
        raise Invalid(str(e)) from None
    records = [
        (delete if c.deleted else upsert)(c.key, stream, c.version, c.item) for c in changes.items
    ]
    return Page(records=records, next_cursor=changes.next_cursor, has_more=changes.has_more)


class Metadata(exports.Metadata):
    def describe(self) -> ConnectorInfo:
        items = StreamInfo(name="items", description="Every item, oldest change first")
        # The origins this connector may ask for ("*"); the tenant grants the
        # ones it really calls.
        return connector_info(
            "__NAME__", VERSION, "A weft __WORLD__ connector", CONFIG_SCHEMA, streams=[items], outbound_hosts=["*"]
        )


class Source(exports.Source):
    # An export that returns a `result` returns the value and raises
    # `Err(error)` for the error.
    def fetch(self, stream: str, cursor: Optional[str]) -> Page:
        try:
            return fetch_page(stream, cursor)
        except WeftError as e:
            raise Err(e.to_wit()) from None

    def on_webhook(self, delivery: Webhook) -> List[Record]:
        raise Err(Invalid("this source takes no webhooks").to_wit())
