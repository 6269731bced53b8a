# world: mapper-connector
"""`__NAME__`: a weft mapper, the component's glue (the logic is in ``logic.py``).

It upper-cases the string field named by the tenant's configuration
(``{"field": "title"}``) in each upserted record's JSON body; deletes pass
through. A record whose body is not a JSON object is ``invalid``
(dead-lettered alone; the rest of the batch goes on).
"""

from wit_world import exports

import logic
from weft_sdk import ConnectorInfo, Invalid, Operation, Record, config_schema, connector_info, each_record, record_json, upsert

VERSION = "0.1.0"

CONFIG_SCHEMA = config_schema({"field": {"type": "string", "minLength": 1}}, required=["field"])


def map_one(cfg: dict, r: Record) -> list:
    """The records that ``r`` becomes (the host checked ``cfg`` against the schema)."""
    if r.op == Operation.DELETE:
        return [r]
    try:
        body = logic.upper_case(r.key, record_json(r), cfg["field"])
    except logic.Invalid as e:
        raise Invalid(str(e)) from None
    return [upsert(r.key, r.kind, r.version, body)]


class Metadata(exports.Metadata):
    def describe(self) -> ConnectorInfo:
        return connector_info("__NAME__", VERSION, "A weft __WORLD__ connector", CONFIG_SCHEMA)


class Mapper(exports.Mapper):
    def map(self, records):
        return each_record(records, map_one)
