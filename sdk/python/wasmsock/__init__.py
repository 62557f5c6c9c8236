"""The Python SDK for wasmsock handlers: ``websockets`` (the Dirigible-style API in Python style), ``WebsocketClient``
and ``WebsocketError``, over the ``wasmsock:websockets`` WIT imports that componentize-py generates at build time.

A handler is a module with a function ``on_event()``; ``sdk/python/build.py`` turns it into a component::

    from wasmsock import websockets  # or, as a Dirigible handler does: from sdk.net import websockets

    def on_event():
        if websockets.is_on_message():
            websockets.send(websockets.get_message())
"""

from wasmsock import websockets
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
    "websockets",
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
