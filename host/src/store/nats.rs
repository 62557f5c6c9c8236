//! The cluster's backend (`serve --nats`): every project's keys in a JetStream KV bucket of its own on the broker, and
//! every project's configuration in one bucket that each host follows, so every host (and one that starts later) reads
//! what another wrote.
//!
//! - A project's bucket is `<cluster>_kv_<hex project>` ([`wasmsock_wire::kv::bucket_name`]), history 1, created by
//!   the first host that uses it; keys are escaped ([`wasmsock_wire::kv::escape_key`]). A revision is the bucket's
//!   stream sequence: it changes on every write and is never reused, so a delete and a re-create never bring an old
//!   revision back (no A-B-A).
//! - Every write reads the key's last message first and is published with `Nats-Expected-Last-Subject-Sequence` set
//!   to it, so conditions (absent, at a revision), increments and the quota check of the key hold atomically across
//!   hosts; a write that loses the race is tried again (at most [`DEFAULT_KV_INCREMENT_RETRIES`] times, then
//!   `unavailable: contention`).
//! - A time to live is the broker's per-message TTL (`Nats-TTL`, nats-server 2.11 or later; the bucket is created with
//!   limit markers, so an expiry is seen by every host as a removal). On an older server a bucket cannot have it and
//!   a write with a time to live is `invalid`, everything else works. An increment of a key that has a time to live
//!   keeps its expiry, rounded up to whole seconds (the broker counts TTLs in seconds).
//! - Quotas: `value-bytes` is checked before anything is sent. `keys` and `bytes` are checked, before a write that
//!   adds a key or grows a value, against the bucket's usage as this host knows it: every host that used a bucket
//!   follows it (a headers-only ordered consumer: key, size and removal of every message) and counts its own writes
//!   at once. Exact on one host; across hosts two writes in flight at the same moment on different hosts may both
//!   pass, so a quota can be overshot by the writes in flight (each still within `value-bytes`).
//! - Alarms: one bucket for every project's alarms, followed by every host (`nats_alarms.rs`); a due alarm fires on
//!   the one host whose delete at its revision wins.
//! - Every broker failure is `unavailable`; no call waits longer than [`DEFAULT_KV_CALL_TIMEOUT`], and while the
//!   broker is not connected calls answer `unavailable` at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt as _;
use tokio::sync::OnceCell;

use wasmsock_wire::kv::now_ms;
use wasmsock_wire::kv::{
    Alarm, Condition, ConfigSnapshot, ConfigValue, Entry, KeysPage, KvError, KvQuotas, PutOptions, bucket_name,
    config_bucket_name, config_entry_key, escape_key, parse_config_entry_key, parse_counter, unescape_key,
};
use wasmsock_wire::limits::{DEFAULT_CONFIG_MAX_KEYS, DEFAULT_KV_INCREMENT_RETRIES};

use super::backend::Backend;
use super::nats_alarms::Alarms;
use crate::runtime::KvFuture;

/// The longest one store call may take on the broker, retries included: past it the call is `unavailable` (a handler
/// waits off its clock, but it waits).
pub const DEFAULT_KV_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest one request to the broker (a read, a write's acknowledgement) may take.
pub const DEFAULT_KV_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the broker keeps the marker an expired key leaves (so a host that follows the bucket sees the expiry).
pub const DEFAULT_KV_MARKER_TTL: Duration = Duration::from_secs(60);

/// How long a starting host waits for the configuration of every project before handlers run (when the broker is
/// connected; otherwise configuration is empty until it is).
pub const DEFAULT_CONFIG_LOAD_WAIT: Duration = Duration::from_secs(2);

/// How often a host whose broker is down, or whose configuration watch ended, tries to follow the configuration again.
pub const DEFAULT_CONFIG_RETRY: Duration = Duration::from_secs(1);

/// How long a quota check waits for this host to know a bucket's usage after opening it; past it, it goes on with
/// what it knows.
const USAGE_WAIT: Duration = Duration::from_secs(1);

/// A following consumer that has delivered nothing for this long after it was created has delivered everything.
const IDLE_IS_CURRENT: Duration = Duration::from_millis(300);

/// Headers of the broker's KV and JetStream.
const KV_OPERATION: &str = "KV-Operation";
const EXPECTED_LAST_SUBJECT_SEQUENCE: &str = "Nats-Expected-Last-Subject-Sequence";
const MESSAGE_TTL: &str = "Nats-TTL";
const MARKER_REASON: &str = "Nats-Marker-Reason";
const MESSAGE_SIZE: &str = "Nats-Msg-Size";

/// What a write with a time to live answers when the broker cannot keep one.
const NO_TTL: &str = "ttl needs nats-server 2.11";

/// What the cluster's store keeps: the broker connection, the buckets opened, the configuration followed.
struct Inner {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    cluster: String,
    /// Each project's bucket, opened (or created) on first use.
    buckets: Mutex<HashMap<String, Arc<OnceCell<Arc<Bucket>>>>>,
    config: Arc<Configs>,
    /// Stops following the configuration when the backend is dropped.
    follower: tokio::task::JoinHandle<()>,
    /// Every project's alarms, and the task following them.
    alarms: Arc<Alarms>,
    alarm_follower: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nats").field("cluster", &self.cluster).finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.follower.abort();
        self.alarm_follower.abort();
    }
}

