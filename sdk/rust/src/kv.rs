//! The key-value store of a handler's project: [`Store`], named as Spin's `spin_sdk::key_value::Store` (so Spin code
//! ports by changing its `use` lines), over `wasi:keyvalue` (store, atomics), plus wasmsock's `kv` extras (entries
//! with revisions, conditional writes, time to live, listing by prefix, usage).
//!
//! ```ignore
//! use wasmsock_sdk::kv::Store;
//!
//! let store = Store::open_default()?;
//! store.set("greeting", b"hello")?;
//! let visits = store.increment("visits", 1)?;
//! ```

use std::fmt;

use crate::bindings::wasi::keyvalue::{atomics, store as wasi};
use crate::bindings::wasmsock::websockets::kv as wit;

pub use wit::{Condition, Entry, KeysPage, PutOptions, Usage};

/// The only store a handler opens: its project's.
const DEFAULT_STORE: &str = "default";

/// Why a store call did not happen. `wasi:keyvalue` reports the host's kinds as text (`other("limit: …")`); they come
/// back here as their own variants, so every call of [`Store`] fails the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// No store of that name: a handler opens only `"default"`, its project's store.
    NoSuchStore,
    /// The host refused access to the store.
    AccessDenied,
    /// A key, prefix or option is not acceptable (empty key, key over 512 bytes, TTL of 0, limit of 0); the text says
    /// which.
    Invalid(String),
    /// A quota of the project was reached: the text names it (`keys`, `bytes`, `value-bytes`) and its value.
    Limit(String),
    /// A conditional write's condition did not hold; the key's current revision (none: the key is absent).
    Conflict(Option<u64>),
    /// The store failed or cannot be reached; a retry may succeed.
    Unavailable(String),
    /// A value could not be written as JSON or read back as the type asked for (`set_json`, `get_json`).
    Json(String),
    /// Anything else the host said.
    Other(String),
}

impl fmt::Display for Error {
    /// `kind: detail`, the wording of the JavaScript and Python SDKs (`limit: value-bytes (131072): …`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchStore => f.write_str("no-such-store"),
            Self::AccessDenied => f.write_str("access-denied"),
            Self::Invalid(text) => write!(f, "invalid: {text}"),
            Self::Limit(text) => write!(f, "limit: {text}"),
            Self::Conflict(Some(revision)) => write!(f, "conflict: the key's revision is {revision}"),
            Self::Conflict(None) => f.write_str("conflict: the key's revision is none (absent)"),
            Self::Unavailable(text) => write!(f, "unavailable: {text}"),
            Self::Json(text) => write!(f, "json: {text}"),
            Self::Other(text) => write!(f, "other: {text}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<wasi::Error> for Error {
    fn from(err: wasi::Error) -> Self {
        match err {
            wasi::Error::NoSuchStore => Self::NoSuchStore,
            wasi::Error::AccessDenied => Self::AccessDenied,
            wasi::Error::Other(text) => Self::from_text(text),
        }
    }
}

impl From<wit::Error> for Error {
    fn from(err: wit::Error) -> Self {
        match err {
            wit::Error::Invalid(text) => Self::Invalid(text),
            wit::Error::Limit(text) => Self::Limit(text),
            wit::Error::Conflict(revision) => Self::Conflict(revision),
            wit::Error::Unavailable(text) => Self::Unavailable(text),
        }
    }
}

impl Error {
    /// The kind of the error as the other SDKs name it: `no-such-store`, `access-denied`, `invalid`, `limit`,
    /// `conflict`, `unavailable`, `json` or `other`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoSuchStore => "no-such-store",
            Self::AccessDenied => "access-denied",
            Self::Invalid(_) => "invalid",
            Self::Limit(_) => "limit",
            Self::Conflict(_) => "conflict",
            Self::Unavailable(_) => "unavailable",
            Self::Json(_) => "json",
            Self::Other(_) => "other",
        }
    }

    /// A `wasi:keyvalue` `other` text: the host starts it with the kind (`invalid: `, `limit: `, `unavailable: `).
    fn from_text(text: String) -> Self {
        match text.split_once(": ") {
            Some(("invalid", detail)) => Self::Invalid(detail.to_owned()),
            Some(("limit", detail)) => Self::Limit(detail.to_owned()),
            Some(("unavailable", detail)) => Self::Unavailable(detail.to_owned()),
            _ => Self::Other(text),
        }
    }
}

