"""Test handler in Python that mirrors the Rust ``recorder``: every event of every connection routed to it is reported
as ``"<id> <method> <detail>"`` to each open inbound session whose URI contains ``observer``, and text messages on
other inbound sessions are commands whose reply goes back to the sender.

Commands: ``echo TEXT``, ``clients``, ``connect-send URI TEXT``, ``connect-engine URI ENGINE``,
``connect-reconnect URI INITIAL-MS MAX-MS ATTEMPTS|-`` (then sends ``first``), ``client-send ID TEXT``,
``client-close ID``, ``by-handler HANDLER``, ``close CODE REASON``, ``throw TEXT`` (raises a RuntimeError with that
message). Channels and attachments: ``join CH``, ``leave CH`` (``left true|false``), ``channels`` (``channels a,b``
in join order, ``channels -``), ``publish CH TEXT``, ``publish-skip CH TEXT`` (skip-self), ``publish-binary CH TEXT``
(TEXT's UTF-8 bytes as a binary message) (each ``queued N``), ``members CH LIMIT AFTER|-`` (``members ID,ID next
ID|-``, ``members - next -``), ``client-join ID CH``, ``client-leave ID CH``, ``client-channels ID`` (``none`` for no
such client), ``set-attachment TEXT``, ``set-attachment-size N`` (N bytes of ``a``), ``clear-attachment``,
``attachment`` and ``client-attachment ID`` (``attachment TEXT``, ``attachment -``). A channel is the word after the
verb (or ID); TEXT is the rest of the line. A refused call replies ``error <kind>: <detail>`` (the SDK's
``WebsocketError`` message).
"""

from typing import Callable, List, Optional, TypeVar

from wasmsock import (
    ClientInfo,
    ClientOptions,
    ConnectionState,
    Direction,
    Method,
    ReconnectPolicy,
    WebsocketClient,
    WebsocketError,
    websockets,
)

_T = TypeVar("_T")

# The handler name this component is installed as: its outbound clients' events come back here.
SELF = "tests/py-recorder"

_METHODS = {
    Method.ONOPEN: "onopen",
    Method.ONMESSAGE: "onmessage",
    Method.ONERROR: "onerror",
    Method.ONCLOSE: "onclose",
}


def on_event() -> None:
    """Called by the host once per event."""
    me = websockets.current_client().info()
    report(me)
    if websockets.is_on_message() and me.direction == Direction.INBOUND and "observer" not in me.uri:
        text = websockets.get_message()
        if text is not None:
            reply = command(text)
            if reply:
                websockets.send(reply)


def report(me: ClientInfo) -> None:
    """Sends this event's report line to every open observer session."""
    detail = ""
    if websockets.is_on_message():
        text = websockets.get_message()
        data = websockets.get_binary_message()
        detail = text if text is not None else f"<{len(data)} bytes>" if data is not None else ""
    elif websockets.is_on_error():
        detail = websockets.get_error() or ""
    line = f"{me.id} {_METHODS[websockets.get_method()]} {detail}".rstrip()
    for info in websockets.get_clients():
        observer = (
            info.direction == Direction.INBOUND and "observer" in info.uri and info.state == ConnectionState.OPEN
        )
        client = websockets.get_client(info.id) if observer else None
        if client is not None:
            try:
                client.send(line)
            except WebsocketError:
                pass  # An observer that is leaving misses the line.


def describe(info: ClientInfo) -> str:
    """``id|uri|handler|endpoint|direction|state``, as the Rust recorder writes it."""
    return "|".join(
        [info.id, info.uri, info.handler, info.endpoint or "-", info.direction.name.lower(), info.state.name.lower()]
    )


def outcome(act: Callable[[], None]) -> str:
    """``"ok"``, or ``"error <kind>: <detail>"`` if the host refused."""
    try:
        act()
        return "ok"
    except WebsocketError as err:
        return f"error {err}"


def joined(items: List[str]) -> str:
    """``a,b``, or ``-`` for an empty list."""
    return ",".join(items) if items else "-"


def channels(items: List[str]) -> str:
    """``channels a,b``, or ``channels -`` for none."""
    return f"channels {joined(items)}"


def attachment(text: Optional[str]) -> str:
    """``attachment TEXT``, or ``attachment -`` for none."""
    return f"attachment {'-' if text is None else text}"


def reply(act: Callable[[], _T], show: Callable[[_T], str]) -> str:
    """Runs ``act`` and formats what it returns with ``show``, or ``"error <kind>: <detail>"`` if the host refused; a
    ``closed`` (which has no detail) is worded as the Rust recorder words it.
    """
    try:
        return show(act())
    except WebsocketError as err:
        if err.kind == "closed" and not err.detail:
            return "error closed: the connection is closing or closed"
        return f"error {err}"


def ok(_: object) -> str:
    """``"ok"``, for ``reply``."""
    return "ok"