/// Every project's configuration as this host follows it.
#[derive(Default)]
struct Configs {
    /// The configuration bucket, once opened.
    store: OnceCell<kv::Store>,
    state: RwLock<ConfigState>,
    /// Set once the configuration was read in full after start.
    loaded: tokio::sync::watch::Sender<bool>,
}

#[derive(Default)]
struct ConfigState {
    snapshots: HashMap<String, Arc<ConfigSnapshot>>,
    /// The revision last applied per key of the bucket (an older one arriving later is ignored).
    revisions: HashMap<String, u64>,
}

/// A configuration value as the bucket holds it.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredConfig {
    value: String,
    secret: bool,
}

/// One project's bucket.
struct Bucket {
    store: kv::Store,
    /// `$KV.<bucket>.`: a key's subject is this and the escaped key.
    prefix: String,
    /// Whether the bucket takes per-key times to live.
    ttl: bool,
    usage: Arc<Usage>,
    follower: tokio::task::JoinHandle<()>,
}

impl Drop for Bucket {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

/// A bucket's keys and bytes as this host knows them.
#[derive(Default)]
struct Usage {
    index: Mutex<Index>,
    /// Set once the follower has delivered the bucket's state at its start.
    current: tokio::sync::watch::Sender<bool>,
}

/// The live keys of a bucket (escaped) with the revision and size (key and value bytes) of each.
#[derive(Default)]
struct Index {
    keys: HashMap<String, (u64, u64)>,
    bytes: u64,
    /// The last stream sequence the follower applied.
    last: u64,
    /// Keys this host removed that the follower has not reached yet, with the removal's revision (so an older write
    /// it delivers later does not bring them back).
    removed: HashMap<String, u64>,
}

impl Index {
    /// Applies a change of `key` at `revision`: its new size, or none when it was removed. A change older than what
    /// is known of the key is ignored.
    fn apply(&mut self, key: &str, revision: u64, size: Option<u64>) {
        let known = self.keys.get(key).map(|(r, _)| *r).or_else(|| self.removed.get(key).copied()).unwrap_or(0);
        if revision <= known {
            return;
        }
        if let Some((_, old)) = self.keys.remove(key) {
            self.bytes = self.bytes.saturating_sub(old);
        }
        match size {
            Some(size) => {
                self.keys.insert(key.to_owned(), (revision, size));
                self.bytes += size;
                self.removed.remove(key);
            }
            None => {
                self.removed.insert(key.to_owned(), revision);
            }
        }
    }

    /// Applies this host's own acknowledged write: only when the follower has not delivered it yet.
    fn apply_own(&mut self, key: &str, revision: u64, size: Option<u64>) {
        if revision > self.last {
            self.apply(key, revision, size);
        }
    }

    /// Applies what the follower delivered, in the stream's order.
    fn apply_followed(&mut self, key: &str, revision: u64, size: Option<u64>) {
        self.apply(key, revision, size);
        self.last = self.last.max(revision);
        // A removal by this host is delivered by now: the follower's order protects the key from here on.
        if !self.removed.is_empty() {
            let last = self.last;
            self.removed.retain(|_, removed| *removed > last);
        }
    }
}

/// A key's last message in its bucket.
struct Last {
    /// Its stream sequence: what a write expects to replace.
    revision: u64,
    /// The value, when the message is a value that has not expired.
    live: Option<Live>,
}

struct Live {
    value: Vec<u8>,
    /// When it expires, for a key with a time to live (the broker's clock: the message's time plus its TTL).
    expires_at_ms: Option<i64>,
}

impl Last {
    fn live_revision(&self) -> Option<u64> {
        self.live.as_ref().map(|_| self.revision)
    }
}

/// How a write ended other than with its revision.
enum Refused {
    /// The key's last message was not the one expected: someone wrote it meanwhile.
    Raced,
    Failed(KvError),
}

impl From<KvError> for Refused {
    fn from(err: KvError) -> Self {
        Refused::Failed(err)
    }
}

fn unavailable(what: &str, err: impl std::fmt::Display) -> KvError {
    KvError::Unavailable(format!("the cluster's store: {what}: {err}"))
}

/// Seconds of a `Nats-TTL` header (`30`, `30s`, `1m`, `2h`); none for `never` or anything else.
fn ttl_seconds(header: &str) -> Option<i64> {
    let header = header.trim();
    let (number, unit) = match header.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => header.split_at(at),
        None => (header, "s"),
    };
    let number: i64 = number.parse().ok()?;
    match unit {
        "s" => Some(number),
        "m" => Some(number * 60),
        "h" => Some(number * 3600),
        _ => None,
    }
}

/// A small random pause before attempt `attempt` of a write that lost a race (0.1 to ~2 ms, growing).
async fn jitter(attempt: u32) {
    use std::hash::BuildHasher as _;
    let seed = std::collections::hash_map::RandomState::new().hash_one((attempt, SystemTime::now()));
    let micros = 100 + seed % (200 * u64::from(attempt.min(10) + 1));
    tokio::time::sleep(Duration::from_micros(micros)).await;
}

