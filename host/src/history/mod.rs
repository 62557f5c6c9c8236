//! Channel history on one host: for each channel of a project that opted in (`quotas.history-size`), the latest
//! publications with their offsets in a stream that has an epoch; publishing with a position, reading pages of
//! history, and joining a channel from a position with no gap and no duplicate between the history sent and the live
//! publications.
//!
//! The guarantee comes from one lock per stream: a publish holds its stream's lock from taking its offset until it is
//! queued on every member, and a join from a position holds the same lock while it queues the history after the
//! position on the connection and adds it to the channel. So every publication is either in what the join sends
//! (it was queued before) or reaches the connection as a member (after), never both and never neither.
//!
//! In a cluster (`serve --nats`) a project's history lives on the broker instead ([`shared`]), so that every host
//! agrees on its offsets and a member resumes on any host.
//!
//! On one host, streams live in memory; `wasmsock serve` also writes them to a journal ([`journal`]) in the data directory, so a
//! restart reads them back with their epochs. A stream's epoch is made when it is first used; after a crash every
//! stream gets a new one (the last publications queued for the journal may be missing though members got them, so
//! their offsets must not be given again in the same epoch), and a position from before it is reported as not
//! recovered, never silently wrong.

mod journal;
mod shared;
mod terms;

pub use journal::HISTORY_FILE;
pub use shared::{DEFAULT_HISTORY_CALL_TIMEOUT, DEFAULT_HISTORY_PUBLISH_QUEUE, MAX_LISTED};
use terms::send_history;
pub use terms::{Fanout, QuotasOf, StreamStats};

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use wasmsock_wire::channel::check_channel;
use wasmsock_wire::history::{HistoryPage, Publication, Published, Recovery, StreamPosition, continue_from};
use wasmsock_wire::kv::now_ms;
use wasmsock_wire::limits::MAX_HISTORY_PAGE;
use wasmsock_wire::{ConnError, Frame, ProjectQuotas};

use crate::conn::Conn;
use crate::control::metrics::Metrics;
use crate::store::Durability;
use journal::{Journal, Op};

/// A channel's name within its project.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    project: String,
    name: String,
}

/// One channel's stream: its epoch, the offset of its latest publication, and the publications still kept.
#[derive(Debug)]
struct Stream {
    epoch: String,
    top: u64,
    kept: VecDeque<Publication>,
    /// Bytes of the kept messages.
    bytes: u64,
}

impl Stream {
    /// Drops what is past the size and age the project allows now; the bytes freed.
    fn trim(&mut self, now_ms: i64, quotas: &ProjectQuotas) -> u64 {
        let oldest = now_ms.saturating_sub(i64::from(quotas.history_ttl_seconds).saturating_mul(1_000));
        let size = usize::try_from(quotas.history_size).unwrap_or(usize::MAX);
        let mut freed = 0;
        while let Some(first) = self.kept.front() {
            if self.kept.len() <= size && first.time_ms > oldest {
                break;
            }
            freed += self.pop();
        }
        freed
    }

    /// Drops the oldest publication; its bytes.
    fn pop(&mut self) -> u64 {
        let freed = self.kept.pop_front().map_or(0, |p| frame_bytes(&p.frame));
        self.bytes = self.bytes.saturating_sub(freed);
        freed
    }

    fn first(&self) -> u64 {
        self.kept.front().map_or(0, |p| p.offset)
    }
}

/// One project's use of history on this host.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    channels: u32,
    bytes: u64,
}

/// Every project's channel histories on this host.
///
/// Locks are taken in one order: the stream table, then one stream, then the channel table (inside [`Channels`]),
/// and `usage` last and alone.
pub struct History {
    streams: Mutex<HashMap<Key, Arc<Mutex<Stream>>>>,
    usage: Mutex<HashMap<String, Usage>>,
    quotas: QuotasOf,
    /// Makes each epoch this process gives unique, with the time it was given.
    epochs: AtomicU64,
    /// Where streams are written, once opened (`wasmsock serve`); without one they live in memory only.
    journal: OnceLock<Journal>,
    /// The cluster's broker, once this host joined one: every project's history is kept there instead.
    shared: OnceLock<Arc<shared::Shared>>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").finish_non_exhaustive()
    }
}

