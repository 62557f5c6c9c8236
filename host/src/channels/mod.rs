//! Channels: named groups of live connections within a project, and the fan-out of a message to a channel's members
//! through each member's own outbound queue. A publish costs O(members of the channel), never O(connections).

use crate::FastMap;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use wasmsock_wire::channel::{MembersPage, check_channel};
use wasmsock_wire::descriptor::project_of;
use wasmsock_wire::history::{StreamPosition, envelope};
use wasmsock_wire::limits::MAX_MEMBERS_PAGE;
use wasmsock_wire::{ConnError, ConnState, Frame};

use crate::conn::Conn;
use crate::control::metrics::Metrics;

/// A channel's name within its project.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    project: String,
    name: String,
}

/// One channel: its members by connection order, so a page of members can resume after any connection.
#[derive(Debug, Default)]
struct Channel {
    members: Mutex<BTreeMap<u64, Member>>,
}

/// One member of a channel: the connection, and whether it receives each publication with a position in the JSON
/// envelope ([`envelope`]) instead of the bare message.
#[derive(Debug, Clone)]
struct Member {
    conn: Arc<Conn>,
    envelope: bool,
    /// The last publication of the channel's history it was sent when it joined (in a cluster, from the broker):
    /// publications of that epoch up to that offset that arrive after it joined are not sent again.
    after: Option<StreamPosition>,
}

/// What the admin API lists of one channel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChannelStats {
    /// The project it belongs to.
    pub project: String,
    /// Its name within the project.
    pub channel: String,
    /// How many connections are in it.
    pub members: usize,
}

/// Every channel of every project on this host, and which channels each connection is in.
///
/// Locks are taken in one order, `channels` then a channel's `members`, and `by_conn` on its own: a publish holds only
/// its channel's lock while it queues the message on each member, so publishes to one channel are queued in one order
/// (each publisher's in the order it published) and publishes to different channels do not wait for each other.
#[derive(Debug)]
pub struct Channels {
    channels: RwLock<HashMap<Key, Arc<Channel>>>,
    /// For each connection (by its sequence number), its channels in the order it joined them.
    by_conn: Mutex<FastMap<u64, Vec<Key>>>,
    max_per_connection: usize,
    watch: OnceLock<Arc<dyn ChannelWatch>>,
}

/// What learns of this host's channels opening (a first member) and closing (the last member left), in that order,
/// such as the cluster, which listens to a channel's broker subject only while the channel has members here. Called
/// with the channel table locked: implementations must not block.
pub trait ChannelWatch: Send + Sync + 'static {
    /// `channel` of `project` got its first member on this host.
    fn opened(&self, project: &str, channel: &str);
    /// The last member of `channel` of `project` on this host left.
    fn closed(&self, project: &str, channel: &str);
}

impl std::fmt::Debug for dyn ChannelWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChannelWatch")
    }
}

impl Channels {
    /// No channels; each connection may be in at most `max_per_connection` at once.
    pub fn new(max_per_connection: usize) -> Self {
        Self { channels: RwLock::default(), by_conn: Mutex::default(), max_per_connection, watch: OnceLock::new() }
    }

    /// Tells `watch` of every channel that opens or closes from now on, and returns the channels open now (project,
    /// name), so that it misses none and sees none twice. Only one watch can be set; a second is refused.
    pub fn watch(&self, watch: Arc<dyn ChannelWatch>) -> anyhow::Result<Vec<(String, String)>> {
        let channels = self.channels.write().map_err(|_| anyhow::anyhow!("the channel table is unusable"))?;
        self.watch.set(watch).map_err(|_| anyhow::anyhow!("the channels already have a watch"))?;
        Ok(channels.keys().map(|key| (key.project.clone(), key.name.clone())).collect())
    }

    /// Adds `conn` to `channel` of `project` (joining one it is in already does nothing). `invalid` for a bad name or
    /// a connection of another project, `limit` past the cap, `closed` once the connection has ended.
    pub fn join(&self, project: &str, conn: &Arc<Conn>, channel: &str, metrics: &Metrics) -> Result<(), ConnError> {
        self.join_with(project, conn, channel, false, metrics)
    }