impl Inner {
    async fn start(client: async_nats::Client, cluster: &str) -> Self {
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(DEFAULT_KV_REQUEST_TIMEOUT);
        let config = Arc::new(Configs::default());
        let follower =
            tokio::spawn(follow_config(client.clone(), jetstream.clone(), cluster.to_owned(), config.clone()));
        if client.connection_state() == async_nats::connection::State::Connected {
            let mut loaded = config.loaded.subscribe();
            if tokio::time::timeout(DEFAULT_CONFIG_LOAD_WAIT, loaded.wait_for(|done| *done)).await.is_err() {
                tracing::warn!("the cluster's configuration is not read yet: handlers may see it late");
            }
        }
        let (alarms, alarm_follower) = Alarms::start(client.clone(), jetstream.clone(), cluster);
        Self {
            client,
            jetstream,
            cluster: cluster.to_owned(),
            buckets: Mutex::new(HashMap::new()),
            config,
            follower,
            alarms,
            alarm_follower,
        }
    }

    /// `unavailable` at once while the broker is not connected.
    fn connected(&self) -> Result<(), KvError> {
        if self.client.connection_state() == async_nats::connection::State::Connected {
            Ok(())
        } else {
            Err(KvError::Unavailable("the cluster's broker is not connected".to_owned()))
        }
    }

    /// `project`'s bucket, opened (created by the first host) on first use.
    async fn bucket(&self, project: &str) -> Result<Arc<Bucket>, KvError> {
        self.connected()?;
        let cell = {
            let mut buckets = self.buckets.lock().map_err(|_| unavailable("buckets", "poisoned"))?;
            buckets.entry(project.to_owned()).or_default().clone()
        };
        let name = bucket_name(&self.cluster, project);
        let bucket = cell.get_or_try_init(|| open_bucket(&self.client, &self.jetstream, &name)).await?;
        Ok(bucket.clone())
    }

    /// A call on `project`'s bucket, bounded by [`DEFAULT_KV_CALL_TIMEOUT`].
    fn call<T, F>(
        self: &Arc<Self>,
        project: &str,
        call: impl FnOnce(Arc<Self>, Arc<Bucket>) -> F + Send + 'static,
    ) -> KvFuture<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, KvError>> + Send + 'static,
    {
        let (me, project) = (self.clone(), project.to_owned());
        Box::pin(async move {
            let work = async {
                let bucket = me.bucket(&project).await?;
                call(me.clone(), bucket).await
            };
            match tokio::time::timeout(DEFAULT_KV_CALL_TIMEOUT, work).await {
                Ok(result) => result,
                Err(_) => Err(KvError::Unavailable(format!(
                    "the cluster's broker did not answer within {DEFAULT_KV_CALL_TIMEOUT:?}"
                ))),
            }
        })
    }

