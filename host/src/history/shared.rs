//! Channel history across a cluster (`serve --nats`): every project that keeps history has a JetStream stream on the
//! broker ([`wasmsock_wire::cluster::history_stream`]) with a subject per channel, keeping the project's
//! `history-size` messages per subject for `history-ttl-seconds` within `history-bytes`, on disk.
//!
//! - **Offsets every host agrees on**: a publication carries its offset and its channel's epoch in headers
//!   ([`OFFSET_HEADER`], [`EPOCH_HEADER`]). A host publishes the next offset after the channel's last kept message,
//!   guarded by `Nats-Expected-Last-Subject-Sequence` set to that message's sequence (0: none), so two hosts
//!   publishing at once cannot take the same offset: the one that loses reads the last message again and retries.
//!   Each host writes one channel's publications one at a time, in the order they were made ([`Shared::publish`]).
//! - **Epochs**: a channel whose subject holds nothing (never used, every publication expired, the stream lost)
//!   starts again at offset 1 under a new epoch, so a position from before is never taken as covered.
//! - **Acknowledged means kept**: a publish answers its position once the broker has stored it (file storage), so a
//!   host killed with `kill -9` loses nothing it acknowledged.
//! - **Live delivery** comes from the stream itself: it republishes every kept message, with its headers, on the
//!   channel's subject, which the hosts with members listen to; every host sees one channel's publications in the
//!   stream's order. A host remembers the last position it delivered per channel: a duplicate is dropped, and a
//!   gap (a message lost between the broker and the host) is filled from the stream before the next is delivered.
//! - **Join from a position**: the host listens to the channel first, then, under the channel's delivery lock, reads
//!   where the history ends, sends the member what followed its position, and adds it with that end as the point
//!   after which live publications are its own ([`Channels::join_after`]). Whatever the broker republished before
//!   the end is skipped for it, whatever came after reaches it: no gap, no duplicate.
//!
//! Not enforced across hosts: `history-channels` (the broker has no limit on subjects per stream).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt as _;
use tokio::sync::{mpsc, oneshot};

use wasmsock_wire::cluster::{
    EPOCH_HEADER, KIND_HEADER, OFFSET_HEADER, SKIP_HEADER, history_republish, history_stream, history_subject,
    history_subjects, host_of, parse_history_stream, parse_history_subject,
};
use wasmsock_wire::history::{HistoryPage, Publication, Recovery, StreamPosition, continue_from};
use wasmsock_wire::kv::now_ms;
use wasmsock_wire::{Bytes, ConnError, Frame, ProjectQuotas, Utf8Bytes};

use super::terms::{Fanout, QuotasOf, StreamStats, send_history};
use crate::channels::Channels;
use crate::conn::Conn;