impl History {
    /// No history yet; what each project may keep comes from `quotas`.
    pub fn new(quotas: QuotasOf) -> Self {
        Self {
            streams: Mutex::default(),
            usage: Mutex::default(),
            quotas,
            epochs: AtomicU64::new(0),
            journal: OnceLock::new(),
            shared: OnceLock::new(),
        }
    }

    /// Keeps every project's history on the broker `client` is connected to from now on (this host joined
    /// `cluster` as `host`; before any handler runs).
    pub fn use_broker(&self, client: async_nats::Client, cluster: &str, host: &str) -> anyhow::Result<()> {
        self.shared
            .set(shared::Shared::new(client, cluster, host, self.quotas.clone()))
            .map_err(|_| anyhow::anyhow!("the channel history is on a broker already"))
    }

    /// Whether `project` keeps history on the cluster's broker (this host is in a cluster and the project keeps
    /// history): then publishing, reading and joining go through [`History::publish_shared`],
    /// [`History::read_shared`] and [`History::join_from_shared`].
    pub fn on_broker(&self, project: &str) -> bool {
        self.shared.get().is_some() && self.is_on(project)
    }

    /// Publishes `frame` to `channel` of `project` through the broker's history: queued on this host to be kept after
    /// this host's earlier publishes to the channel, and delivered to the members on every host (this one too) when
    /// the broker republishes it. With `answer`, the receiver gets its position once the broker stored it.
    pub fn publish_shared(
        &self,
        project: &str,
        channel: &str,
        frame: &Frame,
        skip: Option<&str>,
        answer: bool,
    ) -> Result<Option<tokio::sync::oneshot::Receiver<Result<StreamPosition, ConnError>>>, ConnError> {
        let shared = self.shared.get().ok_or_else(|| ConnError::Invalid("this host is not in a cluster".into()))?;
        let quotas = self.quotas_on(project)?;
        check_channel(channel).map_err(ConnError::Invalid)?;
        if !frame.is_data() {
            return Err(ConnError::Invalid("only text and binary messages can be published".into()));
        }
        let size = frame_bytes(frame);
        if size > quotas.history_bytes {
            return Err(ConnError::Limit(format!(
                "a message of {size} bytes is larger than project {project:?}'s history may hold ({} bytes, \
                 quotas.history-bytes)",
                quotas.history_bytes
            )));
        }
        shared.publish(project, channel, frame.clone(), skip, quotas, answer)
    }

    /// [`History::read`] of a history kept on the cluster's broker.
    pub async fn read_shared(
        &self,
        project: &str,
        channel: &str,
        since: Option<&StreamPosition>,
        limit: u32,
    ) -> Result<HistoryPage, ConnError> {
        let shared = self.shared.get().ok_or_else(|| ConnError::Invalid("this host is not in a cluster".into()))?;
        if limit == 0 || limit > MAX_HISTORY_PAGE {
            return Err(ConnError::Invalid(format!(
                "a page of history is 1 to {MAX_HISTORY_PAGE} publications; {limit} was asked for"
            )));
        }
        let quotas = self.quotas_on(project)?;
        check_channel(channel).map_err(ConnError::Invalid)?;
        within_call_timeout(shared.read(project, channel, since, limit, &quotas)).await
    }

