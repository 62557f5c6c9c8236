//! Outbound HTTP from handlers: the `wasi:http/outgoing-handler` import (wasmtime-wasi-http's implementation of the
//! interface, with its `send_request` hook handing every request to the host: [`HostServices::send_http`], which holds
//! it to the project's grants and quotas) and our `outbound-http` import (the whole request in one call, for the
//! JavaScript SDK), which goes the same way; the time a request takes is kept off the handler's clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use http_body_util::BodyExt as _;
use wasmsock_wire::descriptor::project_of;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::bindings::wasmsock::websockets::outbound_http as wit;
use super::services::{HostServices, HttpBodyError, HttpFailure};
use super::state::State;

/// The time a call spends with outbound HTTP requests in flight, given back to its deadline and wall-clock bound.
///
/// Counted as the union of the requests' spans (two at once count once) and credited when the last one in flight
/// ends, which is before the guest's wait for it returns. A guest that computes while its request is in flight is
/// still charged: the deadline is checked at every epoch tick while it runs, and the credit comes only afterwards.
/// What it can gain is the overlap of its last running stretch with the request (see the report of issue 30).
#[derive(Clone)]
pub(super) struct NetworkClock {
    /// Requests in flight and since when at least one has been.
    inflight: Arc<Mutex<(u32, Option<Instant>)>>,
    /// The call's time away from its deadline (shared with the epoch callback).
    yielded: Arc<AtomicU64>,
    /// The call's time away from its wall-clock bound.
    network: Arc<AtomicU64>,
}

impl NetworkClock {
    pub(super) fn new(yielded: Arc<AtomicU64>, network: Arc<AtomicU64>) -> Self {
        Self { inflight: Arc::default(), yielded, network }
    }

    fn enter(&self) -> InFlight {
        let mut inflight = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        if inflight.0 == 0 {
            inflight.1 = Some(Instant::now());
        }
        inflight.0 += 1;
        InFlight(self.clone())
    }
}

/// One request in flight; dropping it (the request ended, failed or was dropped by the guest) stops its clock.
struct InFlight(NetworkClock);

impl Drop for InFlight {
    fn drop(&mut self) {
        let clock = &self.0;
        let mut inflight = clock.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        inflight.0 = inflight.0.saturating_sub(1);
        if inflight.0 == 0
            && let Some(since) = inflight.1.take()
        {
            let nanos = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
            clock.yielded.fetch_add(nanos, Ordering::AcqRel);
            clock.network.fetch_add(nanos, Ordering::AcqRel);
        }
    }
}

/// The hooks of one instance's `wasi:http`: who is asking, and where its requests go.
pub(super) struct HttpHooks {
    pub(super) handler: Arc<str>,
    pub(super) services: Arc<dyn HostServices>,
    pub(super) clock: NetworkClock,
}

type Sent = Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>), HttpError>;

impl WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        drop(fut);
        // The guest's own timeouts are not used: the host's connect and total timeouts bound every request.
        let _ = options;
        let (parts, body) = request.into_parts();
        let body = body.map_err(|err| HttpBodyError(format!("{err:?}"))).boxed_unsync();
        let (method, uri) = (parts.method.clone(), parts.uri.clone());
        let handler = self.handler.clone();
        let pending = self.services.send_http(project_of(&handler), http::Request::from_parts(parts, body));
        let in_flight = self.clock.enter();
        Box::new(async move {
            let result = pending.await;
            drop(in_flight);
            match result {
                Ok(response) => {
                    tracing::debug!(handler = &*handler, %method, %uri, status = response.status().as_u16(), "outbound HTTP");
                    let response = response
                        .map(|body| http_body_util::Full::new(body).map_err(|never| match never {}).boxed_unsync());
                    let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> = Box::new(async { Ok(()) });
                    Ok((response, done))
                }
                Err(failure) => {
                    log_failure(&handler, &method, &uri, &failure);
                    Err(error_code(failure))
                }
            }
        })
    }
}

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

/// Logs why a request got no response: at warn when the host refused it, at debug when the network failed it.
fn log_failure(handler: &str, method: &http::Method, uri: &http::Uri, failure: &HttpFailure) {
    match failure {
        HttpFailure::Denied(_) | HttpFailure::AddressProhibited(_) | HttpFailure::Quota(_) => {
            tracing::warn!(handler, %method, %uri, "outbound HTTP refused: {failure}");
        }
        _ => tracing::debug!(handler, %method, %uri, "outbound HTTP failed: {failure}"),
    }
}

/// The `wasi:http` error code a failure reaches the guest as.
fn error_code(failure: HttpFailure) -> HttpError {
    match failure {
        HttpFailure::Denied(_) => HttpError::HttpRequestDenied,
        HttpFailure::AddressProhibited(_) => HttpError::DestinationIpProhibited,
        HttpFailure::Dns(text) => HttpError::DnsError { rcode: Some(text), info_code: None },
        HttpFailure::ConnectTimeout(_) => HttpError::ConnectionTimeout,
        HttpFailure::ConnectionRefused(_) => HttpError::ConnectionRefused,
        HttpFailure::Tls(text) if text.contains("certificate") => HttpError::TlsCertificateError,
        HttpFailure::Tls(_) => HttpError::TlsProtocolError,
        HttpFailure::Timeout(_) => HttpError::HttpResponseTimeout,
        HttpFailure::ResponseTooLarge(cap) => HttpError::HttpResponseBodySize(Some(cap)),
        HttpFailure::Quota(_) => HttpError::ConnectionLimitReached,
        HttpFailure::Protocol(_) => HttpError::HttpProtocolError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_counts_overlapping_requests_once_and_only_when_the_last_ends() {
        let (yielded, network) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let clock = NetworkClock::new(yielded.clone(), network.clone());
        let first = clock.enter();
        let second = clock.enter();
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(first);
        assert_eq!(yielded.load(Ordering::Acquire), 0, "credited while a request is still in flight");
        drop(second);
        let credited = yielded.load(Ordering::Acquire);
        assert!(credited >= 20_000_000, "{credited}");
        assert!(credited < 1_000_000_000, "{credited}");
        assert_eq!(network.load(Ordering::Acquire), credited);
    }

    #[test]
    fn failures_reach_the_guest_as_their_wasi_http_codes() {
        assert!(matches!(error_code(HttpFailure::Denied("x".into())), HttpError::HttpRequestDenied));
        assert!(matches!(error_code(HttpFailure::AddressProhibited("x".into())), HttpError::DestinationIpProhibited));
        assert!(matches!(error_code(HttpFailure::ResponseTooLarge(7)), HttpError::HttpResponseBodySize(Some(7))));
        assert!(matches!(error_code(HttpFailure::Quota("x".into())), HttpError::ConnectionLimitReached));
        assert!(matches!(
            error_code(HttpFailure::Timeout(std::time::Duration::from_secs(1))),
            HttpError::HttpResponseTimeout
        ));
    }
}
