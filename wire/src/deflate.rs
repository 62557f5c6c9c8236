//! permessage-deflate (RFC 7692) as the host speaks it: an endpoint's `"compression"` setting and the server's answer
//! to a client's offers. Pure: the socket library compresses with what is chosen here.
//!
//! The host always asks for no context takeover both ways: a compressor then holds no state between messages, so an
//! idle compressed connection keeps none (the states live in one pool per process while a message is being compressed
//! or inflated; see [`crate::limits::DEFAULT_COMPRESSED_IDLE_BYTES`]).

use crate::limits::{DEFAULT_COMPRESSION_LEVEL, DEFAULT_COMPRESSION_THRESHOLD};

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// The largest LZ77 window the host compresses or inflates with (RFC 7692 allows 8-15; the library takes 9-15).
pub const MAX_WINDOW_BITS: u8 = 15;

/// The smallest window an offer may ask the host for. The library cannot compress with 8 bits (it would use 9, which a
/// peer that asked for 8 may reject), so such an offer is declined and the next one tried.
pub const MIN_WINDOW_BITS: u8 = 9;

/// How an endpoint compresses: the descriptor's `"compression"` (`true`, `false` or `{ "level": n, "threshold": n }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    /// The deflate level, 1 (fastest) to 9 (smallest); see [`DEFAULT_COMPRESSION_LEVEL`].
    pub level: u32,
    /// Messages shorter than this many bytes are sent uncompressed; see [`DEFAULT_COMPRESSION_THRESHOLD`].
    pub threshold: usize,
}

impl Default for Compression {
    fn default() -> Self {
        Self { level: DEFAULT_COMPRESSION_LEVEL, threshold: DEFAULT_COMPRESSION_THRESHOLD }
    }
}

/// The descriptor's `"compression"`: off, or on with its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub enum CompressionSetting {
    /// `false`: never negotiated, whatever the host default.
    Off,
    /// `true` or an object: negotiated with clients that offer it.
    On(Compression),
}

impl CompressionSetting {
    /// The settings when on.
    pub fn enabled(self) -> Option<Compression> {
        match self {
            CompressionSetting::Off => None,
            CompressionSetting::On(compression) => Some(compression),
        }
    }
}

impl serde::Serialize for CompressionSetting {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        match self {
            CompressionSetting::Off => serializer.serialize_bool(false),
            CompressionSetting::On(c) => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("level", &c.level)?;
                map.serialize_entry("threshold", &c.threshold)?;
                map.end()
            }
        }
    }
}

impl TryFrom<serde_json::Value> for CompressionSetting {
    type Error = String;

    /// Parses the descriptor spelling; the error names the field, which serde's own would not.
    fn try_from(value: serde_json::Value) -> Result<Self, Self::Error> {
        use serde_json::Value;
        let object = match value {
            Value::Bool(false) => return Ok(CompressionSetting::Off),
            Value::Bool(true) => return Ok(CompressionSetting::On(Compression::default())),
            Value::Object(object) => object,
            other => {
                return Err(format!(
                    "field `compression`: {other} is not true, false or an object {{ \"level\": 1-9, \"threshold\": bytes }}"
                ));
            }
        };
        let mut compression = Compression::default();
        for (key, value) in object {
            let number = value.as_u64();
            match (key.as_str(), number) {
                ("level", Some(level @ 1..=9)) => compression.level = level as u32,
                ("level", _) => return Err(format!("field `compression.level`: {value} is not a level from 1 to 9")),
                ("threshold", Some(bytes)) => {
                    compression.threshold = usize::try_from(bytes)
                        .map_err(|_| format!("field `compression.threshold`: {bytes} is too large"))?;
                }
                ("threshold", None) => {
                    return Err(format!("field `compression.threshold`: {value} is not a number of bytes"));
                }
                (other, _) => {
                    return Err(format!(
                        "field `compression`: unknown option {other:?} (known: \"level\", \"threshold\")"
                    ));
                }
            }
        }
        Ok(CompressionSetting::On(compression))
    }
}

/// The server's answer to a client's `Sec-WebSocket-Extensions` (every header value, in order): the
/// `permessage-deflate` response for the first offer the host can honour, or none (the connection is not compressed).
///
/// The answer always has `server_no_context_takeover` and `client_no_context_takeover`. It has `server_max_window_bits`
/// when the offer asked for it, and `client_max_window_bits` when the offer allowed it (the client's value, or
/// [`MAX_WINDOW_BITS`] for a bare one). An offer is declined if it has a parameter twice, an unknown parameter, or a
/// window outside [`MIN_WINDOW_BITS`]..=[`MAX_WINDOW_BITS`]; other extensions are ignored.
pub fn negotiate<'a>(header_values: impl IntoIterator<Item = &'a str>) -> Option<String> {
    header_values.into_iter().flat_map(|value| value.split(',')).find_map(answer)
}

