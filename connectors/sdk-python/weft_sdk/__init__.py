"""Guest-side helpers for writing weft connectors in Python.

A Python connector is a folder with an ``app.py`` that implements one world
of ``wit/v0.1.0`` (``source-connector``, ``mapper-connector`` or
``destination-connector``): one class per exported interface, named after
it (``Metadata`` plus ``Source``, ``Mapper`` or ``Destination``), subclassing
the protocol that componentize-py generates in ``wit_world.exports``. It is
built into a component with componentize-py, with this folder on the path::

    componentize-py -d wit/v0.1.0 -w destination-connector \\
        componentize app -p my-connector -p connectors/sdk-python -o my.wasm

(``make guests-python`` does this for every ``app.py`` of this repository;
its first line names the world: ``# world: destination-connector``.)

This package adds what every connector would otherwise write again, as the
Rust SDK (``connectors/sdk``) does: a blocking HTTP client over
``wasi:http/outgoing-handler`` that maps answers onto weft's error classes
(:mod:`weft_sdk.http`), the tenant's configuration, kv and log helpers, and
:func:`each_record`.

Errors are exceptions, one class per variant of the contract's ``error``:
raise :class:`Transient` (retry later), :class:`Invalid` (dead-letter this
record) or :class:`Config` (stop the flow until a person fixes it).
:func:`each_record` turns one into the outcome of that record only. Any
other exception is a bug: it is not caught, the component traps (printing
the traceback to stderr), and weft finds the record that makes it trap by
splitting the batch over fresh instances, dead-letters it with the Python
traceback, and delivers the rest.

The component is a snapshot taken after ``app`` was imported, and it has no
file system when it runs: import every module at the top of a file, never
first inside a function.
"""

import json
from typing import Any, Callable, List, Optional, Sequence, TypeVar

from componentize_py_types import Err, Ok, Result
from wit_world.imports import config as _config
from wit_world.imports import kv as _kv
from wit_world.imports import log as _log
from wit_world.imports import weft_connector_types as types

__all__ = [
    "ConnectorInfo",
    "Config",
    "DEAD_LETTER_FIELD",
    "Invalid",
    "Operation",
    "Record",
    "StreamInfo",
    "Transient",
    "WeftError",
    "config_schema",
    "config_value",
    "connector_info",
    "debug",
    "delete",
    "each_record",
    "error",
    "info",
    "kv_delete",
    "kv_get",
    "kv_get_json",
    "kv_keys",
    "kv_set",
    "kv_set_json",
    "log_line",
    "record_json",
    "tenant_config",
    "to_json",
    "types",
    "upsert",
    "warn",
]

Record = types.Record
Operation = types.Operation
ConnectorInfo = types.ConnectorInfo
StreamInfo = types.StreamInfo

#: The body field of the host's *retract* convention: a mapper that outputs
#: a **delete** whose JSON body carries this field (a string, the reason)
#: asks the host to remove what the record delivered before **and** to
#: dead-letter the source record with that reason (see the README).
DEAD_LETTER_FIELD = "weft_dead_letter"


class WeftError(Exception):
    """A failure that is not the connector's bug; its class tells the host
    what to do next. :meth:`to_wit` gives the contract's ``error`` value."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_wit(self) -> types.Error:
        """The contract's ``error`` variant for this exception."""
        raise NotImplementedError


class Transient(WeftError):
    """Temporary trouble (a timeout, ``5xx``, rate limiting): the host
    retries, waiting at least ``retry_after_ms`` when given."""

    def __init__(self, message: str, retry_after_ms: Optional[int] = None) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms

    def to_wit(self) -> types.Error:
        return types.Error_Transient(types.TransientError(self.message, self.retry_after_ms))


class Invalid(WeftError):
    """This record can never succeed as it is: the host dead-letters it with
    the message and carries on with the rest."""

    def to_wit(self) -> types.Error:
        return types.Error_Invalid(self.message)


class Config(WeftError):
    """Credentials or settings are wrong: the host stops the flow and
    raises an alert with the message."""

    def to_wit(self) -> types.Error:
        return types.Error_Config(self.message)


# --- configuration -------------------------------------------------------


def tenant_config() -> Any:
    """This tenant's configuration of the connector, parsed from JSON (a
    ``dict``; ``{}`` when the tenant set nothing). The host validated it
    against the connector's JSON Schema already; text that does not parse
    still raises :class:`Config` instead of trapping."""
    raw = _config.get_json()
    try:
        return json.loads(raw)
    except ValueError as e:
        raise Config(f"connector configuration: {e}") from None


def config_value(key: str, default: Any = None) -> Any:
    """One top-level key of the configuration, parsed, or ``default``."""
    raw = _config.get(key)
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except ValueError as e:
        raise Config(f"connector configuration, key {key!r}: {e}") from None


T = TypeVar("T")


def each_record(
    records: Sequence[Record], f: Callable[[Any, Record], T]
) -> List[Result[T, types.Error]]:
    """Calls ``f(config, record)`` on each record with this tenant's
    configuration, one outcome per record, as ``map`` and ``emit`` answer: a
    :class:`WeftError` that ``f`` raises becomes that record's error only.
    A configuration that cannot be read fails every record with the same
    ``config`` error. Other exceptions are not caught (see the module's
    documentation)."""
    try:
        cfg = tenant_config()
    except WeftError as e:
        return [Err(e.to_wit()) for _ in records]
    out: List[Result[T, types.Error]] = []
    for r in records:
        try:
            out.append(Ok(f(cfg, r)))
        except WeftError as e:
            out.append(Err(e.to_wit()))
    return out


