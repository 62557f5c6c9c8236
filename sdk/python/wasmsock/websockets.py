"""The websockets API for wasmsock handlers, named after Dirigible's ``sdk/net`` websockets module in Python style.

Every call asks the host about the event being handled or acts on a connection. A WIT ``result`` that is an error is
raised as :class:`WebsocketError`; ``option`` values are ``None`` when absent; binary data is ``bytes``.
"""

from __future__ import annotations

from typing import Callable, List, Optional, TypeVar, Union

from componentize_py_types import Err
from wit_world.imports import websockets as _wit
from wit_world.imports.websockets import (
    ClientInfo,
    ClientOptions,
    ClientsSurvey,
    ConnectionState,
    Direction,
    HistoryPage,
    JoinOptions,
    MembersPage,
    MembersSurvey,
    Method,
    Publication,
    Published,
    PublishOptions,
    ReconnectPolicy,
    Recovery,
    StreamPosition,
)

__all__ = [
    "ClientInfo",
    "ClientOptions",
    "ClientsSurvey",
    "ConnectionState",
    "Direction",
    "HistoryPage",
    "MembersPage",
    "MembersSurvey",
    "Method",
    "Publication",
    "Published",
    "PublishOptions",
    "ReconnectPolicy",
    "Recovery",
    "StreamPosition",
    "WebsocketClient",
    "WebsocketError",
    "get_method",
    "get_message",
    "get_binary_message",
    "get_error",
    "is_on_open",
    "is_on_message",
    "is_on_error",
    "is_on_close",
    "current_client",
    "send",
    "send_binary",
    "close",
    "create_websocket",
    "create_websocket_with",
    "get_clients",
    "survey_clients",
    "get_client",
    "get_client_by_handler",
    "join",
    "leave",
    "get_channels",
    "publish",
    "publish_with",
    "get_history",
    "join_from",
    "publish_binary",
    "get_members",
    "survey_members",
    "set_attachment",
    "get_attachment",
    "get_attachment_text",
]

_T = TypeVar("_T")

# The WIT `error` variant's cases, by the kind names the JavaScript SDK also uses.
_KINDS = {
    _wit.Error_UnknownClient: "unknown-client",
    _wit.Error_Closed: "closed",
    _wit.Error_Invalid: "invalid",
    _wit.Error_Limit: "limit",
}


class WebsocketError(Exception):
    """Why a call on a connection did not happen: the WIT ``error`` variant as an exception.

    ``kind`` is ``"unknown-client"``, ``"closed"``, ``"invalid"`` or ``"limit"``; ``detail`` is the host's text (the
    client id for ``"unknown-client"``, empty for ``"closed"``).
    """

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


_Bytes = Union[bytes, bytearray, memoryview]


def _call(fn: Callable[[], _T]) -> _T:
    """Runs a WIT call whose result may be an error, raising the error as a :class:`WebsocketError`."""
    try:
        return fn()
    except Err as err:
        case = err.value
        raise WebsocketError(_KINDS.get(type(case), "error"), getattr(case, "value", "") or "") from None


class WebsocketClient:
    """A live connection: an inbound session on an endpoint, or an outbound client (Dirigible's ``WebsocketClient``).

    Every call asks the host, so :meth:`get_state` is the state now, not when the object was made.
    """

    def __init__(self, resource: _wit.WebsocketClient) -> None:
        self._resource = resource

    def info(self) -> ClientInfo:
        """What the host knows about this connection now."""
        return self._resource.info()

    def get_id(self) -> str:
        """The host-wide unique id of the connection."""
        return self.info().id

    def get_uri(self) -> str:
        """The request path and query of an inbound session, or the URI of an outbound client."""
        return self.info().uri

    def get_handler(self) -> str:
        """The handler that receives this connection's events, ``project/name``."""
        return self.info().handler

    def get_endpoint(self) -> Optional[str]:
        """The endpoint of an inbound session; ``None`` for an outbound client."""
        return self.info().endpoint

    def get_direction(self) -> Direction:
        """``Direction.INBOUND`` or ``Direction.OUTBOUND``."""
        return self.info().direction

    def get_state(self) -> ConnectionState:
        """The connection's state now."""
        return self.info().state

    def send(self, message: str) -> None:
        """Queues a text message; never blocks. Raises :class:`WebsocketError` if the host refuses it."""
        _call(lambda: self._resource.send(str(message)))

    def send_binary(self, data: _Bytes) -> None:
        """Queues a binary message; never blocks. Raises :class:`WebsocketError` if the host refuses it."""
        payload = bytes(data)
        _call(lambda: self._resource.send_binary(payload))

    def close(self, code: Optional[int] = None, reason: Optional[str] = None) -> None:
        """Starts the closing handshake with a code (1000 when ``None``) and a reason (at most 123 bytes)."""
        _call(lambda: self._resource.close(code, reason))

    def join(self, channel: str) -> None:
        """Adds this connection to ``channel`` of the handler's project; joining it again does nothing.

        Raises :class:`WebsocketError`: ``invalid`` for a malformed name, ``limit`` past the channels-per-connection
        cap, ``closed`` once the connection has ended.
        """
        _call(lambda: self._resource.join(str(channel)))

    def leave(self, channel: str) -> bool:
        """Removes this connection from ``channel``; ``True`` if it was a member."""
        return _call(lambda: self._resource.leave(str(channel)))

    def get_channels(self) -> List[str]:
        """The channels this connection is in, in the order it joined them."""
        return self._resource.channels()

    def get_attachment(self) -> Optional[bytes]:
        """This connection's attachment, or ``None``."""
        return self._resource.attachment()

    def get_attachment_text(self) -> Optional[str]:
        """This connection's attachment decoded as UTF-8 (a malformed sequence becomes U+FFFD), or ``None``."""
        return _text(self._resource.attachment())