/// The answer to one offer, when it is a `permessage-deflate` one the host can honour.
fn answer(offer: &str) -> Option<String> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(PERMESSAGE_DEFLATE) {
        return None;
    }
    let (mut server_bits, mut client_bits) = (None, None);
    let mut seen: Vec<String> = Vec::new();
    for part in parts {
        let (name, value) = match part.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (part, None),
        };
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return None;
        }
        match (name.as_str(), value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
            ("server_max_window_bits", Some(value)) => server_bits = Some(window_bits(value)?),
            ("client_max_window_bits", None) => client_bits = Some(MAX_WINDOW_BITS),
            ("client_max_window_bits", Some(value)) => client_bits = Some(window_bits(value)?),
            _ => return None,
        }
        seen.push(name);
    }
    let mut response = String::from(PERMESSAGE_DEFLATE);
    response.push_str("; server_no_context_takeover; client_no_context_takeover");
    if let Some(bits) = server_bits {
        response.push_str(&format!("; server_max_window_bits={bits}"));
    }
    if let Some(bits) = client_bits {
        response.push_str(&format!("; client_max_window_bits={bits}"));
    }
    Some(response)
}

/// The window a server compresses with under the extension it answered ([`negotiate`]): its
/// `server_max_window_bits`, or [`MAX_WINDOW_BITS`] when the client did not ask for a smaller one.
pub fn server_window_bits(answer: &str) -> u8 {
    answer
        .split(';')
        .filter_map(|part| part.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("server_max_window_bits"))
        .and_then(|(_, value)| window_bits(value.trim().trim_matches('"')))
        .unwrap_or(MAX_WINDOW_BITS)
}

/// What an outbound client offers: one `permessage-deflate` offer letting the server choose the client's window (a
/// server that wants a smaller one can only say so when the offer has `client_max_window_bits`; Autobahn 13.3-13.6).
pub const CLIENT_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// Checks a server's answer to [`CLIENT_OFFER`] (the `Sec-WebSocket-Extensions` values of its 101) and returns the
/// extension the client runs with, or why the connection must fail (RFC 7692 5: an answer the client cannot honour).
/// `Ok(None)`: the server declined compression. The client always compresses without context takeover (which it may
/// do unasked), so the answer returned always has `client_no_context_takeover`.
pub fn check_answer<'a>(header_values: impl IntoIterator<Item = &'a str>) -> Result<Option<String>, String> {
    let answers: Vec<&str> = header_values.into_iter().flat_map(|v| v.split(',')).map(str::trim).collect();
    let answer = match answers.as_slice() {
        [] => return Ok(None),
        [answer] => *answer,
        _ => return Err(format!("the server answered {} extensions to one offer", answers.len())),
    };
    let mut parts = answer.split(';').map(str::trim);
    if !parts.next().is_some_and(|name| name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE)) {
        return Err(format!("the server answered an extension it was not offered: {answer:?}"));
    }
    let mut seen: Vec<String> = Vec::new();
    let (mut server_no_context, mut server_bits, mut client_bits) = (false, None, None);
    for part in parts {
        let (name, value) = match part.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (part, None),
        };
        let name = name.to_ascii_lowercase();
        let bad =
            || format!("the server's permessage-deflate answer has a parameter the client cannot honour: {part:?}");
        if seen.contains(&name) {
            return Err(bad());
        }
        match (name.as_str(), value) {
            ("server_no_context_takeover", None) => server_no_context = true,
            ("client_no_context_takeover", None) => {}
            // Any window the server compresses with can be inflated with the largest.
            ("server_max_window_bits", Some(value)) => {
                let bits: u8 = value.parse().ok().filter(|b| (8..=MAX_WINDOW_BITS).contains(b)).ok_or_else(bad)?;
                server_bits = Some(bits.max(MIN_WINDOW_BITS));
            }
            ("client_max_window_bits", Some(value)) => client_bits = Some(window_bits(value).ok_or_else(bad)?),
            _ => return Err(bad()),
        }
        seen.push(name);
    }
    let mut extension = String::from(PERMESSAGE_DEFLATE);
    if server_no_context {
        extension.push_str("; server_no_context_takeover");
    }
    extension.push_str("; client_no_context_takeover");
    if let Some(bits) = server_bits {
        extension.push_str(&format!("; server_max_window_bits={bits}"));
    }
    if let Some(bits) = client_bits {
        extension.push_str(&format!("; client_max_window_bits={bits}"));
    }
    Ok(Some(extension))
}

