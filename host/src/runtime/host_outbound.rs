//! The `outbound-http` import: a handler's whole request in one call (for the JavaScript SDK, whose engines cannot use
//! `wasi:http`), sent through the host exactly as a `wasi:http` request is (`host_http.rs`): the same grants and
//! checks, limits, logging and error codes, with the wait kept off the handler's clock and its execution slot given
//! away meanwhile.

use http_body_util::BodyExt as _;
use wasmsock_wire::descriptor::project_of;

use super::bindings::wasmsock::websockets::outbound_http as wit;
use super::host_http::{error_code, log_failure};
use super::state::State;

impl wit::Host for State {
    async fn send(&mut self, request: wit::Request) -> wasmtime::Result<Result<wit::Response, wit::HttpError>> {
        let request = match http_request(request) {
            Ok(request) => request,
            Err(detail) => return Ok(Err(wit::HttpError { code: "HttpRequestUriInvalid".into(), detail })),
        };
        let (method, uri) = (request.method().clone(), request.uri().clone());
        let handler = self.handler.clone();
        let pending = self.services.send_http(project_of(&handler), request);
        let in_flight = self.http_hooks.clock.enter();
        // Without its execution slot meanwhile, as a guest waiting in `wasi:io/poll` is.
        let result = match self.turn.clone() {
            Some(turn) => turn.away(pending).await,
            None => pending.await,
        };
        drop(in_flight);
        Ok(match result {
            Ok(response) => {
                tracing::debug!(handler = &*handler, %method, %uri, status = response.status().as_u16(), "outbound HTTP");
                let (parts, body) = response.into_parts();
                let headers =
                    parts.headers.iter().map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()));
                Ok(wit::Response { status: parts.status.as_u16(), headers: headers.collect(), body: body.to_vec() })
            }
            Err(failure) => {
                log_failure(&handler, &method, &uri, &failure);
                let detail = failure.to_string();
                let code = format!("{:?}", error_code(failure));
                // The code's name without what it carries (`DnsError(DnsErrorPayload { .. })` -> `DnsError`).
                let code = code.split(['(', ' ', '{']).next().unwrap_or_default().to_owned();
                Err(wit::HttpError { code, detail })
            }
        })
    }
}

/// `request` as the host sends it: an absolute URI, `content-length` declared for a body; or why it cannot be.
fn http_request(request: wit::Request) -> Result<http::Request<super::services::HttpRequestBody>, String> {
    let method = http::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| format!("{:?} is not an HTTP method", request.method))?;
    let uri: http::Uri = request.url.parse().map_err(|err| format!("{:?}: {err}", request.url))?;
    if uri.scheme().is_none() || uri.authority().is_none() {
        return Err(format!("{:?} is not an absolute http:// or https:// URL", request.url));
    }
    let mut builder = http::Request::builder().method(method).uri(uri);
    let mut has_length = false;
    for (name, value) in &request.headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("header name {name:?}"))?;
        let value = http::HeaderValue::from_bytes(value).map_err(|_| format!("the value of header {name}"))?;
        has_length |= name == http::header::CONTENT_LENGTH;
        builder = builder.header(name, value);
    }
    if !request.body.is_empty() && !has_length {
        builder = builder.header(http::header::CONTENT_LENGTH, request.body.len());
    }
    let body = http_body_util::Full::new(bytes::Bytes::from(request.body)).map_err(|never| match never {});
    builder.body(body.boxed_unsync()).map_err(|err| err.to_string())
}
