"""Test handler written as an Eclipse Dirigible handler is, in Python: it imports its websockets from ``sdk.net``
(``sdk/python/sdk/net.py``, which ``sdk/python/build.py`` puts on the path) and answers every text message with
``seed <message>``, exactly as ``js-seed`` does.
"""

from sdk.net import websockets


def on_event() -> None:
    """Called by the host once per event."""
    if websockets.is_on_message():
        text = websockets.get_message()
        if text is not None:
            websockets.send(f"seed {text}")