    /// [`History::join_from`] of a history kept on the cluster's broker; this host must listen to the channel on the
    /// broker already.
    pub async fn join_from_shared(
        &self,
        fanout: Fanout<'_>,
        project: &str,
        conn: &Arc<Conn>,
        channel: &str,
        since: Option<&StreamPosition>,
        with_envelope: bool,
    ) -> Result<Recovery, ConnError> {
        let shared = self.shared.get().ok_or_else(|| ConnError::Invalid("this host is not in a cluster".into()))?;
        self.quotas_on(project)?;
        check_channel(channel).map_err(ConnError::Invalid)?;
        within_call_timeout(shared.join_from(fanout, project, conn, channel, since, with_envelope)).await
    }

    /// Delivers a publication of `channel` that the broker's history republished, at `position`, to this host's
    /// members, in the channel's order (see [`shared`]); how many it was queued for.
    pub async fn deliver_shared(
        &self,
        fanout: Fanout<'_>,
        project: &str,
        channel: &str,
        frame: &Frame,
        position: StreamPosition,
        skip: Option<&str>,
    ) -> u32 {
        match self.shared.get() {
            Some(shared) => shared.deliver(fanout, project, channel, frame, position, skip).await,
            None => fanout.channels.fan_out_at(project, channel, frame, Some(&position), None).unwrap_or(0),
        }
    }

    /// Opens the journal in `dir` and reads its streams back (at start, before any handler runs): with their epochs
    /// when the host before stopped cleanly, each with a new epoch when it did not.
    pub fn open_journal(&self, dir: &std::path::Path, durability: Durability) -> anyhow::Result<()> {
        let (journal, loaded, clean) = Journal::open(dir, durability)?;
        let mut streams = self.streams.lock().map_err(|_| anyhow::anyhow!("the history table is unusable"))?;
        if !clean && !loaded.is_empty() {
            tracing::warn!(
                streams = loaded.len(),
                "the host did not stop cleanly: every channel's history keeps its publications under a new epoch"
            );
        }
        for stream in loaded {
            let epoch = if clean { stream.epoch } else { self.new_epoch() };
            if !clean {
                let (project, channel, top) = (stream.project.clone(), stream.channel.clone(), stream.top);
                journal.send(Op::Stream { project, channel, epoch: epoch.clone(), top });
            }
            let bytes = stream.kept.iter().map(|p| frame_bytes(&p.frame)).sum::<u64>();
            self.account(&stream.project, |usage| {
                usage.channels = usage.channels.saturating_add(1);
                usage.bytes = usage.bytes.saturating_add(bytes);
            });
            let kept = Stream { epoch, top: stream.top, kept: stream.kept.into(), bytes };
            streams.insert(Key { project: stream.project, name: stream.channel }, Arc::new(Mutex::new(kept)));
        }
        tracing::info!("channel history is kept in {}", journal.describe());
        self.journal.set(journal).map_err(|_| anyhow::anyhow!("the history's journal is open already"))
    }

    /// Resolves once every publication kept so far is in the journal (at once without one): what a publish that
    /// answers its position waits for, so that an acknowledged publication survives the host being killed.
    pub fn committed(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        match self.journal.get() {
            Some(journal) => Box::pin(journal.flush()),
            None => Box::pin(std::future::ready(())),
        }
    }

    /// Writes what is queued and marks the journal cleanly closed (at shutdown, after the last publish).
    pub async fn close(&self) {
        if let Some(journal) = self.journal.get() {
            journal.close().await;
        }
    }

    /// Accounts for `freed` bytes trimmed from `stream` and tells the journal what it keeps now.
    fn trimmed(&self, project: &str, channel: &str, stream: &Stream, freed: u64) {
        if freed == 0 {
            return;
        }
        self.account(project, |usage| usage.bytes = usage.bytes.saturating_sub(freed));
        if let Some(journal) = self.journal.get() {
            let first_kept = stream.kept.front().map_or(stream.top.saturating_add(1), |p| p.offset);
            journal.send(Op::Trim { project: project.to_owned(), channel: channel.to_owned(), first_kept });
        }
    }

    /// Whether `project`'s channels keep history.
    pub fn is_on(&self, project: &str) -> bool {
        (self.quotas)(project).history_size > 0
    }