    /// The last message of `escaped` in `bucket`.
    async fn last(bucket: &Bucket, escaped: &str) -> Result<Option<Last>, KvError> {
        let subject = format!("{}{escaped}", bucket.prefix);
        let found = if bucket.store.stream.cached_info().config.allow_direct {
            match bucket.store.stream.direct_get_last_for_subject(subject).await {
                Ok(message) => Some(message),
                Err(err) if matches!(err.kind(), jetstream::stream::DirectGetErrorKind::NotFound) => None,
                Err(err) => return Err(unavailable("reading a key", err)),
            }
        } else {
            match bucket.store.stream.get_last_raw_message_by_subject(&subject).await {
                Ok(message) => Some(message),
                Err(err) if matches!(err.kind(), jetstream::stream::LastRawMessageErrorKind::NoMessageFound) => None,
                Err(err) => return Err(unavailable("reading a key", err)),
            }
        };
        let Some(message) = found else { return Ok(None) };
        let removed = message.headers.get(KV_OPERATION).is_some_and(|op| op.as_str() != "PUT")
            || message.headers.get(MARKER_REASON).is_some();
        let expires_at_ms = message.headers.get(MESSAGE_TTL).and_then(|ttl| ttl_seconds(ttl.as_str())).map(|ttl| {
            let written = i64::try_from(message.time.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
            written.saturating_add(ttl.saturating_mul(1000))
        });
        let expired = expires_at_ms.is_some_and(|at| at <= now_ms());
        let live = (!removed && !expired).then(|| Live { value: message.payload.to_vec(), expires_at_ms });
        Ok(Some(Last { revision: message.sequence, live }))
    }

    /// Publishes to `subject` (a value, or a removal with `value` none), replacing the key's last message only when
    /// it is `expect` (0: no message), with a time to live in seconds when given; the new revision.
    async fn publish(
        &self,
        subject: String,
        value: Option<Vec<u8>>,
        expect: Option<u64>,
        ttl: Option<u32>,
    ) -> Result<u64, Refused> {
        let mut headers = async_nats::HeaderMap::new();
        if value.is_none() {
            headers.insert(KV_OPERATION, "DEL");
        }
        if let Some(expect) = expect {
            headers.insert(EXPECTED_LAST_SUBJECT_SEQUENCE, expect.to_string().as_str());
        }
        if let Some(ttl) = ttl {
            headers.insert(MESSAGE_TTL, format!("{ttl}s").as_str());
        }
        let payload = value.unwrap_or_default();
        let sent = self
            .jetstream
            .publish_with_headers(subject, headers, payload.into())
            .await
            .map_err(|err| unavailable("writing", err))?;
        match sent.await {
            Ok(ack) => Ok(ack.sequence),
            Err(err) if err.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => Err(Refused::Raced),
            Err(err) => {
                let text = format!("{err:#}");
                if text.contains("TTL") || text.contains("ttl") {
                    Err(Refused::Failed(KvError::Invalid(NO_TTL.to_owned())))
                } else {
                    Err(Refused::Failed(unavailable("writing", text)))
                }
            }
        }
    }

    /// Checks a write of `value_len` bytes at `key` (whose last message is `last`) against `quotas` and the bucket's
    /// usage as this host knows it.
    async fn check_quotas(
        bucket: &Bucket,
        key: &str,
        value_len: usize,
        last: Option<&Last>,
        quotas: KvQuotas,
    ) -> Result<(), KvError> {
        let old = last.and_then(|last| last.live.as_ref()).map(|live| (key.len() + live.value.len()) as u64);
        let new = (key.len() + value_len) as u64;
        let new_keys = u64::from(old.is_none());
        if value_len > quotas.value_bytes as usize || new_keys > 0 || new > old.unwrap_or(0) {
            let (keys, bytes) = bucket.usage().await;
            let bytes_after = bytes.saturating_sub(old.unwrap_or(0)) + new;
            quotas.check_write(value_len, keys, new_keys, bytes, bytes_after)?;
        }
        Ok(())
    }

    /// Writes `value` at `key` when `condition` holds, retrying a write that lost a race; the new revision.
    async fn put_value(
        &self,
        bucket: &Bucket,
        key: &str,
        value: Vec<u8>,
        condition: Condition,
        ttl: Option<u32>,
        quotas: KvQuotas,
    ) -> Result<u64, KvError> {
        if ttl.is_some() && !bucket.ttl {
            return Err(KvError::Invalid(NO_TTL.to_owned()));
        }
        if value.len() > quotas.value_bytes as usize {
            quotas.check_write(value.len(), 0, 0, 0, 0)?;
        }
        let escaped = escape_key(key);
        for attempt in 0..DEFAULT_KV_INCREMENT_RETRIES {
            let last = Self::last(bucket, &escaped).await?;
            let live = last.as_ref().and_then(Last::live_revision);
            let holds = match condition {
                Condition::Always => true,
                Condition::Absent => live.is_none(),
                Condition::Revision(revision) => live == Some(revision),
            };
            if !holds {
                return Err(KvError::Conflict(live));
            }
            Self::check_quotas(bucket, key, value.len(), last.as_ref(), quotas).await?;
            let expect = last.as_ref().map_or(0, |last| last.revision);
            if let Some(revision) =
                self.replace(bucket, (key, &escaped), Some(value.clone()), expect, ttl, attempt).await?
            {
                return Ok(revision);
            }
        }
        Err(KvError::Unavailable("contention".to_owned()))
    }

    /// Writes `value` (none: a removal) at `key` (as it is and escaped), expecting the key's last message to be
    /// `expect`; the new revision, counted in the bucket's usage at once, or none when another write came first
    /// (after a short pause, so that the caller reads again).
    async fn replace(
        &self,
        bucket: &Bucket,
        (key, escaped): (&str, &str),
        value: Option<Vec<u8>>,
        expect: u64,
        ttl: Option<u32>,
        attempt: u32,
    ) -> Result<Option<u64>, KvError> {
        let size = value.as_ref().map(|value| (key.len() + value.len()) as u64);
        match self.publish(format!("{}{escaped}", bucket.prefix), value, Some(expect), ttl).await {
            Ok(revision) => {
                bucket.own_write(escaped, revision, size);
                Ok(Some(revision))
            }
            Err(Refused::Raced) => {
                jitter(attempt).await;
                Ok(None)
            }
            Err(Refused::Failed(err)) => Err(err),
        }
    }

    /// Removes `key` (only at `revision` when given), retrying a removal that lost a race.
    async fn delete_key(&self, bucket: &Bucket, key: &str, revision: Option<u64>) -> Result<(), KvError> {
        let escaped = escape_key(key);
        for attempt in 0..DEFAULT_KV_INCREMENT_RETRIES {
            let last = Self::last(bucket, &escaped).await?;
            let live = last.as_ref().and_then(Last::live_revision);
            if let Some(revision) = revision
                && live != Some(revision)
            {
                return Err(KvError::Conflict(live));
            }
            let Some(expect) = live else { return Ok(()) };
            if self.replace(bucket, (key, &escaped), None, expect, None, attempt).await?.is_some() {
                return Ok(());
            }
        }
        Err(KvError::Unavailable("contention".to_owned()))
    }

    /// Adds `delta` to the number at `key`: read, then a write expecting what was read, again on a lost race.
    async fn add(
        &self,
        bucket: &Bucket,
        key: &str,
        delta: i64,
        ttl_seconds: Option<u32>,
        quotas: KvQuotas,
    ) -> Result<i64, KvError> {
        if ttl_seconds.is_some() && !bucket.ttl {
            return Err(KvError::Invalid(NO_TTL.to_owned()));
        }
        let escaped = escape_key(key);
        for attempt in 0..DEFAULT_KV_INCREMENT_RETRIES {
            let last = Self::last(bucket, &escaped).await?;
            let (current, ttl) = match last.as_ref().and_then(|last| last.live.as_ref()) {
                Some(live) => {
                    // The key keeps its expiry (to the second above).
                    let left = live.expires_at_ms.map(|at| {
                        let ms = (at - now_ms()).max(1);
                        u32::try_from((ms + 999) / 1000).unwrap_or(u32::MAX)
                    });
                    (parse_counter(&live.value)?, left)
                }
                None => (0, ttl_seconds),
            };
            let sum = current
                .checked_add(delta)
                .ok_or_else(|| KvError::Invalid(format!("{current} + {delta} is past a 64-bit number")))?;
            let text = sum.to_string();
            Self::check_quotas(bucket, key, text.len(), last.as_ref(), quotas).await?;
            let expect = last.as_ref().map_or(0, |last| last.revision);
            if self.replace(bucket, (key, &escaped), Some(text.into_bytes()), expect, ttl, attempt).await?.is_some() {
                return Ok(sum);
            }
        }
        Err(KvError::Unavailable("contention".to_owned()))
    }

    /// Writes every entry: read all, check the quotas for the whole batch (so a batch over a quota writes none), then
    /// write each expecting what was read (one that lost a race is written again on its own).
    async fn put_all(&self, bucket: &Bucket, entries: Vec<(String, Vec<u8>)>, quotas: KvQuotas) -> Result<(), KvError> {
        if let Some((_, value)) = entries.iter().find(|(_, value)| value.len() > quotas.value_bytes as usize) {
            quotas.check_write(value.len(), 0, 0, 0, 0)?;
        }
        // The batch's effect: the last value of each key counts.
        let mut lasts: HashMap<String, Option<Last>> = HashMap::new();
        for (key, _) in &entries {
            if !lasts.contains_key(key) {
                lasts.insert(key.clone(), Self::last(bucket, &escape_key(key)).await?);
            }
        }
        let mut finals: HashMap<&str, usize> = HashMap::new();
        for (key, value) in &entries {
            finals.insert(key, value.len());
        }
        let (mut new_keys, mut old_bytes, mut new_bytes) = (0_u64, 0_u64, 0_u64);
        for (key, value_len) in &finals {
            let old = lasts.get(*key).and_then(|last| last.as_ref()).and_then(|last| last.live.as_ref());
            match old {
                Some(live) => old_bytes += (key.len() + live.value.len()) as u64,
                None => new_keys += 1,
            }
            new_bytes += (key.len() + value_len) as u64;
        }
        if new_keys > 0 || new_bytes > old_bytes {
            let (keys, bytes) = bucket.usage().await;
            quotas.check_write(0, keys, new_keys, bytes, bytes.saturating_sub(old_bytes) + new_bytes)?;
        }
        for (key, value) in entries {
            let escaped = escape_key(&key);
            let expect = lasts.get(&key).and_then(|last| last.as_ref()).map_or(0, |last| last.revision);
            let revision = match self.replace(bucket, (&key, &escaped), Some(value.clone()), expect, None, 0).await? {
                Some(revision) => revision,
                None => self.put_value(bucket, &key, value.clone(), Condition::Always, None, quotas).await?,
            };
            lasts.insert(key, Some(Last { revision, live: Some(Live { value, expires_at_ms: None }) }));
        }
        Ok(())
    }

    /// Every live key of `bucket` starting with `prefix` and after `after`, in byte order: O(keys in the bucket),
    /// bounded by the project's `keys` quota.
    async fn page(bucket: &Bucket, prefix: &str, after: Option<&str>, limit: usize) -> Result<KeysPage, KvError> {
        let mut names = bucket.store.keys().await.map_err(|err| unavailable("listing keys", err))?;
        let mut keys = Vec::new();
        while let Some(name) = names.next().await {
            let name = name.map_err(|err| unavailable("listing keys", err))?;
            let Some(key) = unescape_key(&name) else { continue };
            if key.starts_with(prefix) && after.is_none_or(|after| key.as_str() > after) {
                keys.push(key);
            }
        }
        keys.sort_unstable();
        keys.dedup();
        let more = keys.len() > limit;
        keys.truncate(limit);
        let next = if more { keys.last().cloned() } else { None };
        Ok(KeysPage { keys, next })
    }
}

impl Bucket {
    /// Keys and bytes of the bucket as this host knows them (waiting a little, once, for the follower to catch up).
    async fn usage(&self) -> (u64, u64) {
        let mut current = self.usage.current.subscribe();
        if tokio::time::timeout(USAGE_WAIT, current.wait_for(|done| *done)).await.is_err() {
            tracing::debug!(bucket = %self.store.name, "the bucket's usage is not known in full yet");
        }
        self.usage.index.lock().map(|index| (index.keys.len() as u64, index.bytes)).unwrap_or((0, 0))
    }

