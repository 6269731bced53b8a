# world: destination-connector
"""`__NAME__`: a weft destination, the component's glue (the logic is in ``logic.py``).

It delivers each record as JSON to the tenant's endpoint:
``PUT {base_url}/{key}`` with the body for upserts, ``DELETE {base_url}/{key}``
for deletes (``404`` means gone already). The batch's requests go out
concurrently. The host adds the tenant's credential and waits out rate
limits; answers map onto weft's error classes (``429``/``5xx`` transient,
``401``/``403`` config, other ``4xx`` invalid).
"""

from wit_world import exports

import logic
from weft_sdk import ConnectorInfo, Operation, Record, config_schema, connector_info, record_json
from weft_sdk.http import Request, Response, deliver_each

VERSION = "0.1.0"

#: Requests of one batch in flight at once.
IN_FLIGHT = 8

CONFIG_SCHEMA = config_schema({"base_url": {"type": "string", "pattern": "^https?://"}}, required=["base_url"])


def plan(cfg: dict, r: Record) -> Request:
    """The request that delivers ``r`` (a body that is not JSON is
    ``invalid``, for this record only)."""
    method, url = logic.request_for(cfg["base_url"], r.key, r.op == Operation.DELETE)
    return Request(method, url) if method == "DELETE" else Request(method, url, json=record_json(r))


def settle(r: Record, req: Request, answer: Response) -> None:
    """Raises the weft error of ``answer``, if any."""
    if not logic.gone_already(req.method, answer.status):
        answer.error_for_status(f"delivering {r.key}")


class Metadata(exports.Metadata):
    def describe(self) -> ConnectorInfo:
        # The origins this connector may ask for ("*"); the tenant grants the
        # ones it really calls.
        return connector_info("__NAME__", VERSION, "A weft __WORLD__ connector", CONFIG_SCHEMA, outbound_hosts=["*"])


class Destination(exports.Destination):
    def emit(self, records):
        # Every record's request first (one that cannot become a request
        # fails alone), then all of them concurrently, then each record's
        # outcome from its answer.
        return deliver_each(records, plan, settle, IN_FLIGHT)
