//! Channel history as plain data: a publication's place in its channel's stream (offset and epoch), a page of history,
//! the outcome of joining from a position, and the JSON envelope the host writes around a delivered message so that a
//! client learns its offset without a handler call per delivery.

use crate::frame::Frame;

/// Where one publication sits in its channel's history: its offset (1 for the stream's first, one more for each
/// publication after it) and the epoch of the stream (a new epoch means the offsets before it mean nothing now).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct StreamPosition {
    /// The offset; 0 is "before the first publication".
    pub offset: u64,
    /// The stream's epoch.
    pub epoch: String,
}

/// One publication kept in a channel's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// Its offset in the stream.
    pub offset: u64,
    /// When it was published, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The message (text or binary).
    pub frame: Frame,
}

/// One page of a channel's history, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryPage {
    /// The publications on this page, in offset order.
    pub publications: Vec<Publication>,
    /// The stream's epoch now.
    pub epoch: String,
    /// The offset of the stream's latest publication (0 when it has none).
    pub top: u64,
    /// Whether this page continues the asked position without a gap: the epoch matched (or none was given) and the
    /// history still held the publication right after the asked offset (or there was none yet).
    pub complete: bool,
    /// The offset to ask after for the next page; none when this page reaches the top.
    pub next: Option<u64>,
}

/// What joining a channel from a position did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Whether every publication after the position was sent (same epoch, nothing trimmed); when false, what the
    /// history still had was sent.
    pub recovered: bool,
    /// How many publications were sent from the history before the live ones.
    pub sent: u32,
    /// The stream's epoch.
    pub epoch: String,
    /// The offset of the latest publication sent from the history (or the top when none was).
    pub top: u64,
    /// Whether the channel keeps history at all (the project opted in).
    pub history: bool,
}

/// What a publish did: how many members it was queued for on this host, and where it sits in the channel's history
/// (none when the channel keeps no history).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// Members it was queued for on this host.
    pub queued: u32,
    /// Its offset and the stream's epoch.
    pub position: Option<StreamPosition>,
}

/// Which of the publications `after` an asked position a stream holding `first..=top` (first 0 when it holds none)
/// in epoch `epoch` can give, and whether that continues the position: `(from, complete)`, where `from` is the first
/// offset to send. A position of another epoch, one before what was trimmed, or one past the top is not complete; the
/// publications sent then are all the stream holds.
pub fn continue_from(asked: Option<&StreamPosition>, first: u64, top: u64, epoch: &str) -> (u64, bool) {
    let held_from = if first == 0 { top.saturating_add(1) } else { first };
    let Some(asked) = asked else {
        return (held_from, true);
    };
    if asked.epoch != epoch || asked.offset > top {
        return (held_from, false);
    }
    let wanted = asked.offset.saturating_add(1);
    if wanted >= held_from { (wanted, true) } else { (held_from, false) }
}

/// The envelope a member that asked for one receives instead of the bare message: the JSON text
/// `{"offset":N,"epoch":"E","data":"TEXT"}` for a text message, `{"offset":N,"epoch":"E","binary":"BASE64"}` for a
/// binary one.
pub fn envelope(position: &StreamPosition, frame: &Frame) -> Frame {
    let epoch = serde_json::Value::from(position.epoch.as_str());
    let text = match frame {
        Frame::Text(text) => {
            let data = serde_json::Value::from(text.as_str());
            format!(r#"{{"offset":{},"epoch":{epoch},"data":{data}}}"#, position.offset)
        }
        Frame::Binary(data) => {
            format!(r#"{{"offset":{},"epoch":{epoch},"binary":"{}"}}"#, position.offset, base64(data))
        }
        other => return other.clone(),
    };
    Frame::Text(text.into())
}

/// A kept message as JSON, for listings: `("text", "TEXT")` or `("binary", "BASE64")`.
pub fn message_json(frame: &Frame) -> (&'static str, serde_json::Value) {
    match frame {
        Frame::Binary(data) => ("binary", base64(data).into()),
        Frame::Text(text) => ("text", text.as_str().into()),
        _ => ("text", serde_json::Value::Null),
    }
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(offset: u64, epoch: &str) -> StreamPosition {
        StreamPosition { offset, epoch: epoch.into() }
    }

    #[test]
    fn a_position_continues_only_in_its_epoch_and_within_what_is_held() {
        // The stream holds 5..=9 in epoch e.
        assert_eq!(continue_from(None, 5, 9, "e"), (5, true));
        assert_eq!(continue_from(Some(&at(4, "e")), 5, 9, "e"), (5, true));
        assert_eq!(continue_from(Some(&at(7, "e")), 5, 9, "e"), (8, true));
        assert_eq!(continue_from(Some(&at(9, "e")), 5, 9, "e"), (10, true));
        assert_eq!(continue_from(Some(&at(3, "e")), 5, 9, "e"), (5, false), "6 was trimmed");
        assert_eq!(continue_from(Some(&at(7, "f")), 5, 9, "e"), (5, false), "another epoch");
        assert_eq!(continue_from(Some(&at(12, "e")), 5, 9, "e"), (5, false), "past the top");
        // An empty stream at top 9 (everything expired) continues 9 but not 8.
        assert_eq!(continue_from(Some(&at(9, "e")), 0, 9, "e"), (10, true));
        assert_eq!(continue_from(Some(&at(8, "e")), 0, 9, "e"), (10, false));
        assert_eq!(continue_from(Some(&at(0, "e")), 0, 0, "e"), (1, true));
    }

    #[test]
    fn the_envelope_is_json_with_the_text_escaped_and_binary_in_base64() {
        let text = envelope(&at(7, "ab\"c"), &Frame::Text("hi \"you\"\n".into()));
        let Frame::Text(text) = text else { panic!("not text") };
        let value: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
        assert_eq!(value, serde_json::json!({"offset": 7, "epoch": "ab\"c", "data": "hi \"you\"\n"}));
        let binary = envelope(&at(1, "e"), &Frame::Binary(vec![0, 1, 2, 0xff].into()));
        assert_eq!(binary, Frame::Text(r#"{"offset":1,"epoch":"e","binary":"AAEC/w=="}"#.into()));
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
