//! The plain data of a project's key-value store and configuration: entries, write conditions, pages of keys, usage
//! against quotas, the store's errors, the checks every key and configuration name passes, and how a project's store
//! and keys are named on the cluster's broker (so that no key can name another project's data).

use std::fmt;

use crate::limits::{DEFAULT_CONFIG_MAX_VALUE_BYTES, DEFAULT_KV_MAX_KEY_BYTES, DEFAULT_KV_PAGE};

/// Why a store call did not happen (the WIT `kv.error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// A key, prefix or option is not acceptable; the text says which.
    #[error("invalid: {0}")]
    Invalid(String),
    /// A quota of the project was reached; the text names it and its value.
    #[error("limit: {0}")]
    Limit(String),
    /// A conditional write's condition did not hold; the key's current revision (none: absent).
    #[error("conflict: the key's revision is {}", .0.map_or_else(|| "none (absent)".to_owned(), |r| r.to_string()))]
    Conflict(Option<u64>),
    /// The store failed or cannot be reached; a retry may succeed.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// A value and what the store keeps beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The value as stored.
    pub value: Vec<u8>,
    /// Changes on every write of the key, never reused within the project's store.
    pub revision: u64,
    /// Milliseconds until the key expires; none without a time to live.
    pub expires_in_ms: Option<u64>,
}

/// When a write applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Condition {
    /// Always.
    #[default]
    Always,
    /// Only when the key is absent.
    Absent,
    /// Only when the key's revision is this one.
    Revision(u64),
}

/// Options of a write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// When the write applies.
    pub condition: Condition,
    /// Seconds until the key expires; none: kept until deleted (and an earlier time to live is cleared).
    pub ttl_seconds: Option<u32>,
}

/// One page of keys in byte order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeysPage {
    /// The keys of the page.
    pub keys: Vec<String>,
    /// The last key of this page when more may follow (pass it as `after`); none when this page is the last.
    pub next: Option<String>,
}

/// A project's store against its quotas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Usage {
    /// Keys stored now.
    pub keys: u64,
    /// Bytes of keys and values stored now.
    pub bytes: u64,
    /// The project's quota of keys.
    pub max_keys: u64,
    /// The project's quota of bytes.
    pub max_bytes: u64,
    /// The largest value the project may store, in bytes.
    pub max_value_bytes: u32,
}

/// An alarm of a project as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    /// Its name, unique in the project.
    pub name: String,
    /// The handler its event goes to.
    pub handler: String,
    /// When it fires, in milliseconds since the Unix epoch.
    pub due_ms: i64,
    /// What it carries.
    pub payload: Vec<u8>,
}

/// What one project's store may hold (from its [`crate::ProjectQuotas`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvQuotas {
    /// Keys.
    pub keys: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
    /// Bytes of one value.
    pub value_bytes: u32,
}

impl From<&crate::ProjectQuotas> for KvQuotas {
    fn from(quotas: &crate::ProjectQuotas) -> Self {
        Self { keys: quotas.kv_keys, bytes: quotas.kv_bytes, value_bytes: quotas.kv_value_bytes }
    }
}

impl KvQuotas {
    /// Checks a write of `value_len` bytes that changes the store's keys by `new_keys` and its bytes from `bytes` to
    /// `bytes_after`, the store holding `keys` keys before it. Shrinking is always allowed, so a project over a
    /// lowered quota can still delete and overwrite with less.
    pub fn check_write(
        &self,
        value_len: usize,
        keys: u64,
        new_keys: u64,
        bytes: u64,
        bytes_after: u64,
    ) -> Result<(), KvError> {
        if value_len > self.value_bytes as usize {
            return Err(KvError::Limit(format!("value-bytes ({}): the value has {value_len}", self.value_bytes)));
        }
        if new_keys > 0 && keys.saturating_add(new_keys) > self.keys {
            return Err(KvError::Limit(format!("keys ({}): the store holds {keys}", self.keys)));
        }
        if bytes_after > bytes && bytes_after > self.bytes {
            return Err(KvError::Limit(format!("bytes ({}): the write would make it {bytes_after}", self.bytes)));
        }
        Ok(())
    }

    /// The usage record of a store holding `keys` keys and `bytes` bytes under these quotas.
    pub fn usage(&self, keys: u64, bytes: u64) -> Usage {
        Usage { keys, bytes, max_keys: self.keys, max_bytes: self.bytes, max_value_bytes: self.value_bytes }
    }
}

/// Checks a key: 1 to [`DEFAULT_KV_MAX_KEY_BYTES`] bytes of UTF-8, no control characters.
pub fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::Invalid("a key cannot be empty".to_owned()));
    }
    check_prefix(key)
}

/// Checks a prefix of keys: like a key, but it may be empty (every key).
pub fn check_prefix(prefix: &str) -> Result<(), KvError> {
    if prefix.len() > DEFAULT_KV_MAX_KEY_BYTES {
        return Err(KvError::Invalid(format!(
            "a key has at most {DEFAULT_KV_MAX_KEY_BYTES} bytes, this one {}",
            prefix.len()
        )));
    }
    if let Some(c) = prefix.chars().find(|c| c.is_control()) {
        return Err(KvError::Invalid(format!("a key cannot hold the control character {:?}", c)));
    }
    Ok(())
}

