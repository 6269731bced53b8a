"""A small blocking HTTP client over ``wasi:http/outgoing-handler``.

The host enforces the tenant's grants, adds credentials, waits out rate
limits (``429``/``503`` with ``Retry-After``) and retries idempotent
requests on server errors, so this client only builds requests and reads
answers. It never follows redirects.

    resp = Request("PUT", url, json={"a": 1}).send().error_for_status("PUT " + url)

:meth:`Response.error_for_status` maps an answer onto weft's error classes
as the Rust SDK does: ``429``/``5xx`` :class:`~weft_sdk.Transient` (with
``Retry-After``), ``401``/``403`` :class:`~weft_sdk.Config`, other
statuses :class:`~weft_sdk.Invalid`. A request the host refuses (origin not
granted, private address) raises :class:`~weft_sdk.Config`; transport
failures raise :class:`~weft_sdk.Transient`. :func:`send_all` sends a
batch concurrently; :func:`deliver_each` is a destination's ``emit`` on it.
"""

import json as _json
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

from componentize_py_types import Err, Ok, Result
from wit_world.imports import outgoing_handler
from wit_world.imports import streams as _streams
from wit_world.imports import wasi_http_types as _http

from . import Config, Invalid, Transient, WeftError, each_record

__all__ = ["Pending", "Request", "Response", "deliver_each", "send", "send_all", "start"]

_MISSING = object()