    /// Publishes `frame` to `channel` of `project` (see [`Channels::publish`]); when the project keeps history the
    /// publication gets the next offset of the channel's stream, is kept, and members that asked for the envelope
    /// receive it with its position.
    pub fn publish(
        &self,
        fanout: Fanout<'_>,
        project: &str,
        channel: &str,
        frame: &Frame,
        skip: Option<&str>,
    ) -> Result<Published, ConnError> {
        let Fanout { channels, metrics } = fanout;
        let quotas = (self.quotas)(project);
        if quotas.history_size == 0 {
            let queued = channels.publish(project, channel, frame, skip, metrics)?;
            return Ok(Published { queued, position: None });
        }
        check_channel(channel).map_err(ConnError::Invalid)?;
        if !frame.is_data() {
            return Err(ConnError::Invalid("only text and binary messages can be published".into()));
        }
        let size = frame_bytes(frame);
        if size > quotas.history_bytes {
            metrics.quota_refused(project, "history-bytes");
            return Err(ConnError::Limit(format!(
                "a message of {size} bytes is larger than project {project:?}'s history may hold ({} bytes, \
                 quotas.history-bytes)",
                quotas.history_bytes
            )));
        }
        let stream = self.stream(project, channel, &quotas, Some(metrics))?;
        let mut stream = stream.lock().map_err(|_| failing())?;
        let now = now_ms();
        let mut freed = stream.trim(now, &quotas);
        // Room for it within the project's bytes: this channel's oldest go first.
        let used = self.usage_of(project).bytes.saturating_sub(freed);
        let mut over = used.saturating_add(size).saturating_sub(quotas.history_bytes);
        while over > 0 && !stream.kept.is_empty() {
            let popped = stream.pop();
            freed += popped;
            over = over.saturating_sub(popped);
        }
        self.trimmed(project, channel, &stream, freed);
        if over > 0 {
            metrics.quota_refused(project, "history-bytes");
            return Err(ConnError::Limit(format!(
                "project {project:?}'s channel histories hold {} bytes, the most they may (quotas.history-bytes)",
                quotas.history_bytes
            )));
        }
        let offset = stream.top.saturating_add(1);
        let publication = Publication { offset, time_ms: now, frame: frame.clone() };
        if let Some(journal) = self.journal.get() {
            let append = Op::Append {
                project: project.to_owned(),
                channel: channel.to_owned(),
                publication: publication.clone(),
            };
            if !journal.send(append) {
                return Err(ConnError::Limit(
                    "the history's journal cannot keep up (its write queue is full): not published".into(),
                ));
            }
        }
        stream.top = offset;
        let position = StreamPosition { offset, epoch: stream.epoch.clone() };
        stream.kept.push_back(publication);
        stream.bytes = stream.bytes.saturating_add(size);
        self.account(project, |usage| usage.bytes = usage.bytes.saturating_add(size));
        // Queued on the members with the stream still locked: a join from a position sees it either in the history
        // or as a member, never both.
        let queued = channels.publish_at(project, channel, frame, Some(&position), skip, metrics)?;
        Ok(Published { queued, position: Some(position) })
    }

    /// One page of `channel`'s history: at most `limit` (1 to [`MAX_HISTORY_PAGE`]) publications after `since` (from
    /// the oldest kept when none), oldest first. `invalid` when the project keeps no history.
    pub fn read(
        &self,
        project: &str,
        channel: &str,
        since: Option<&StreamPosition>,
        limit: u32,
    ) -> Result<HistoryPage, ConnError> {
        if limit == 0 || limit > MAX_HISTORY_PAGE {
            return Err(ConnError::Invalid(format!(
                "a page of history is 1 to {MAX_HISTORY_PAGE} publications; {limit} was asked for"
            )));
        }
        let quotas = self.quotas_on(project)?;
        check_channel(channel).map_err(ConnError::Invalid)?;
        let stream = self.stream(project, channel, &quotas, None)?;
        let mut stream = stream.lock().map_err(|_| failing())?;
        let freed = stream.trim(now_ms(), &quotas);
        self.trimmed(project, channel, &stream, freed);
        let (from, complete) = continue_from(since, stream.first(), stream.top, &stream.epoch);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let publications: Vec<Publication> =
            stream.kept.iter().filter(|p| p.offset >= from).take(limit).cloned().collect();
        let next = publications.last().map(|p| p.offset).filter(|last| *last < stream.top);
        Ok(HistoryPage { publications, epoch: stream.epoch.clone(), top: stream.top, complete, next })
    }