/// An open key-value store: the handler's project store (Spin's `key_value::Store`). Every handler of the project
/// sees the same keys; no other project's handler can reach them.
#[derive(Debug)]
pub struct Store {
    bucket: wasi::Bucket,
}

impl Store {
    /// Opens the project's store (Spin's `Store::open_default()`).
    pub fn open_default() -> Result<Self, Error> {
        Self::open(DEFAULT_STORE)
    }

    /// Opens the store named `label`; only `"default"` exists (any other name is [`Error::NoSuchStore`]).
    pub fn open(label: &str) -> Result<Self, Error> {
        Ok(Self { bucket: wasi::open(label)? })
    }

    /// The value of `key`; none when it is absent (or expired).
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.bucket.get(key)?)
    }

    /// Sets `key` to `value`, replacing any value and clearing any time to live.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), Error> {
        Ok(self.bucket.set(key, value)?)
    }

    /// Deletes `key`; deleting an absent key is not an error.
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        Ok(self.bucket.delete(key)?)
    }

    /// Whether `key` holds a value.
    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        Ok(self.bucket.exists(key)?)
    }

    /// Every key of the store, in byte order, read a page at a time (Spin's `get_keys()`). [`Store::list`] reads one
    /// page of the keys with a prefix.
    pub fn get_keys(&self) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.bucket.list_keys(cursor.as_deref())?;
            keys.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// Adds `delta` to the decimal number stored at `key` (0 when absent) and returns the new value, atomically.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, Error> {
        Ok(atomics::increment(&self.bucket, key, delta)?)
    }

    /// Reads `key` now, for a [`Cas::swap`] that writes only if the key has not changed since (`wasi:keyvalue`'s
    /// `cas`).
    pub fn cas(&self, key: &str) -> Result<Cas, Error> {
        Ok(Cas { handle: atomics::Cas::new(&self.bucket, key)? })
    }

    /// Writes `value` as JSON at `key` (Spin's `set_json`; the `json` feature).
    #[cfg(feature = "json")]
    pub fn set_json<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), Error> {
        let bytes = serde_json::to_vec(value).map_err(|err| Error::Json(err.to_string()))?;
        self.set(key, &bytes)
    }

    /// Reads the JSON at `key` as a `T`; none when the key is absent (Spin's `get_json`; the `json` feature).
    #[cfg(feature = "json")]
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        match self.get(key)? {
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|err| Error::Json(err.to_string())),
            None => Ok(None),
        }
    }

    /// The value of `key` with its revision and time left to live; none when it is absent or expired.
    pub fn get_entry(&self, key: &str) -> Result<Option<Entry>, Error> {
        Ok(wit::get_entry(key)?)
    }

    /// Writes `value` at `key` under `options` (a condition: always, only when absent, only at a revision; a time to
    /// live); returns the new revision. A condition that does not hold is [`Error::Conflict`] with the key's current
    /// revision.
    pub fn put(&self, key: &str, value: &[u8], options: PutOptions) -> Result<u64, Error> {
        Ok(wit::put(key, value, options)?)
    }

    /// Deletes `key` only when its revision is `revision`; [`Error::Conflict`] otherwise.
    pub fn delete_if(&self, key: &str, revision: u64) -> Result<(), Error> {
        Ok(wit::delete_if(key, revision)?)
    }

    /// [`Store::increment`], giving the key `ttl_seconds` to live when this call creates it (a counter per time
    /// window, for rate limits).
    pub fn increment_with_ttl(&self, key: &str, delta: i64, ttl_seconds: Option<u32>) -> Result<i64, Error> {
        Ok(wit::increment_with_ttl(key, delta, ttl_seconds)?)
    }

    /// One page of the keys starting with `prefix`, in byte order, after `after` (the `next` of the page before),
    /// at most `limit` (1 to 1,000).
    pub fn list(&self, prefix: &str, after: Option<&str>, limit: u32) -> Result<KeysPage, Error> {
        Ok(wit::list_keys(prefix, after, limit)?)
    }

    /// How much of its quotas the project's store uses.
    pub fn usage(&self) -> Result<Usage, Error> {
        Ok(wit::get_usage()?)
    }
}

