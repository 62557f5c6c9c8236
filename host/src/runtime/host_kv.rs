//! The storage imports: `wasi:keyvalue` (store, atomics, batch), wasmsock's own `kv`, and `wasi:config`. Every call
//! reaches the calling handler's project (taken from the handler's name, never from the guest), and a store call
//! waits off the handler's clock with its execution slot given to other calls.

use std::future::Future;
use std::sync::Arc;

use wasmtime::component::Resource;

use wasmsock_wire::descriptor::project_of;
use wasmsock_wire::kv::{Condition, ConfigSnapshot, Entry, KvError, PutOptions};
use wasmsock_wire::limits::DEFAULT_KV_PAGE;

use super::bindings::wasi::config::store as config;
use super::bindings::wasi::keyvalue::{atomics, batch, store};
use super::bindings::wasmsock::websockets::kv as wit;
use super::services::{KvFuture, KvService};
use super::state::{BucketRef, CasRef, State};

/// The only store name a handler opens: its project's store.
const DEFAULT_STORE: &str = "default";

/// How many store handles (buckets and CAS handles) one instance may hold at once (a kept instance keeps the ones it
/// has not dropped between events); past this the call traps.
const MAX_STORE_HANDLES: usize = 1_000;

impl State {
    /// Starts `call` on the store for the handler's project; the future borrows nothing and waits off the clock.
    fn store_call<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn KvService, &str) -> KvFuture<T>,
    ) -> impl Future<Output = Result<T, KvError>> + Send + 'static {
        let pending = call(self.services.kv(), project_of(&self.handler));
        self.off_the_clock(pending)
    }

    fn push_store_handle<T: Send + 'static>(&mut self, value: T) -> wasmtime::Result<Resource<T>> {
        if self.store_handles >= MAX_STORE_HANDLES {
            return Err(wasmtime::Error::msg(format!(
                "handler {} holds more than {MAX_STORE_HANDLES} store handles at once",
                self.handler
            )));
        }
        self.store_handles += 1;
        Ok(self.table.push(value)?)
    }

    fn drop_store_handle<T: Send + 'static>(&mut self, handle: Resource<T>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        self.store_handles = self.store_handles.saturating_sub(1);
        Ok(())
    }

    /// The project's configuration as it was when this event first asked: it may change between events, never
    /// within one.
    fn config_snapshot(&mut self) -> Arc<ConfigSnapshot> {
        if let Some(snapshot) = &self.config {
            return snapshot.clone();
        }
        let snapshot = self.services.config(project_of(&self.handler));
        self.config = Some(snapshot.clone());
        snapshot
    }
}

impl From<KvError> for wit::Error {
    fn from(err: KvError) -> Self {
        match err {
            KvError::Invalid(text) => Self::Invalid(text),
            KvError::Limit(text) => Self::Limit(text),
            KvError::Conflict(revision) => Self::Conflict(revision),
            KvError::Unavailable(text) => Self::Unavailable(text),
        }
    }
}

impl From<KvError> for store::Error {
    fn from(err: KvError) -> Self {
        // `wasi:keyvalue` has no variants for these: the text starts with what it is (`invalid:`, `limit:`, …).
        Self::Other(err.to_string())
    }
}

impl From<Entry> for wit::Entry {
    fn from(entry: Entry) -> Self {
        Self { value: entry.value, revision: entry.revision, expires_in_ms: entry.expires_in_ms }
    }
}

impl From<wit::PutOptions> for PutOptions {
    fn from(options: wit::PutOptions) -> Self {
        let condition = match options.condition {
            wit::Condition::Always => Condition::Always,
            wit::Condition::Absent => Condition::Absent,
            wit::Condition::Revision(revision) => Condition::Revision(revision),
        };
        Self { condition, ttl_seconds: options.ttl_seconds }
    }
}

impl store::Host for State {
    fn open(&mut self, identifier: String) -> wasmtime::Result<Result<Resource<BucketRef>, store::Error>> {
        if identifier != DEFAULT_STORE {
            return Ok(Err(store::Error::NoSuchStore));
        }
        Ok(Ok(self.push_store_handle(BucketRef)?))
    }
}