    /// Adds `conn` to `channel` of `project` (with the envelope when `with_envelope`), first queueing on it every
    /// publication kept after `since`, so that it receives those and then the live ones with no gap and no
    /// duplicate. `recovered` says whether that covered everything after `since`: false for a position of another
    /// epoch, one older than what is kept, or when the project keeps no history (unless no position was given).
    pub fn join_from(
        &self,
        fanout: Fanout<'_>,
        project: &str,
        conn: &Arc<Conn>,
        channel: &str,
        since: Option<&StreamPosition>,
        with_envelope: bool,
    ) -> Result<Recovery, ConnError> {
        let Fanout { channels, metrics } = fanout;
        let quotas = (self.quotas)(project);
        if quotas.history_size == 0 {
            channels.join_with(project, conn, channel, with_envelope, metrics)?;
            if since.is_some() {
                metrics.resumed(project, false);
            }
            return Ok(Recovery { recovered: since.is_none(), ..Recovery::default() });
        }
        check_channel(channel).map_err(ConnError::Invalid)?;
        let stream = self.stream(project, channel, &quotas, Some(metrics))?;
        let mut stream = stream.lock().map_err(|_| failing())?;
        let freed = stream.trim(now_ms(), &quotas);
        self.trimmed(project, channel, &stream, freed);
        let (from, recovered) = continue_from(since, stream.first(), stream.top, &stream.epoch);
        let missed = stream.kept.iter().filter(|p| p.offset >= from);
        let sent = send_history(conn, missed, &stream.epoch, with_envelope)?;
        // Still under the stream's lock: no publication can fall between the history sent and the membership.
        channels.join_with(project, conn, channel, with_envelope, metrics)?;
        if since.is_some() {
            metrics.resumed(project, recovered);
        }
        Ok(Recovery { recovered, sent, epoch: stream.epoch.clone(), top: stream.top, history: true })
    }

    /// [`History::list`] in a cluster: the channels keeping history on the broker, whichever host published to them.
    /// On a host alone, the same as [`History::list`].
    pub async fn list_everywhere(&self, project: Option<&str>) -> Result<Vec<StreamStats>, ConnError> {
        match self.shared.get() {
            Some(shared) => within_call_timeout(shared.list(project)).await,
            None => Ok(self.list(project)),
        }
    }

    /// Every channel keeping history, with its top offset and epoch, by project then name; only `project`'s when
    /// given.
    pub fn list(&self, project: Option<&str>) -> Vec<StreamStats> {
        let Ok(streams) = self.streams.lock() else {
            return Vec::new();
        };
        let mut list: Vec<StreamStats> = streams
            .iter()
            .filter(|(key, _)| project.is_none_or(|p| key.project == p))
            .filter_map(|(key, stream)| {
                let stream = stream.lock().ok()?;
                Some(StreamStats {
                    project: key.project.clone(),
                    channel: key.name.clone(),
                    top: stream.top,
                    epoch: stream.epoch.clone(),
                    kept: stream.kept.len(),
                })
            })
            .collect();
        list.sort_by(|a, b| (&a.project, &a.channel).cmp(&(&b.project, &b.channel)));
        list
    }