    /// [`Channels::join`], choosing whether the connection receives publications that have a position (a channel
    /// with history) in the JSON envelope `{"offset":N,"epoch":"E","data":"TEXT"}`. Joining again changes only that.
    pub fn join_with(
        &self,
        project: &str,
        conn: &Arc<Conn>,
        channel: &str,
        envelope: bool,
        metrics: &Metrics,
    ) -> Result<(), ConnError> {
        self.join_after(project, conn, channel, envelope, None, metrics)
    }

    /// [`Channels::join_with`] for a connection that was sent the channel's history up to `after`: publications of
    /// that epoch at or before it are skipped when they reach it as a member (in a cluster they may arrive from the
    /// broker after it joined).
    pub fn join_after(
        &self,
        project: &str,
        conn: &Arc<Conn>,
        channel: &str,
        envelope: bool,
        after: Option<StreamPosition>,
        metrics: &Metrics,
    ) -> Result<(), ConnError> {
        check_channel(channel).map_err(ConnError::Invalid)?;
        same_project(project, conn)?;
        let key = Key { project: project.to_owned(), name: channel.to_owned() };
        let mut by_conn = self.by_conn.lock().map_err(|_| failing())?;
        // Checked under the lock that `leave_all` takes after the connection is closed, so a join racing the end of
        // its connection either sees it closed or is undone by `leave_all`.
        if conn.state() == ConnState::Closed {
            return Err(ConnError::Closed);
        }
        let joined = by_conn.entry(conn.seq()).or_default();
        if joined.contains(&key) {
            let found = self.channels.read().map_err(|_| failing())?.get(&key).cloned();
            if let Some(found) = found
                && let Some(member) = found.members.lock().map_err(|_| failing())?.get_mut(&conn.seq())
            {
                member.envelope = envelope;
                member.after = after;
            }
            return Ok(());
        }
        if joined.len() >= self.max_per_connection {
            return Err(ConnError::Limit(format!(
                "connection {} is in {} channels, the most one connection may be in (serve \
                 --max-channels-per-connection)",
                conn.id(),
                self.max_per_connection
            )));
        }
        joined.push(key.clone());
        let mut channels = self.channels.write().map_err(|_| failing())?;
        let entry = channels.entry(key).or_insert_with(|| {
            metrics.channel_opened(project);
            if let Some(watch) = self.watch.get() {
                watch.opened(project, channel);
            }
            Arc::default()
        });
        entry.members.lock().map_err(|_| failing())?.insert(conn.seq(), Member { conn: conn.clone(), envelope, after });
        Ok(())
    }

    /// Removes the connection with the id `conn` from `channel` of `project`; whether it was a member. An ended
    /// connection can still leave in its onclose.
    pub fn leave(&self, project: &str, conn: &str, channel: &str, metrics: &Metrics) -> Result<bool, ConnError> {
        check_channel(channel).map_err(ConnError::Invalid)?;
        let Some(seq) = seq_of(conn) else {
            return Ok(false);
        };
        let key = Key { project: project.to_owned(), name: channel.to_owned() };
        let mut by_conn = self.by_conn.lock().map_err(|_| failing())?;
        let Some(joined) = by_conn.get_mut(&seq) else {
            return Ok(false);
        };
        let Some(at) = joined.iter().position(|k| *k == key) else {
            return Ok(false);
        };
        joined.remove(at);
        if joined.is_empty() {
            by_conn.remove(&seq);
        }
        drop(by_conn);
        self.remove_member(&key, seq, metrics);
        Ok(true)
    }

    /// Takes `conn` out of every channel it is in (its connection ended).
    pub fn leave_all(&self, conn: &Conn, metrics: &Metrics) {
        let joined = self.by_conn.lock().ok().and_then(|mut by_conn| by_conn.remove(&conn.seq()));
        for key in joined.unwrap_or_default() {
            self.remove_member(&key, conn.seq(), metrics);
        }
    }

