//! The store room: each project's key-value data and configuration, kept in an embedded SQLite file by default
//! (`sqlite.rs`) or in the cluster's JetStream KV with `serve --nats` (`nats.rs`). [`Store`] checks every key and
//! option, applies the project's quotas and implements the runtime's `KvService`; a backend only keeps what it is
//! given, each project apart.

mod backend;
pub mod nats;
mod nats_alarms;
pub mod sqlite;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use wasmsock_wire::ProjectQuotas;
use wasmsock_wire::kv::{
    self, Alarm, ConfigSnapshot, ConfigValue, Entry, KeysPage, KvError, KvQuotas, PutOptions, Usage, check_batch,
    check_key, check_prefix, page_size,
};

use crate::runtime::{KvFuture, KvService};

pub use backend::Backend;
pub use nats::Nats;
pub use sqlite::{Durability, Sqlite, create_private_dir, set_private};

/// Where `wasmsock serve` keeps its data unless `--data` says otherwise: this folder under the plugins root (a dot
/// folder is never a project, and the plugins watcher skips it).
pub const DEFAULT_DATA_DIR: &str = ".wasmsock-data";

/// Every project's store and configuration, in front of the backend in use.
pub struct Store {
    backend: OnceLock<Arc<dyn Backend>>,
    /// Where the embedded store opens when nothing chose a backend before the first call.
    default_dir: PathBuf,
    quotas: Arc<dyn Fn(&str) -> ProjectQuotas + Send + Sync>,
    observer: OnceLock<Arc<dyn StoreObserver>>,
    /// Woken when an alarm is set, so the alarm loop can look again for the soonest one.
    alarm_notice: Arc<tokio::sync::Notify>,
}

/// Told of every store call a handler or the operator makes (the metrics implement it).
pub trait StoreObserver: Send + Sync + 'static {
    /// A call `op` on `project`'s store ended with `outcome` (`ok`, `invalid`, `limit`, `conflict`, `unavailable`).
    fn called(&self, project: &str, op: &'static str, outcome: &'static str);
}

/// The outcome of a store call, as the metrics name it.
fn outcome<T>(result: &Result<T, KvError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(KvError::Invalid(_)) => "invalid",
        Err(KvError::Limit(_)) => "limit",
        Err(KvError::Conflict(_)) => "conflict",
        Err(KvError::Unavailable(_)) => "unavailable",
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.backend.get()).field("default_dir", &self.default_dir).finish()
    }
}

impl Store {
    /// A store whose quotas per project come from `quotas`; until a backend is chosen ([`Store::open_embedded`],
    /// [`Store::use_backend`]) the first call opens the embedded store in `default_dir`.
    pub fn new(default_dir: PathBuf, quotas: Arc<dyn Fn(&str) -> ProjectQuotas + Send + Sync>) -> Self {
        Self { backend: OnceLock::new(), default_dir, quotas, observer: OnceLock::new(), alarm_notice: Arc::default() }
    }

    /// Opens the embedded store in `dir` with `durability` and uses it (at start, before any handler runs).
    pub fn open_embedded(&self, dir: PathBuf, durability: Durability) -> anyhow::Result<()> {
        let sqlite = Sqlite::open(&dir, durability)?;
        self.use_backend(Arc::new(sqlite))
    }

    /// Uses `backend` from now on; an error when one is in use already.
    pub fn use_backend(&self, backend: Arc<dyn Backend>) -> anyhow::Result<()> {
        let describe = backend.describe();
        self.backend
            .set(backend)
            .map_err(|_| anyhow::anyhow!("the store is open already ({}), cannot use {describe}", self.describe()))?;
        tracing::info!("handlers' data is kept in {describe}");
        Ok(())
    }

    /// Where the data is.
    pub fn describe(&self) -> String {
        match self.backend.get() {
            Some(backend) => backend.describe(),
            None => format!("the embedded store in {} (not opened yet)", self.default_dir.display()),
        }
    }

    fn backend(&self) -> Result<&Arc<dyn Backend>, KvError> {
        if let Some(backend) = self.backend.get() {
            return Ok(backend);
        }
        let opened = Sqlite::open(&self.default_dir, Durability::Normal)
            .map_err(|err| KvError::Unavailable(format!("{err:#}")))?;
        let _ = self.backend.set(Arc::new(opened));
        self.backend.get().ok_or_else(|| KvError::Unavailable("the store did not open".to_owned()))
    }