def _text(data: Optional[bytes]) -> Optional[str]:
    return None if data is None else bytes(data).decode("utf-8", errors="replace")


def _u32(name: str, value: int) -> int:
    """Checks a WIT ``u32`` argument (the bindings would raise ``OverflowError`` or ``TypeError`` instead)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
        raise WebsocketError("invalid", f"{name} must be an integer from 0 to 4294967295, not {value!r}")
    return value


def _client(resource: Optional[_wit.WebsocketClient]) -> Optional[WebsocketClient]:
    return None if resource is None else WebsocketClient(resource)


def get_method() -> Method:
    """The kind of the event being handled."""
    return _wit.get_method()


def get_message() -> Optional[str]:
    """The text of the message being handled; ``None`` for binary messages and other events."""
    return _wit.get_message()


def get_binary_message() -> Optional[bytes]:
    """The bytes of the binary message being handled; ``None`` for text messages and other events."""
    return _wit.get_binary_message()


def get_error() -> Optional[str]:
    """What went wrong, in an onerror event; ``None`` otherwise."""
    return _wit.get_error()


def is_on_open() -> bool:
    """Whether the event is onopen."""
    return _wit.get_method() == Method.ONOPEN


def is_on_message() -> bool:
    """Whether the event is onmessage."""
    return _wit.get_method() == Method.ONMESSAGE


def is_on_error() -> bool:
    """Whether the event is onerror."""
    return _wit.get_method() == Method.ONERROR


def is_on_close() -> bool:
    """Whether the event is onclose."""
    return _wit.get_method() == Method.ONCLOSE


def current_client() -> WebsocketClient:
    """The connection the event belongs to."""
    return WebsocketClient(_wit.current_client())


def send(message: str) -> None:
    """Queues a text message on the current connection; never blocks."""
    _call(lambda: _wit.send(str(message)))


def send_binary(data: _Bytes) -> None:
    """Queues a binary message on the current connection; never blocks."""
    payload = bytes(data)
    _call(lambda: _wit.current_client().send_binary(payload))


def close(code: Optional[int] = None, reason: Optional[str] = None) -> None:
    """Closes the current connection with a code (1000 when ``None``) and a reason."""
    _call(lambda: _wit.close(code, reason))


def create_websocket(uri: str, handler: str, engine: Optional[str] = None) -> WebsocketClient:
    """Opens an outbound client to ``uri`` whose events go to ``handler`` (``project/name``); returns at once.

    The client is connecting; messages sent before it opens are queued. ``engine``, Dirigible's optional third
    argument, must be ``None`` or ``"wasm"``.
    """
    if engine is not None and engine != "wasm":
        raise WebsocketError("invalid", f'engine {engine!r} is not supported; leave it out or use "wasm"')
    return WebsocketClient(_call(lambda: _wit.create_websocket(str(uri), str(handler))))


def create_websocket_with(uri: str, handler: str, options: ClientOptions) -> WebsocketClient:
    """``create_websocket`` with options, such as ``ClientOptions(reconnect=ReconnectPolicy(500, 10_000, None))``."""
    return WebsocketClient(_call(lambda: _wit.create_websocket_with(str(uri), str(handler), options)))


def get_clients() -> List[ClientInfo]:
    """Every live connection, inbound sessions and outbound clients."""
    return _wit.get_clients()


def survey_clients() -> ClientsSurvey:
    """``get_clients()`` with the hosts of the cluster that did not answer in time: ``clients`` and
    ``missing_hosts`` (empty when the list is whole, and always on a host that runs alone).
    """
    return _wit.survey_clients()


def get_client(id: str) -> Optional[WebsocketClient]:
    """The live connection with this id, or ``None``."""
    return _client(_wit.get_client(str(id)))


def get_client_by_handler(handler: str) -> Optional[WebsocketClient]:
    """The oldest live outbound client whose events go to ``handler``, or ``None``."""
    return _client(_wit.get_client_by_handler(str(handler)))


def join(channel: str) -> None:
    """Adds the current connection to ``channel`` of the handler's project; joining it again does nothing.

    A name is 1 to 255 bytes with no whitespace or control characters. Raises :class:`WebsocketError`: ``invalid``
    for a malformed name, ``limit`` past the channels-per-connection cap, ``closed`` once the connection has ended.
    """
    _call(lambda: _wit.join(str(channel)))


def leave(channel: str) -> bool:
    """Removes the current connection from ``channel``; ``True`` if it was a member."""
    return _call(lambda: _wit.leave(str(channel)))


def get_channels() -> List[str]:
    """The channels the current connection is in, in the order it joined them."""
    return _wit.get_channels()


def publish(channel: str, message: Union[str, _Bytes], skip_self: bool = False) -> int:
    """Queues ``message`` on every member of ``channel``: ``str`` as text, ``bytes`` (or ``bytearray``,
    ``memoryview``) as binary. ``skip_self`` leaves the current connection out. Returns how many connections it was
    queued for (0 for a channel nobody is in).
    """
    options = PublishOptions(skip_self=bool(skip_self))
    if isinstance(message, (bytes, bytearray, memoryview)):
        payload = bytes(message)
        return _call(lambda: _wit.publish_binary(str(channel), payload, options))
    return _call(lambda: _wit.publish(str(channel), str(message), options))


def publish_binary(channel: str, data: _Bytes, skip_self: bool = False) -> int:
    """``publish`` of binary data."""
    payload = bytes(data)
    return _call(lambda: _wit.publish_binary(str(channel), payload, PublishOptions(skip_self=bool(skip_self))))


def publish_with(channel: str, message: Union[str, _Bytes], skip_self: bool = False) -> Published:
    """``publish``, answering where the message sits in the channel's history: ``queued`` and ``position``
    (``StreamPosition`` with ``offset`` and ``epoch``; ``None`` when the project keeps no history).
    """
    options = PublishOptions(skip_self=bool(skip_self))
    if isinstance(message, (bytes, bytearray, memoryview)):
        payload = bytes(message)
        return _call(lambda: _wit.publish_binary_with(str(channel), payload, options))
    return _call(lambda: _wit.publish_with(str(channel), str(message), options))


def _position(since: Optional[int], epoch: Optional[str]) -> Optional[StreamPosition]:
    """The position after offset ``since`` of ``epoch``; ``None`` when ``since`` is not given."""
    if since is None:
        return None
    if isinstance(since, bool) or not isinstance(since, int) or not 0 <= since <= 0xFFFFFFFFFFFFFFFF:
        raise WebsocketError("invalid", f"since must be an offset (an integer from 0), not {since!r}")
    return StreamPosition(offset=since, epoch=str(epoch or ""))


def get_history(
    channel: str, since: Optional[int] = None, epoch: Optional[str] = None, limit: int = 100
) -> HistoryPage:
    """One page of ``channel``'s history after offset ``since`` of ``epoch`` (from the oldest kept when ``since`` is
    ``None``), oldest first: ``publications`` (each ``offset``, ``time_ms`` and ``data``, a text or binary
    ``MessageData``), ``epoch``, ``top``, ``complete`` (nothing after the position missing) and ``next``.
    """
    checked = _u32("limit", limit)
    return _call(lambda: _wit.get_history(str(channel), _position(since, epoch), checked))


def join_from(
    channel: str, since: Optional[int] = None, epoch: Optional[str] = None, envelope: bool = False
) -> Recovery:
    """Joins the current connection to ``channel`` from offset ``since`` of ``epoch``: the history after it first,
    then the live messages, none missed and none twice. ``envelope`` has the host write each message as
    ``{"offset":N,"epoch":"E","data":"TEXT"}``. ``recovered`` is false when the history could not cover the
    position (then what it keeps was sent).
    """
    position = _position(since, epoch)
    return _call(lambda: _wit.join_from(str(channel), position, JoinOptions(envelope=bool(envelope))))


def get_members(channel: str, after: Optional[str] = None, limit: int = 100) -> MembersPage:
    """One page of ``channel``'s members, oldest first: ``members`` (``ClientInfo``, at most ``limit``, 1 to 1000)
    and ``next`` (``None`` on the last page), the ``after`` of the next page.
    """
    checked = _u32("limit", limit)
    return _call(lambda: _wit.get_members(str(channel), None if after is None else str(after), checked))


def survey_members(channel: str, after: Optional[str] = None, limit: int = 100) -> MembersSurvey:
    """``get_members`` with the hosts of the cluster that did not answer in time: ``page`` and ``missing_hosts``
    (empty when the page is whole).
    """
    checked = _u32("limit", limit)
    return _call(lambda: _wit.survey_members(str(channel), None if after is None else str(after), checked))


def set_attachment(data: Union[str, _Bytes, None]) -> None:
    """Keeps a small value (at most 4 KiB unless the host says otherwise) with the current connection, readable on
    any later event of it: ``str`` as its UTF-8 bytes, ``bytes`` as they are; ``None`` removes it.
    """
    payload = None if data is None else data.encode("utf-8") if isinstance(data, str) else bytes(data)
    _call(lambda: _wit.set_attachment(payload))


def get_attachment() -> Optional[bytes]:
    """The current connection's attachment, or ``None``."""
    return _wit.get_attachment()


def get_attachment_text() -> Optional[str]:
    """The current connection's attachment decoded as UTF-8 (a malformed sequence becomes U+FFFD), or ``None``."""
    return _text(_wit.get_attachment())
