//! What a store backend is: the trait both the embedded SQLite store and the cluster's JetStream store implement.

use std::sync::Arc;

use wasmsock_wire::kv::{Alarm, ConfigSnapshot, ConfigValue, Entry, KeysPage, KvError, KvQuotas, PutOptions};

use crate::runtime::KvFuture;

/// What keeps the data: both backends implement it. The [`Store`] in front has checked every key, prefix, option and
/// batch size; a backend keeps each project apart, applies the quotas it is given inside the write, and gives every
/// write a revision never used before in the project's store.
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    /// The value of `key` with its revision and expiry; none when absent or expired.
    fn get(&self, project: &str, key: &str) -> KvFuture<Option<Entry>>;
    /// Writes `value` at `key` under `options` within `quotas`; the new revision.
    fn put(&self, project: &str, key: &str, value: Vec<u8>, options: PutOptions, quotas: KvQuotas) -> KvFuture<u64>;
    /// Removes `key`, only at `revision` when given (else `conflict`); an absent key removed unconditionally is fine.
    fn delete(&self, project: &str, key: &str, revision: Option<u64>) -> KvFuture<()>;
    /// Adds `delta` to the decimal number at `key` (0 when absent) atomically; a key it creates gets `ttl_seconds`.
    fn increment(
        &self,
        project: &str,
        key: &str,
        delta: i64,
        ttl_seconds: Option<u32>,
        quotas: KvQuotas,
    ) -> KvFuture<i64>;
    /// Up to `limit` live keys starting with `prefix`, in byte order, after `after` when given.
    fn list(&self, project: &str, prefix: &str, after: Option<&str>, limit: usize) -> KvFuture<KeysPage>;
    /// Sets every key (all or none where the backend can; in order otherwise).
    fn set_many(&self, project: &str, entries: Vec<(String, Vec<u8>)>, quotas: KvQuotas) -> KvFuture<()>;
    /// Removes every key.
    fn delete_many(&self, project: &str, keys: Vec<String>) -> KvFuture<()>;
    /// Keys and bytes the project's store holds.
    fn usage(&self, project: &str) -> KvFuture<(u64, u64)>;
    /// The project's configuration now (kept in memory, current with every host's changes).
    fn config(&self, project: &str) -> Arc<ConfigSnapshot>;
    /// Sets a configuration value (a checked name and value); `limit` past
    /// [`wasmsock_wire::limits::DEFAULT_CONFIG_MAX_KEYS`] names.
    fn set_config(&self, project: &str, key: &str, value: ConfigValue) -> KvFuture<()>;
    /// Removes a configuration value; whether it was set.
    fn unset_config(&self, project: &str, key: &str) -> KvFuture<bool>;
    /// Where the data is, for the log and `/admin/v1/store`.
    fn describe(&self) -> String;
    /// Sets (or replaces) `project`'s alarm `alarm.name`; `limit` when the project has `max` others.
    fn set_alarm(&self, project: &str, alarm: Alarm, max: u32) -> KvFuture<()> {
        let _ = (project, alarm, max);
        no_alarms()
    }
    /// Cancels `project`'s alarm `name`; whether it was set.
    fn cancel_alarm(&self, project: &str, name: &str) -> KvFuture<bool> {
        let _ = (project, name);
        no_alarms()
    }
    /// `project`'s alarms, soonest first.
    fn list_alarms(&self, project: &str) -> KvFuture<Vec<Alarm>> {
        let _ = project;
        no_alarms()
    }
    /// When the soonest alarm of any project is due (milliseconds since the Unix epoch).
    fn next_alarm(&self) -> KvFuture<Option<i64>> {
        no_alarms()
    }
    /// Takes up to `limit` alarms due at `now_ms` off the store (each taken by one host only) and returns them with
    /// their projects, soonest first.
    fn take_due_alarms(&self, now_ms: i64, limit: usize) -> KvFuture<Vec<(String, Alarm)>> {
        let _ = (now_ms, limit);
        no_alarms()
    }
}

/// What a backend without alarms answers.
fn no_alarms<T: Send + 'static>() -> KvFuture<T> {
    Box::pin(std::future::ready(Err(KvError::Unavailable("this store keeps no alarms".to_owned()))))
}
