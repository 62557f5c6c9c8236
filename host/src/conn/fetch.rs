//! Handlers' outbound HTTP requests (`wasi:http`): each is checked against its project's grants on the URI as it will
//! be connected, its host resolved here and every address checked (an inside address only when granted by itself),
//! then sent over a socket opened to the checked address (so DNS cannot change between check and connect), with
//! TLS from the host's outbound roots, a connect and a total timeout, a response cap and a quota per project.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmsock_wire::limits::HttpLimits;
use wasmsock_wire::outbound::{AllowList, Destination};

use crate::runtime::{HttpFailure, HttpFuture, HttpRequestBody};

/// Sends handlers' outbound HTTP requests for every project of a host.
pub struct Fetcher {
    limits: HttpLimits,
    tls: tokio_rustls::TlsConnector,
    /// Each project's requests in flight (a permit per request).
    quotas: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl Fetcher {
    /// A fetcher with these limits, verifying `https` servers with `tls` (the roots outbound `wss://` uses).
    pub fn new(limits: HttpLimits, tls: Arc<rustls::ClientConfig>) -> Self {
        Self { limits, tls: tokio_rustls::TlsConnector::from(tls), quotas: Mutex::default() }
    }

    /// Sends `request` for `project` if `grants` admit it: the response with its whole body, or why not.
    pub fn send(&self, project: &str, grants: AllowList, request: http::Request<HttpRequestBody>) -> HttpFuture {
        let dest = match grants.check_http(request.uri()) {
            Ok(dest) => dest,
            Err(reason) => return Box::pin(std::future::ready(Err(HttpFailure::Denied(reason)))),
        };
        let permit = match self.permit(project) {
            Ok(permit) => permit,
            Err(failure) => return Box::pin(std::future::ready(Err(failure))),
        };
        let (limits, tls) = (self.limits, self.tls.clone());
        Box::pin(async move {
            let exchange = exchange(limits, tls, grants, dest, request);
            let result = match tokio::time::timeout(limits.timeout, exchange).await {
                Ok(result) => result,
                Err(_) => Err(HttpFailure::Timeout(limits.timeout)),
            };
            drop(permit);
            result
        })
    }

    /// A place among `project`'s requests in flight, or the quota refusal.
    fn permit(&self, project: &str) -> Result<OwnedSemaphorePermit, HttpFailure> {
        let quota = self.limits.project_requests;
        let semaphore = {
            let mut quotas = self.quotas.lock().unwrap_or_else(PoisonError::into_inner);
            quotas.entry(project.to_owned()).or_insert_with(|| Arc::new(Semaphore::new(quota))).clone()
        };
        semaphore.try_acquire_owned().map_err(|_| {
            HttpFailure::Quota(format!(
                "quota http-requests ({quota}) of project {project} reached: it has {quota} requests in flight"
            ))
        })
    }
}

/// Resolves, checks, connects and sends; the whole response.
async fn exchange(
    limits: HttpLimits,
    tls: tokio_rustls::TlsConnector,
    grants: AllowList,
    dest: Destination,
    mut request: http::Request<HttpRequestBody>,
) -> Result<http::Response<Bytes>, HttpFailure> {
    let connect = connect(&tls, &grants, &dest);
    let stream = match tokio::time::timeout(limits.connect_timeout, connect).await {
        Ok(stream) => stream?,
        Err(_) => return Err(HttpFailure::ConnectTimeout(limits.connect_timeout)),
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| HttpFailure::Protocol(err.to_string()))?;
    // The connection is driven beside the exchange and goes with it (the task is aborted when this future ends).
    let driver = AbortOnDrop(tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!("outbound HTTP connection ended: {err}");
        }
    }));
    // Origin form on the wire (the Host header, set by wasi:http from the authority, names the server).
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = path.parse().map_err(|err| HttpFailure::Denied(format!("bad request path: {err}")))?;
    let response = sender.send_request(request).await.map_err(|err| HttpFailure::Protocol(err.to_string()))?;
    let (parts, body) = response.into_parts();
    let body = read_capped(body, limits.max_response_bytes).await?;
    drop(driver);
    Ok(http::Response::from_parts(parts, body))
}

/// A byte stream to the server: plain TCP, or TLS over it.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

/// Resolves `dest`'s host, keeps the addresses the grants allow, and connects to the first that answers.
async fn connect(
    tls: &tokio_rustls::TlsConnector,
    grants: &AllowList,
    dest: &Destination,
) -> Result<Box<dyn Stream>, HttpFailure> {
    let port = dest.port();
    let addresses: Vec<SocketAddr> = match dest.literal_ip() {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => tokio::net::lookup_host((dest.host_name(), port))
            .await
            .map_err(|err| HttpFailure::Dns(format!("{}: {err}", dest.host_name())))?
            .collect(),
    };
    let mut refused = Vec::new();
    let allowed: Vec<SocketAddr> = addresses
        .into_iter()
        .filter(|address| match grants.check_address(dest, address.ip()) {
            Ok(()) => true,
            Err(reason) => {
                refused.push(reason);
                false
            }
        })
        .collect();
    if allowed.is_empty() {
        return Err(match refused.into_iter().next() {
            Some(reason) => HttpFailure::AddressProhibited(reason),
            None => HttpFailure::Dns(format!("{} has no address", dest.host_name())),
        });
    }
    let mut last = None;
    let mut tcp = None;
    for address in allowed {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                tcp = Some(stream);
                break;
            }
            Err(err) => last = Some(format!("{address}: {err}")),
        }
    }
    let Some(tcp) = tcp else {
        return Err(HttpFailure::ConnectionRefused(last.unwrap_or_default()));
    };
    let _ = tcp.set_nodelay(true);
    if !dest.is_tls() {
        return Ok(Box::new(tcp));
    }
    let name = match dest.literal_ip() {
        Some(ip) => rustls::pki_types::ServerName::IpAddress(ip.into()),
        None => rustls::pki_types::ServerName::try_from(dest.host_name())
            .map_err(|err| HttpFailure::Tls(format!("{}: {err}", dest.host_name())))?,
    };
    let stream = tls.connect(name, tcp).await.map_err(|err| HttpFailure::Tls(err.to_string()))?;
    Ok(Box::new(stream))
}

/// Reads a response body of at most `cap` bytes (a declared length over the cap fails before reading).
async fn read_capped(mut body: hyper::body::Incoming, cap: usize) -> Result<Bytes, HttpFailure> {
    let too_large = || HttpFailure::ResponseTooLarge(u64::try_from(cap).unwrap_or(u64::MAX));
    if hyper::body::Body::size_hint(&body).lower() > u64::try_from(cap).unwrap_or(u64::MAX) {
        return Err(too_large());
    }
    let mut read = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| HttpFailure::Protocol(format!("reading the response body: {err}")))?;
        if let Ok(data) = frame.into_data() {
            if read.len().saturating_add(data.len()) > cap {
                return Err(too_large());
            }
            read.extend_from_slice(&data);
        }
    }
    Ok(read.freeze())
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