/// The longest one history call may take on the broker (a publish's acknowledgement with its retries, a page, a
/// join's reads); past it the call is a `limit` error naming the broker.
pub const DEFAULT_HISTORY_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Publications of one channel waiting on this host to be written to the broker; past it a publish is refused (a
/// `limit` error) rather than held in memory. A channel's publications are written one broker round trip after the
/// other, so this is a burst of a second or more of the most one channel can take; enough for a handler that
/// publishes thousands at once.
pub const DEFAULT_HISTORY_PUBLISH_QUEUE: usize = 16_384;

/// The most channels one listing of the cluster's history reads (one request each for its top).
pub const MAX_LISTED: usize = 1_000;

/// How often a publish whose offset another host took first is tried again before it is refused.
const RACE_RETRIES: u32 = 64;

/// A channel's writer with nothing to write for this long ends (a later publish starts another).
const WRITER_IDLE: Duration = Duration::from_secs(30);

/// How many channels' last delivered positions a host keeps before it lets go of those with no member here.
const PRUNE_DELIVERED_PAST: usize = 4_096;

/// The header of a JetStream publish that makes it conditional on the subject's last sequence.
const EXPECTED_LAST_SUBJECT_SEQUENCE: &str = "Nats-Expected-Last-Subject-Sequence";

/// A channel within its project.
type Key = (String, String);

/// One publish waiting for its channel's writer.
struct Job {
    frame: Frame,
    /// The connection (`s12@h1`) that does not receive it.
    skip: Option<String>,
    quotas: ProjectQuotas,
    answer: Option<oneshot::Sender<Result<StreamPosition, ConnError>>>,
}

/// The last kept publication of a channel as a writer knows it: its stream sequence and position.
#[derive(Debug, Clone)]
struct Last {
    sequence: u64,
    position: StreamPosition,
}

/// The history of every project's channels on the broker, as this host uses it.
pub(super) struct Shared {
    /// The broker connection, to answer at once while it is down rather than after a timeout per call.
    client: async_nats::Client,
    jetstream: jetstream::Context,
    cluster: String,
    host: String,
    /// Each project's stream, with the quotas it was made for (changed on the broker when they change).
    streams: tokio::sync::Mutex<HashMap<String, (stream::Stream, ProjectQuotas)>>,
    /// Each channel's writer on this host.
    writers: Mutex<HashMap<Key, mpsc::Sender<Job>>>,
    /// Each channel's last position delivered on this host; its lock orders deliveries and joins.
    delivered: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<Option<StreamPosition>>>>>,
    epochs: AtomicU64,
    quotas: QuotasOf,
    me: Weak<Shared>,
}

impl Shared {
    /// History on the broker `client` is connected to, for the hosts of `cluster`, as host `host`.
    pub(super) fn new(client: async_nats::Client, cluster: &str, host: &str, quotas: QuotasOf) -> Arc<Self> {
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(DEFAULT_HISTORY_CALL_TIMEOUT);
        Arc::new_cyclic(|me| Self {
            client,
            jetstream,
            cluster: cluster.to_owned(),
            host: host.to_owned(),
            streams: tokio::sync::Mutex::default(),
            writers: Mutex::default(),
            delivered: Mutex::default(),
            epochs: AtomicU64::new(0),
            quotas,
            me: me.clone(),
        })
    }

    /// Queues `frame` to be kept and published on `channel` of `project`, after this host's earlier publishes to it;
    /// when `answer`, the position it was given arrives on the receiver once the broker stored it.
    pub(super) fn publish(
        &self,
        project: &str,
        channel: &str,
        frame: Frame,
        skip: Option<&str>,
        quotas: ProjectQuotas,
        answer: bool,
    ) -> Result<Option<oneshot::Receiver<Result<StreamPosition, ConnError>>>, ConnError> {
        let (sender, receiver) = if answer {
            let (sender, receiver) = oneshot::channel();
            (Some(sender), Some(receiver))
        } else {
            (None, None)
        };
        let key = (project.to_owned(), channel.to_owned());
        let mut writers = self.writers.lock().map_err(|_| failing())?;
        let mut job = Job { frame, skip: skip.map(str::to_owned), quotas, answer: sender };
        // Sent with the table locked: a writer that ends while idle takes itself out under the same lock.
        for _ in 0..2 {
            let writer = writers.entry(key.clone()).or_insert_with(|| {
                let (writer, jobs) = mpsc::channel(DEFAULT_HISTORY_PUBLISH_QUEUE);
                tokio::spawn(write(self.me.clone(), key.clone(), jobs));
                writer
            });
            match writer.try_send(job) {
                Ok(()) => return Ok(receiver),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return Err(ConnError::Limit(format!(
                        "{DEFAULT_HISTORY_PUBLISH_QUEUE} publications to channel {channel:?} are waiting for the \
                         cluster's broker: not published"
                    )));
                }
                Err(mpsc::error::TrySendError::Closed(back)) => {
                    writers.remove(&key);
                    job = back;
                }
            }
        }
        Err(failing())
    }

    /// Keeps `job`'s message as the next publication of its channel; `last` is what the writer knows of the channel's
    /// last publication (none: read it from the broker), updated.
    async fn append(&self, key: &Key, job: &Job, last: &mut Option<Last>) -> Result<StreamPosition, ConnError> {
        let (project, channel) = key;
        let stream = self.stream(project, &job.quotas).await?;
        let subject = history_subject(&self.cluster, project, channel);
        for _ in 0..RACE_RETRIES {
            if last.is_none() {
                *last = Some(
                    self.last(&stream, &subject)
                        .await?
                        .unwrap_or(Last { sequence: 0, position: StreamPosition { offset: 0, epoch: String::new() } }),
                );
            }
            let Some(known) = last.clone() else { continue };
            let next = if known.sequence == 0 {
                StreamPosition { offset: 1, epoch: self.new_epoch() }
            } else {
                StreamPosition { offset: known.position.offset.saturating_add(1), epoch: known.position.epoch }
            };
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(EXPECTED_LAST_SUBJECT_SEQUENCE, known.sequence.to_string().as_str());
            headers.insert(OFFSET_HEADER, next.offset.to_string().as_str());
            headers.insert(EPOCH_HEADER, next.epoch.as_str());
            if let Some(skip) = &job.skip {
                headers.insert(SKIP_HEADER, skip.as_str());
            }
            let payload = match &job.frame {
                Frame::Text(text) => Bytes::from(text.clone()),
                Frame::Binary(data) => {
                    headers.insert(KIND_HEADER, "binary");
                    data.clone()
                }
                _ => return Err(ConnError::Invalid("only text and binary messages can be published".into())),
            };
            let sent = self
                .jetstream
                .publish_with_headers(subject.clone(), headers, payload)
                .await
                .map_err(|err| unavailable("publishing", err))?;
            match sent.await {
                Ok(ack) => {
                    *last = Some(Last { sequence: ack.sequence, position: next.clone() });
                    return Ok(next);
                }
                Err(err) if err.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => *last = None,
                Err(err) => return Err(unavailable("publishing", err)),
            }
        }
        Err(ConnError::Limit(format!(
            "channel {channel:?} is published to from other hosts so fast that this publish lost {RACE_RETRIES} times \
             in a row: not published"
        )))
    }

    /// One page of `channel`'s history on the broker (see [`super::History::read`]).
    pub(super) async fn read(
        &self,
        project: &str,
        channel: &str,
        since: Option<&StreamPosition>,
        limit: u32,
        quotas: &ProjectQuotas,
    ) -> Result<HistoryPage, ConnError> {
        let stream = self.stream(project, quotas).await?;
        let subject = history_subject(&self.cluster, project, channel);
        let Some(top) = self.last(&stream, &subject).await? else {
            let (_, complete) = continue_from(since, 0, 0, "");
            return Ok(HistoryPage {
                complete: complete || since.is_some_and(|s| s.offset == 0),
                ..Default::default()
            });
        };
        let first = self.first(&stream, &subject).await?.unwrap_or_else(|| top.clone());
        let (from, complete) = continue_from(since, first.position.offset, top.position.offset, &top.position.epoch);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let publications = self.range(&stream, &subject, from, &first, &top, limit).await?;
        let next = publications.last().map(|p| p.offset).filter(|offset| *offset < top.position.offset);
        Ok(HistoryPage { publications, epoch: top.position.epoch, top: top.position.offset, complete, next })
    }

    /// Adds `conn` to `channel` after sending it what the broker kept after `since` (see the module's notes); the
    /// caller has made this host listen to the channel first.
    pub(super) async fn join_from(
        &self,
        fanout: Fanout<'_>,
        project: &str,
        conn: &Arc<Conn>,
        channel: &str,
        since: Option<&StreamPosition>,
        with_envelope: bool,
    ) -> Result<Recovery, ConnError> {
        let Fanout { channels, metrics } = fanout;
        let quotas = &(self.quotas)(project);
        let delivering = self.delivery_lock(channels, project, channel)?;
        let _delivering = delivering.lock().await;
        let stream = self.stream(project, quotas).await?;
        let subject = history_subject(&self.cluster, project, channel);
        let Some(top) = self.last(&stream, &subject).await? else {
            channels.join_after(project, conn, channel, with_envelope, None, metrics)?;
            let recovered = since.is_none_or(|since| since.offset == 0);
            if since.is_some() {
                metrics.resumed(project, recovered);
            }
            return Ok(Recovery { recovered, sent: 0, epoch: String::new(), top: 0, history: true });
        };
        let first = self.first(&stream, &subject).await?.unwrap_or_else(|| top.clone());
        let (from, recovered) = continue_from(since, first.position.offset, top.position.offset, &top.position.epoch);
        let missed = self.range(&stream, &subject, from, &first, &top, usize::MAX).await?;
        let sent = send_history(conn, missed.iter(), &top.position.epoch, with_envelope)?;
        channels.join_after(project, conn, channel, with_envelope, Some(top.position.clone()), metrics)?;
        if since.is_some() {
            metrics.resumed(project, recovered);
        }
        Ok(Recovery { recovered, sent, epoch: top.position.epoch, top: top.position.offset, history: true })
    }

    /// Delivers a publication the broker republished to this host's members of `channel`, in the channel's order:
    /// one delivered already is dropped, and the publications between the last delivered and this one (lost on the
    /// way) are read from the stream and delivered first. Returns how many members it was queued for.
    pub(super) async fn deliver(
        &self,
        fanout: Fanout<'_>,
        project: &str,
        channel: &str,
        frame: &Frame,
        position: StreamPosition,
        skip: Option<&str>,
    ) -> u32 {
        let quotas = &(self.quotas)(project);
        let Fanout { channels, .. } = fanout;
        // A connection of this host that published it and asked not to receive it.
        let skip = skip.filter(|id| host_of(id) == Some(self.host.as_str()));
        let Ok(delivering) = self.delivery_lock(channels, project, channel) else { return 0 };
        let mut delivered = delivering.lock().await;
        let mut queued = 0;
        if let Some(last) = delivered.as_ref().filter(|last| last.epoch == position.epoch) {
            if position.offset <= last.offset {
                return 0;
            }
            if position.offset > last.offset.saturating_add(1) {
                let missing = self.missing(project, channel, last, &position, quotas).await;
                match missing {
                    Ok(missing) => {
                        for publication in missing {
                            let at = StreamPosition { offset: publication.offset, epoch: position.epoch.clone() };
                            queued +=
                                channels.fan_out_at(project, channel, &publication.frame, Some(&at), None).unwrap_or(0);
                        }
                    }
                    Err(err) => tracing::warn!(
                        project,
                        channel,
                        "publications {}..{} of the channel were lost on the way from the broker and cannot be read \
                         back: {err}",
                        last.offset.saturating_add(1),
                        position.offset
                    ),
                }
            }
        }
        queued += channels.fan_out_at(project, channel, frame, Some(&position), skip).unwrap_or(0);
        *delivered = Some(position);
        drop(delivered);
        // A channel with no member here forgets its position, unless a join holds it.
        if queued == 0
            && !channels.has_members(project, channel)
            && let Ok(mut table) = self.delivered.lock()
            && Arc::strong_count(&delivering) == 2
        {
            table.remove(&(project.to_owned(), channel.to_owned()));
        }
        queued
    }

    /// The publications strictly between `last` and `next` (of one epoch), from the stream.
    async fn missing(
        &self,
        project: &str,
        channel: &str,
        last: &StreamPosition,
        next: &StreamPosition,
        quotas: &ProjectQuotas,
    ) -> Result<Vec<Publication>, ConnError> {
        let stream = self.stream(project, quotas).await?;
        let subject = history_subject(&self.cluster, project, channel);
        let (Some(first), Some(top)) = (self.first(&stream, &subject).await?, self.last(&stream, &subject).await?)
        else {
            return Ok(Vec::new());
        };
        if top.position.epoch != next.epoch {
            return Ok(Vec::new());
        }
        let count = usize::try_from(next.offset.saturating_sub(last.offset).saturating_sub(1)).unwrap_or(usize::MAX);
        let from = last.offset.saturating_add(1);
        self.range(&stream, &subject, from, &first, &top, count).await
    }

    /// The lock that orders deliveries and joins of one channel on this host, with the last position delivered.
    ///
    /// A channel's entry goes when a publication finds no member for it here ([`Shared::deliver`]); one whose last
    /// member left when nothing more came is let go when the table is past [`PRUNE_DELIVERED_PAST`] entries.
    fn delivery_lock(
        &self,
        channels: &Channels,
        project: &str,
        channel: &str,
    ) -> Result<Arc<tokio::sync::Mutex<Option<StreamPosition>>>, ConnError> {
        let mut table = self.delivered.lock().map_err(|_| failing())?;
        if table.len() > PRUNE_DELIVERED_PAST {
            table.retain(|(project, channel), lock| {
                Arc::strong_count(lock) > 1 || channels.has_members(project, channel)
            });
        }
        Ok(table.entry((project.to_owned(), channel.to_owned())).or_default().clone())
    }

    /// `project`'s stream, made (or changed to) what its quotas say when this host first uses it or they changed.
    ///
    /// Every call on the broker starts here: while the broker is not connected it answers at once.
    async fn stream(&self, project: &str, quotas: &ProjectQuotas) -> Result<stream::Stream, ConnError> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(ConnError::Limit(
                "the cluster's broker is not connected: channel history is unavailable".into(),
            ));
        }
        let mut streams = self.streams.lock().await;
        if let Some((stream, made_for)) = streams.get(project)
            && same_limits(made_for, quotas)
        {
            return Ok(stream.clone());
        }
        let config = stream::Config {
            name: history_stream(&self.cluster, project),
            description: Some(format!("wasmsock: the channel history of project {project:?}")),
            subjects: vec![history_subjects(&self.cluster, project)],
            max_messages_per_subject: i64::from(quotas.history_size),
            max_age: Duration::from_secs(u64::from(quotas.history_ttl_seconds)),
            max_bytes: i64::try_from(quotas.history_bytes).unwrap_or(i64::MAX),
            discard: stream::DiscardPolicy::Old,
            storage: stream::StorageType::File,
            allow_direct: true,
            republish: Some(stream::Republish {
                source: history_subjects(&self.cluster, project),
                destination: history_republish(&self.cluster, project),
                headers_only: false,
            }),
            ..Default::default()
        };
        let info = self
            .jetstream
            .create_or_update_stream(config)
            .await
            .map_err(|err| unavailable("opening the project's history stream", err))?;
        let stream = self
            .jetstream
            .get_stream(&info.config.name)
            .await
            .map_err(|err| unavailable("opening the project's history stream", err))?;
        streams.insert(project.to_owned(), (stream.clone(), *quotas));
        Ok(stream)
    }

    /// Every channel keeping history on the broker (only `project`'s when given), with its top offset, epoch and how
    /// many publications it keeps: read from the streams of this cluster, at most [`MAX_LISTED`] channels.
    pub(super) async fn list(&self, project: Option<&str>) -> Result<Vec<StreamStats>, ConnError> {
        let mut names = self.jetstream.stream_names();
        let mut projects = Vec::new();
        while let Some(name) = names.next().await {
            let name = name.map_err(|err| unavailable("listing the history streams", err))?;
            if let Some(found) = parse_history_stream(&self.cluster, &name)
                && project.is_none_or(|wanted| wanted == found)
            {
                projects.push((found, name));
            }
        }
        let mut listed = Vec::new();
        for (project, name) in projects {
            let stream = self.jetstream.get_stream(&name).await.map_err(|err| unavailable("listing", err))?;
            let mut subjects = stream
                .info_with_subjects(history_subjects(&self.cluster, &project))
                .await
                .map_err(|err| unavailable("listing the channels", err))?;
            let mut counted = Vec::new();
            while let Some(subject) = subjects.next().await {
                let (subject, kept) = subject.map_err(|err| unavailable("listing the channels", err))?;
                counted.push((subject, kept));
                if listed.len() + counted.len() >= MAX_LISTED {
                    break;
                }
            }
            for (subject, kept) in counted {
                let (Some(channel), Some(last)) =
                    (parse_history_subject(&subject), self.last(&stream, &subject).await?)
                else {
                    continue;
                };
                let (project, top, epoch) = (project.clone(), last.position.offset, last.position.epoch);
                listed.push(StreamStats { project, channel, top, epoch, kept });
            }
            if listed.len() >= MAX_LISTED {
                break;
            }
        }
        listed.sort_by(|a, b| (&a.project, &a.channel).cmp(&(&b.project, &b.channel)));
        Ok(listed)
    }

    /// The channel's last kept publication; none when it keeps none.
    async fn last(&self, stream: &stream::Stream, subject: &str) -> Result<Option<Last>, ConnError> {
        match stream.direct_get_last_for_subject(subject).await {
            Ok(message) => Ok(Some(kept(&message)?)),
            Err(err) if matches!(err.kind(), stream::DirectGetErrorKind::NotFound) => Ok(None),
            Err(err) => Err(unavailable("reading the channel's history", err)),
        }
    }

    /// The channel's first kept publication at or after stream sequence `from` (the oldest when none).
    async fn next_at(
        &self,
        stream: &stream::Stream,
        subject: &str,
        from: Option<u64>,
    ) -> Result<Option<Last>, ConnError> {
        match stream.direct_get_next_for_subject(subject, from).await {
            Ok(message) => Ok(Some(kept(&message)?)),
            Err(err) if matches!(err.kind(), stream::DirectGetErrorKind::NotFound) => Ok(None),
            Err(err) => Err(unavailable("reading the channel's history", err)),
        }
    }

    async fn first(&self, stream: &stream::Stream, subject: &str) -> Result<Option<Last>, ConnError> {
        self.next_at(stream, subject, None).await
    }

    /// At most `limit` publications from offset `from` up to `top`, oldest first. The stream sequence of `from` is
    /// found by bisection between the first kept and the top (offsets grow with sequences within a channel), then
    /// read with one ordered consumer filtered to the channel.
    async fn range(
        &self,
        stream: &stream::Stream,
        subject: &str,
        from: u64,
        first: &Last,
        top: &Last,
        limit: usize,
    ) -> Result<Vec<Publication>, ConnError> {
        if from > top.position.offset || limit == 0 {
            return Ok(Vec::new());
        }
        let start = if from <= first.position.offset {
            first.sequence
        } else if from == top.position.offset {
            top.sequence
        } else {
            // Invariant: the publication at `from` has a sequence in (low, high).
            let (mut low, mut high) = (first.sequence, top.sequence);
            loop {
                if high.saturating_sub(low) <= 1 {
                    break low.saturating_add(1);
                }
                let middle = low + (high - low) / 2;
                let Some(found) = self.next_at(stream, subject, Some(middle)).await? else {
                    break low.saturating_add(1);
                };
                match found.position.offset.cmp(&from) {
                    std::cmp::Ordering::Equal => break found.sequence,
                    std::cmp::Ordering::Greater => high = middle,
                    std::cmp::Ordering::Less => low = found.sequence,
                }
            }
        };
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: subject.to_owned(),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: start },
                ..Default::default()
            })
            .await
            .map_err(|err| unavailable("reading the channel's history", err))?;
        let mut messages =
            consumer.messages().await.map_err(|err| unavailable("reading the channel's history", err))?;
        let mut publications = Vec::new();
        while publications.len() < limit {
            let Some(message) = messages.next().await else { break };
            let message = message.map_err(|err| unavailable("reading the channel's history", err))?;
            let info = message.info().map_err(|err| unavailable("reading the channel's history", err))?;
            let time_ms = i64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
            let sequence = info.stream_sequence;
            let position = position_of(message.headers.as_ref())?;
            if position.offset >= from {
                publications.push(Publication { offset: position.offset, time_ms, frame: frame_of(&message)? });
            }
            if sequence >= top.sequence || position.offset >= top.position.offset {
                break;
            }
        }
        Ok(publications)
    }

    /// A new epoch: the time in milliseconds, this host and a counter, so that no two chains of offsets share one.
    fn new_epoch(&self) -> String {
        let count = self.epochs.fetch_add(1, Ordering::Relaxed);
        format!("{:x}-{}-{count:x}", now_ms(), self.host)
    }
}