    /// Counts this host's own acknowledged write at once (the follower delivers it a little later).
    fn own_write(&self, escaped: &str, revision: u64, size: Option<u64>) {
        if let Ok(mut index) = self.usage.index.lock() {
            index.apply_own(escaped, revision, size);
        }
    }
}

/// Opens `name`, creating it (history 1, limit markers for per-key TTL; without them on a server older than 2.11).
async fn open_bucket(
    client: &async_nats::Client,
    jetstream: &jetstream::Context,
    name: &str,
) -> Result<Arc<Bucket>, KvError> {
    let store = match jetstream.get_key_value(name).await {
        Ok(store) => store,
        Err(_) => {
            let config = kv::Config {
                bucket: name.to_owned(),
                description: "a wasmsock project's keys and values".to_owned(),
                history: 1,
                storage: jetstream::stream::StorageType::File,
                limit_markers: Some(DEFAULT_KV_MARKER_TTL),
                ..Default::default()
            };
            let created = match jetstream.create_key_value(config.clone()).await {
                Err(err) if err.kind() == jetstream::context::CreateKeyValueErrorKind::LimitMarkersNotSupported => {
                    tracing::warn!(bucket = name, "the broker is older than nats-server 2.11: keys cannot expire");
                    jetstream.create_key_value(kv::Config { limit_markers: None, ..config }).await
                }
                other => other,
            };
            match created {
                Ok(store) => store,
                // Another host created it at the same moment.
                Err(err) => jetstream
                    .get_key_value(name)
                    .await
                    .map_err(|_| unavailable(&format!("opening bucket {name}"), err))?,
            }
        }
    };
    let ttl = store.stream.cached_info().config.allow_message_ttl;
    let prefix = store.prefix.clone();
    let usage = Arc::new(Usage::default());
    let follower = tokio::spawn(follow_usage(client.clone(), store.clone(), usage.clone()));
    Ok(Arc::new(Bucket { store, prefix, ttl, usage, follower }))
}

/// Keeps a bucket's usage current: a headers-only ordered consumer of each key's last message, then of every new one
/// (the key, `Nats-Msg-Size`, and whether it is a removal). Started again, from nothing, should it end.
async fn follow_usage(client: async_nats::Client, store: kv::Store, usage: Arc<Usage>) {
    loop {
        if let Err(err) = follow_usage_once(&client, &store, &usage).await {
            tracing::debug!(bucket = %store.name, "following the bucket's usage: {err:#}");
        }
        tokio::time::sleep(DEFAULT_CONFIG_RETRY).await;
    }
}

async fn follow_usage_once(client: &async_nats::Client, store: &kv::Store, usage: &Usage) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let consumer = store
        .stream
        .create_consumer(jetstream::consumer::push::OrderedConfig {
            deliver_subject: client.new_inbox(),
            description: Some("wasmsock: a host following a bucket's usage".to_owned()),
            filter_subject: format!("{}>", store.prefix),
            headers_only: true,
            replay_policy: jetstream::consumer::ReplayPolicy::Instant,
            deliver_policy: jetstream::consumer::DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await
        .context("creating the consumer")?;
    if let Ok(mut index) = usage.index.lock() {
        *index = Index::default();
    }
    let mut current = consumer.cached_info().num_pending == 0;
    if current {
        usage.current.send_replace(true);
    }
    let mut messages = consumer.messages().await.context("following the consumer")?;
    loop {
        let next = if current {
            messages.next().await
        } else {
            match tokio::time::timeout(IDLE_IS_CURRENT, messages.next()).await {
                Ok(next) => next,
                Err(_) => {
                    current = true;
                    usage.current.send_replace(true);
                    continue;
                }
            }
        };
        let Some(message) = next else { anyhow::bail!("the consumer ended") };
        let Ok(message) = message else { continue };
        let Ok(info) = message.info() else { continue };
        let (revision, pending) = (info.stream_sequence, info.pending);
        let Some(escaped) = message.subject.strip_prefix(store.prefix.as_str()) else { continue };
        let headers = message.headers.as_ref();
        let removed = headers.is_some_and(|headers| {
            headers.get(KV_OPERATION).is_some_and(|op| op.as_str() != "PUT") || headers.get(MARKER_REASON).is_some()
        });
        let size = if removed {
            None
        } else {
            let value = headers
                .and_then(|headers| headers.get(MESSAGE_SIZE))
                .and_then(|size| size.as_str().trim().parse::<u64>().ok())
                .unwrap_or(message.payload.len() as u64);
            let key = unescape_key(escaped).map_or(escaped.len(), |key| key.len()) as u64;
            Some(key + value)
        };
        if let Ok(mut index) = usage.index.lock() {
            index.apply_followed(escaped, revision, size);
        }
        if !current && pending == 0 {
            current = true;
            usage.current.send_replace(true);
        }
    }
}

/// Opens the configuration bucket, creating it when no host has yet.
async fn open_config(jetstream: &jetstream::Context, cluster: &str) -> Result<kv::Store, KvError> {
    let name = config_bucket_name(cluster);
    if let Ok(store) = jetstream.get_key_value(&name).await {
        return Ok(store);
    }
    let config = kv::Config {
        bucket: name.clone(),
        description: format!("the configuration of wasmsock cluster {cluster}'s projects"),
        history: 1,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    };
    match jetstream.create_key_value(config).await {
        Ok(store) => Ok(store),
        Err(err) => jetstream.get_key_value(&name).await.map_err(|_| unavailable("opening the configuration", err)),
    }
}

/// Follows the configuration bucket: each key's last value, then every change, into the per-project snapshots.
/// Started again (from each key's last value) whenever the watch ends or the broker was not there.
async fn follow_config(
    client: async_nats::Client,
    jetstream: jetstream::Context,
    cluster: String,
    config: Arc<Configs>,
) {
    loop {
        if client.connection_state() == async_nats::connection::State::Connected
            && let Err(err) = follow_config_once(&jetstream, &cluster, &config).await
        {
            tracing::debug!("following the cluster's configuration: {err}");
        }
        tokio::time::sleep(DEFAULT_CONFIG_RETRY).await;
    }
}

async fn follow_config_once(jetstream: &jetstream::Context, cluster: &str, config: &Configs) -> Result<(), KvError> {
    let store = config.store.get_or_try_init(|| open_config(jetstream, cluster)).await?;
    let mut watch =
        store.watch_with_history(">").await.map_err(|err| unavailable("watching the configuration", err))?;
    let mut stream = store.stream.clone();
    let empty = stream.info().await.map_err(|err| unavailable("reading the configuration", err))?.state.messages == 0;
    if empty {
        config.loaded.send_replace(true);
    }
    while let Some(entry) = watch.next().await {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                tracing::debug!("the configuration watch: {err}");
                continue;
            }
        };
        let value = match entry.operation {
            kv::Operation::Put => match serde_json::from_slice::<StoredConfig>(&entry.value) {
                Ok(stored) => Some(ConfigValue::new(stored.value, stored.secret)),
                Err(_) => {
                    tracing::warn!(key = %entry.key, "ignored a configuration value that is not wasmsock's");
                    None
                }
            },
            kv::Operation::Delete | kv::Operation::Purge => None,
        };
        config.apply(&entry.key, entry.revision, value);
        if entry.seen_current {
            config.loaded.send_replace(true);
        }
    }
    Err(KvError::Unavailable("the configuration watch ended".to_owned()))
}

