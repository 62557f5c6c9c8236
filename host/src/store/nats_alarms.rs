//! Alarms on the cluster's broker (`serve --nats`): every project's alarms in one JetStream KV bucket,
//! `<cluster>_alarms`, keyed `<hex project>.<escaped name>`. Every host follows the bucket into an index of its own
//! (so finding the soonest alarm costs the broker nothing), and a due alarm is fired by the host that takes it: the
//! take is a delete expecting the revision the index holds, which exactly one host can win. A host that loses, or
//! whose index is behind (the alarm was replaced meanwhile), leaves it to the follower's next update.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt as _;
use tokio::sync::OnceCell;

use wasmsock_wire::kv::{Alarm, KvError, config_entry_key, parse_config_entry_key};

/// How long the follower waits before following the bucket again after its watch ended or the broker was gone.
const FOLLOW_RETRY: Duration = Duration::from_secs(1);

/// An alarm as the bucket holds it (the project and name are its key).
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    handler: String,
    due_ms: i64,
    payload: Vec<u8>,
}

/// One alarm as this host's index knows it.
#[derive(Clone)]
struct Indexed {
    revision: u64,
    project: String,
    alarm: Alarm,
}

/// The cluster's alarms: the bucket and this host's index of it.
pub(super) struct Alarms {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    cluster: String,
    store: OnceCell<kv::Store>,
    index: RwLock<HashMap<String, Indexed>>,
}

fn unavailable(what: &str, err: impl std::fmt::Display) -> KvError {
    KvError::Unavailable(format!("{what} on the cluster's broker failed: {err}"))
}

