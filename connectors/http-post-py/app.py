# world: destination-connector
"""`http-post-py`: delivers each record as JSON to a configured URL, in Python.

Configuration:

- ``url`` (required): where records go. ``{key}`` and ``{kind}`` in it are
  replaced by the record's key and kind, percent-encoded
  (``https://hooks.example.com/in/{key}``).
- ``method``: ``POST`` (default) or ``PUT``, for upserts.
- ``envelope``: when true, the body is ``{"key", "kind", "version", "body"}``
  instead of the record's body alone (for a fixed URL that receives many
  records).

An upsert sends the JSON body with ``method``; a delete is a ``DELETE`` of
the same URL (with the envelope as body when ``envelope`` is set), and
``404``/``410`` mean gone already. Answers map to weft's error classes
through the SDK: ``429``/``5xx`` transient (``Retry-After`` honoured),
``401``/``403`` config, other statuses invalid (the record is dead-lettered
with the answer). A batch's requests go out concurrently, at most 8 at a
time. Credentials are the tenant's, added by the host.
"""

from urllib.parse import quote

from wit_world import exports

from weft_sdk import ConnectorInfo, Operation, Record, config_schema, connector_info, record_json
from weft_sdk.http import Request, Response, deliver_each

VERSION = "0.1.0"

#: Requests of one batch in flight at once (the host's default
#: ``max_http_in_flight``).
IN_FLIGHT = 8

CONFIG_SCHEMA = config_schema(
    {
        "url": {
            "type": "string",
            "pattern": "^https?://",
            "description": "Where records go; {key} and {kind} are replaced, percent-encoded.",
        },
        "method": {
            "enum": ["POST", "PUT"],
            "description": "The method of upserts (deletes are DELETE).",
        },
        "envelope": {
            "type": "boolean",
            "description": "Send {key, kind, version, body} instead of the body alone.",
        },
    },
    required=["url"],
)


def request(cfg: dict, r: Record) -> Request:
    """The request that delivers ``r``."""
    url = cfg["url"].replace("{key}", quote(r.key, safe="")).replace("{kind}", quote(r.kind, safe=""))
    method = "DELETE" if r.op == Operation.DELETE else cfg.get("method", "POST")
    if not cfg.get("envelope"):
        return Request(method, url) if method == "DELETE" else Request(method, url, json=record_json(r))
    envelope = {"key": r.key, "kind": r.kind, "version": r.version, "body": record_json(r)}
    return Request(method, url, json=envelope)


def settle(r: Record, req: Request, answer: Response) -> None:
    """Raises the weft error of ``answer`` to ``req``, if any."""
    if r.op == Operation.DELETE and answer.status in (404, 410):
        return
    answer.error_for_status(f"{req.method} {req.url}")


class Metadata(exports.Metadata):
    def describe(self) -> ConnectorInfo:
        description = "Each record as JSON to a configured URL (Python)"
        return connector_info("http-post-py", VERSION, description, CONFIG_SCHEMA, outbound_hosts=["*"])


class Destination(exports.Destination):
    def emit(self, records):
        return deliver_each(records, request, settle, IN_FLIGHT)