impl Configs {
    /// Applies a change of the bucket's `key` at `revision` (none: removed); an older change than the one applied is
    /// ignored.
    fn apply(&self, key: &str, revision: u64, value: Option<ConfigValue>) {
        let Some((project, name)) = parse_config_entry_key(key) else { return };
        let Ok(mut state) = self.state.write() else { return };
        if state.revisions.get(key).is_some_and(|known| *known >= revision) {
            return;
        }
        state.revisions.insert(key.to_owned(), revision);
        let mut snapshot = state.snapshots.get(&project).map(|s| s.as_ref().clone()).unwrap_or_default();
        match value {
            Some(value) => snapshot.insert(name, value),
            None => snapshot.remove(&name),
        };
        state.snapshots.insert(project, Arc::new(snapshot));
    }

    fn snapshot(&self, project: &str) -> Arc<ConfigSnapshot> {
        self.state.read().ok().and_then(|state| state.snapshots.get(project).cloned()).unwrap_or_default()
    }
}

impl Inner {
    /// The configuration bucket, opened now if the follower has not yet.
    async fn config_store(&self) -> Result<kv::Store, KvError> {
        self.connected()?;
        self.config.store.get_or_try_init(|| open_config(&self.jetstream, &self.cluster)).await.cloned()
    }

