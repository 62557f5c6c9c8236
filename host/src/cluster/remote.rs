//! Connections on other hosts: `get-client(id)` of an id another host holds asks that host (request and reply with a
//! deadline; a host that is gone answers "nobody" at once), and the handle it returns sends and closes through the
//! broker; `get-clients` surveys every live host with the same deadline. The other side: answering those requests for
//! this host's connections, within the asking handler's project.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;

use wasmsock_wire::channel::MembersPage;
use wasmsock_wire::cluster::{host_of, host_subject};
use wasmsock_wire::{ClientInfo, Close, ConnError, ConnLimits, Frame};

use super::{CONN_HEADER, Cluster, KIND_HEADER, Local, Outgoing, PROJECT_HEADER};
use crate::runtime::{Connection, Gathered};

/// How long `get-client` waits for another host to say whether it holds a connection. A host that is gone answers
/// at once (the broker has nobody to deliver to); this bounds a host that is alive but stuck.
pub const DEFAULT_REMOTE_DEADLINE: Duration = Duration::from_secs(1);

/// A lookup of one connection, as it crosses the broker.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Lookup {
    project: String,
    id: String,
}

/// A lookup of the oldest outbound client of a handler, as it crosses the broker.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ByHandler {
    project: String,
    handler: String,
}

/// The answer to a [`Lookup`] or a [`ByHandler`]: the connection, or none.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Found {
    info: Option<ClientInfo>,
    attachment: Option<Vec<u8>>,
}

impl From<Option<(ClientInfo, Option<Vec<u8>>)>> for Found {
    /// A connection and its attachment as this host found it, or none.
    fn from(found: Option<(ClientInfo, Option<Vec<u8>>)>) -> Self {
        match found {
            Some((info, attachment)) => Self { info: Some(info), attachment },
            None => Self { info: None, attachment: None },
        }
    }
}

/// A close asked for a connection on another host.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct CloseRequest {
    project: String,
    id: String,
    code: Option<u16>,
    reason: Option<String>,
}

/// A survey of one project's connections, as it crosses the broker.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Clients {
    project: String,
}

/// A page of one host's members of a channel, as it crosses the broker.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Members {
    project: String,
    channel: String,
    after: Option<String>,
    limit: u32,
}

/// A host's answer to [`Members`]: its page, or why it has none.
type MembersAnswer = Result<MembersPage, String>;

impl Cluster {
    /// Asks every host of `hosts` at once on its `verb` subject, each with the request `request(host)` makes, and
    /// waits at most [`DEFAULT_REMOTE_DEADLINE`]: the answers in the order of `hosts`, `None` for a host that did not
    /// answer in time or whose answer does not decode.
    async fn ask_all<R, T>(&self, hosts: &[String], verb: &str, request: impl Fn(&str) -> R) -> Vec<Option<T>>
    where
        R: serde::Serialize,
        T: serde::de::DeserializeOwned,
    {
        let asks = hosts.iter().map(|host| {
            let body = serde_json::to_vec(&request(host));
            let subject = host_subject(self.name(), host, verb);
            let client = self.client.clone();
            async move {
                let body = body.ok()?;
                match tokio::time::timeout(DEFAULT_REMOTE_DEADLINE, client.request(subject, body.into())).await {
                    Ok(Ok(answer)) => serde_json::from_slice::<T>(&answer.payload).ok(),
                    _ => None,
                }
            }
        });
        futures_util::future::join_all(asks).await
    }

    /// Every connection of `project` on the other live hosts, asked all at once and gathered for at most
    /// [`DEFAULT_REMOTE_DEADLINE`]; returns them (by host id, each host's oldest first) and the hosts that did not
    /// answer in time, so a caller can tell a partial answer.
    pub async fn survey_clients(&self, project: &str) -> Gathered<Vec<ClientInfo>> {
        let hosts: Vec<String> =
            self.status().hosts.into_iter().map(|h| h.host).filter(|h| h != self.host_id()).collect();
        let request = Clients { project: project.to_owned() };
        let answers: Vec<Option<Vec<ClientInfo>>> = self.ask_all(&hosts, "clients", |_| &request).await;
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for (host, answer) in hosts.into_iter().zip(answers) {
            match answer {
                Some(clients) => found.extend(clients),
                None => missing.push(host),
            }
        }
        Gathered { answer: found, missing_hosts: missing }
    }