# --- describe ----------------------------------------------------------


def config_schema(properties: dict, required: Sequence[str] = ()) -> str:
    """The JSON Schema of a connector's configuration, as ``describe``
    answers it (JSON text): an object (draft 2020-12) with ``properties``, of
    which those named in ``required`` must be set, and no other key, so that
    a misspelt key is refused by the host instead of silently ignored."""
    schema: dict = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"}
    if required:
        schema["required"] = list(required)
    schema["properties"] = properties
    schema["additionalProperties"] = False
    return to_json(schema)


def connector_info(
    name: str,
    version: str,
    description: str,
    config_schema: str,
    streams: Sequence[StreamInfo] = (),
    outbound_hosts: Sequence[str] = (),
) -> ConnectorInfo:
    """What ``describe`` answers: no streams and no outbound hosts unless
    given; ``config_schema`` as :func:`config_schema` writes it."""
    return ConnectorInfo(
        name=name,
        version=version,
        description=description,
        streams=list(streams),
        config_schema=config_schema,
        outbound_hosts=list(outbound_hosts),
    )


# --- records ---------------------------------------------------------------


def to_json(value: Any) -> str:
    """``value`` as compact JSON text (UTF-8, no spaces)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def record_json(r: Record) -> Any:
    """The record's body parsed as JSON, or :class:`Invalid` naming it."""
    try:
        return json.loads(r.body)
    except ValueError as e:
        raise Invalid(f"{r.kind} {r.key}: body is not JSON: {e}") from None


def upsert(key: str, kind: str, version: int, body: Any) -> Record:
    """An upsert of ``body`` (serialised as JSON)."""
    return Record(key, kind, version, Operation.UPSERT, to_json(body))


def delete(key: str, kind: str, version: int, body: Any = None) -> Record:
    """A delete, carrying ``body`` as the last known content."""
    return Record(key, kind, version, Operation.DELETE, to_json(body))


# --- kv --------------------------------------------------------------------


def _kv_call(what: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except Err as e:
        v = e.value
        text = f"kv {what}: {getattr(v, 'value', v)}"
        if isinstance(v, _kv.KvError_TooLarge):
            raise Invalid(text) from None
        if isinstance(v, _kv.KvError_QuotaExceeded):
            raise Config(text) from None
        raise Transient(text) from None


def kv_get(key: str) -> Optional[bytes]:
    """The value stored under ``key`` in this tenant's kv space, or ``None``.
    kv failures raise: ``unavailable`` :class:`Transient`, ``too-large``
    :class:`Invalid`, ``quota-exceeded`` :class:`Config`."""
    return _kv_call(f"get {key!r}", lambda: _kv.get(key))


def kv_set(key: str, value: "bytes | str") -> None:
    """Stores ``value`` (text is stored as UTF-8) under ``key``."""
    data = value.encode() if isinstance(value, str) else bytes(value)
    _kv_call(f"set {key!r}", lambda: _kv.set(key, data))


def kv_delete(key: str) -> None:
    """Removes ``key``; removing a missing key succeeds."""
    _kv_call(f"delete {key!r}", lambda: _kv.delete(key))


def kv_keys(prefix: str = "", limit: int = 1000) -> List[str]:
    """The keys that start with ``prefix``, in byte order, at most ``limit``."""
    return _kv_call(f"list {prefix!r}", lambda: _kv.list_keys(prefix, limit))


def kv_get_json(key: str, default: Any = None) -> Any:
    """The JSON value stored under ``key``, or ``default`` when absent or
    not JSON."""
    raw = kv_get(key)
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        return default


def kv_set_json(key: str, value: Any) -> None:
    """Stores ``value`` as JSON under ``key``."""
    kv_set(key, to_json(value))


# --- logs ------------------------------------------------------------------

_LEVELS = {
    "trace": _log.Level.TRACE,
    "debug": _log.Level.DEBUG,
    "info": _log.Level.INFO,
    "warn": _log.Level.WARN,
    "error": _log.Level.ERROR,
}


def log_line(level: str, message: str, **fields: Any) -> None:
    """Logs ``message`` at ``level`` (``trace`` … ``error``) with ``fields``
    (values as text). The host adds tenant, flow, run and connector. What a
    connector prints goes to the log too: stdout at ``info``, stderr at
    ``warn``."""
    _log.log(_LEVELS[level], message, [(k, str(v)) for k, v in fields.items()])


def debug(message: str, **fields: Any) -> None:
    """Logs at ``debug``."""
    log_line("debug", message, **fields)


def info(message: str, **fields: Any) -> None:
    """Logs at ``info``."""
    log_line("info", message, **fields)


def warn(message: str, **fields: Any) -> None:
    """Logs at ``warn``."""
    log_line("warn", message, **fields)


def error(message: str, **fields: Any) -> None:
    """Logs at ``error``."""
    log_line("error", message, **fields)
