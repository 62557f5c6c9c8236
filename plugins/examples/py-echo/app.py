"""The Python echo handler: every text message goes back as text and every binary message as binary, to the
connection it came from (the same behaviour as the Rust ``echo`` example)."""

import sys

from wasmsock import WebsocketError, websockets


def on_event() -> None:
    """Called by the host once per event."""
    if not websockets.is_on_message():
        return
    # The binary payload is asked for only when the message is not text: one host call fewer per text message.
    text = websockets.get_message()
    try:
        if text is not None:
            websockets.send(text)
        elif (data := websockets.get_binary_message()) is not None:
            websockets.send_binary(data)
    except WebsocketError as err:
        # A guest logs through stderr: the host tags each line with the handler and connection.
        print(f"echo failed: {err}", file=sys.stderr)