    fn remove_member(&self, key: &Key, seq: u64, metrics: &Metrics) {
        let Ok(mut channels) = self.channels.write() else {
            return;
        };
        let Some(channel) = channels.get(key) else {
            return;
        };
        let empty = channel.members.lock().map(|mut members| {
            members.remove(&seq);
            members.is_empty()
        });
        if empty.unwrap_or(false) {
            channels.remove(key);
            metrics.channel_closed(&key.project);
            if let Some(watch) = self.watch.get() {
                watch.closed(&key.project, &key.name);
            }
        }
    }

    /// The channels of `project` that the connection with the id `conn` is in, in the order it joined them.
    pub fn of(&self, project: &str, conn: &str) -> Vec<String> {
        let (Some(seq), Ok(by_conn)) = (seq_of(conn), self.by_conn.lock()) else {
            return Vec::new();
        };
        let joined = by_conn.get(&seq).map(Vec::as_slice).unwrap_or_default();
        joined.iter().filter(|key| key.project == project).map(|key| key.name.clone()).collect()
    }

    /// Queues `frame` on every member of `channel` of `project` except the connection with the id `skip`; returns how
    /// many it was queued for, and counts the publish. A member whose queue is full is handled by its own
    /// slow-consumer policy (closed with 1013, or only this message refused) and not counted; the others are not held
    /// up by it.
    pub fn publish(
        &self,
        project: &str,
        channel: &str,
        frame: &Frame,
        skip: Option<&str>,
        metrics: &Metrics,
    ) -> Result<u32, ConnError> {
        self.publish_at(project, channel, frame, None, skip, metrics)
    }

    /// [`Channels::publish`] of a publication at `position` in the channel's history: members that joined with the
    /// envelope receive it framed with its position.
    pub fn publish_at(
        &self,
        project: &str,
        channel: &str,
        frame: &Frame,
        position: Option<&StreamPosition>,
        skip: Option<&str>,
        metrics: &Metrics,
    ) -> Result<u32, ConnError> {
        let queued = self.fan_out_at(project, channel, frame, position, skip)?;
        metrics.published(project, u64::from(queued));
        Ok(queued)
    }

    /// [`Channels::publish`] without counting a publish: the queueing on each member, for a message published here
    /// or on another host of the cluster.
    pub fn fan_out(&self, project: &str, channel: &str, frame: &Frame, skip: Option<&str>) -> Result<u32, ConnError> {
        self.fan_out_at(project, channel, frame, None, skip)
    }

    /// [`Channels::fan_out`] of a publication at `position` (see [`Channels::publish_at`]).
    pub fn fan_out_at(
        &self,
        project: &str,
        channel: &str,
        frame: &Frame,
        position: Option<&StreamPosition>,
        skip: Option<&str>,
    ) -> Result<u32, ConnError> {
        check_channel(channel).map_err(ConnError::Invalid)?;
        if !frame.is_data() {
            return Err(ConnError::Invalid("only text and binary messages can be published".into()));
        }
        let skip = skip.and_then(seq_of);
        let key = Key { project: project.to_owned(), name: channel.to_owned() };
        let found = self.channels.read().map_err(|_| failing())?.get(&key).cloned();
        let mut queued: u32 = 0;
        if let Some(found) = found {
            let members = found.members.lock().map_err(|_| failing())?;
            // Framed once for every member that asked for the envelope, only when one did.
            let mut enveloped: Option<Frame> = None;
            for (seq, member) in members.iter() {
                if Some(*seq) == skip {
                    continue;
                }
                if let (Some(position), Some(after)) = (position, &member.after)
                    && position.epoch == after.epoch
                    && position.offset <= after.offset
                {
                    continue;
                }
                let sent = match position {
                    Some(position) if member.envelope => {
                        member.conn.send(enveloped.get_or_insert_with(|| envelope(position, frame)).clone())
                    }
                    _ => member.conn.send(frame.clone()),
                };
                if sent.is_ok() {
                    queued = queued.saturating_add(1);
                }
            }
        }
        Ok(queued)
    }