    fn quotas_on(&self, project: &str) -> Result<ProjectQuotas, ConnError> {
        let quotas = (self.quotas)(project);
        if quotas.history_size == 0 {
            return Err(ConnError::Invalid(format!(
                "project {project:?} keeps no channel history (set quotas.history-size in its project.json, or serve \
                 --history-size)"
            )));
        }
        Ok(quotas)
    }

    /// The stream of `channel` of `project`, started (with a new epoch) when it has none, within the project's quota
    /// of channels; streams whose publications have all expired are let go first when the project is at its quota.
    fn stream(
        &self,
        project: &str,
        channel: &str,
        quotas: &ProjectQuotas,
        metrics: Option<&Metrics>,
    ) -> Result<Arc<Mutex<Stream>>, ConnError> {
        let key = Key { project: project.to_owned(), name: channel.to_owned() };
        let mut streams = self.streams.lock().map_err(|_| failing())?;
        if let Some(stream) = streams.get(&key) {
            return Ok(stream.clone());
        }
        if self.usage_of(project).channels >= quotas.history_channels {
            self.let_go_of_expired(&mut streams, project, quotas);
            if self.usage_of(project).channels >= quotas.history_channels {
                if let Some(metrics) = metrics {
                    metrics.quota_refused(project, "history-channels");
                }
                return Err(ConnError::Limit(format!(
                    "project {project:?} keeps history for {} channels, the most it may (quotas.history-channels)",
                    quotas.history_channels
                )));
            }
        }
        let epoch = self.new_epoch();
        if let Some(journal) = self.journal.get() {
            let (project, channel) = (project.to_owned(), channel.to_owned());
            journal.send(Op::Stream { project, channel, epoch: epoch.clone(), top: 0 });
        }
        let stream = Arc::new(Mutex::new(Stream { epoch, top: 0, kept: VecDeque::new(), bytes: 0 }));
        streams.insert(key, stream.clone());
        self.account(project, |usage| usage.channels = usage.channels.saturating_add(1));
        Ok(stream)
    }

    /// Drops `project`'s streams that keep nothing once trimmed (their epoch and top go with them: a later publish
    /// starts a new epoch).
    fn let_go_of_expired(&self, streams: &mut HashMap<Key, Arc<Mutex<Stream>>>, project: &str, quotas: &ProjectQuotas) {
        let now = now_ms();
        let (mut dropped, mut freed) = (0u32, 0u64);
        streams.retain(|key, stream| {
            if key.project != project {
                return true;
            }
            let Ok(mut stream) = stream.lock() else {
                return true;
            };
            freed += stream.trim(now, quotas);
            let keep = !stream.kept.is_empty();
            dropped += u32::from(!keep);
            if let (false, Some(journal)) = (keep, self.journal.get()) {
                journal.send(Op::Forget { project: key.project.clone(), channel: key.name.clone() });
            }
            keep
        });
        self.account(project, |usage| {
            usage.channels = usage.channels.saturating_sub(dropped);
            usage.bytes = usage.bytes.saturating_sub(freed);
        });
    }

    /// A new epoch: the time in milliseconds and a counter, in hexadecimal, so that no two streams this host starts
    /// (nor a stream started again after a restart) share one.
    fn new_epoch(&self) -> String {
        let count = self.epochs.fetch_add(1, Ordering::Relaxed);
        format!("{:x}-{count:x}", now_ms())
    }

    fn usage_of(&self, project: &str) -> Usage {
        self.usage.lock().ok().and_then(|usage| usage.get(project).copied()).unwrap_or_default()
    }

    fn account(&self, project: &str, change: impl FnOnce(&mut Usage)) {
        if let Ok(mut usage) = self.usage.lock() {
            change(usage.entry(project.to_owned()).or_default());
        }
    }
}

