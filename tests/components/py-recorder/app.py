"""Test handler in Python that mirrors the Rust ``recorder``: every event of every connection routed to it is reported
as ``"<id> <method> <detail>"`` to each open inbound session whose URI contains ``observer``, and text messages on
other inbound sessions are commands whose reply goes back to the sender.

Commands: ``echo TEXT``, ``clients``, ``connect-send URI TEXT``, ``connect-engine URI ENGINE``,
``connect-reconnect URI INITIAL-MS MAX-MS ATTEMPTS|-`` (then sends ``first``), ``client-send ID TEXT``,
``client-close ID``, ``by-handler HANDLER``, ``close CODE REASON``, ``throw TEXT`` (raises a RuntimeError with that
message). A refused call replies ``error <kind>: <detail>`` (the SDK's ``WebsocketError`` message).
"""

from typing import Callable

from wasmsock import (
    ClientInfo,
    ClientOptions,
    ConnectionState,
    Direction,
    Method,
    ReconnectPolicy,
    WebsocketError,
    websockets,
)

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
    return f"unknown command {verb!r}"