impl store::HostBucket for State {
    async fn get(
        &mut self,
        _: Resource<BucketRef>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let entry = self.store_call(|kv, project| kv.get(project, &key)).await;
        Ok(entry.map(|entry| entry.map(|entry| entry.value)).map_err(Into::into))
    }

    async fn set(
        &mut self,
        _: Resource<BucketRef>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let put = self.store_call(|kv, project| kv.put(project, &key, value, PutOptions::default())).await;
        Ok(put.map(|_| ()).map_err(Into::into))
    }

    async fn delete(&mut self, _: Resource<BucketRef>, key: String) -> wasmtime::Result<Result<(), store::Error>> {
        Ok(self.store_call(|kv, project| kv.delete(project, &key, None)).await.map_err(Into::into))
    }

    async fn exists(&mut self, _: Resource<BucketRef>, key: String) -> wasmtime::Result<Result<bool, store::Error>> {
        let entry = self.store_call(|kv, project| kv.get(project, &key)).await;
        Ok(entry.map(|entry| entry.is_some()).map_err(Into::into))
    }

    async fn list_keys(
        &mut self,
        _: Resource<BucketRef>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        let limit = u32::try_from(DEFAULT_KV_PAGE).unwrap_or(u32::MAX);
        let page = self.store_call(|kv, project| kv.list(project, "", cursor.as_deref(), limit)).await;
        Ok(page.map(|page| store::KeyResponse { keys: page.keys, cursor: page.next }).map_err(Into::into))
    }

    fn drop(&mut self, bucket: Resource<BucketRef>) -> wasmtime::Result<()> {
        self.drop_store_handle(bucket)
    }
}

impl atomics::Host for State {
    async fn increment(
        &mut self,
        _: Resource<BucketRef>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, store::Error>> {
        Ok(self.store_call(|kv, project| kv.increment(project, &key, delta, None)).await.map_err(Into::into))
    }

    async fn swap(
        &mut self,
        cas: Resource<atomics::Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let CasRef { key, read } = self.table.delete(cas)?;
        self.store_handles = self.store_handles.saturating_sub(1);
        // Written only if the key's revision is still the one read (or it is still absent): no A-B-A.
        let condition = read.map_or(Condition::Absent, |entry| Condition::Revision(entry.revision));
        let options = PutOptions { condition, ttl_seconds: None };
        match self.store_call(|kv, project| kv.put(project, &key, value, options)).await {
            Ok(_) => Ok(Ok(())),
            Err(KvError::Conflict(_)) => {
                // The spec asks for a fresh handle holding the key's current value.
                match self.store_call(|kv, project| kv.get(project, &key)).await {
                    Ok(read) => Ok(Err(atomics::CasError::CasFailed(self.push_store_handle(CasRef { key, read })?))),
                    Err(err) => Ok(Err(atomics::CasError::StoreError(err.into()))),
                }
            }
            Err(err) => Ok(Err(atomics::CasError::StoreError(err.into()))),
        }
    }
}

impl atomics::HostCas for State {
    async fn new(
        &mut self,
        _: Resource<BucketRef>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<CasRef>, store::Error>> {
        match self.store_call(|kv, project| kv.get(project, &key)).await {
            Ok(read) => Ok(Ok(self.push_store_handle(CasRef { key, read })?)),
            Err(err) => Ok(Err(err.into())),
        }
    }

    fn current(&mut self, cas: Resource<CasRef>) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        Ok(Ok(self.table.get(&cas)?.read.as_ref().map(|entry| entry.value.clone())))
    }

