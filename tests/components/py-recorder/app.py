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
verb (or ID); TEXT is the rest of the line. The store and configuration commands (``kv-…``, ``config NAME``,
``config-all``) are the Rust recorder's (its ``kv_command`` lists them), with the same replies. ``fetch METHOD URL
[BODY]`` (through ``wasmsock.http``, sending ``x-recorder: py``: ``fetched STATUS CONTENT-TYPE BODY`` or ``error
CODE``), ``lifecycle``. A refused call replies
``error <kind>: <detail>`` (the SDK's ``WebsocketError`` or ``KvError`` message).
"""

import json
from typing import Callable, List, Optional, TypeVar

from wasmsock import (
    ClientInfo,
    ClientOptions,
    ConnectionState,
    Direction,
    HttpError,
    KvError,
    Method,
    ReconnectPolicy,
    TimerError,
    WebsocketClient,
    WebsocketError,
    http,
    kv,
    timers,
    variables,
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
    if timers.is_on_timer():
        # A timer armed with `timer MS TEXT`: its own reply, not an observer report.
        fired = timers.get_timer()
        websockets.send(f"fired {fired.id} {fired.payload.decode()}")
        return
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


def history(page: "websockets.HistoryPage") -> str:
    """A page of history as the Rust recorder words it."""
    items = [
        f"{p.offset}:{p.data.value}" if isinstance(p.data.value, str) else f"{p.offset}:b{len(p.data.value)}"
        for p in page.publications
    ]
    following = "-" if page.next is None else page.next
    return (
        f"history top {page.top} complete {str(page.complete).lower()} next {following} epoch {page.epoch} "
        f"items {joined(items)}"
    )


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
    if verb == "timer":
        ms, _, text = rest.partition(" ")
        try:
            return f"armed {timers.set_timer(int(ms), text)}"
        except TimerError as err:
            return f"error {err.kind}: {err.detail}"
    if verb == "fetch":
        # `fetch METHOD URL [BODY]`: `fetched STATUS CONTENT-TYPE BODY` or `error CODE`.
        method, _, tail = rest.partition(" ")
        url, _, body = tail.partition(" ")
        try:
            response = http.request(method, url, [("x-recorder", "py")], body)
        except HttpError as err:
            return f"error {err.code}"
        return f"fetched {response.status} {response.header('content-type')} {response.text()}"
    if verb == "lifecycle":
        return f"lifecycle {timers.get_lifecycle()}"
    if verb == "random":
        import random

        return f"random {random.random()}"

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
    if verb == "hpublish":
        channel, _, message = rest.partition(" ")
        return reply(
            lambda: websockets.publish_with(channel, message),
            lambda p: f"published {p.queued} at {'-' if p.position is None else p.position.offset}",
        )
    if verb == "history":
        words = rest.split(" ")
        since = int(words[2]) if len(words) > 2 else None
        epoch = words[3] if len(words) > 3 else None
        return reply(lambda: websockets.get_history(words[0], since=since, epoch=epoch, limit=int(words[1])), history)
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
    if verb.startswith("kv-") or verb.startswith("config"):
        try:
            return kv_command(verb, rest)
        except KvError as err:
            return f"error {err}"
    return f"unknown command {verb!r}"


def shown(value: Optional[bytes]) -> str:
    """A value as text (UTF-8), ``-`` for none."""
    return "-" if value is None else value.decode("utf-8", errors="replace")


def seconds(word: str) -> Optional[int]:
    """A time to live in seconds, or ``None`` for ``-``."""
    return None if word == "-" else int(word)


def kv_command(verb: str, rest: str) -> str:
    """The store and configuration commands, replying as the Rust recorder's ``kv_command`` does."""
    store = kv.open_default()
    key, _, value = rest.partition(" ")
    words = rest.split(" ") + ["", "", "", ""]
    if verb == "kv-set":
        store.set(key, value)
        return "ok"
    if verb == "kv-get":
        found = store.get(key)
        return "none" if found is None else f"value {shown(found)}"
    if verb == "kv-del":
        store.delete(key)
        return "ok"
    if verb == "kv-exists":
        return "true" if store.exists(key) else "false"
    if verb == "kv-keys":
        return f"keys {joined([k for k in store.get_keys() if k.startswith(key)])}"
    if verb == "kv-list":
        after = None if words[2] == "-" else words[2]
        page = store.list(words[0], after=after, limit=int(words[1]))
        return f"keys {joined(page.keys)} next {page.next or '-'}"
    if verb == "kv-incr":
        return str(store.increment(words[0], int(words[1])))
    if verb == "kv-incr-ttl":
        return str(store.increment_with_ttl(words[0], int(words[1]), seconds(words[2])))
    if verb in ("kv-cas", "kv-cas-race"):
        cas = store.cas(words[0])
        read = shown(cas.current())
        if verb == "kv-cas-race":
            store.set(words[0], words[2])
        return f"read {read} swapped {'true' if cas.swap(words[1]) else 'false'}"
    if verb == "kv-put":
        condition = words[2] if words[2] in ("always", "absent") else int(words[2])
        return f"rev {store.put(words[0], words[1], condition=condition, ttl_seconds=seconds(words[3]))}"
    if verb == "kv-ttl":
        store.put(words[0], words[1], ttl_seconds=int(words[2]))
        return "ok"
    if verb == "kv-entry":
        entry = store.get_entry(key)
        if entry is None:
            return "none"
        ttl = "no" if entry.expires_in_ms is None else "yes"
        return f"entry {shown(entry.value)} rev {entry.revision} ttl {ttl}"
    if verb == "kv-del-if":
        store.delete_if(words[0], int(words[1]))
        return "ok"
    if verb == "kv-set-size":
        store.set(words[0], b"a" * int(words[1]))
        return "ok"
    if verb == "kv-usage":
        usage = store.usage()
        has_keys = "true" if usage.keys > 0 else "false"
        return (
            f"usage has-keys {has_keys} max-keys {usage.max_keys} max-bytes {usage.max_bytes} "
            f"max-value-bytes {usage.max_value_bytes}"
        )
    if verb == "kv-json-set":
        try:
            parsed = json.loads(value)
        except ValueError as err:
            return f"bad json {err}"
        store.set_json(key, parsed)
        return "ok"
    if verb == "kv-json-get":
        found = store.get_json(key)
        return "none" if found is None else f"json {json.dumps(found, ensure_ascii=False, separators=(',', ':'))}"
    if verb == "kv-open":
        kv.open(rest)
        return "ok"
    if verb == "config":
        found_config = variables.get(rest)
        return "none" if found_config is None else f"config {found_config}"
    if verb == "config-all":
        return f"config {joined([f'{name}={v}' for name, v in variables.get_all()])}"
    return f"unknown command {verb!r}"