    fn bounded<T: Send + 'static>(
        work: impl std::future::Future<Output = Result<T, KvError>> + Send + 'static,
    ) -> KvFuture<T> {
        Box::pin(async move {
            match tokio::time::timeout(DEFAULT_KV_CALL_TIMEOUT, work).await {
                Ok(result) => result,
                Err(_) => Err(KvError::Unavailable(format!(
                    "the cluster's broker did not answer within {DEFAULT_KV_CALL_TIMEOUT:?}"
                ))),
            }
        })
    }
}

/// The cluster's store: projects' keys and configuration in the broker's JetStream KV (see the module's notes).
#[derive(Debug, Clone)]
pub struct Nats(Arc<Inner>);

impl Nats {
    /// The cluster `cluster`'s store through `client` (connected or not yet: calls are `unavailable` until it is).
    /// Starts following the configuration bucket, and waits up to [`DEFAULT_CONFIG_LOAD_WAIT`] for all of it to be read
    /// when the broker is connected.
    pub async fn start(client: async_nats::Client, cluster: &str) -> Self {
        Self(Arc::new(Inner::start(client, cluster).await))
    }
}

impl Backend for Nats {
    fn get(&self, project: &str, key: &str) -> KvFuture<Option<Entry>> {
        let key = key.to_owned();
        self.0.call(project, move |_, bucket| async move {
            let last = Inner::last(&bucket, &escape_key(&key)).await?;
            Ok(last.and_then(|last| {
                let revision = last.revision;
                last.live.map(|live| Entry {
                    value: live.value,
                    revision,
                    expires_in_ms: live.expires_at_ms.map(|at| (at - now_ms()).max(0) as u64),
                })
            }))
        })
    }

    fn put(&self, project: &str, key: &str, value: Vec<u8>, options: PutOptions, quotas: KvQuotas) -> KvFuture<u64> {
        let key = key.to_owned();
        self.0.call(project, move |me, bucket| async move {
            me.put_value(&bucket, &key, value, options.condition, options.ttl_seconds, quotas).await
        })
    }

    fn delete(&self, project: &str, key: &str, revision: Option<u64>) -> KvFuture<()> {
        let key = key.to_owned();
        self.0.call(project, move |me, bucket| async move { me.delete_key(&bucket, &key, revision).await })
    }

    fn increment(
        &self,
        project: &str,
        key: &str,
        delta: i64,
        ttl_seconds: Option<u32>,
        quotas: KvQuotas,
    ) -> KvFuture<i64> {
        let key = key.to_owned();
        self.0.call(project, move |me, bucket| async move { me.add(&bucket, &key, delta, ttl_seconds, quotas).await })
    }

    fn list(&self, project: &str, prefix: &str, after: Option<&str>, limit: usize) -> KvFuture<KeysPage> {
        let (prefix, after) = (prefix.to_owned(), after.map(str::to_owned));
        self.0
            .call(project, move |_, bucket| async move { Inner::page(&bucket, &prefix, after.as_deref(), limit).await })
    }