    fn drop(&mut self, cas: Resource<CasRef>) -> wasmtime::Result<()> {
        self.drop_store_handle(cas)
    }
}

impl batch::Host for State {
    async fn get_many(
        &mut self,
        _: Resource<BucketRef>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<(String, Option<Vec<u8>>)>, store::Error>> {
        let asked = keys.clone();
        let values = self.store_call(|kv, project| kv.get_many(project, keys)).await;
        Ok(values.map(|values| asked.into_iter().zip(values).collect()).map_err(Into::into))
    }

    async fn set_many(
        &mut self,
        _: Resource<BucketRef>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        Ok(self.store_call(|kv, project| kv.set_many(project, key_values)).await.map_err(Into::into))
    }

    async fn delete_many(
        &mut self,
        _: Resource<BucketRef>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        Ok(self.store_call(|kv, project| kv.delete_many(project, keys)).await.map_err(Into::into))
    }
}

impl wit::Host for State {
    async fn get_entry(&mut self, key: String) -> wasmtime::Result<Result<Option<wit::Entry>, wit::Error>> {
        let entry = self.store_call(|kv, project| kv.get(project, &key)).await;
        Ok(entry.map(|entry| entry.map(Into::into)).map_err(Into::into))
    }

    async fn put(
        &mut self,
        key: String,
        value: Vec<u8>,
        options: wit::PutOptions,
    ) -> wasmtime::Result<Result<u64, wit::Error>> {
        let options = PutOptions::from(options);
        Ok(self.store_call(|kv, project| kv.put(project, &key, value, options)).await.map_err(Into::into))
    }

    async fn delete_if(&mut self, key: String, revision: u64) -> wasmtime::Result<Result<(), wit::Error>> {
        Ok(self.store_call(|kv, project| kv.delete(project, &key, Some(revision))).await.map_err(Into::into))
    }

    async fn increment_with_ttl(
        &mut self,
        key: String,
        delta: i64,
        ttl_seconds: Option<u32>,
    ) -> wasmtime::Result<Result<i64, wit::Error>> {
        let sum = self.store_call(|kv, project| kv.increment(project, &key, delta, ttl_seconds)).await;
        Ok(sum.map_err(Into::into))
    }

    async fn list_keys(
        &mut self,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<wit::KeysPage, wit::Error>> {
        let page = self.store_call(|kv, project| kv.list(project, &prefix, after.as_deref(), limit)).await;
        Ok(page.map(|page| wit::KeysPage { keys: page.keys, next: page.next }).map_err(Into::into))
    }

    async fn get_usage(&mut self) -> wasmtime::Result<Result<wit::Usage, wit::Error>> {
        let usage = self.store_call(|kv, project| kv.usage(project)).await;
        Ok(usage
            .map(|usage| wit::Usage {
                keys: usage.keys,
                bytes: usage.bytes,
                max_keys: usage.max_keys,
                max_bytes: usage.max_bytes,
                max_value_bytes: usage.max_value_bytes,
            })
            .map_err(Into::into))
    }
}

impl config::Host for State {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, config::Error>> {
        Ok(Ok(self.config_snapshot().get(&key).map(|value| value.reveal().to_owned())))
    }

    fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, config::Error>> {
        let snapshot = self.config_snapshot();
        Ok(Ok(snapshot.iter().map(|(key, value)| (key.clone(), value.reveal().to_owned())).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_keep_their_kind_in_both_interfaces() {
        assert!(matches!(wit::Error::from(KvError::Conflict(Some(7))), wit::Error::Conflict(Some(7))));
        assert!(
            matches!(wit::Error::from(KvError::Limit("keys (1)".into())), wit::Error::Limit(text) if text == "keys (1)")
        );
        match store::Error::from(KvError::Limit("keys (1)".into())) {
            store::Error::Other(text) => assert_eq!(text, "limit: keys (1)"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn put_options_carry_the_condition_and_ttl() {
        let options = wit::PutOptions { condition: wit::Condition::Revision(9), ttl_seconds: Some(3) };
        assert_eq!(PutOptions::from(options), PutOptions { condition: Condition::Revision(9), ttl_seconds: Some(3) });
        let options = wit::PutOptions { condition: wit::Condition::Absent, ttl_seconds: None };
        assert_eq!(PutOptions::from(options).condition, Condition::Absent);
    }
}