impl Alarms {
    /// The alarms of cluster `cluster`, followed from now on by a task that ends when the returned handle is aborted.
    pub(super) fn start(
        client: async_nats::Client,
        jetstream: jetstream::Context,
        cluster: &str,
    ) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let alarms = Arc::new(Self {
            client,
            jetstream,
            cluster: cluster.to_owned(),
            store: OnceCell::new(),
            index: RwLock::new(HashMap::new()),
        });
        let follower = tokio::spawn(Arc::clone(&alarms).follow());
        (alarms, follower)
    }

    async fn store(&self) -> Result<&kv::Store, KvError> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(KvError::Unavailable("the cluster's broker is not connected".to_owned()));
        }
        self.store
            .get_or_try_init(|| async {
                let name = format!("{}_alarms", self.cluster);
                if let Ok(store) = self.jetstream.get_key_value(&name).await {
                    return Ok(store);
                }
                let config = kv::Config {
                    bucket: name.clone(),
                    description: format!("the alarms of wasmsock cluster {}'s projects", self.cluster),
                    history: 1,
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                };
                match self.jetstream.create_key_value(config).await {
                    Ok(store) => Ok(store),
                    Err(err) => {
                        self.jetstream.get_key_value(&name).await.map_err(|_| unavailable("opening the alarms", err))
                    }
                }
            })
            .await
    }

    /// Follows the bucket into the index, again and again while the host runs.
    async fn follow(self: Arc<Self>) {
        loop {
            if let Err(err) = self.follow_once().await {
                tracing::debug!("following the cluster's alarms: {err}");
            }
            tokio::time::sleep(FOLLOW_RETRY).await;
        }
    }

    async fn follow_once(&self) -> Result<(), KvError> {
        let store = self.store().await?;
        let mut watch = store.watch_with_history(">").await.map_err(|err| unavailable("watching the alarms", err))?;
        // Each key's last message comes again: start from nothing, so an alarm removed meanwhile is not kept.
        if let Ok(mut index) = self.index.write() {
            index.clear();
        }
        while let Some(entry) = watch.next().await {
            let Ok(entry) = entry else { continue };
            let stored = match entry.operation {
                kv::Operation::Put => serde_json::from_slice::<Stored>(&entry.value).ok(),
                kv::Operation::Delete | kv::Operation::Purge => None,
            };
            self.apply(&entry.key, entry.revision, stored);
        }
        Err(KvError::Unavailable("the alarms' watch ended".to_owned()))
    }

    /// Applies a change of `key` at `revision` (none: removed); an older one than the index holds is ignored.
    fn apply(&self, key: &str, revision: u64, stored: Option<Stored>) {
        let Some((project, name)) = parse_config_entry_key(key) else { return };
        let Ok(mut index) = self.index.write() else { return };
        if index.get(key).is_some_and(|known| known.revision >= revision) {
            return;
        }
        match stored {
            Some(Stored { handler, due_ms, payload }) => {
                let alarm = Alarm { name, handler, due_ms, payload };
                index.insert(key.to_owned(), Indexed { revision, project, alarm });
            }
            None => {
                index.remove(key);
            }
        }
    }

    /// Sets `project`'s alarm `alarm.name`; `limit` when the project has `max` others (as this host's index knows:
    /// across hosts two new alarms set at the same moment may both pass).
    pub(super) async fn set(&self, project: &str, alarm: Alarm, max: u32) -> Result<(), KvError> {
        let key = config_entry_key(project, &alarm.name);
        let others = self
            .index
            .read()
            .map(|index| index.iter().filter(|(k, i)| i.project == project && k.as_str() != key).count())
            .unwrap_or(0);
        if others >= max as usize {
            return Err(KvError::Limit(format!("alarms ({max}): the project has {others} set")));
        }
        let store = self.store().await?;
        let stored = Stored { handler: alarm.handler.clone(), due_ms: alarm.due_ms, payload: alarm.payload.clone() };
        let body = serde_json::to_vec(&stored).map_err(|err| unavailable("encoding an alarm", err))?;
        let revision = store.put(&key, body.into()).await.map_err(|err| unavailable("setting an alarm", err))?;
        self.apply(&key, revision, Some(stored));
        Ok(())
    }

    /// Cancels `project`'s alarm `name`; whether it was set.
    pub(super) async fn cancel(&self, project: &str, name: &str) -> Result<bool, KvError> {
        let store = self.store().await?;
        let key = config_entry_key(project, name);
        let entry = store.entry(key.as_str()).await.map_err(|err| unavailable("reading an alarm", err))?;
        let Some(kv::Entry { operation: kv::Operation::Put, revision, .. }) = entry else { return Ok(false) };
        match store.delete_expect_revision(&key, Some(revision)).await {
            Ok(()) => {
                if let Ok(mut index) = self.index.write() {
                    index.remove(&key);
                }
                Ok(true)
            }
            // Fired or replaced at that moment by another host.
            Err(_) => Ok(false),
        }
    }

    /// `project`'s alarms, soonest first.
    pub(super) fn list(&self, project: &str) -> Vec<Alarm> {
        let mut alarms: Vec<Alarm> = self
            .index
            .read()
            .map(|index| index.values().filter(|i| i.project == project).map(|i| i.alarm.clone()).collect())
            .unwrap_or_default();
        alarms.sort_by(|a, b| (a.due_ms, &a.name).cmp(&(b.due_ms, &b.name)));
        alarms
    }

    /// When the soonest alarm is due.
    pub(super) fn next(&self) -> Option<i64> {
        self.index.read().ok()?.values().map(|i| i.alarm.due_ms).min()
    }

    /// Takes up to `limit` alarms due at `now_ms` that this host wins, soonest first.
    pub(super) async fn take_due(&self, now_ms: i64, limit: usize) -> Result<Vec<(String, Alarm)>, KvError> {
        let mut due: Vec<(String, Indexed)> = self
            .index
            .read()
            .map(|index| {
                index.iter().filter(|(_, i)| i.alarm.due_ms <= now_ms).map(|(k, i)| (k.clone(), i.clone())).collect()
            })
            .unwrap_or_default();
        if due.is_empty() {
            return Ok(Vec::new());
        }
        due.sort_by_key(|(_, i)| i.alarm.due_ms);
        due.truncate(limit);
        let store = self.store().await?;
        let mut won = Vec::new();
        for (key, indexed) in due {
            // Exactly one host's delete at this revision succeeds; the others (and a stale index) fail and move on.
            if store.delete_expect_revision(&key, Some(indexed.revision)).await.is_ok() {
                if let Ok(mut index) = self.index.write() {
                    index.remove(&key);
                }
                won.push((indexed.project, indexed.alarm));
            }
        }
        Ok(won)
    }
}
