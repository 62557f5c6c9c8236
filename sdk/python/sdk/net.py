"""Dirigible's ``sdk/net`` for wasmsock handlers: ``from sdk.net import websockets`` gives the same ``websockets`` as
``from wasmsock import websockets`` (with ``WebsocketClient`` and ``WebsocketError`` beside it).
"""

from wasmsock import WebsocketClient, WebsocketError, websockets

__all__ = ["websockets", "WebsocketClient", "WebsocketError"]