def with_client(client_id: str, act: Callable[[WebsocketClient], str]) -> str:
    """Runs ``act`` on the client with this id; ``"none"`` if there is no such client."""
    client = websockets.get_client(client_id)
    return "none" if client is None else act(client)


def left(was_member: bool) -> str:
    """``left true`` or ``left false``, as the other recorders write it."""
    return f"left {'true' if was_member else 'false'}"


def command(text: str) -> str:
    """Runs one command and returns the reply."""
    verb, _, rest = text.partition(" ")
    if verb == "echo":
        return rest
    if verb == "clients":
        return "clients " + ";".join(describe(info) for info in websockets.get_clients())
    if verb == "connect-send":
        # The seed's pattern: create, then send at once, before the client can have opened.
        uri, _, message = rest.partition(" ")
        try:
            client = websockets.create_websocket(uri, SELF)
        except WebsocketError as err:
            return f"error {err}"
        queued = outcome(lambda: client.send(message))
        return f"created {describe(client.info())} send {queued}"
    if verb == "connect-engine":
        uri, _, engine = rest.partition(" ")
        try:
            return f"created {describe(websockets.create_websocket(uri, SELF, engine).info())}"
        except WebsocketError as err:
            return f"error {err}"
    if verb == "connect-reconnect":
        # `connect-reconnect URI INITIAL-MS MAX-MS ATTEMPTS` (`-`: never give up), then send `first`.
        uri, initial, maximum, attempts = rest.split(" ")
        policy = ReconnectPolicy(int(initial), int(maximum), None if attempts == "-" else int(attempts))
        try:
            client = websockets.create_websocket_with(uri, SELF, ClientOptions(reconnect=policy))
        except WebsocketError as err:
            return f"error {err}"
        queued = outcome(lambda: client.send("first"))
        return f"created {describe(client.info())} send {queued}"
    if verb == "client-send":
        client_id, _, message = rest.partition(" ")
        client = websockets.get_client(client_id)
        return "none" if client is None else outcome(lambda: client.send(message))
    if verb == "client-close":
        client = websockets.get_client(rest)
        return "none" if client is None else outcome(lambda: client.close(1000, "done"))
    if verb == "by-handler":
        client = websockets.get_client_by_handler(rest)
        return "none" if client is None else f"found {describe(client.info())}"
    if verb == "close":
        code, _, reason = rest.partition(" ")
        return outcome(lambda: websockets.close(int(code) if code.isdigit() else None, reason))
    if verb == "throw":
        raise RuntimeError(rest)
    if verb == "join":
        return reply(lambda: websockets.join(rest), ok)
    if verb == "leave":
        return reply(lambda: websockets.leave(rest), left)
    if verb == "channels":
        return channels(websockets.get_channels())
    if verb in ("publish", "publish-skip"):
        channel, _, message = rest.partition(" ")
        skip_self = verb == "publish-skip"
        return reply(lambda: websockets.publish(channel, message, skip_self=skip_self), lambda n: f"queued {n}")
    if verb == "publish-binary":
        channel, _, message = rest.partition(" ")
        return reply(lambda: websockets.publish(channel, message.encode("utf-8")), lambda n: f"queued {n}")
    if verb == "members":
        channel, limit, after = rest.split(" ")
        return reply(
            lambda: websockets.get_members(channel, after=None if after == "-" else after, limit=int(limit)),
            lambda page: f"members {joined([m.id for m in page.members])} next {page.next or '-'}",
        )
    if verb == "survey-members":
        channel, limit, after = rest.split(" ")
        return reply(
            lambda: websockets.survey_members(channel, after=None if after == "-" else after, limit=int(limit)),
            lambda survey: f"members {joined([m.id for m in survey.page.members])} next {survey.page.next or '-'} "
            f"missing {joined(survey.missing_hosts)}",
        )
    if verb == "survey-clients":
        survey = websockets.survey_clients()
        return f"clients {joined([c.id for c in survey.clients])} missing {joined(survey.missing_hosts)}"
    if verb == "client-join":
        client_id, _, channel = rest.partition(" ")
        return with_client(client_id, lambda client: reply(lambda: client.join(channel), ok))
    if verb == "client-leave":
        client_id, _, channel = rest.partition(" ")
        return with_client(client_id, lambda client: reply(lambda: client.leave(channel), left))
    if verb == "client-channels":
        return with_client(rest, lambda client: channels(client.get_channels()))
    if verb == "set-attachment":
        return reply(lambda: websockets.set_attachment(rest), ok)
    if verb == "set-attachment-size":
        return reply(lambda: websockets.set_attachment(b"a" * int(rest)), ok)
    if verb == "clear-attachment":
        return reply(lambda: websockets.set_attachment(None), ok)
    if verb == "attachment":
        return attachment(websockets.get_attachment_text())
    if verb == "client-attachment":
        return with_client(rest, lambda client: attachment(client.get_attachment_text()))
    return f"unknown command {verb!r}"
