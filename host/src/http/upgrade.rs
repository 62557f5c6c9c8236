//! The upgrade of an endpoint's connection: the handshake checked and answered by the host (the subprotocol, and for a
//! compressing endpoint the permessage-deflate answer, see `wasmsock_wire::deflate`), then the upgraded socket handed
//! to yawc as a [`Deflated`] socket (compressing endpoints) or to tungstenite (the others), whose messages are the
//! host's frames with no conversion (BENCHMARKS.md, round twelve: axum's text type took a UTF-8 check per frame
//! written and another per frame read).

use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use wasmsock_wire::ConnLimits;
use wasmsock_wire::deflate::{Compression, negotiate};

use crate::conn::deflated::{self, Deflated, Guarded};

/// The socket a compressing endpoint's session runs on.
pub type Socket = Deflated<TokioIo<hyper::upgrade::Upgraded>>;

/// The socket the other endpoints' sessions run on.
pub type PlainSocket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// An upgrade request that passed the checks, with what the answer says.
#[derive(Debug)]
pub struct Handshake {
    on_upgrade: OnUpgrade,
    accept: String,
    /// The subprotocol chosen: the endpoint's most preferred (first listed) that the client also offers.
    pub protocol: Option<String>,
    /// The `permessage-deflate` answer, when the client offered one the host can honour.
    pub extension: Option<String>,
}

/// Checks an upgrade request (RFC 6455 4.2.1) and chooses its subprotocol among `protocols` and its compression; the
/// refusal is the status and text to answer with.
pub fn handshake(parts: &mut Parts, protocols: &[String]) -> Result<Handshake, (StatusCode, String)> {
    let headers = &parts.headers;
    let bad = |what: &str| (StatusCode::BAD_REQUEST, format!("not a WebSocket upgrade: {what}"));
    if !has_token(headers, &header::CONNECTION, "upgrade") {
        return Err(bad("`Connection` has no `upgrade`"));
    }
    if !has_token(headers, &header::UPGRADE, "websocket") {
        return Err(bad("`Upgrade` is not `websocket`"));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        return Err(bad("`Sec-WebSocket-Version` is not 13"));
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY).ok_or_else(|| bad("no `Sec-WebSocket-Key`"))?;
    let accept = derive_accept_key(key.as_bytes());
    let protocol = protocols
        .iter()
        .find(|spoken| {
            values(headers, &header::SEC_WEBSOCKET_PROTOCOL)
                .flat_map(|value| value.split(','))
                .any(|offered| offered.trim() == spoken.as_str())
        })
        .cloned();
    let extension = negotiate(values(headers, &header::SEC_WEBSOCKET_EXTENSIONS));
    let on_upgrade = parts
        .extensions
        .remove::<OnUpgrade>()
        .ok_or_else(|| (StatusCode::UPGRADE_REQUIRED, "this connection cannot be upgraded".to_owned()))?;
    Ok(Handshake { on_upgrade, accept, protocol, extension })
}

impl Handshake {
    /// The 101 answer, and the future of the session's socket once the answer is sent.
    pub fn accept(
        self,
        compression: Compression,
        limits: &ConnLimits,
        read_buffer: usize,
    ) -> (Response, impl Future<Output = anyhow::Result<Socket>> + Send + 'static) {
        let response = switching(self.accept, self.protocol, self.extension.clone());
        let options = deflated::options(compression, limits, read_buffer);
        let (on_upgrade, extension) = (self.on_upgrade, self.extension);
        let socket = async move {
            use anyhow::Context as _;
            let upgraded = on_upgrade.await.context("the upgrade did not complete")?;
            // Only a connection that compresses has the host frame its messages.
            let io = TokioIo::new(upgraded);
            let guarded = if extension.is_some() { Guarded::server(io) } else { Guarded::new(io) };
            let handles = guarded.handles();
            let socket = yawc::WebSocket::from_stream_with_extensions(
                guarded,
                yawc::Role::Server,
                extension.as_deref(),
                options,
            )
            .context("starting the compressed socket")?;
            Ok(Deflated::server(socket, handles, compression, extension.as_deref()))
        };
        (response, socket)
    }