    /// One page of the members of `channel` of `project` over every live host: host by host in the order of their
    /// ids, each host's oldest first, resuming after the connection `after` (whose id names its host). Every host the
    /// page can come from is asked at once for up to `limit` members, and a host that does not answer within
    /// [`DEFAULT_REMOTE_DEADLINE`] is left out and named.
    pub async fn survey_members(
        &self,
        project: &str,
        channel: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Gathered<MembersPage>, ConnError> {
        let local = self.local.upgrade().ok_or(ConnError::Closed)?;
        let from = match after {
            None => None,
            Some(id) => Some(host_of(id).ok_or_else(|| {
                ConnError::Invalid(format!("{id:?} is not a connection id of the cluster (such as s12@host)"))
            })?),
        };
        // Every host whose members come at or after the cursor, by id; the cursor's own host resumes after it.
        let hosts: Vec<String> = self
            .status()
            .hosts
            .into_iter()
            .map(|h| h.host)
            .filter(|h| from.is_none_or(|from| h.as_str() >= from))
            .collect();
        let after_on = |host: &str| after.filter(|_| from == Some(host)).map(str::to_owned);
        // This host answers first (and checks the channel, the cursor and the limit for everyone).
        let mine = local.members(project, channel, after_on(self.host_id()).as_deref(), limit)?;
        let others: Vec<String> = hosts.iter().filter(|h| h.as_str() != self.host_id()).cloned().collect();
        let asked: Vec<Option<MembersAnswer>> = self
            .ask_all(&others, "members", |host| Members {
                project: project.to_owned(),
                channel: channel.to_owned(),
                after: after_on(host),
                limit,
            })
            .await;
        let mut answers: HashMap<&str, MembersPage> = HashMap::new();
        let mut missing_hosts = Vec::new();
        for (host, answer) in others.iter().zip(asked) {
            match answer.and_then(Result::ok) {
                Some(page) => {
                    answers.insert(host, page);
                }
                None => missing_hosts.push(host.clone()),
            }
        }
        answers.insert(self.host_id(), mine);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut members = Vec::new();
        let mut more = false;
        for host in &hosts {
            if let Some(page) = answers.remove(host.as_str()) {
                more |= page.next.is_some();
                members.extend(page.members);
            }
        }
        more |= members.len() > limit;
        members.truncate(limit);
        let next = if more { members.last().map(|info| info.id.clone()) } else { None };
        Ok(Gathered { answer: MembersPage { members, next }, missing_hosts })
    }

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
        self.remote(host, project, found)
    }

    /// An outbound client of `handler` (in `project`) that another live host holds: every other host is asked at
    /// once, and the first in the order of their ids that has one answers (each host's oldest); none when no host
    /// answers with one within [`DEFAULT_REMOTE_DEADLINE`].
    pub async fn lookup_by_handler(self: &Arc<Self>, project: &str, handler: &str) -> Option<Arc<dyn Connection>> {
        let hosts: Vec<String> =
            self.status().hosts.into_iter().map(|h| h.host).filter(|h| h != self.host_id()).collect();
        let request = ByHandler { project: project.to_owned(), handler: handler.to_owned() };
        let answers: Vec<Option<Found>> = self.ask_all(&hosts, "by-handler", |_| &request).await;
        let (host, found) = hosts.iter().zip(answers).find_map(|(host, found)| {
            let found = found?;
            found.info.is_some().then_some((host, found))
        })?;
        self.remote(host, project, found)
    }

    /// A handle on a connection `host` holds, from its answer.
    fn remote(self: &Arc<Self>, host: &str, project: &str, found: Found) -> Option<Arc<dyn Connection>> {
        Some(Arc::new(RemoteConn {
            info: found.info?,
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
        })?;
        if let Some(local) = cluster.local.upgrade() {
            local.metrics().routed(if verb == "close" { "close" } else { "send" });
        }
        Ok(())
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
        self.queue(&cluster, "close", Frame::Binary(body.into()))
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
                let answer = Found::from(found);
                if let (Some(reply), Ok(body)) = (message.reply, serde_json::to_vec(&answer)) {
                    let _ = client.publish(reply, body.into()).await;
                }
            }
            "by-handler" => {
                let Ok(ask) = serde_json::from_slice::<ByHandler>(&message.payload) else { continue };
                let found = local.client_by_handler(&ask.project, &ask.handler);
                let answer = Found::from(found);
                if let (Some(reply), Ok(body)) = (message.reply, serde_json::to_vec(&answer)) {
                    let _ = client.publish(reply, body.into()).await;
                }
            }
            "clients" => {
                let Ok(clients) = serde_json::from_slice::<Clients>(&message.payload) else { continue };
                let list = local.clients(&clients.project);
                if let (Some(reply), Ok(body)) = (message.reply, serde_json::to_vec(&list)) {
                    let _ = client.publish(reply, body.into()).await;
                }
            }
            "members" => {
                let Ok(ask) = serde_json::from_slice::<Members>(&message.payload) else { continue };
                let answer: MembersAnswer = local
                    .members(&ask.project, &ask.channel, ask.after.as_deref(), ask.limit)
                    .map_err(|err| err.to_string());
                if let (Some(reply), Ok(body)) = (message.reply, serde_json::to_vec(&answer)) {
                    let _ = client.publish(reply, body.into()).await;
                }
            }
            "send" => {
                let header = |name: &str| message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.to_string());
                let (Some(project), Some(id)) = (header(PROJECT_HEADER), header(CONN_HEADER)) else { continue };
                let frame = if header(KIND_HEADER).as_deref() == Some("binary") {
                    Frame::Binary(message.payload)
                } else {
                    match wasmsock_wire::Utf8Bytes::try_from(message.payload) {
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