/// Writes one channel's publications on this host to the broker, one after the other, in the order they were made.
async fn write(shared: Weak<Shared>, key: Key, mut jobs: mpsc::Receiver<Job>) {
    let mut last: Option<Last> = None;
    loop {
        let job = match tokio::time::timeout(WRITER_IDLE, jobs.recv()).await {
            Ok(Some(job)) => job,
            Ok(None) => return,
            Err(_) => {
                let Some(shared) = shared.upgrade() else { return };
                let Ok(mut writers) = shared.writers.lock() else { return };
                if jobs.is_empty() {
                    writers.remove(&key);
                    return;
                }
                continue;
            }
        };
        let Some(shared) = shared.upgrade() else { return };
        let appended =
            match tokio::time::timeout(DEFAULT_HISTORY_CALL_TIMEOUT, shared.append(&key, &job, &mut last)).await {
                Ok(appended) => appended,
                Err(_) => Err(ConnError::Limit(format!(
                    "the cluster's broker did not keep the publication within {DEFAULT_HISTORY_CALL_TIMEOUT:?}: it may \
                 or may not be kept"
                ))),
            };
        if appended.is_err() {
            // Read the channel's end again before the next one.
            last = None;
        }
        match job.answer {
            Some(answer) => {
                let _ = answer.send(appended);
            }
            None => {
                if let Err(err) = appended {
                    let (project, channel) = &key;
                    tracing::warn!(project, channel, "a publication to a channel with history was not kept: {err}");
                }
            }
        }
    }
}