/// `call`, or a `limit` error naming the broker when it takes longer than [`DEFAULT_HISTORY_CALL_TIMEOUT`].
async fn within_call_timeout<T>(call: impl Future<Output = Result<T, ConnError>>) -> Result<T, ConnError> {
    tokio::time::timeout(DEFAULT_HISTORY_CALL_TIMEOUT, call).await.unwrap_or_else(|_| {
        Err(ConnError::Limit(format!("the cluster's broker did not answer within {DEFAULT_HISTORY_CALL_TIMEOUT:?}")))
    })
}

/// The bytes a kept message counts for: its length, and 1 for an empty one (so that trimming anything frees some).
fn frame_bytes(frame: &Frame) -> u64 {
    let len = match frame {
        Frame::Text(text) => text.len(),
        Frame::Binary(data) => data.len(),
        _ => 0,
    }
    .max(1);
    u64::try_from(len).unwrap_or(u64::MAX)
}

fn failing() -> ConnError {
    ConnError::Invalid("the host's history table is unusable after a panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::Channels;
    use crate::channels::testing::open;
    use crate::conn::Hub;

    fn history(size: u32, projects_with_history: &'static [&'static str]) -> History {
        History::new(Arc::new(move |project: &str| ProjectQuotas {
            history_size: if projects_with_history.contains(&project) { size } else { 0 },
            ..ProjectQuotas::default()
        }))
    }

    fn text(frame: Option<Frame>) -> String {
        match frame {
            Some(Frame::Text(text)) => text.as_str().to_owned(),
            other => panic!("not a text frame: {other:?}"),
        }
    }

    #[tokio::test]
    async fn offsets_grow_per_channel_and_a_join_from_a_position_sends_what_followed_it() {
        let (hub, metrics, channels, history) = (Hub::new(), Metrics::new(), Channels::new(4), history(3, &["p"]));
        let publish = |channel: &str, text: &str| {
            history
                .publish(
                    Fanout { channels: &channels, metrics: &metrics },
                    "p",
                    channel,
                    &Frame::Text(text.into()),
                    None,
                )
                .unwrap()
        };
        let first = publish("a", "one").position.unwrap();
        assert_eq!(first.offset, 1);
        assert_eq!(publish("a", "two").position.unwrap().offset, 2);
        assert_eq!(publish("b", "other").position.unwrap().offset, 1, "offsets are per channel");
        let (conn, mut out) = open(&hub, "p/h");
        let recovery = history
            .join_from(Fanout { channels: &channels, metrics: &metrics }, "p", &conn, "a", Some(&first), true)
            .unwrap();
        assert_eq!((recovery.recovered, recovery.sent, recovery.top), (true, 1, 2));
        assert_eq!(text(out.next().await), format!(r#"{{"offset":2,"epoch":"{}","data":"two"}}"#, first.epoch));
        publish("a", "three");
        assert_eq!(text(out.next().await), format!(r#"{{"offset":3,"epoch":"{}","data":"three"}}"#, first.epoch));
        // Two more trim the first two (size 3): a position at 1 is no longer covered, and what is kept is sent.
        publish("a", "four");
        publish("a", "five");
        let (late, mut late_out) = open(&hub, "p/h");
        let recovery = history
            .join_from(Fanout { channels: &channels, metrics: &metrics }, "p", &late, "a", Some(&first), false)
            .unwrap();
        assert_eq!((recovery.recovered, recovery.sent), (false, 3));
        assert_eq!(text(late_out.next().await), "three");
        let other_epoch = StreamPosition { offset: 4, epoch: "elsewhere".into() };
        let page = history.read("p", "a", Some(&other_epoch), 2).unwrap();
        assert!(!page.complete);
        assert_eq!(page.publications.iter().map(|p| p.offset).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(page.next, Some(4));
        let rest = history.read("p", "a", Some(&StreamPosition { offset: 4, epoch: first.epoch.clone() }), 2).unwrap();
        assert!(rest.complete);
        assert_eq!(rest.publications.iter().map(|p| p.offset).collect::<Vec<_>>(), [5]);
        assert_eq!(rest.next, None);
    }

    /// Joins from a position racing a publisher on another thread: every joiner gets every offset after its position
    /// exactly once and in order, history then live, up to the last publication.
    #[test]
    fn joins_racing_a_publisher_get_every_later_offset_once_in_order() {
        const PUBLISHES: u64 = 600;
        let (hub, metrics, channels, history) = (Hub::new(), Metrics::new(), Channels::new(4), history(1_000, &["p"]));
        let fanout = Fanout { channels: &channels, metrics: &metrics };
        let first = history.publish(fanout, "p", "a", &Frame::Text("0".into()), None).unwrap().position.unwrap();
        // Every position the joiners ask for is kept before they start.
        for i in 1..300 {
            history.publish(fanout, "p", "a", &Frame::Text(i.to_string().into()), None).unwrap();
        }
        let joined = std::thread::scope(|scope| {
            scope.spawn(|| {
                for i in 300..PUBLISHES {
                    history.publish(fanout, "p", "a", &Frame::Text(i.to_string().into()), None).unwrap();
                }
            });
            let mut joined = Vec::new();
            for k in 0..40u64 {
                let (conn, out) = open(&hub, "p/h");
                // Positions anywhere in what is kept, while the publisher goes on.
                let since = StreamPosition { offset: (k * 13) % 300, epoch: first.epoch.clone() };
                let recovery = history.join_from(fanout, "p", &conn, "a", Some(&since), false).unwrap();
                assert!(recovery.recovered);
                joined.push((since.offset, conn, out));
                std::thread::yield_now();
            }
            joined
        });
        for (since, _conn, mut out) in joined {
            let mut got = Vec::new();
            while let Some(frame) = out.try_next() {
                got.push(match frame {
                    Frame::Text(text) => text.as_str().parse::<u64>().unwrap() + 1,
                    other => panic!("{other:?}"),
                });
            }
            assert_eq!(got, (since + 1..=PUBLISHES).collect::<Vec<_>>(), "joined after {since}");
        }
    }

    #[test]
    fn a_project_without_history_gets_no_offsets_and_cannot_read() {
        let (metrics, channels, history) = (Metrics::new(), Channels::new(4), history(10, &["p"]));
        let published = history
            .publish(Fanout { channels: &channels, metrics: &metrics }, "q", "a", &Frame::Text("x".into()), None)
            .unwrap();
        assert_eq!(published, Published { queued: 0, position: None });
        assert!(matches!(history.read("q", "a", None, 10), Err(ConnError::Invalid(_))));
        assert!(matches!(history.read("p", "a", None, 0), Err(ConnError::Invalid(_))));
        history
            .publish(Fanout { channels: &channels, metrics: &metrics }, "p", "a", &Frame::Text("x".into()), None)
            .unwrap();
        let listed = history.list(None);
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].project.as_str(), listed[0].top, listed[0].kept), ("p", 1, 1));
    }

    #[test]
    fn the_quotas_of_channels_and_bytes_are_named_when_reached() {
        let history = History::new(Arc::new(|_: &str| ProjectQuotas {
            history_size: 10,
            history_channels: 1,
            history_bytes: 10,
            ..ProjectQuotas::default()
        }));
        let (metrics, channels) = (Metrics::new(), Channels::new(4));
        let publish = |channel: &str, text: &str| {
            history.publish(
                Fanout { channels: &channels, metrics: &metrics },
                "p",
                channel,
                &Frame::Text(text.to_owned().into()),
                None,
            )
        };
        publish("a", "123456").unwrap();
        // Over the bytes: the channel's oldest go first.
        publish("a", "7890ab").unwrap();
        assert_eq!(history.read("p", "a", None, 10).unwrap().publications.len(), 1);
        assert!(
            matches!(publish("a", "x".repeat(11).as_str()), Err(ConnError::Limit(why)) if why.contains("history-bytes"))
        );
        assert!(matches!(publish("b", "x"), Err(ConnError::Limit(why)) if why.contains("history-channels")));
    }
}
