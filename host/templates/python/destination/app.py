# world: destination-connector
"""`__NAME__`: a weft destination, the component's glue (the logic is in ``logic.py``).

It delivers each record as JSON to the tenant's endpoint:
``PUT {base_url}/{key}`` with the body for upserts, ``DELETE {base_url}/{key}``
for deletes (``404`` means gone already). The batch's requests go out
concurrently. The host adds the tenant's credential and waits out rate
limits; answers map onto weft's error classes (``429``/``5xx`` transient,
``401``/``403`` config, other ``4xx`` invalid).
"""

from componentize_py_types import Err, Ok
from wit_world import exports

import logic
from weft_sdk import ConnectorInfo, Operation, Record, WeftError, each_record, record_json, to_json
from weft_sdk.http import Request, send_all

VERSION = "0.1.0"

#: Requests of one batch in flight at once.
IN_FLIGHT = 8

CONFIG_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["base_url"],
    "properties": {"base_url": {"type": "string", "pattern": "^https?://"}},
    "additionalProperties": False,
}


def plan(cfg: dict, r: Record) -> Request:
    """The request that delivers ``r`` (a body that is not JSON is
    ``invalid``, for this record only)."""
    method, url = logic.request_for(cfg["base_url"], r.key, r.op == Operation.DELETE)
    return Request(method, url) if method == "DELETE" else Request(method, url, json=record_json(r))


class Metadata(exports.Metadata):
    def describe(self) -> ConnectorInfo:
        return ConnectorInfo(
            name="__NAME__",
            version=VERSION,
            description="A weft __WORLD__ connector",
            streams=[],
            config_schema=to_json(CONFIG_SCHEMA),
            # The origins this connector may ask for; the tenant grants the
            # ones it really calls.
            outbound_hosts=["*"],
        )


class Destination(exports.Destination):
    def emit(self, records):
        # Every record's request first (one that cannot become a request
        # fails alone), then all of them concurrently, then each record's
        # outcome from its answer.
        planned = each_record(records, plan)
        answers = iter(send_all([p.value for p in planned if isinstance(p, Ok)], IN_FLIGHT))
        out = []
        for r, p in zip(records, planned):
            if isinstance(p, Err):
                out.append(p)
                continue
            try:
                answer = next(answers)
                if isinstance(answer, WeftError):
                    raise answer
                if not logic.gone_already(p.value.method, answer.status):
                    answer.error_for_status(f"delivering {r.key}")
                out.append(Ok(None))
            except WeftError as e:
                out.append(Err(e.to_wit()))
        return out