/// Whether a stream made for `a` keeps what `b` asks.
fn same_limits(a: &ProjectQuotas, b: &ProjectQuotas) -> bool {
    (a.history_size, a.history_ttl_seconds, a.history_bytes) == (b.history_size, b.history_ttl_seconds, b.history_bytes)
}

/// A kept message's sequence and position.
fn kept(message: &jetstream::message::StreamMessage) -> Result<Last, ConnError> {
    Ok(Last { sequence: message.sequence, position: position_of(Some(&message.headers))? })
}

/// The position in a kept message's headers.
fn position_of(headers: Option<&async_nats::HeaderMap>) -> Result<StreamPosition, ConnError> {
    let header = |name: &str| headers.and_then(|headers| headers.get(name)).map(|value| value.as_str().to_owned());
    match (header(OFFSET_HEADER).and_then(|offset| offset.parse().ok()), header(EPOCH_HEADER)) {
        (Some(offset), Some(epoch)) => Ok(StreamPosition { offset, epoch }),
        _ => Err(ConnError::Limit("a message in a history stream on the broker has no position: not ours?".into())),
    }
}

/// The frame of a kept message read through a consumer.
fn frame_of(message: &jetstream::Message) -> Result<Frame, ConnError> {
    let binary =
        message.headers.as_ref().and_then(|headers| headers.get(KIND_HEADER)).is_some_and(|k| k.as_str() == "binary");
    if binary {
        return Ok(Frame::Binary(message.payload.clone()));
    }
    Utf8Bytes::try_from(message.payload.clone())
        .map(Frame::Text)
        .map_err(|_| ConnError::Limit("a text message in a history stream on the broker is not UTF-8".into()))
}

fn unavailable(what: &str, err: impl std::fmt::Display) -> ConnError {
    ConnError::Limit(format!("the cluster's broker failed {what}: {err}"))
}

fn failing() -> ConnError {
    ConnError::Invalid("the host's table of channel histories is unusable after a panic".into())
}
