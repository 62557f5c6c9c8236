//! Outbound HTTP from a handler, over `wasi:http/outgoing-handler`: [`get`], [`post`] and [`request`] send one
//! request and wait for the whole response. The host sends it only to destinations the endpoint's
//! `allowed-outbound-hosts` grant (`http://` and `https://` grants) and within its timeouts and caps; a refusal comes
//! back as an [`Error::Http`] naming the `wasi:http` error code (`HttpRequestDenied`, `DestinationIpProhibited`,
//! `HttpResponseBodySize`, `HttpResponseTimeout`, `ConnectionLimitReached`, ...).
//!
//! ```ignore
//! match wasmsock_sdk::http::get("http://127.0.0.1:8080/status") {
//!     Ok(response) => websockets::send(&format!("{} {}", response.status, response.text())),
//!     Err(err) => websockets::send(&format!("error {err}")),
//! };
//! ```

use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;

/// A response: its status, its headers in order, and its whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The headers as received (names lower-case).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text, with invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first value of header `name` (any case), as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
    }
}

/// Why a request got no response.
#[derive(Debug, Clone)]
pub enum Error {
    /// The URL is not `http://` or `https://` followed by a host.
    Url(String),
    /// A header name or value is not allowed.
    Header(String),
    /// The host or the server refused or failed the request (the `wasi:http` error code).
    Http(ErrorCode),
    /// The request or response body broke off.
    Body(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Url(why) => write!(f, "bad URL: {why}"),
            Self::Header(why) => write!(f, "bad header: {why}"),
            // The code's name as the WIT variant's (`HttpRequestDenied`), without the type wasip2's Debug puts before it.
            Self::Http(code) => {
                let name = format!("{code:?}");
                f.write_str(name.strip_prefix("ErrorCode::").unwrap_or(&name))
            }
            Self::Body(why) => write!(f, "body failed: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, Error> {
    request("GET", url, &[], &[])
}

/// `POST url` with `headers` and `body`.
pub fn post(url: &str, headers: &[(&str, &[u8])], body: &[u8]) -> Result<Response, Error> {
    request("POST", url, headers, body)
}

/// Sends one request (`method` is any HTTP method, e.g. `"PUT"`) and waits for the whole response.
pub fn request(method: &str, url: &str, headers: &[(&str, &[u8])], body: &[u8]) -> Result<Response, Error> {
    let (scheme, authority, path) = split_url(url)?;
    let fields = Fields::new();
    for (name, value) in headers {
        fields.append(name, value).map_err(|err| Error::Header(format!("{name}: {err:?}")))?;
    }
    // The body's length is known: declared, so it goes out with `content-length` rather than chunked (which some
    // servers refuse), unless the caller declared it.
    if !body.is_empty() && !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-length")) {
        let length = body.len().to_string();
        fields
            .append("content-length", length.as_bytes())
            .map_err(|err| Error::Header(format!("content-length: {err:?}")))?;
    }
    let outgoing = OutgoingRequest::new(fields);
    let unsupported = |what: &str| Error::Url(format!("the host does not accept this {what}"));
    outgoing.set_method(&method_of(method)).map_err(|()| unsupported("method"))?;
    outgoing.set_scheme(Some(&scheme)).map_err(|()| unsupported("scheme"))?;
    outgoing.set_authority(Some(authority)).map_err(|()| unsupported("authority"))?;
    outgoing.set_path_with_query(Some(path)).map_err(|()| unsupported("path"))?;
    let outgoing_body = outgoing.body().map_err(|()| Error::Body("no request body".into()))?;
    // Sent first, then the body written: the host reads the body as it sends it.
    let pending = outgoing_handler::handle(outgoing, None).map_err(Error::Http)?;
    if !body.is_empty() {
        let stream = outgoing_body.write().map_err(|()| Error::Body("no request body stream".into()))?;
        for chunk in body.chunks(4096) {
            stream.blocking_write_and_flush(chunk).map_err(|err| Error::Body(format!("{err:?}")))?;
        }
        drop(stream);
    }
    OutgoingBody::finish(outgoing_body, None).map_err(Error::Http)?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(Error::Http(code)),
        Some(Err(())) | None => return Err(Error::Body("the response was already taken".into())),
    };
    let status = response.status();
    let headers = response.headers().entries();
    let incoming = response.consume().map_err(|()| Error::Body("no response body".into()))?;
    let stream = incoming.stream().map_err(|()| Error::Body("no response body stream".into()))?;
    let mut read = Vec::new();
    loop {
        match stream.blocking_read(64 << 10) {
            Ok(bytes) => read.extend_from_slice(&bytes),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(err)) => return Err(Error::Body(err.to_debug_string())),
        }
    }
    drop(stream);
    let _ = IncomingBody::finish(incoming);
    Ok(Response { status, headers, body: read })
}

fn method_of(method: &str) -> Method {
    match method.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_owned()),
    }
}

/// `scheme://authority/path?query` into its parts (the host parses the URI again before it checks it).
fn split_url(url: &str) -> Result<(Scheme, &str, &str), Error> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| Error::Url(format!("{url:?} has no scheme")))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => return Err(Error::Url(format!("scheme {other:?} is not http or https"))),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() {
        return Err(Error::Url(format!("{url:?} has no host")));
    }
    let path = path.split('#').next().unwrap_or("");
    let path = if path.is_empty() { "/" } else { path };
    Ok((scheme, authority, path))
}
