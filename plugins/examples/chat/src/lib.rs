//! The chat handler, in rooms: a session joins the channel named by the `room` query parameter of its URI
//! (`/websockets/service/chat?room=NAME`, default `lobby`), and every message goes to every member of that room, sender
//! included. `wasmsock publish examples/lobby hello` reaches the lobby from outside.
//!
//! Recovery, when the project keeps history (`quotas.history-size` in `project.json`): with `&recover=1` every message
//! the session receives is the JSON text `{"offset": N, "epoch": "E", "data": "TEXT"}`, and right after joining it
//! receives `{"recovered": true|false, "epoch": "E", "offset": TOP}`. With `&since=N&epoch=E` it first receives every
//! message after offset N of epoch E that the history keeps, then the live ones, none twice and none missed;
//! `recovered` is false when the history could not cover that position (another epoch, or trimmed), and what it had
//! was sent.

// A guest logs through the SDK's `eprintln!`: the host tags each line with the handler and connection.
use wasmsock_sdk::eprintln;
use wasmsock_sdk::history::{self, StreamPosition};
use wasmsock_sdk::websockets;

/// The room of a session that does not name one.
const DEFAULT_ROOM: &str = "lobby";

fn on_event() {
    if websockets::is_on_open() {
        let uri = websockets::current_client().info().uri;
        let room = room_of(&uri);
        let recover = param(&uri, "recover").is_some_and(|value| value == "1");
        let since = position_of(&uri);
        let joined = if recover || since.is_some() {
            history::join_from(&room, since.as_ref(), recover).map(|recovery| {
                if recover {
                    let status = format!(
                        r#"{{"recovered": {}, "epoch": "{}", "offset": {}}}"#,
                        recovery.recovered,
                        json_escape(&recovery.epoch),
                        recovery.top
                    );
                    let _ = websockets::send(&status);
                }
            })
        } else {
            websockets::join(&room)
        };
        if let Err(err) = joined {
            // A room name the host refuses (too long, spaces) or a quota reached: tell the peer why and end the session.
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
    param(uri, "room").filter(|room| !room.is_empty()).unwrap_or_else(|| DEFAULT_ROOM.to_owned())
}

/// The query parameter `name` of a request URI, percent-decoded.
fn param(uri: &str, name: &str) -> Option<String> {
    let query = uri.split_once('?').map_or("", |(_, query)| query);
    query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=')).map(percent_decode)
}

/// The position `since=N&epoch=E` of a request URI, when both are there and N is a number.
fn position_of(uri: &str) -> Option<StreamPosition> {
    let offset = param(uri, "since")?.parse().ok()?;
    Some(StreamPosition { offset, epoch: param(uri, "epoch")? })
}

/// `text` escaped for a JSON string (the host's epochs are hexadecimal, but a client can send anything back).
fn json_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
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
        assert_eq!(room_of("/websockets/service/chat?roomy=x"), "lobby");
    }

    #[test]
    fn a_position_needs_both_the_offset_and_the_epoch() {
        let at = position_of("/chat?room=r&recover=1&since=41&epoch=18c-0").map(|p| (p.offset, p.epoch));
        assert_eq!(at, Some((41, "18c-0".to_owned())));
        assert!(position_of("/chat?since=41").is_none());
        assert!(position_of("/chat?since=x&epoch=e").is_none());
        assert_eq!(json_escape("a\"b\\c\n"), "a\\\"b\\\\c\\u000a");
    }
}
