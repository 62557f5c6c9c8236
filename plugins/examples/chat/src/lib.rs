//! The chat handler, in rooms: a session joins the channel named by the `room` query parameter of its URI
//! (`/websockets/service/chat?room=NAME`, default `lobby`), and every message goes to every member of that room, sender
//! included. `wasmsock publish examples/lobby hello` reaches the lobby from outside.

// A guest logs through stderr: the host tags each line with the handler and connection.
#![allow(clippy::print_stderr)]

use wasmsock_sdk::websockets;

/// The room of a session that does not name one.
const DEFAULT_ROOM: &str = "lobby";

fn on_event() {
    if websockets::is_on_open() {
        let room = room_of(&websockets::current_client().info().uri);
        if let Err(err) = websockets::join(&room) {
            // A room name the host refuses (too long, spaces): tell the peer why and end the session.
            let _ = websockets::send(&format!("cannot join room {room:?}: {err}"));
            let _ = websockets::close(Some(1008), Some("bad room name"));
        }
        return;
    }
    if !websockets::is_on_message() {
        return;
    }
    let text = websockets::get_message();
    let data = websockets::get_binary_message();
    for room in websockets::get_channels() {
        let published = match (&text, &data) {
            (Some(text), _) => websockets::publish(&room, text),
            (None, Some(data)) => {
                websockets::publish_binary(&room, data, websockets::PublishOptions { skip_self: false })
            }
            (None, None) => Ok(0),
        };
        if let Err(err) = published {
            eprintln!("chat: not published to {room}: {err}");
        }
    }
}

/// The `room` query parameter of a request URI, percent-decoded; [`DEFAULT_ROOM`] when absent or empty.
fn room_of(uri: &str) -> String {
    let query = uri.split_once('?').map_or("", |(_, query)| query);
    let room = query.split('&').find_map(|pair| pair.strip_prefix("room=")).map(percent_decode);
    room.filter(|room| !room.is_empty()).unwrap_or_else(|| DEFAULT_ROOM.to_owned())
}

/// Decodes `%XX` escapes (and `+` as a space, as forms encode it); a malformed escape is kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| char::from(*b).to_digit(16));
        match bytes[i] {
            b'%' if hex(i + 1).is_some() && hex(i + 2).is_some() => {
                let value = hex(i + 1).unwrap_or(0) * 16 + hex(i + 2).unwrap_or(0);
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

wasmsock_sdk::handler!(on_event);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_comes_from_the_query_decoded() {
        assert_eq!(room_of("/websockets/service/chat"), "lobby");
        assert_eq!(room_of("/websockets/service/chat?room="), "lobby");
        assert_eq!(room_of("/websockets/service/chat?x=1&room=k%C3%BCche"), "küche");
        assert_eq!(room_of("/websockets/service/chat?room=a+b"), "a b");
        assert_eq!(room_of("/websockets/service/chat?room=50%"), "50%");
    }
}
