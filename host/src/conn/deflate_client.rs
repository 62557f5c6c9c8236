//! An outbound client's handshake offering permessage-deflate: the upgrade request with the host's offer
//! ([`CLIENT_OFFER`]), the server's 101 checked (its accept key and its answer, see `wasmsock_wire::deflate`), and the
//! socket handed to yawc as a [`Deflated`] one, with the bytes read past the answer handed on first (by its guard).

use anyhow::{Context as _, bail};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use wasmsock_wire::ConnLimits;
use wasmsock_wire::deflate::{CLIENT_OFFER, Compression, check_answer};

use super::deflated::{self, Deflated, Guarded};

/// The longest answer to an upgrade request read.
const MAX_ANSWER: usize = 16 << 10;

/// Upgrades `stream` with `request` (tungstenite's, with its key), offering permessage-deflate, and returns the socket.
pub async fn handshake<S>(
    mut stream: S,
    request: &Request,
    compression: Compression,
    limits: &ConnLimits,
    read_buffer: usize,
) -> anyhow::Result<Deflated<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let key = request.headers().get("sec-websocket-key").context("the request has no key")?;
    let expected = derive_accept_key(key.as_bytes());
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut head = format!("GET {target} HTTP/1.1\r\n");
    for (name, value) in request.headers() {
        let value = value.to_str().with_context(|| format!("request header {name}"))?;
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Sec-WebSocket-Extensions: {CLIENT_OFFER}\r\n\r\n"));
    stream.write_all(head.as_bytes()).await.context("sending the upgrade request")?;
    stream.flush().await.context("sending the upgrade request")?;

    let mut read = Vec::with_capacity(1024);
    let end = loop {
        if let Some(at) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if read.len() >= MAX_ANSWER {
            bail!("the server's answer is longer than {MAX_ANSWER} bytes");
        }
        let mut chunk = [0; 1024];
        let n = stream.read(&mut chunk).await.context("reading the server's answer")?;
        if n == 0 {
            bail!("the server closed the connection before answering the upgrade");
        }
        read.extend_from_slice(&chunk[..n]);
    };
    let answer = std::str::from_utf8(&read[..end]).context("the server's answer is not text")?;
    let mut lines = answer.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 101") {
        bail!("the server answered {status:?}, not 101 Switching Protocols");
    }
    let headers: Vec<(String, &str)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim()))
        .collect();
    let header = |wanted: &'static str| headers.iter().filter(move |(name, _)| name == wanted).map(|(_, value)| *value);
    if header("sec-websocket-accept").next() != Some(expected.as_str()) {
        bail!("the server's Sec-WebSocket-Accept does not match the key");
    }
    let extension = check_answer(header("sec-websocket-extensions")).map_err(anyhow::Error::msg)?;
    let leftover = Bytes::copy_from_slice(&read[end..]);
    let guarded = Guarded::with_prefix(stream, leftover);
    let handles = guarded.handles();
    let options = deflated::options(compression, limits, read_buffer);
    let socket =
        yawc::WebSocket::from_stream_with_extensions(guarded, yawc::Role::Client, extension.as_deref(), options)
            .context("starting the compressed socket")?;
    Ok(Deflated::new(socket, handles))
}

#[cfg(test)]
mod tests {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

    use super::*;

    /// A server on the other end of a pipe: reads the request, answers with `extensions` (and a wrong key when
    /// `bad_key`), then sends one uncompressed text frame in the same write as the answer.
    async fn answer(server: &mut tokio::io::DuplexStream, extensions: Option<&str>, bad_key: bool) -> String {
        let mut request = Vec::new();
        while !request.ends_with(b"\r\n\r\n") {
            request.push(server.read_u8().await.unwrap_or(b'\n'));
        }
        let request = String::from_utf8_lossy(&request).into_owned();
        let key = request.lines().find_map(|l| l.strip_prefix("sec-websocket-key: ")).unwrap_or_default();
        let accept = if bad_key { "nope".to_owned() } else { derive_accept_key(key.trim().as_bytes()) };
        let ext = extensions.map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n")).unwrap_or_default();
        let mut reply =
            format!("HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: {accept}\r\n{ext}\r\n").into_bytes();
        reply.extend_from_slice(b"\x81\x02hi");
        server.write_all(&reply).await.unwrap_or_default();
        request
    }

    async fn connect(extensions: Option<&'static str>, bad_key: bool) -> (anyhow::Result<String>, String) {
        let (client, mut server) = tokio::io::duplex(4096);
        let request = "ws://example.test/x?y=1".into_client_request().unwrap_or_else(|_| unreachable!());
        let limits = wasmsock_wire::Limits::default().for_conn(None);
        let server = tokio::spawn(async move { answer(&mut server, extensions, bad_key).await });
        let result = handshake(client, &request, Compression::default(), &limits, 4096).await;
        let sent = server.await.unwrap_or_default();
        let first = match result {
            Ok(mut socket) => match futures_util::StreamExt::next(&mut socket).await {
                Some(Ok(wasmsock_wire::Frame::Text(text))) => Ok(text.as_str().to_owned()),
                other => Ok(format!("{other:?}")),
            },
            Err(err) => Err(err),
        };
        (first, sent)
    }

    #[tokio::test]
    async fn the_offer_is_sent_and_the_frames_after_the_answer_are_read() {
        let (first, sent) = connect(Some("permessage-deflate; client_max_window_bits=12"), false).await;
        assert!(sent.starts_with("GET /x?y=1 HTTP/1.1\r\n"), "{sent}");
        assert!(sent.contains("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"), "{sent}");
        assert_eq!(first.ok().as_deref(), Some("hi"), "the frame read with the answer");
        let (first, _) = connect(None, false).await;
        assert_eq!(first.ok().as_deref(), Some("hi"), "declined: uncompressed");
    }

    #[tokio::test]
    async fn a_wrong_key_or_an_answer_the_client_cannot_honour_fails() {
        let (first, _) = connect(None, true).await;
        assert!(first.is_err_and(|e| e.to_string().contains("Sec-WebSocket-Accept")));
        let (first, _) = connect(Some("permessage-deflate; client_max_window_bits=8"), false).await;
        assert!(first.is_err_and(|e| e.to_string().contains("cannot honour")));
    }
}