    fn set_many(&self, project: &str, entries: Vec<(String, Vec<u8>)>, quotas: KvQuotas) -> KvFuture<()> {
        self.0.call(project, move |me, bucket| async move { me.put_all(&bucket, entries, quotas).await })
    }

    fn delete_many(&self, project: &str, keys: Vec<String>) -> KvFuture<()> {
        self.0.call(project, move |me, bucket| async move {
            for key in keys {
                me.delete_key(&bucket, &key, None).await?;
            }
            Ok(())
        })
    }

    fn usage(&self, project: &str) -> KvFuture<(u64, u64)> {
        self.0.call(project, move |_, bucket| async move { Ok(bucket.usage().await) })
    }

    fn config(&self, project: &str) -> Arc<ConfigSnapshot> {
        self.0.config.snapshot(project)
    }

    fn set_config(&self, project: &str, key: &str, value: ConfigValue) -> KvFuture<()> {
        let (me, project, name) = (self.0.clone(), project.to_owned(), key.to_owned());
        Inner::bounded(async move {
            let store = me.config_store().await?;
            // Counted in this host's snapshot: across hosts, two new names set at the same moment may both pass.
            let snapshot = me.config.snapshot(&project);
            if !snapshot.contains_key(&name) && snapshot.len() >= DEFAULT_CONFIG_MAX_KEYS {
                return Err(KvError::Limit(format!("config keys ({DEFAULT_CONFIG_MAX_KEYS})")));
            }
            let stored = StoredConfig { value: value.reveal().to_owned(), secret: value.secret };
            let body = serde_json::to_vec(&stored).map_err(|err| unavailable("encoding a configuration value", err))?;
            let key = config_entry_key(&project, &name);
            let revision = match me.publish(format!("{}{key}", store.prefix), Some(body), None, None).await {
                Ok(revision) => revision,
                Err(Refused::Raced) => return Err(KvError::Unavailable("contention".to_owned())),
                Err(Refused::Failed(err)) => return Err(err),
            };
            me.config.apply(&key, revision, Some(value));
            Ok(())
        })
    }

    fn unset_config(&self, project: &str, key: &str) -> KvFuture<bool> {
        let (me, project, name) = (self.0.clone(), project.to_owned(), key.to_owned());
        Inner::bounded(async move {
            let store = me.config_store().await?;
            let key = config_entry_key(&project, &name);
            let was = matches!(
                store.entry(key.as_str()).await.map_err(|err| unavailable("reading the configuration", err))?,
                Some(kv::Entry { operation: kv::Operation::Put, .. })
            );
            if !was {
                return Ok(false);
            }
            let revision = match me.publish(format!("{}{key}", store.prefix), None, None, None).await {
                Ok(revision) => revision,
                Err(Refused::Raced) => return Err(KvError::Unavailable("contention".to_owned())),
                Err(Refused::Failed(err)) => return Err(err),
            };
            me.config.apply(&key, revision, None);
            Ok(true)
        })
    }

    fn set_alarm(&self, project: &str, alarm: Alarm, max: u32) -> KvFuture<()> {
        let (alarms, project) = (self.0.alarms.clone(), project.to_owned());
        Inner::bounded(async move { alarms.set(&project, alarm, max).await })
    }

    fn cancel_alarm(&self, project: &str, name: &str) -> KvFuture<bool> {
        let (alarms, project, name) = (self.0.alarms.clone(), project.to_owned(), name.to_owned());
        Inner::bounded(async move { alarms.cancel(&project, &name).await })
    }

    fn list_alarms(&self, project: &str) -> KvFuture<Vec<Alarm>> {
        Box::pin(std::future::ready(Ok(self.0.alarms.list(project))))
    }

    fn next_alarm(&self) -> KvFuture<Option<i64>> {
        Box::pin(std::future::ready(Ok(self.0.alarms.next())))
    }

    fn take_due_alarms(&self, now_ms: i64, limit: usize) -> KvFuture<Vec<(String, Alarm)>> {
        let alarms = self.0.alarms.clone();
        Inner::bounded(async move { alarms.take_due(now_ms, limit).await })
    }

    fn describe(&self) -> String {
        format!("the cluster's JetStream KV (cluster {}, one bucket per project)", self.0.cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_headers_are_read_in_seconds() {
        assert_eq!(ttl_seconds("30s"), Some(30));
        assert_eq!(ttl_seconds("30"), Some(30));
        assert_eq!(ttl_seconds("2m"), Some(120));
        assert_eq!(ttl_seconds("never"), None);
    }

    #[test]
    fn the_index_ignores_older_changes_and_keeps_own_removals_until_followed() {
        let mut index = Index::default();
        index.apply_followed("a", 1, Some(10));
        index.apply_own("b", 3, Some(5));
        assert_eq!((index.keys.len(), index.bytes), (2, 15));
        // This host removed `a` at 4; the follower then delivers an older write of it: `a` stays removed.
        index.apply_own("a", 4, None);
        index.apply_followed("a", 2, Some(99));
        assert_eq!((index.keys.len(), index.bytes), (1, 5));
        // The follower delivers `b` at 3 (already counted) and the removal at 4.
        index.apply_followed("b", 3, Some(5));
        index.apply_followed("a", 4, None);
        assert!(index.removed.is_empty());
        assert_eq!((index.keys.len(), index.bytes), (1, 5));
        // A write the follower has passed already is not counted twice.
        index.apply_own("c", 2, Some(7));
        assert_eq!(index.keys.len(), 1);
    }
}