    /// One page of `channel`'s members: at most `limit` (1 to [`MAX_MEMBERS_PAGE`]) connections after the connection
    /// `after` (an id from the page before), oldest first.
    pub fn members(
        &self,
        project: &str,
        channel: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<MembersPage, ConnError> {
        check_channel(channel).map_err(ConnError::Invalid)?;
        if limit == 0 || limit > MAX_MEMBERS_PAGE {
            return Err(ConnError::Invalid(format!(
                "a page of members is 1 to {MAX_MEMBERS_PAGE} connections; {limit} was asked for"
            )));
        }
        let start = match after {
            None => 0,
            Some(id) => seq_of(id)
                .and_then(|seq| seq.checked_add(1))
                .ok_or_else(|| ConnError::Invalid(format!("{id:?} is not a connection id (such as s12 or c3)")))?,
        };
        let key = Key { project: project.to_owned(), name: channel.to_owned() };
        let found = self.channels.read().map_err(|_| failing())?.get(&key).cloned();
        let Some(found) = found else {
            return Ok(MembersPage::default());
        };
        let members = found.members.lock().map_err(|_| failing())?;
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut page: Vec<_> =
            members.range(start..).take(limit.saturating_add(1)).map(|(_, m)| m.conn.info()).collect();
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|info| info.id.clone())
        } else {
            None
        };
        Ok(MembersPage { members: page, next })
    }

    /// Every channel with its member count, by project then name; only `project`'s when given.
    pub fn list(&self, project: Option<&str>) -> Vec<ChannelStats> {
        let Ok(channels) = self.channels.read() else {
            return Vec::new();
        };
        let mut list: Vec<ChannelStats> = channels
            .iter()
            .filter(|(key, _)| project.is_none_or(|p| key.project == p))
            .map(|(key, channel)| ChannelStats {
                project: key.project.clone(),
                channel: key.name.clone(),
                members: channel.members.lock().map(|m| m.len()).unwrap_or(0),
            })
            .collect();
        list.sort_by(|a, b| (&a.project, &a.channel).cmp(&(&b.project, &b.channel)));
        list
    }

    /// How many members `channel` of `project` has on this host.
    pub fn count(&self, project: &str, channel: &str) -> u32 {
        let key = Key { project: project.to_owned(), name: channel.to_owned() };
        let found = self.channels.read().ok().and_then(|channels| channels.get(&key).cloned());
        let members = found.and_then(|channel| channel.members.lock().ok().map(|members| members.len()));
        u32::try_from(members.unwrap_or(0)).unwrap_or(u32::MAX)
    }

    /// Whether `channel` of `project` has a member on this host.
    pub fn has_members(&self, project: &str, channel: &str) -> bool {
        let key = Key { project: project.to_owned(), name: channel.to_owned() };
        self.channels.read().is_ok_and(|channels| channels.contains_key(&key))
    }

    /// How many channels exist, across projects.
    pub fn len(&self) -> usize {
        self.channels.read().map(|c| c.len()).unwrap_or(0)
    }

    /// Whether no channel exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A connection's sequence number from its id (`s12`, `c3`, `s12@h1` in a cluster; see
/// [`crate::conn::Hub::register`]).
fn seq_of(id: &str) -> Option<u64> {
    let local = id.split_once('@').map_or(id, |(local, _)| local);
    let digits = local.strip_prefix('s').or_else(|| local.strip_prefix('c'))?;
    digits.parse().ok()
}

fn same_project(project: &str, conn: &Conn) -> Result<(), ConnError> {
    if project_of(conn.handler()) == project {
        return Ok(());
    }
    Err(ConnError::Invalid(format!("connection {} is not in project {project:?}", conn.id())))
}

fn failing() -> ConnError {
    ConnError::Invalid("the host's channel table is unusable after a panic".into())
}