impl PutOptions {
    /// Write always, with no time to live (a plain set).
    pub fn always() -> Self {
        Self { condition: Condition::Always, ttl_seconds: None }
    }

    /// Write only when the key is absent (create).
    pub fn if_absent() -> Self {
        Self { condition: Condition::Absent, ttl_seconds: None }
    }

    /// Write only when the key's revision is `revision` (compare-and-swap).
    pub fn if_revision(revision: u64) -> Self {
        Self { condition: Condition::Revision(revision), ttl_seconds: None }
    }

    /// These options with a time to live of `seconds`.
    pub fn ttl(self, seconds: u32) -> Self {
        Self { ttl_seconds: Some(seconds), ..self }
    }
}

/// A key's value as read at one moment ([`Store::cas`]), to be replaced only if the key has not been written since.
#[derive(Debug)]
pub struct Cas {
    handle: atomics::Cas,
}

impl Cas {
    /// The value read; none when the key was absent.
    pub fn current(&self) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.handle.current()?)
    }

    /// Writes `value` if the key has not been written since it was read: `true`; `false` when it has (read it again
    /// with [`Store::cas`] and retry).
    pub fn swap(self, value: &[u8]) -> Result<bool, Error> {
        match atomics::swap(self.handle, value) {
            Ok(()) => Ok(true),
            Err(atomics::CasError::CasFailed(_)) => Ok(false),
            Err(atomics::CasError::StoreError(err)) => Err(err.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_kinds_in_wasi_keyvalue_texts_become_their_own_variants() {
        let other = |text: &str| Error::from(wasi::Error::Other(text.to_owned()));
        assert_eq!(
            other("limit: value-bytes (1): the value has 2"),
            Error::Limit("value-bytes (1): the value has 2".into())
        );
        assert_eq!(other("invalid: a key cannot be empty"), Error::Invalid("a key cannot be empty".into()));
        assert_eq!(other("unavailable: disk full"), Error::Unavailable("disk full".into()));
        assert_eq!(other("something: else"), Error::Other("something: else".into()));
        assert_eq!(Error::from(wasi::Error::NoSuchStore), Error::NoSuchStore);
    }

    #[test]
    fn errors_read_as_kind_then_detail() {
        assert_eq!(
            Error::Limit("keys (1): the store holds 1".into()).to_string(),
            "limit: keys (1): the store holds 1"
        );
        assert_eq!(Error::Conflict(Some(7)).to_string(), "conflict: the key's revision is 7");
        assert_eq!(Error::Conflict(None).to_string(), "conflict: the key's revision is none (absent)");
        assert_eq!(Error::NoSuchStore.to_string(), "no-such-store");
        assert_eq!(Error::from(wit::Error::Conflict(Some(3))).kind(), "conflict");
    }

    #[test]
    fn put_options_say_when_and_for_how_long() {
        let options = PutOptions::if_revision(4).ttl(60);
        assert!(matches!(options.condition, Condition::Revision(4)));
        assert_eq!(options.ttl_seconds, Some(60));
        assert!(matches!(PutOptions::if_absent().condition, Condition::Absent));
        assert_eq!(PutOptions::always().ttl_seconds, None);
    }
}