    fn quotas(&self, project: &str) -> KvQuotas {
        KvQuotas::from(&(self.quotas)(project))
    }

    /// When the soonest alarm of any project is due (milliseconds since the Unix epoch).
    pub async fn next_alarm(&self) -> Result<Option<i64>, KvError> {
        self.backend()?.next_alarm().await
    }

    /// Takes up to `limit` alarms due at `now_ms` off the store, with their projects (see [`Backend::take_due_alarms`]).
    pub async fn take_due_alarms(&self, now_ms: i64, limit: usize) -> Result<Vec<(String, Alarm)>, KvError> {
        self.backend()?.take_due_alarms(now_ms, limit).await
    }

    /// Resolves when an alarm is set from now on.
    pub async fn alarm_set(&self) {
        self.alarm_notice.notified().await;
    }

    /// Tells `observer` of every call from now on (once; a second observer is ignored).
    pub fn observe(&self, observer: Arc<dyn StoreObserver>) {
        let _ = self.observer.set(observer);
    }

    /// `call`, counted by the observer when it ends.
    fn observed<T: Send + 'static>(&self, project: &str, op: &'static str, call: KvFuture<T>) -> KvFuture<T> {
        let Some(observer) = self.observer.get().cloned() else { return call };
        let project = project.to_owned();
        Box::pin(async move {
            let result = call.await;
            observer.called(&project, op, outcome(&result));
            result
        })
    }

    /// Sets `project`'s configuration value `key` (checked first).
    pub async fn set_config(&self, project: &str, key: &str, value: ConfigValue) -> anyhow::Result<()> {
        kv::check_config_key(key)?;
        kv::check_config_value(value.reveal())?;
        Ok(self.backend()?.set_config(project, key, value).await?)
    }

    /// Removes `project`'s configuration value `key`; whether it was set.
    pub async fn unset_config(&self, project: &str, key: &str) -> anyhow::Result<bool> {
        kv::check_config_key(key)?;
        Ok(self.backend()?.unset_config(project, key).await?)
    }
}

/// A future that has already failed.
fn failed<T: Send + 'static>(err: KvError) -> KvFuture<T> {
    Box::pin(std::future::ready(Err(err)))
}

/// Runs `call` on the backend when `check` passed and the backend is open; else the error.
macro_rules! checked {
    ($self:ident, $check:expr, |$backend:ident| $call:expr) => {
        match $check.and_then(|_| $self.backend()) {
            Ok($backend) => $call,
            Err(err) => failed(err),
        }
    };
}

impl KvService for Store {
    fn get(&self, project: &str, key: &str) -> KvFuture<Option<Entry>> {
        let call = { checked!(self, check_key(key), |backend| backend.get(project, key)) };
        self.observed(project, "get", call)
    }

    fn put(&self, project: &str, key: &str, value: Vec<u8>, options: PutOptions) -> KvFuture<u64> {
        let call = {
            let check = check_key(key).and_then(|()| check_ttl(options.ttl_seconds));
            let quotas = self.quotas(project);
            checked!(self, check, |backend| backend.put(project, key, value, options, quotas))
        };
        self.observed(project, "put", call)
    }

    fn delete(&self, project: &str, key: &str, revision: Option<u64>) -> KvFuture<()> {
        let call = { checked!(self, check_key(key), |backend| backend.delete(project, key, revision)) };
        self.observed(project, "delete", call)
    }

    fn increment(&self, project: &str, key: &str, delta: i64, ttl_seconds: Option<u32>) -> KvFuture<i64> {
        let call = {
            let check = check_key(key).and_then(|()| check_ttl(ttl_seconds));
            let quotas = self.quotas(project);
            checked!(self, check, |backend| backend.increment(project, key, delta, ttl_seconds, quotas))
        };
        self.observed(project, "increment", call)
    }

    fn list(&self, project: &str, prefix: &str, after: Option<&str>, limit: u32) -> KvFuture<KeysPage> {
        let call = {
            let check =
                check_prefix(prefix).and_then(|()| after.map_or(Ok(()), check_key)).and_then(|()| page_size(limit));
            match check {
                Ok(limit) => checked!(self, Ok(()), |backend| backend.list(project, prefix, after, limit)),
                Err(err) => failed(err),
            }
        };
        self.observed(project, "list", call)
    }

