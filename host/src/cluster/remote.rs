//! Connections on other hosts: `get-client(id)` of an id another host holds asks that host (request and reply with a
//! deadline; a host that is gone answers "nobody" at once), and the handle it returns sends and closes through the
//! broker. The other side: answering those requests for this host's connections, within the asking handler's project.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;

use wasmsock_wire::cluster::{host_of, host_subject};
use wasmsock_wire::{ClientInfo, Close, ConnError, ConnLimits, Frame};

use super::{CONN_HEADER, Cluster, KIND_HEADER, Local, Outgoing, PROJECT_HEADER};
use crate::runtime::Connection;

/// How long `get-client` waits for another host to say whether it holds a connection. A host that is gone answers
/// at once (the broker has nobody to deliver to); this bounds a host that is alive but stuck.
pub const DEFAULT_REMOTE_DEADLINE: Duration = Duration::from_secs(1);

/// A lookup of one connection, as it crosses the broker.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Lookup {
    project: String,
    id: String,
}

/// The answer to a [`Lookup`]: the connection, or none.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Found {
    info: Option<ClientInfo>,
    attachment: Option<Vec<u8>>,
}

/// A close asked for a connection on another host.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct CloseRequest {
    project: String,
    id: String,
    code: Option<u16>,
    reason: Option<String>,
}

impl Cluster {
    /// The connection `id` of `project` on the host the id names, if that host is alive and holds it.
    pub async fn lookup(self: &Arc<Self>, project: &str, id: &str) -> Option<Arc<dyn Connection>> {
        let host = host_of(id)?;
        if host == self.host_id() || !self.is_alive(host) {
            return None;
        }
        let request = serde_json::to_vec(&Lookup { project: project.to_owned(), id: id.to_owned() }).ok()?;
        let subject = host_subject(self.name(), host, "lookup");
        let answer = tokio::time::timeout(DEFAULT_REMOTE_DEADLINE, self.client.request(subject, request.into())).await;
        let message = match answer {
            Ok(Ok(message)) => message,
            Ok(Err(err)) => {
                tracing::debug!(conn = id, "no answer from host {host}: {err}");
                return None;
            }
            Err(_) => {
                tracing::warn!(conn = id, "host {host} did not answer within {DEFAULT_REMOTE_DEADLINE:?}");
                return None;
            }
        };
        let found: Found = serde_json::from_slice(&message.payload).ok()?;
        let info = found.info?;
        Some(Arc::new(RemoteConn {
            info,
            host: host.to_owned(),
            project: project.to_owned(),
            attachment: found.attachment,
            limits: ConnLimits::default(),
            cluster: Arc::downgrade(self),
        }))
    }
}

/// A connection another host holds, as a handler on this host sees it: its info as of the lookup, and sends and
/// closes that go through the broker (in order, without waiting, at most once).
#[derive(Debug)]
struct RemoteConn {
    info: ClientInfo,
    host: String,
    project: String,
    attachment: Option<Vec<u8>>,
    limits: ConnLimits,
    cluster: Weak<Cluster>,
}

impl RemoteConn {
    /// The cluster, while the host that holds the connection is alive; else the connection counts as gone.
    fn reachable(&self) -> Result<Arc<Cluster>, ConnError> {
        let cluster = self.cluster.upgrade().ok_or(ConnError::Closed)?;
        if !cluster.is_alive(&self.host) {
            return Err(ConnError::UnknownClient(self.info.id.clone()));
        }
        Ok(cluster)
    }

    fn queue(&self, cluster: &Cluster, verb: &str, frame: Frame) -> Result<(), ConnError> {
        let outgoing = Outgoing {
            subject: host_subject(cluster.name(), &self.host, verb),
            to: Some((self.project.clone(), self.info.id.clone())),
            frame,
        };
        cluster.outgoing.try_send(outgoing).map_err(|_| {
            ConnError::Limit("the broker queue is full: the connection's host cannot be reached now".into())
        })
    }
}

impl Connection for RemoteConn {
    fn id(&self) -> &str {
        &self.info.id
    }

    fn info(&self) -> ClientInfo {
        self.info.clone()
    }

    fn limits(&self) -> &ConnLimits {
        &self.limits
    }

    fn send(&self, frame: Frame) -> Result<(), ConnError> {
        if !frame.is_data() {
            return Err(ConnError::Invalid("only text and binary messages can be sent".into()));
        }
        let cluster = self.reachable()?;
        self.queue(&cluster, "send", frame)
    }

    fn close(&self, code: Option<u16>, reason: Option<String>) -> Result<(), ConnError> {
        // Checked here, so a bad close is refused at once, as for a local connection.
        Close::validated(code, reason.clone()).map_err(ConnError::Invalid)?;
        let cluster = self.reachable()?;
        let request = CloseRequest { project: self.project.clone(), id: self.info.id.clone(), code, reason };
        let body = serde_json::to_vec(&request).map_err(|err| ConnError::Invalid(err.to_string()))?;
        self.queue(&cluster, "close", Frame::Binary(body))
    }

    fn attachment(&self) -> Option<Vec<u8>> {
        self.attachment.clone()
    }

    fn set_attachment(&self, _data: Option<Vec<u8>>) -> Result<(), ConnError> {
        Err(ConnError::Invalid("an attachment is set by its own connection's handler, on its own host".into()))
    }
}

/// Answers other hosts' lookups, sends and closes for this host's connections, each within the project it names.
pub(super) async fn serve(client: async_nats::Client, mut requests: async_nats::Subscriber, local: Weak<dyn Local>) {
    while let Some(message) = requests.next().await {
        let Some(local) = local.upgrade() else { return };
        let verb = message.subject.rsplit('.').next().unwrap_or_default().to_owned();
        match verb.as_str() {
            "lookup" => {
                let Ok(lookup) = serde_json::from_slice::<Lookup>(&message.payload) else { continue };
                let found = local.lookup(&lookup.project, &lookup.id);
                let answer = Found {
                    attachment: found.as_ref().and_then(|(_, attachment)| attachment.clone()),
                    info: found.map(|(info, _)| info),
                };
                if let (Some(reply), Ok(body)) = (message.reply, serde_json::to_vec(&answer)) {
                    let _ = client.publish(reply, body.into()).await;
                }
            }
            "send" => {
                let header = |name: &str| message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.to_string());
                let (Some(project), Some(id)) = (header(PROJECT_HEADER), header(CONN_HEADER)) else { continue };
                let frame = if header(KIND_HEADER).as_deref() == Some("binary") {
                    Frame::Binary(message.payload.to_vec())
                } else {
                    match String::from_utf8(message.payload.to_vec()) {
                        Ok(text) => Frame::Text(text),
                        Err(_) => continue,
                    }
                };
                if let Err(err) = local.send_to(&project, &id, frame) {
                    tracing::debug!(conn = id, "a send from another host was not queued: {err}");
                }
            }
            "close" => {
                let Ok(close) = serde_json::from_slice::<CloseRequest>(&message.payload) else { continue };
                if let Err(err) = local.close_of(&close.project, &close.id, close.code, close.reason) {
                    tracing::debug!(conn = close.id, "a close from another host did nothing: {err}");
                }
            }
            other => tracing::debug!("ignored a request {other:?} from another host"),
        }
    }
}