class Response:
    """An HTTP answer, fully read: ``status``, ``headers`` (names in
    lowercase, values as text) and ``body`` (bytes)."""

    def __init__(self, status: int, headers: List[Tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"Response(status={self.status}, {len(self.body)} bytes)"

    def header(self, name: str) -> Optional[str]:
        """The first value of header ``name`` (case-insensitive)."""
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def text(self) -> str:
        """The body as (lossy) UTF-8 text."""
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON; a malformed body raises
        :class:`~weft_sdk.Invalid` saying what was wrong."""
        try:
            return _json.loads(self.body)
        except ValueError as e:
            raise Invalid(
                f"malformed JSON in HTTP {self.status} answer: {e} "
                f"(body starts {self.text()[:120]!r})"
            ) from None

    def error_for_status(self, context: str) -> "Response":
        """``self`` for a ``2xx`` answer, else raises :meth:`to_error`."""
        if 200 <= self.status < 300:
            return self
        raise self.to_error(context)

    def to_error(self, context: str) -> WeftError:
        """The weft error for this (non-2xx) answer, ``context`` starting
        its message: ``429``/``5xx`` transient (with ``Retry-After``),
        ``401``/``403`` config (the host has refreshed OAuth tokens and
        retried already, so a ``401`` here is a refused static credential),
        any other status invalid."""
        message = f"{context}: HTTP {self.status}: {self.text()[:300]}"
        if self.status == 429 or 500 <= self.status <= 599:
            return Transient(message, self.retry_after_ms())
        if self.status in (401, 403):
            return Config(message)
        return Invalid(message)

    def retry_after_ms(self) -> Optional[int]:
        """``Retry-After`` in milliseconds, when it is a number of seconds."""
        v = (self.header("retry-after") or "").strip()
        return int(v) * 1000 if v.isdigit() else None


class Request:
    """An HTTP request: ``method``, absolute ``url``, ``headers`` (pairs)
    and an optional ``body`` (bytes or text). ``json=value`` sets a JSON body
    and its content type."""

    def __init__(
        self,
        method: str,
        url: str,
        *,
        headers: Iterable[Tuple[str, str]] = (),
        body: "bytes | str | None" = None,
        json: Any = _MISSING,
    ) -> None:
        self.method = method
        self.url = url
        self.headers: List[Tuple[str, str]] = list(headers)
        self.body: Optional[bytes] = body.encode() if isinstance(body, str) else body
        # A body that cannot be serialized is this request's fault, found
        # when it is sent (so that `send_all` fails it alone): `Invalid`.
        self._unsendable: Optional[Invalid] = None
        if json is not _MISSING:
            self.header("content-type", "application/json")
            try:
                self.body = _json.dumps(json, separators=(",", ":"), ensure_ascii=False).encode()
            except (TypeError, ValueError) as e:
                self._unsendable = Invalid(
                    f"request to {url}: the JSON body cannot be serialized: {type(e).__name__}: {e}"
                )

    def __repr__(self) -> str:
        return f"Request({self.method} {self.url})"

    def header(self, name: str, value: str) -> "Request":
        """Adds a header; returns the request."""
        self.headers.append((name, value))
        return self

    def send(self) -> Response:
        """Sends the request; see :func:`send`."""
        return send(self)


def send(req: Request) -> Response:
    """Sends ``req`` and reads the whole answer (any status). Raises
    :class:`~weft_sdk.Config` when the host refuses the request and
    :class:`~weft_sdk.Transient` on transport failures."""
    return start(req).wait()


def send_all(reqs: Sequence[Request], in_flight: int = 8) -> List[Union[Response, WeftError]]:
    """Sends every request of ``reqs``, at most ``in_flight`` at once, and
    returns their outcomes in the same order: a :class:`Response`, or the
    :class:`~weft_sdk.WeftError` (not raised) that sending it met. The host
    runs the requests concurrently, within the tenant's rate and its
    ``max_http_in_flight`` limit."""
    in_flight = max(1, in_flight)
    out: List[Union[Response, WeftError, None]] = [None] * len(reqs)
    pending: List[Tuple[int, Pending]] = []
    nxt = 0
    while nxt < len(reqs) or pending:
        while nxt < len(reqs) and len(pending) < in_flight:
            try:
                pending.append((nxt, start(reqs[nxt])))
            except WeftError as e:
                out[nxt] = e
            nxt += 1
        if pending:
            i, p = pending.pop(0)
            try:
                out[i] = p.wait()
            except WeftError as e:
                out[i] = e
    return [o if o is not None else Transient("request was not sent") for o in out]


def deliver_each(
    records: Sequence[Any],
    plan: Callable[[Any, Any], Request],
    settle: Callable[[Any, Request, Response], None],
    in_flight: int = 8,
) -> List[Result[None, Any]]:
    """A destination's ``emit``: every record's request first, made by
    ``plan(config, record)`` (as :func:`~weft_sdk.each_record` calls it: a
    :class:`~weft_sdk.WeftError` it raises fails that record alone), then all
    of them concurrently (:func:`send_all`), then each record's outcome:
    ``settle(record, request, response)`` raises the weft error of the
    answer, if any (a request that met one sending fails with it)."""
    planned = each_record(records, plan)
    answers = iter(send_all([p.value for p in planned if isinstance(p, Ok)], in_flight))
    out: List[Result[None, Any]] = []
    for r, p in zip(records, planned):
        if isinstance(p, Err):
            out.append(p)
            continue
        try:
            answer = next(answers)
            if isinstance(answer, WeftError):
                raise answer
            settle(r, p.value, answer)
            out.append(Ok(None))
        except WeftError as e:
            out.append(Err(e.to_wit()))
    return out


class Pending:
    """A request on its way, its body sent; :meth:`wait` reads the answer."""

    def __init__(self, url: str, future: _http.FutureIncomingResponse) -> None:
        self.url = url
        self._future = future

    def wait(self) -> Response:
        """Waits for the answer and reads it whole."""
        url = self.url
        with self._future as future:
            got = future.get()
            while got is None:
                with future.subscribe() as ready:
                    ready.block()
                got = future.get()
            if isinstance(got, Err):
                raise Transient(f"request to {url}: response already taken")
            if isinstance(got.value, Err):
                raise _transport_error(url, got.value.value)
            return _read_response(url, got.value.value)


def _method(name: str) -> _http.Method:
    known = {
        "GET": _http.Method_Get,
        "HEAD": _http.Method_Head,
        "POST": _http.Method_Post,
        "PUT": _http.Method_Put,
        "DELETE": _http.Method_Delete,
        "PATCH": _http.Method_Patch,
        "OPTIONS": _http.Method_Options,
    }
    name = name.upper()
    return known[name]() if name in known else _http.Method_Other(name)


def start(req: Request) -> Pending:
    """Starts ``req``: builds it, hands it to the host and sends its body;
    :meth:`Pending.wait` reads the answer. Whatever fails before the
    request leaves the guest (a body that cannot be serialized, a header
    that is not text, a bad URL) is this request's fault: ``Invalid``, never
    ``Transient``, so that one bad record cannot stall its flow."""
    try:
        return _start(req)
    except WeftError:
        raise
    except Exception as e:  # noqa: BLE001 - the caller's request, whatever it holds
        raise Invalid(f"request to {getattr(req, 'url', '?')}: {type(e).__name__}: {e}") from None


def _start(req: Request) -> Pending:
    unsendable = getattr(req, "_unsendable", None)
    if unsendable is not None:
        raise unsendable
    url = req.url
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # raises on a bad port
    except ValueError as e:
        raise Invalid(f"bad URL {url!r}: {e}") from None
    if parts.scheme == "http":
        scheme: _http.Scheme = _http.Scheme_Http()
    elif parts.scheme == "https":
        scheme = _http.Scheme_Https()
    else:
        raise Invalid(f"unsupported URL scheme {parts.scheme!r} in {url}")
    if not host:
        raise Invalid(f"URL has no host: {url}")
    authority = parts.netloc.rpartition("@")[2]
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    headers = _http.Fields()
    for k, v in req.headers:
        try:
            headers.append(k, v.encode())
        except Err as e:
            raise Invalid(f"header {k!r} refused: {e.value}") from None
    request = _http.OutgoingRequest(headers)

    def bad(what: str) -> Invalid:
        return Invalid(f"request to {url}: bad {what}")

    try:
        request.set_method(_method(req.method))
    except Err:
        raise bad("method") from None
    try:
        request.set_scheme(scheme)
        request.set_authority(authority)
    except Err:
        raise bad("authority") from None
    try:
        request.set_path_with_query(path)
    except Err:
        raise bad("path") from None

    body = request.body()
    try:
        future = outgoing_handler.handle(request, None)
    except Err as e:
        body.__exit__(None, None, None)
        raise _transport_error(url, e.value) from None
    try:
        with body.write() as stream:
            data = req.body or b""
            for i in range(0, len(data), 4096):
                stream.blocking_write_and_flush(data[i : i + 4096])
    except Err as e:
        body.__exit__(None, None, None)
        # The host closes the body when it refuses or fails the request (an
        # origin not granted, no connection): the reason is in the answer.
        Pending(url, future).wait()
        raise Transient(f"request to {url}: writing body: {e.value}") from None
    try:
        _http.OutgoingBody.finish(body, None)
    except Err as e:
        raise _transport_error(url, e.value) from None
    return Pending(url, future)


def _read_response(url: str, incoming: _http.IncomingResponse) -> Response:
    with incoming:
        status = incoming.status()
        with incoming.headers() as fields:
            headers = [(k.lower(), v.decode("utf-8", "replace")) for k, v in fields.entries()]
        try:
            body = incoming.consume()
        except Err:
            raise Transient(f"request to {url}: body already taken") from None
        chunks = []
        with body:
            with body.stream() as stream:
                while True:
                    try:
                        chunks.append(stream.blocking_read(64 * 1024))
                    except Err as e:
                        if isinstance(e.value, _streams.StreamError_Closed):
                            break
                        detail = e.value.value.to_debug_string()
                        raise Transient(f"request to {url}: reading body: {detail}") from None
        return Response(status, headers, b"".join(chunks))


def _transport_error(url: str, code: Any) -> WeftError:
    """A transport-level failure: a request the host denied is a ``config``
    problem (no retry helps until the grants change), anything else may
    pass and is ``transient``."""
    if isinstance(code, _http.ErrorCode_HttpRequestDenied):
        return Config(
            f"request to {url} denied by the host: the origin is not granted "
            "to this connector for this tenant"
        )
    if isinstance(code, _http.ErrorCode_DestinationIpProhibited):
        return Config(
            f"request to {url} denied by the host: it resolves to a loopback, "
            "private or other non-public address; if that is meant, the "
            "operator lists the host in `private_hosts` in weft.toml"
        )
    if isinstance(code, _http.ErrorCode_InternalError) and code.value:
        if code.value.startswith("weft: credential refused: "):
            return Config(f"request to {url}: {code.value}")
        return Transient(f"request to {url}: {code.value}")
    name = type(code).__name__.removeprefix("ErrorCode_")
    payload = getattr(code, "value", None)
    return Transient(f"request to {url}: {name}" + (f"({payload})" if payload is not None else ""))
