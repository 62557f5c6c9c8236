"""The Python echo handler: every text message goes back as text and every binary message as binary, to the
connection it came from (the same behaviour as the Rust ``echo`` example)."""

import sys

from wasmsock import WebsocketError, websockets


def on_event() -> None:
    """Called by the host once per event."""
    # ``get_message`` has text only for a text message, so asking it first saves asking for the method: two host
    # calls per text message (this and ``send``) rather than three.
    text = websockets.get_message()
    try:
        if text is not None:
            websockets.send(text)
        elif websockets.is_on_message() and (data := websockets.get_binary_message()) is not None:
            # The binary payload is asked for only when the event is a message that is not text.
            websockets.send_binary(data)
    except WebsocketError as err:
        # A guest logs through stderr: the host tags each line with the handler and connection.
        print(f"echo failed: {err}", file=sys.stderr)