/// The size of a page for a listing asked for `limit` keys: at least 1, at most [`DEFAULT_KV_PAGE`].
pub fn page_size(limit: u32) -> Result<usize, KvError> {
    match limit {
        0 => Err(KvError::Invalid("a page must have a limit of at least 1".to_owned())),
        n => Ok((n as usize).min(DEFAULT_KV_PAGE)),
    }
}

/// Checks a batch of `len` keys: at most [`DEFAULT_KV_PAGE`].
pub fn check_batch(len: usize) -> Result<(), KvError> {
    if len > DEFAULT_KV_PAGE {
        return Err(KvError::Invalid(format!("a batch takes at most {DEFAULT_KV_PAGE} keys, this one {len}")));
    }
    Ok(())
}

/// Reads a counter's value: the decimal text of a signed 64-bit number (what increments write).
pub fn parse_counter(value: &[u8]) -> Result<i64, KvError> {
    std::str::from_utf8(value).ok().and_then(|text| text.trim().parse().ok()).ok_or_else(|| {
        KvError::Invalid("the key's value is not a decimal number, so it cannot be incremented".to_owned())
    })
}

/// Checks a configuration name: 1 to 128 bytes of ASCII letters, digits, `_`, `-` and `.` (safe in a log line, a
/// URL and a subject of the broker).
pub fn check_config_key(key: &str) -> anyhow::Result<()> {
    if key.is_empty() || key.len() > 128 {
        anyhow::bail!("a configuration name has 1 to 128 characters, `{key}` has {}", key.len());
    }
    if let Some(c) = key.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))) {
        anyhow::bail!("a configuration name holds only letters, digits, `_`, `-` and `.`, not {c:?}");
    }
    Ok(())
}

/// Checks a configuration value: at most [`DEFAULT_CONFIG_MAX_VALUE_BYTES`].
pub fn check_config_value(value: &str) -> anyhow::Result<()> {
    if value.len() > DEFAULT_CONFIG_MAX_VALUE_BYTES {
        anyhow::bail!(
            "a configuration value has at most {DEFAULT_CONFIG_MAX_VALUE_BYTES} bytes, this one {}",
            value.len()
        );
    }
    Ok(())
}

/// Milliseconds since the Unix epoch: how the stores keep expiry times and alarms' due times.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// One project's configuration at one moment, by name.
pub type ConfigSnapshot = std::collections::BTreeMap<String, ConfigValue>;

/// A configuration value that may be a secret: printing it (`Debug`, `Display`) never shows a secret's value.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigValue {
    /// The value.
    value: String,
    /// Whether it is a secret.
    pub secret: bool,
}

impl ConfigValue {
    /// A value, secret or not.
    pub fn new(value: String, secret: bool) -> Self {
        Self { value, secret }
    }

    /// The value itself, for the project's own handlers.
    pub fn reveal(&self) -> &str {
        &self.value
    }

    /// What a listing shows: the value, or none for a secret.
    pub fn shown(&self) -> Option<&str> {
        (!self.secret).then_some(self.value.as_str())
    }
}

impl fmt::Debug for ConfigValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.secret { f.write_str("<secret>") } else { write!(f, "{:?}", self.value) }
    }
}

/// The name of a project's key-value bucket on the broker: `<cluster>_kv_` and the project's name in hex, so any
/// project name makes a valid, distinct bucket name.
pub fn bucket_name(cluster: &str, project: &str) -> String {
    let mut name = format!("{cluster}_kv_");
    for byte in project.bytes() {
        name.push_str(&format!("{byte:02x}"));
    }
    name
}

/// A key as the broker's KV stores it: letters, digits, `-`, `_` and `/` stand as they are, every other byte is `=`
/// and two hex digits. The broker allows `[-/_=.a-zA-Z0-9]` in a key, and `.` separates tokens, so it is escaped too.
/// Escaping keeps byte order within the kept characters and keeps prefixes: the escape of a prefix is a prefix of the
/// escape of every key that starts with it.
pub fn escape_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("={byte:02X}"));
        }
    }
    out
}