/// A window-bits value the host can honour: digits only, from [`MIN_WINDOW_BITS`] to [`MAX_WINDOW_BITS`].
fn window_bits(value: &str) -> Option<u8> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|bits| (MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    #[test]
    fn a_browser_offer_gets_no_context_takeover_and_the_full_client_window() {
        let answer = negotiate(["permessage-deflate; client_max_window_bits"]);
        assert_eq!(answer.as_deref(), Some(&*format!("{BOTH}; client_max_window_bits=15")));
        assert_eq!(negotiate(["permessage-deflate"]).as_deref(), Some(BOTH), "no window parameter unless offered");
    }

    #[test]
    fn the_server_compresses_with_the_window_it_answered() {
        let answer = |offer: &str| negotiate([offer]).unwrap_or_default();
        assert_eq!(server_window_bits(&answer("permessage-deflate; server_max_window_bits=10")), 10);
        assert_eq!(server_window_bits(&answer("permessage-deflate; client_max_window_bits=9")), MAX_WINDOW_BITS);
        assert_eq!(server_window_bits(&answer("permessage-deflate")), MAX_WINDOW_BITS);
    }

    #[test]
    fn window_bits_asked_for_are_honoured_and_unusable_ones_decline_the_offer() {
        let answer = negotiate(["permessage-deflate; server_max_window_bits=10; client_max_window_bits=12"]);
        assert_eq!(answer.as_deref(), Some(&*format!("{BOTH}; server_max_window_bits=10; client_max_window_bits=12")));
        assert_eq!(
            negotiate(["permessage-deflate; server_max_window_bits=\"11\""]).as_deref().map(|a| a.ends_with("=11")),
            Some(true)
        );
        for bad in [
            "server_max_window_bits=8",
            "server_max_window_bits=16",
            "server_max_window_bits",
            "client_max_window_bits=x",
            "client_max_window_bits=8",
        ] {
            assert_eq!(negotiate([&*format!("permessage-deflate; {bad}")]), None, "{bad}");
        }
    }

    #[test]
    fn the_first_offer_that_can_be_honoured_wins_across_lists_and_header_lines() {
        // Autobahn 13.7: several offers in one header, the first one not usable.
        let list = "permessage-deflate; server_max_window_bits=8, permessage-deflate; client_no_context_takeover, permessage-deflate";
        assert_eq!(negotiate([list]).as_deref(), Some(BOTH));
        let lines = ["x-webkit-deflate-frame", "permessage-deflate; server_max_window_bits=9"];
        assert_eq!(negotiate(lines).as_deref(), Some(&*format!("{BOTH}; server_max_window_bits=9")));
    }

    #[test]
    fn unknown_or_repeated_parameters_decline_and_other_extensions_are_ignored() {
        assert_eq!(negotiate(["permessage-deflate; foo"]), None);
        assert_eq!(negotiate(["permessage-deflate; client_no_context_takeover; client_no_context_takeover"]), None);
        assert_eq!(negotiate(["permessage-deflate; server_no_context_takeover=1"]), None);
        assert_eq!(negotiate(["x-custom, permessage-foo"]), None);
        assert_eq!(negotiate(Vec::<&str>::new()), None);
    }

    #[test]
    fn a_client_takes_the_answers_it_can_honour_and_fails_on_the_others() {
        assert_eq!(check_answer(Vec::<&str>::new()), Ok(None), "declined");
        assert_eq!(
            check_answer(["permessage-deflate"]),
            Ok(Some("permessage-deflate; client_no_context_takeover".to_owned())),
            "the client drops its context whatever the server says"
        );
        assert_eq!(
            check_answer(["permessage-deflate; server_no_context_takeover; server_max_window_bits=8; client_max_window_bits=9"]),
            Ok(Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=9"
                    .to_owned()
            )),
            "an 8-bit server window is inflated with 9 bits"
        );
        for bad in [
            "permessage-deflate; client_max_window_bits=8",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; foo",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "x-webkit-deflate-frame",
            "permessage-deflate, permessage-deflate",
        ] {
            assert!(check_answer([bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_descriptor_field_takes_a_flag_or_options_and_names_itself_when_wrong() {
        let parse = |text: &str| serde_json::from_str::<CompressionSetting>(text).map_err(|e| e.to_string());
        assert_eq!(parse("false"), Ok(CompressionSetting::Off));
        assert_eq!(parse("true"), Ok(CompressionSetting::On(Compression::default())));
        assert_eq!(parse("{\"level\": 6}"), Ok(CompressionSetting::On(Compression { level: 6, ..Default::default() })));
        assert_eq!(
            parse("{\"threshold\": 0}"),
            Ok(CompressionSetting::On(Compression { threshold: 0, ..Default::default() }))
        );
        for (bad, names) in [
            ("\"yes\"", "field `compression`"),
            ("{\"level\": 10}", "field `compression.level`"),
            ("{\"threshold\": -1}", "field `compression.threshold`"),
            ("{\"window\": 9}", "unknown option \"window\""),
        ] {
            let err = parse(bad).err().unwrap_or_default();
            assert!(err.contains(names), "{bad}: {err}");
        }
        let json = serde_json::to_string(&CompressionSetting::On(Compression::default())).unwrap_or_default();
        assert_eq!(
            json,
            format!("{{\"level\":{DEFAULT_COMPRESSION_LEVEL},\"threshold\":{DEFAULT_COMPRESSION_THRESHOLD}}}")
        );
    }
}
