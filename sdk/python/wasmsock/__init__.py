"""The Python SDK for wasmsock handlers: ``websockets`` (the Dirigible-style API in Python style), ``WebsocketClient``
and ``WebsocketError``, the project's key-value store (``kv``, with ``KvError``) and configuration (``variables``),
timers and alarms (``timers``), outbound HTTP (``http``, with ``HttpError``),
over the WIT imports that componentize-py generates at build time.

A handler is a module with a function ``on_event()``; ``sdk/python/build.py`` turns it into a component::

    from wasmsock import websockets  # or, as a Dirigible handler does: from sdk.net import websockets

    def on_event():
        if websockets.is_on_message():
            websockets.send(websockets.get_message())
"""

from wasmsock import http, kv, timers, variables, websockets
from wasmsock.http import HttpError
from wasmsock.kv import KvError
from wasmsock.timers import TimerError
from wasmsock.websockets import (
    ClientInfo,
    ClientOptions,
    ConnectionState,
    Direction,
    MembersPage,
    Method,
    PublishOptions,
    ReconnectPolicy,
    WebsocketClient,
    WebsocketError,
)

__all__ = [
    "http",
    "HttpError",
    "kv",
    "timers",
    "TimerError",
    "variables",
    "websockets",
    "KvError",
    "ClientInfo",
    "ClientOptions",
    "ConnectionState",
    "Direction",
    "MembersPage",
    "Method",
    "PublishOptions",
    "ReconnectPolicy",
    "WebsocketClient",
    "WebsocketError",
]
