"""Dirigible's ``sdk/net`` for wasmsock handlers: ``from sdk.net import websockets`` gives the same ``websockets`` as
``from wasmsock import websockets`` (with ``WebsocketClient`` and ``WebsocketError`` beside it, and the project's
``kv`` store and ``variables``, as the JavaScript SDK's ``sdk/net`` has them).
"""

from wasmsock import KvError, WebsocketClient, WebsocketError, kv, variables, websockets

__all__ = ["websockets", "WebsocketClient", "WebsocketError", "kv", "variables", "KvError"]
