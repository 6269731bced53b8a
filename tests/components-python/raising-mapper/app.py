# world: mapper-connector
"""`test-raising-mapper`: a Python test mapper for the host's tests.

Passes every record through with ``"mapped_by": "python"`` added to its
JSON body, except that it raises an uncaught ``ValueError`` (the component
traps, printing the traceback to stderr) for a record whose body has
``"explode": true`` or whose key is in the config's ``explode_keys``. A
body that is not a JSON object is an ``invalid`` error (through the SDK).
"""

from wit_world import exports

from weft_sdk import ConnectorInfo, Invalid, Operation, Record, each_record, record_json, to_json, upsert


class Metadata(exports.Metadata):
    def describe(self) -> ConnectorInfo:
        schema = {
            "type": "object",
            "properties": {"explode_keys": {"type": "array", "items": {"type": "string"}}},
            "additionalProperties": False,
        }
        return ConnectorInfo(
            name="test-raising-mapper",
            version="1.0.0",
            description="Python test mapper that raises on chosen records",
            streams=[],
            config_schema=to_json(schema),
            outbound_hosts=[],
        )


def explode(r: Record) -> None:
    raise ValueError(f"record {r.key} asked to explode")


def map_one(cfg: dict, r: Record) -> list:
    body = record_json(r)
    if not isinstance(body, dict):
        raise Invalid(f"record {r.key}: body is not a JSON object")
    if body.get("explode") is True or r.key in cfg.get("explode_keys", []):
        explode(r)
    if r.op == Operation.DELETE:
        return [r]
    body["mapped_by"] = "python"
    return [upsert(r.key, r.kind, r.version, body)]


class Mapper(exports.Mapper):
    def map(self, records):
        return each_record(records, map_one)