/// The key `escaped` stood for (see [`escape_key`]); none when it is not an escape of a UTF-8 key.
pub fn unescape_key(escaped: &str) -> Option<String> {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hex = escaped.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The name of a cluster's configuration bucket on the broker: `<cluster>_config` (every project's configuration, one
/// bucket; a project's key-value bucket is `<cluster>_kv_…`, so the two cannot meet).
pub fn config_bucket_name(cluster: &str) -> String {
    format!("{cluster}_config")
}

/// The key of `project`'s configuration value `name` in the configuration bucket: the project in hex, `.`, the name
/// escaped as [`escape_key`] does (a name may hold `.`, which separates the broker's tokens).
pub fn config_entry_key(project: &str, name: &str) -> String {
    format!("{}.{}", crate::cluster::hex(project.as_bytes()), escape_key(name))
}

/// The project and name that [`config_entry_key`] made `key` of; none for anything else.
pub fn parse_config_entry_key(key: &str) -> Option<(String, String)> {
    let (project, name) = key.split_once('.')?;
    Some((crate::cluster::unhex(project)?, unescape_key(name)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_for_length_and_control_characters() {
        assert!(check_key("room:1/history").is_ok());
        assert!(matches!(check_key(""), Err(KvError::Invalid(_))));
        assert!(check_key(&"k".repeat(DEFAULT_KV_MAX_KEY_BYTES)).is_ok());
        let long = check_key(&"k".repeat(DEFAULT_KV_MAX_KEY_BYTES + 1)).unwrap_err().to_string();
        assert!(long.contains("513"), "{long}");
        assert!(matches!(check_key("a\nb"), Err(KvError::Invalid(_))));
        assert!(check_prefix("").is_ok());
    }

    #[test]
    fn quotas_name_what_was_reached_and_let_a_store_shrink() {
        let q = KvQuotas { keys: 2, bytes: 100, value_bytes: 10 };
        assert!(q.check_write(10, 1, 1, 0, 20).is_ok());
        let err = q.check_write(11, 0, 1, 0, 20).unwrap_err();
        assert_eq!(err, KvError::Limit("value-bytes (10): the value has 11".to_owned()));
        assert!(q.check_write(1, 2, 1, 0, 5).unwrap_err().to_string().starts_with("limit: keys (2)"));
        // Overwriting an existing key adds no key.
        assert!(q.check_write(1, 2, 0, 0, 5).is_ok());
        assert!(q.check_write(5, 1, 0, 99, 101).unwrap_err().to_string().starts_with("limit: bytes (100)"));
        // Over a lowered quota, a smaller write still goes through.
        assert!(q.check_write(5, 1, 0, 500, 400).is_ok());
    }

    #[test]
    fn pages_and_batches_are_bounded() {
        assert!(page_size(0).is_err());
        assert_eq!(page_size(5).unwrap(), 5);
        assert_eq!(page_size(u32::MAX).unwrap(), DEFAULT_KV_PAGE);
        assert!(check_batch(DEFAULT_KV_PAGE).is_ok());
        assert!(check_batch(DEFAULT_KV_PAGE + 1).is_err());
    }

    #[test]
    fn counters_are_decimal_text() {
        assert_eq!(parse_counter(b"-42").unwrap(), -42);
        assert!(parse_counter(b"forty").is_err());
        assert!(parse_counter(&[0xff]).is_err());
    }

    #[test]
    fn configuration_names_and_values_are_checked() {
        assert!(check_config_key("TOKEN_KEY.v2-a").is_ok());
        assert!(check_config_key("").is_err());
        assert!(check_config_key("a b").unwrap_err().to_string().contains("' '"));
        assert!(check_config_value(&"x".repeat(DEFAULT_CONFIG_MAX_VALUE_BYTES + 1)).is_err());
    }

    #[test]
    fn a_secret_never_prints_its_value() {
        let secret = ConfigValue::new("hunter2".to_owned(), true);
        assert_eq!(format!("{secret}"), "<secret>");
        assert_eq!(format!("{secret:?}"), "<secret>");
        assert_eq!(secret.shown(), None);
        assert_eq!(secret.reveal(), "hunter2");
        let plain = ConfigValue::new("blue".to_owned(), false);
        assert_eq!(plain.shown(), Some("blue"));
    }

    #[test]
    fn escaping_round_trips_keeps_prefixes_and_uses_only_allowed_characters() {
        let keys = ["a", "room:1/history", "a.b c", "ü=€", "==", "-_/", "x\u{7f}"];
        for key in keys {
            let escaped = escape_key(key);
            assert!(escaped.bytes().all(|b| b.is_ascii_alphanumeric() || b"-/_=".contains(&b)), "{escaped}");
            assert_eq!(unescape_key(&escaped).as_deref(), Some(key));
            for cut in (0..=key.len()).filter(|&i| key.is_char_boundary(i)) {
                assert!(escaped.starts_with(&escape_key(&key[..cut])), "{key} at {cut}");
            }
        }
        assert_eq!(unescape_key("=G0"), None);
        assert_eq!(unescape_key("=4"), None);
    }

    #[test]
    fn bucket_names_are_distinct_and_valid_for_any_project() {
        assert_eq!(bucket_name("wasmsock", "chat"), "wasmsock_kv_63686174");
        assert_ne!(bucket_name("c", "a_b"), bucket_name("c", "a-b"));
        assert!(bucket_name("c", "ü .*>").bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    }

    #[test]
    fn configuration_keys_name_their_project_and_come_back() {
        assert_eq!(config_bucket_name("c"), "c_config");
        let key = config_entry_key("chat.v2", "a.b");
        assert_eq!(key, "636861742e7632.a=2Eb");
        assert_eq!(parse_config_entry_key(&key), Some(("chat.v2".to_owned(), "a.b".to_owned())));
        assert_eq!(parse_config_entry_key("zz.a"), None);
        assert_eq!(parse_config_entry_key("nodot"), None);
    }
}