    /// The 101 answer of an endpoint that does not compress (any permessage-deflate offer is declined by not answering
    /// it), and the future of the session's tungstenite socket once the answer is sent.
    pub fn accept_plain(
        self,
        limits: &ConnLimits,
        read_buffer: usize,
    ) -> (Response, impl Future<Output = anyhow::Result<PlainSocket>> + Send + 'static) {
        let response = switching(self.accept, self.protocol, None);
        let config = WebSocketConfig::default()
            .read_buffer_size(read_buffer)
            .max_message_size(Some(limits.max_message_size))
            .max_frame_size(Some(limits.max_frame_size));
        let on_upgrade = self.on_upgrade;
        let socket = async move {
            use anyhow::Context as _;
            let upgraded = on_upgrade.await.context("the upgrade did not complete")?;
            Ok(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await)
        };
        (response, socket)
    }
}

/// The 101 answer with the accept key, and the subprotocol and extension chosen, if any.
fn switching(accept: String, protocol: Option<String>, extension: Option<String>) -> Response {
    let mut response = Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let values = [
        (header::SEC_WEBSOCKET_ACCEPT, Some(accept)),
        (header::SEC_WEBSOCKET_PROTOCOL, protocol),
        (header::SEC_WEBSOCKET_EXTENSIONS, extension),
    ];
    for (name, value) in values {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(name, value);
        }
    }
    response
}

/// Every value of header `name` that is text.
fn values<'a>(headers: &'a HeaderMap, name: &header::HeaderName) -> impl Iterator<Item = &'a str> {
    headers.get_all(name).iter().filter_map(|value| value.to_str().ok())
}

/// Whether a comma-separated header has `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: &header::HeaderName, token: &str) -> bool {
    values(headers, name).flat_map(|v| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut request = axum::http::Request::builder().uri("/websockets/service/e");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (mut parts, ()) = request.body(()).map(|r| r.into_parts()).unwrap_or_else(|_| unreachable!());
        parts.extensions.insert(hyper::upgrade::on(axum::http::Request::new(())));
        parts
    }

    const UPGRADE: [(&str, &str); 4] = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn a_browser_handshake_gets_its_accept_key_subprotocol_and_deflate_answer() {
        let mut headers = UPGRADE.to_vec();
        headers.push(("sec-websocket-protocol", "v2, chat"));
        headers.push(("sec-websocket-extensions", "permessage-deflate; client_max_window_bits"));
        let handshake = handshake(&mut parts(&headers), &["chat".into(), "v2".into()]).unwrap();
        assert_eq!(handshake.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(handshake.protocol.as_deref(), Some("chat"), "the endpoint's first that the client offers");
        let extension = handshake.extension.as_deref().unwrap_or_default();
        assert!(extension.contains("server_no_context_takeover") && extension.ends_with("client_max_window_bits=15"));
        let (response, _socket) =
            handshake.accept(Compression::default(), &wasmsock_wire::Limits::default().for_conn(None), 1024);
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(response.headers().get(header::SEC_WEBSOCKET_PROTOCOL).map(|v| v.as_bytes()), Some(&b"chat"[..]));
        assert!(response.headers().contains_key(header::SEC_WEBSOCKET_EXTENSIONS));
    }

    #[test]
    fn no_offer_no_deflate_and_a_request_that_is_no_upgrade_is_refused() {
        let handshake = handshake(&mut parts(&UPGRADE), &[]).unwrap();
        assert_eq!((handshake.protocol, handshake.extension), (None, None));
        for missing in 0..UPGRADE.len() {
            let headers: Vec<_> = UPGRADE.iter().enumerate().filter(|(i, _)| *i != missing).map(|(_, h)| *h).collect();
            let (status, text) = super::handshake(&mut parts(&headers), &[]).unwrap_err();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        }
    }
}
