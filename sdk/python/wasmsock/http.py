"""Outbound HTTP from a handler, over ``wasi:http/outgoing-handler``: ``get``, ``post`` and ``request`` send one
request and wait for the whole response. The host sends it only to destinations the endpoint's
``allowed-outbound-hosts`` grant (``http://`` and ``https://`` grants) and within its timeouts and caps; a refusal
raises ``HttpError`` whose ``code`` names the ``wasi:http`` error code (``HttpRequestDenied``,
``DestinationIpProhibited``, ``HttpResponseBodySize``, ``HttpResponseTimeout``, ``ConnectionLimitReached``, ...)::

    from wasmsock import http, websockets

    def on_event():
        try:
            response = http.get("http://127.0.0.1:8080/status")
            websockets.send(f"{response.status} {response.text()}")
        except http.HttpError as err:
            websockets.send(f"error {err.code}")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

from componentize_py_types import Err
from wit_world.imports import outgoing_handler as _handler
from wit_world.imports import streams as _streams
from wit_world.imports import types as _types

__all__ = ["HttpError", "Response", "get", "post", "request"]

Headers = Sequence[Tuple[str, Union[str, bytes]]]

# How much of a body one read or write moves.
_CHUNK = 64 * 1024

_METHODS = {
    "GET": _types.Method_Get,
    "HEAD": _types.Method_Head,
    "POST": _types.Method_Post,
    "PUT": _types.Method_Put,
    "DELETE": _types.Method_Delete,
    "OPTIONS": _types.Method_Options,
    "PATCH": _types.Method_Patch,
}


class HttpError(Exception):
    """Why a request got no response: ``code`` is ``Url``, ``Header`` or ``Body`` (the request could not be made or
    its body broke off) or the ``wasi:http`` error code the host or the server gave (``HttpRequestDenied``, ...);
    ``detail`` says more."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


@dataclass
class Response:
    """A response: its status, its headers in order (names lower-case) and its whole body."""

    status: int
    headers: List[Tuple[str, bytes]]
    body: bytes

    def text(self) -> str:
        """The body as text (UTF-8, invalid bytes replaced)."""
        return self.body.decode("utf-8", errors="replace")

    def header(self, name: str) -> Optional[str]:
        """The first value of header ``name`` (any case), as text; ``None`` when absent."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value.decode("utf-8", errors="replace")
        return None


def get(url: str, headers: Headers = ()) -> Response:
    """``GET url``."""
    return request("GET", url, headers)


def post(url: str, body: Union[str, bytes], headers: Headers = ()) -> Response:
    """``POST url`` with ``body`` (text is sent as UTF-8) and ``headers``."""
    return request("POST", url, headers, body)


def _code(error: object) -> HttpError:
    """A ``wasi:http`` error code as an ``HttpError`` named like the Rust SDK's (``ErrorCode_DnsError`` -> ``DnsError``)."""
    name = type(error).__name__
    name = name[len("ErrorCode_"):] if name.startswith("ErrorCode_") else name
    value = getattr(error, "value", None)
    return HttpError(name, "" if value is None else repr(value))


def _split_url(url: str) -> Tuple[object, str, str]:
    """``scheme://authority/path?query`` into its parts (the host parses the URI again before it checks it)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise HttpError("Url", f"{url!r} has no scheme")
    kind = scheme.lower()
    if kind == "http":
        wit_scheme: object = _types.Scheme_Http()
    elif kind == "https":
        wit_scheme = _types.Scheme_Https()
    else:
        raise HttpError("Url", f"scheme {scheme!r} is not http or https")
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority, path = rest[:end], rest[end:].split("#", 1)[0]
    if not authority:
        raise HttpError("Url", f"{url!r} has no host")
    return wit_scheme, authority, path or "/"


def request(method: str, url: str, headers: Headers = (), body: Union[str, bytes] = b"") -> Response:
    """Sends one request (``method`` is any HTTP method, e.g. ``"PUT"``) and waits for the whole response."""
    data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    scheme, authority, path = _split_url(url)
    entries = [(name, value.encode("utf-8") if isinstance(value, str) else bytes(value)) for name, value in headers]
    # The body's length is known: declared, so it goes out with content-length rather than chunked.
    if data and not any(name.lower() == "content-length" for name, _ in entries):
        entries.append(("content-length", str(len(data)).encode()))
    try:
        fields = _types.Fields.from_list(entries)
    except Err as err:
        raise HttpError("Header", repr(err.value)) from None
    outgoing = _types.OutgoingRequest(fields)
    upper = method.upper()
    wit_method = _METHODS[upper]() if upper in _METHODS else _types.Method_Other(upper)
    for setter, value, what in ((outgoing.set_method, wit_method, "method"), (outgoing.set_scheme, scheme, "scheme"),
                                (outgoing.set_authority, authority, "authority"),
                                (outgoing.set_path_with_query, path, "path")):
        try:
            setter(value)
        except Err:
            raise HttpError("Url", f"the host does not accept this {what}") from None
    outgoing_body = outgoing.body()
    # Sent first, then the body written: the host reads the body as it sends it.
    try:
        pending = _handler.handle(outgoing, None)
    except Err as err:
        raise _code(err.value) from None
    if data:
        with outgoing_body.write() as stream:
            for start in range(0, len(data), _CHUNK):
                try:
                    stream.blocking_write_and_flush(data[start:start + _CHUNK])
                except Err as err:
                    raise HttpError("Body", repr(err.value)) from None
    try:
        _types.OutgoingBody.finish(outgoing_body, None)
    except Err as err:
        raise _code(err.value) from None
    with pending:
        with pending.subscribe() as ready:
            ready.block()
        outcome = pending.get()
    if outcome is None or isinstance(outcome, Err):
        raise HttpError("Body", "the response was already taken")
    inner = outcome.value
    if isinstance(inner, Err):
        raise _code(inner.value)
    with inner.value as response:
        status = response.status()
        with response.headers() as fields:
            received = [(name, bytes(value)) for name, value in fields.entries()]
        incoming = response.consume()
        read = bytearray()
        with incoming.stream() as stream:
            while True:
                try:
                    read += stream.blocking_read(_CHUNK)
                except Err as err:
                    if isinstance(err.value, _streams.StreamError_Closed):
                        break
                    raise HttpError("Body", "the response body broke off") from None
        with _types.IncomingBody.finish(incoming):
            pass
    return Response(status, received, bytes(read))