    fn get_many(&self, project: &str, keys: Vec<String>) -> KvFuture<Vec<Option<Vec<u8>>>> {
        let call = {
            let check = check_batch(keys.len()).and_then(|()| keys.iter().try_for_each(|key| check_key(key)));
            checked!(self, check, |backend| {
                let (backend, project) = (backend.clone(), project.to_owned());
                Box::pin(async move {
                    let mut values = Vec::with_capacity(keys.len());
                    for key in &keys {
                        values.push(backend.get(&project, key).await?.map(|entry| entry.value));
                    }
                    Ok(values)
                })
            })
        };
        self.observed(project, "get-many", call)
    }

    fn set_many(&self, project: &str, entries: Vec<(String, Vec<u8>)>) -> KvFuture<()> {
        let call = {
            let check =
                check_batch(entries.len()).and_then(|()| entries.iter().try_for_each(|(key, _)| check_key(key)));
            let quotas = self.quotas(project);
            checked!(self, check, |backend| backend.set_many(project, entries, quotas))
        };
        self.observed(project, "set-many", call)
    }

    fn delete_many(&self, project: &str, keys: Vec<String>) -> KvFuture<()> {
        let call = {
            let check = check_batch(keys.len()).and_then(|()| keys.iter().try_for_each(|key| check_key(key)));
            checked!(self, check, |backend| backend.delete_many(project, keys))
        };
        self.observed(project, "delete-many", call)
    }

    fn usage(&self, project: &str) -> KvFuture<Usage> {
        let call = {
            let quotas = self.quotas(project);
            checked!(self, Ok::<(), KvError>(()), |backend| {
                let usage = backend.usage(project);
                Box::pin(async move {
                    let (keys, bytes) = usage.await?;
                    Ok(quotas.usage(keys, bytes))
                })
            })
        };
        self.observed(project, "usage", call)
    }

    fn set_alarm(&self, project: &str, alarm: Alarm) -> KvFuture<()> {
        let max = (self.quotas)(project).alarms;
        let call = checked!(self, Ok::<(), KvError>(()), |backend| backend.set_alarm(project, alarm, max));
        // The alarm loop looks for the soonest alarm again once this one is stored.
        let stored = self.alarm_notice.clone();
        let call: KvFuture<()> = Box::pin(async move {
            let result = call.await;
            if result.is_ok() {
                stored.notify_one();
            }
            result
        });
        self.observed(project, "set-alarm", call)
    }

    fn cancel_alarm(&self, project: &str, name: &str) -> KvFuture<bool> {
        let call = checked!(self, Ok::<(), KvError>(()), |backend| backend.cancel_alarm(project, name));
        self.observed(project, "cancel-alarm", call)
    }

    fn list_alarms(&self, project: &str) -> KvFuture<Vec<Alarm>> {
        let call = checked!(self, Ok::<(), KvError>(()), |backend| backend.list_alarms(project));
        self.observed(project, "list-alarms", call)
    }
}

impl Store {
    /// `project`'s configuration now; empty when the store cannot be opened.
    pub fn config(&self, project: &str) -> Arc<ConfigSnapshot> {
        match self.backend() {
            Ok(backend) => backend.config(project),
            Err(err) => {
                tracing::warn!(project, "configuration unavailable: {err}");
                Arc::default()
            }
        }
    }
}

