//! A raw HTTP/1.1 server on 127.0.0.1 port 0 for the outbound HTTP tests: echoes what it was asked, answers big, late
//! or never, over TLS when asked, and counts the connections it accepted.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// What the local server does with a request.
#[derive(Clone, Copy)]
pub enum Mode {
    /// `200` with the body `METHOD PATH BODY`.
    Echo,
    /// `200` with the body `METHOD PATH x-recorder=VALUE BODY` (the request's `x-recorder` header, `-` when absent).
    EchoHeader,
    /// `200` with a body of this many `x`.
    Big(usize),
    /// Reads the request and answers `200 late` after this long.
    Late(Duration),
    /// Reads the request and never answers.
    Silent,
}

/// A raw HTTP/1.1 server on 127.0.0.1 port 0; counts the connections it accepted.
pub struct Server {
    pub port: u16,
    accepted: Arc<AtomicUsize>,
}

impl Server {
    pub async fn start(mode: Mode) -> Self {
        Self::start_with(mode, None).await
    }

    /// The server over TLS with `tls` (its certificate and key): `https://`.
    pub async fn start_tls(mode: Mode, tls: Arc<rustls::ServerConfig>) -> Self {
        Self::start_with(mode, Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn start_with(mode: Mode, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                match tls.clone() {
                    None => drop(tokio::spawn(serve(stream, mode))),
                    Some(acceptor) => drop(tokio::spawn(async move {
                        // A client that refuses the certificate ends the handshake: nothing to serve.
                        if let Ok(stream) = acceptor.accept(stream).await {
                            serve(stream, mode).await;
                        }
                    })),
                }
            }
        });
        Self { port, accepted }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Serves requests on one connection (keep-alive) until it closes.
async fn serve(mut stream: impl AsyncRead + AsyncWrite + Unpin, mode: Mode) {
    let mut buffer = Vec::new();
    loop {
        let (head, body) = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                let length = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .map_or(0, |v| v.parse::<usize>().unwrap());
                if buffer.len() >= end + 4 + length {
                    let body = buffer[end + 4..end + 4 + length].to_vec();
                    buffer.drain(..end + 4 + length);
                    break (head, body);
                }
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let mut words = head.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let body = match mode {
            Mode::Echo => format!("{method} {path} {}", String::from_utf8_lossy(&body)).into_bytes(),
            Mode::EchoHeader => {
                let header = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("x-recorder:").map(|v| v.trim().to_owned()))
                    .unwrap_or_else(|| "-".to_owned());
                format!("{method} {path} x-recorder={header} {}", String::from_utf8_lossy(&body)).into_bytes()
            }
            Mode::Big(n) => vec![b'x'; n],
            Mode::Late(delay) => {
                tokio::time::sleep(delay).await;
                b"late".to_vec()
            }
            Mode::Silent => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
        };
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: text/plain\r\n\r\n", body.len());
        if stream.write_all(head.as_bytes()).await.is_err() || stream.write_all(&body).await.is_err() {
            return;
        }
    }
}