/// What the unit tests of channels and the rooms above them share.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use crate::conn::{Conn, ConnSpec, Hub, Outbox};
    use wasmsock_wire::{ConnLimits, ConnState, Direction};

    /// An open inbound connection of `handler` registered in `hub`, and its outbound queue.
    pub(crate) fn open(hub: &Hub, handler: &str) -> (Arc<Conn>, Outbox) {
        let spec = ConnSpec {
            uri: "/x".into(),
            handler: handler.into(),
            endpoint: None,
            direction: Direction::Inbound,
            remote: None,
            protocol: None,
            limits: ConnLimits::default(),
        };
        hub.register(spec, ConnState::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::open;
    use super::*;
    use crate::conn::Hub;

    #[tokio::test]
    async fn publish_reaches_members_of_the_channel_in_the_project_only() {
        let (hub, metrics, channels) = (Hub::new(), Metrics::new(), Channels::new(4));
        let (a, mut a_out) = open(&hub, "p/h");
        let (b, mut b_out) = open(&hub, "p/h");
        let (other, _other_out) = open(&hub, "q/h");
        channels.join("p", &a, "lobby", &metrics).unwrap();
        channels.join("p", &b, "lobby", &metrics).unwrap();
        channels.join("q", &other, "lobby", &metrics).unwrap();
        let frame = Frame::Text("hi".into());
        assert_eq!(channels.publish("p", "lobby", &frame, None, &metrics), Ok(2));
        assert_eq!(channels.publish("p", "lobby", &frame, Some(a.id()), &metrics), Ok(1));
        assert_eq!(channels.publish("p", "nobody", &frame, None, &metrics), Ok(0));
        assert_eq!(a_out.next().await, Some(frame.clone()));
        assert_eq!(b_out.next().await, Some(frame.clone()));
        assert_eq!(b_out.next().await, Some(frame));
        assert!(matches!(channels.join("q", &a, "lobby", &metrics), Err(ConnError::Invalid(_))));
    }

    #[test]
    fn joins_are_capped_and_leaving_every_channel_removes_empty_ones() {
        let (hub, metrics, channels) = (Hub::new(), Metrics::new(), Channels::new(2));
        let (a, _a_out) = open(&hub, "p/h");
        channels.join("p", &a, "one", &metrics).unwrap();
        channels.join("p", &a, "one", &metrics).unwrap();
        channels.join("p", &a, "two", &metrics).unwrap();
        assert!(matches!(channels.join("p", &a, "three", &metrics), Err(ConnError::Limit(_))));
        assert_eq!(channels.of("p", a.id()), ["one", "two"]);
        assert_eq!(channels.leave("p", a.id(), "one", &metrics), Ok(true));
        assert_eq!(channels.leave("p", a.id(), "one", &metrics), Ok(false));
        assert_eq!(channels.len(), 1);
        channels.leave_all(&a, &metrics);
        assert!(channels.is_empty());
        assert!(channels.of("p", a.id()).is_empty());
        hub.remove(a.id());
        assert_eq!(channels.join("p", &a, "one", &metrics), Err(ConnError::Closed));
    }

    #[test]
    fn members_come_in_pages_that_resume_after_the_last_id() {
        let (hub, metrics, channels) = (Hub::new(), Metrics::new(), Channels::new(4));
        let conns: Vec<_> = (0..5).map(|_| open(&hub, "p/h")).collect();
        for (conn, _) in &conns {
            channels.join("p", conn, "room", &metrics).unwrap();
        }
        let first = channels.members("p", "room", None, 2).unwrap();
        assert_eq!(first.members.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["s1", "s2"]);
        assert_eq!(first.next.as_deref(), Some("s2"));
        let last = channels.members("p", "room", Some("s4"), 2).unwrap();
        assert_eq!(last.members.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["s5"]);
        assert_eq!(last.next, None);
        assert!(matches!(channels.members("p", "room", Some("x"), 2), Err(ConnError::Invalid(_))));
        assert!(matches!(channels.members("p", "room", None, 0), Err(ConnError::Invalid(_))));
        assert_eq!(channels.members("p", "empty", None, 2), Ok(MembersPage::default()));
    }
}