/// A time to live is at least one second.
fn check_ttl(ttl_seconds: Option<u32>) -> Result<(), KvError> {
    match ttl_seconds {
        Some(0) => Err(KvError::Invalid("a time to live is at least 1 second".to_owned())),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use wasmsock_wire::kv::Condition;

    use super::*;

    fn store(dir: &std::path::Path, quotas: KvQuotas) -> Store {
        let quotas = ProjectQuotas {
            kv_keys: quotas.keys,
            kv_bytes: quotas.bytes,
            kv_value_bytes: quotas.value_bytes,
            ..ProjectQuotas::default()
        };
        let store = Store::new(dir.to_path_buf(), Arc::new(move |_: &str| quotas));
        store.open_embedded(dir.to_path_buf(), Durability::Normal).unwrap();
        store
    }

    fn roomy() -> KvQuotas {
        KvQuotas { keys: 10_000, bytes: 64 << 20, value_bytes: 128 << 10 }
    }

    fn put(value: &str) -> (Vec<u8>, PutOptions) {
        (value.as_bytes().to_vec(), PutOptions::default())
    }

    #[tokio::test]
    async fn values_are_kept_per_project_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let revision;
        {
            let store = store(dir.path(), roomy());
            let (value, options) = put("one");
            revision = store.put("a", "k", value, options).await.unwrap();
            let (value, options) = put("other");
            store.put("b", "k", value, options).await.unwrap();
            assert_eq!(store.get("a", "k").await.unwrap().unwrap().value, b"one");
            assert_eq!(store.get("b", "k").await.unwrap().unwrap().value, b"other");
            assert_eq!(store.get("c", "k").await.unwrap(), None);
            store.delete("b", "k", None).await.unwrap();
            assert_eq!(store.get("b", "k").await.unwrap(), None);
            assert_eq!(store.get("a", "k").await.unwrap().unwrap().revision, revision);
            // Deleting an absent key is fine.
            store.delete("b", "k", None).await.unwrap();
        }
        let store = store(dir.path(), roomy());
        let entry = store.get("a", "k").await.unwrap().unwrap();
        assert_eq!((entry.value.as_slice(), entry.revision), (b"one".as_slice(), revision));
        // A revision is never given twice, even after a reopen.
        let (value, options) = put("two");
        assert!(store.put("a", "k2", value, options).await.unwrap() > revision + 1);
        assert_eq!(store.usage("a").await.unwrap().keys, 2);
        assert_eq!(store.usage("b").await.unwrap().keys, 0);
    }

    #[tokio::test]
    async fn listing_pages_through_a_prefix_in_byte_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), roomy());
        for i in (0..25).rev() {
            let (value, options) = put("x");
            store.put("p", &format!("room:{i:02}"), value, options).await.unwrap();
        }
        for key in ["roof", "rooma", "other"] {
            let (value, options) = put("x");
            store.put("p", key, value, options).await.unwrap();
        }
        let (mut seen, mut after) = (Vec::new(), None::<String>);
        loop {
            let page = store.list("p", "room:", after.as_deref(), 10).await.unwrap();
            assert!(page.keys.len() <= 10);
            seen.extend(page.keys);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let expected: Vec<String> = (0..25).map(|i| format!("room:{i:02}")).collect();
        assert_eq!(seen, expected);
        let all = store.list("p", "", None, 1000).await.unwrap();
        assert_eq!(all.keys.len(), 28);
        assert_eq!(all.next, None);
        assert!(matches!(store.list("p", "", None, 0).await, Err(KvError::Invalid(_))));
    }

    #[tokio::test]
    async fn a_conditional_write_sees_every_change_even_back_to_the_same_value() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), roomy());
        let absent = PutOptions { condition: Condition::Absent, ttl_seconds: None };
        let first = store.put("p", "k", b"A".to_vec(), absent).await.unwrap();
        assert_eq!(store.put("p", "k", b"B".to_vec(), absent).await, Err(KvError::Conflict(Some(first))));
        let at = |revision| PutOptions { condition: Condition::Revision(revision), ttl_seconds: None };
        let second = store.put("p", "k", b"B".to_vec(), at(first)).await.unwrap();
        // Delete and recreate with the old value: the old revision does not match (no A-B-A).
        store.delete("p", "k", Some(second)).await.unwrap();
        store.put("p", "k", b"A".to_vec(), absent).await.unwrap();
        assert!(matches!(store.put("p", "k", b"C".to_vec(), at(first)).await, Err(KvError::Conflict(Some(_)))));
        assert!(matches!(store.delete("p", "k", Some(first)).await, Err(KvError::Conflict(Some(_)))));
        assert_eq!(store.delete("p", "gone", Some(1)).await, Err(KvError::Conflict(None)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_increments_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(store(dir.path(), roomy()));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    for _ in 0..250 {
                        store.increment("p", "n", 2, None).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(store.get("p", "n").await.unwrap().unwrap().value, b"4000");
        assert_eq!(store.increment("p", "n", -4001, None).await.unwrap(), -1);
        let (value, options) = put("text");
        store.put("p", "t", value, options).await.unwrap();
        assert!(matches!(store.increment("p", "t", 1, None).await, Err(KvError::Invalid(_))));
        assert!(matches!(store.increment("p", "n", i64::MIN, None).await, Err(KvError::Invalid(_))));
    }

    #[tokio::test]
    async fn each_quota_is_named_when_reached_and_a_refused_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), KvQuotas { keys: 2, bytes: 30, value_bytes: 16 });
        let (value, options) = put("0123456789abcdefX");
        let err = store.put("p", "k", value, options).await.unwrap_err();
        assert!(err.to_string().starts_with("limit: value-bytes (16)"), "{err}");
        for key in ["a", "b"] {
            let (value, options) = put("x");
            store.put("p", key, value, options).await.unwrap();
        }
        let (value, options) = put("x");
        assert!(store.put("p", "c", value, options).await.unwrap_err().to_string().starts_with("limit: keys (2)"));
        let (value, options) = put("0123456789abcdef");
        store.put("p", "a", value, options).await.unwrap();
        let (value, options) = put("0123456789abcdef");
        let err = store.put("p", "b", value, options).await.unwrap_err();
        assert!(err.to_string().starts_with("limit: bytes (30)"), "{err}");
        // A batch over the quota writes none of its keys.
        store.delete("p", "b", None).await.unwrap();
        let batch = vec![("b".to_owned(), b"x".to_vec()), ("c".to_owned(), b"y".to_vec())];
        assert!(matches!(store.set_many("p", batch).await, Err(KvError::Limit(_))));
        assert_eq!(store.get("p", "b").await.unwrap(), None);
        let usage = store.usage("p").await.unwrap();
        assert_eq!((usage.keys, usage.bytes, usage.max_keys), (1, 17, 2));
        // Another project has its own room.
        let (value, options) = put("x");
        store.put("q", "c", value, options).await.unwrap();
    }

    #[tokio::test]
    async fn a_key_with_a_time_to_live_expires() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), roomy());
        let options = PutOptions { condition: Condition::Always, ttl_seconds: Some(1) };
        store.put("p", "short", b"x".to_vec(), options).await.unwrap();
        let entry = store.get("p", "short").await.unwrap().unwrap();
        assert!(entry.expires_in_ms.is_some_and(|ms| ms <= 1000), "{entry:?}");
        assert_eq!(store.increment("p", "window", 1, Some(1)).await.unwrap(), 1);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(store.get("p", "short").await.unwrap(), None);
        assert!(store.list("p", "", None, 10).await.unwrap().keys.is_empty());
        // An expired counter starts again.
        assert_eq!(store.increment("p", "window", 1, Some(1)).await.unwrap(), 1);
        assert!(matches!(
            store.put("p", "k", vec![], PutOptions { ttl_seconds: Some(0), ..options }).await,
            Err(KvError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn configuration_is_per_project_kept_and_secrets_are_not_printed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = store(dir.path(), roomy());
            store.set_config("chat", "SIGNING_KEY", ConfigValue::new("hunter2".into(), true)).await.unwrap();
            store.set_config("chat", "room", ConfigValue::new("lobby".into(), false)).await.unwrap();
            let snapshot = store.config("chat");
            assert_eq!(snapshot.get("SIGNING_KEY").map(ConfigValue::reveal), Some("hunter2"));
            assert!(!format!("{snapshot:?}").contains("hunter2"));
            assert!(store.config("other").is_empty());
            assert!(store.set_config("chat", "bad name", ConfigValue::new("x".into(), false)).await.is_err());
            assert!(store.unset_config("chat", "room").await.unwrap());
            assert!(!store.unset_config("chat", "room").await.unwrap());
        }
        let store = store(dir.path(), roomy());
        let snapshot = store.config("chat");
        assert_eq!(snapshot.len(), 1);
        assert!(snapshot.get("SIGNING_KEY").is_some_and(|value| value.secret));
    }

    #[tokio::test]
    async fn bad_keys_are_refused_before_the_backend() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), roomy());
        assert!(matches!(store.get("p", "").await, Err(KvError::Invalid(_))));
        let long = "k".repeat(513);
        assert!(matches!(store.get("p", &long).await, Err(KvError::Invalid(_))));
        let keys: Vec<String> = (0..1001).map(|i| i.to_string()).collect();
        assert!(matches!(store.get_many("p", keys).await, Err(KvError::Invalid(_))));
    }
}
