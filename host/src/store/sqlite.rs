//! The embedded backend: one SQLite file in WAL mode under the data directory. One writer thread owns the write
//! connection and commits what is queued together (one sync for a burst of writers), acknowledging each write only
//! after its commit; reads run on a small pool of read connections, which WAL never blocks behind the writer. Expired
//! keys read as absent at once and are swept every second.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::{Connection, OpenFlags, OptionalExtension as _, Transaction, params};
use tokio::sync::oneshot;

use wasmsock_wire::kv::now_ms;
use wasmsock_wire::kv::{
    Alarm, Condition, ConfigSnapshot, ConfigValue, Entry, KeysPage, KvError, KvQuotas, PutOptions, parse_counter,
};
use wasmsock_wire::limits::DEFAULT_CONFIG_MAX_KEYS;

use super::backend::Backend;
use crate::runtime::KvFuture;

/// The file the embedded store keeps everything in, under the data directory.
pub const STORE_FILE: &str = "store.sqlite";

/// How many writes may wait for the writer thread; past it a write is `unavailable` (the disk cannot keep up).
const DEFAULT_WRITE_QUEUE: usize = 4_096;

/// How many queued writes one transaction commits together.
const WRITES_PER_COMMIT: usize = 64;

/// How often the writer sweeps expired keys when it is idle, and how many one sweep removes at most.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
const SWEEP_BATCH: usize = 1_000;

/// How many read connections are kept open for reuse.
const READ_POOL: usize = 4;

/// What an acknowledged write survives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode: survives the host being killed (`kill -9`), not a power loss or kernel crash
    /// (the last commits may be lost then). About 14 µs per write measured on the development VM.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is synced to disk before it is acknowledged, surviving a power loss (0.25 ms
    /// per commit on an idle disk, several ms on a busy one; writes queued together share one sync).
    Full,
}

/// The embedded store.
#[derive(Debug)]
pub struct Sqlite {
    path: PathBuf,
    writes: SyncSender<Write>,
    readers: Arc<Mutex<Vec<Connection>>>,
    configs: Arc<RwLock<HashMap<String, Arc<ConfigSnapshot>>>>,
}

/// What a write does inside the batch's transaction.
type Apply = Box<dyn FnOnce(&Transaction<'_>, &mut Writer) -> Result<Answer, KvError> + Send>;

/// One write for the writer thread: run inside the batch's transaction, answered after the commit.
struct Write {
    apply: Apply,
    reply: oneshot::Sender<Result<Answer, KvError>>,
}

/// What a write answers.
enum Answer {
    Revision(u64),
    Number(i64),
    Done,
    Was(bool),
    Alarms(Vec<(String, Alarm)>),
}

/// The writer thread's own state.
struct Writer {
    /// The last revision given; the next write gets the one after. Kept in `meta` so it is never reused.
    revision: u64,
    configs: Arc<RwLock<HashMap<String, Arc<ConfigSnapshot>>>>,
    /// Configuration changes of the batch, applied to the snapshots once it is committed.
    config_changes: Vec<(String, String, Option<ConfigValue>)>,
}

fn db_error(err: rusqlite::Error) -> KvError {
    KvError::Unavailable(format!("the embedded store failed: {err}"))
}

fn open_connection(path: &Path, durability: Durability, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let sync = match durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    Ok(conn)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    project TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, revision INTEGER NOT NULL, expires INTEGER,
    PRIMARY KEY (project, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires) WHERE expires IS NOT NULL;
CREATE TABLE IF NOT EXISTS usage (project TEXT PRIMARY KEY, keys INTEGER NOT NULL, bytes INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS config (
    project TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, secret INTEGER NOT NULL, PRIMARY KEY (project, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alarms (
    project TEXT NOT NULL, name TEXT NOT NULL, handler TEXT NOT NULL, due INTEGER NOT NULL, payload BLOB NOT NULL,
    PRIMARY KEY (project, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alarms_due ON alarms (due);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', 1), ('revision', 0);
";

impl Sqlite {
    /// Opens (creating) the store in `dir`, which is made readable by this user only, and starts its writer thread.
    pub fn open(dir: &Path, durability: Durability) -> anyhow::Result<Self> {
        create_private_dir(dir)?;
        let path = dir.join(STORE_FILE);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = open_connection(&path, durability, flags).with_context(|| format!("opening {}", path.display()))?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .with_context(|| format!("setting WAL mode on {}", path.display()))?;
        if !mode.eq_ignore_ascii_case("wal") {
            anyhow::bail!("{} cannot use WAL mode (it is in {mode} mode)", path.display());
        }
        conn.execute_batch(SCHEMA).with_context(|| format!("creating the tables of {}", path.display()))?;
        set_private(&path)?;
        let revision: i64 = conn
            .query_row("SELECT value FROM meta WHERE name = 'revision'", [], |row| row.get(0))
            .with_context(|| format!("reading the last revision of {}", path.display()))?;
        let configs =
            Arc::new(RwLock::new(load_configs(&conn).with_context(|| format!("reading {}", path.display()))?));
        let (writes, queue) = std::sync::mpsc::sync_channel(DEFAULT_WRITE_QUEUE);
        let writer = Writer {
            revision: u64::try_from(revision).unwrap_or(0),
            configs: configs.clone(),
            config_changes: Vec::new(),
        };
        std::thread::Builder::new()
            .name("wasmsock-store".to_owned())
            .spawn(move || write_loop(conn, queue, writer))
            .context("starting the store's writer thread")?;
        Ok(Self { path, writes, readers: Arc::new(Mutex::new(Vec::new())), configs })
    }

    /// Queues a write for the writer thread; the future resolves after its commit.
    fn write<T: Send + 'static>(
        &self,
        apply: impl FnOnce(&Transaction<'_>, &mut Writer) -> Result<Answer, KvError> + Send + 'static,
        answer: impl FnOnce(Answer) -> T + Send + 'static,
    ) -> KvFuture<T> {
        let (reply, done) = oneshot::channel();
        let sent = self.writes.try_send(Write { apply: Box::new(apply), reply });
        Box::pin(async move {
            match sent {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    return Err(KvError::Unavailable("the store's write queue is full; try again".to_owned()));
                }
                Err(TrySendError::Disconnected(_)) => {
                    return Err(KvError::Unavailable("the store's writer has stopped".to_owned()));
                }
            }
            let result = done.await.map_err(|_| KvError::Unavailable("the store's writer has stopped".to_owned()))?;
            result.map(answer)
        })
    }

    /// Runs `query` on a pooled read connection, on the calling worker when the future is first polled. A point read
    /// or a page of keys from a warm cache takes microseconds, less than handing it to a blocking thread and back
    /// (measured: that hand-off cost more host CPU than the read, benches/store.sh); WAL readers never wait for the
    /// writer. A cold read waits for the disk on the worker.
    fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, KvError> + Send + 'static,
    ) -> KvFuture<T> {
        let (readers, path) = (self.readers.clone(), self.path.clone());
        Box::pin(async move {
            let pooled = readers.lock().map_or(None, |mut pool| pool.pop());
            let conn = match pooled {
                Some(conn) => conn,
                None => {
                    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                    open_connection(&path, Durability::Normal, flags).map_err(db_error)?
                }
            };
            let result = query(&conn);
            if let Ok(mut pool) = readers.lock()
                && pool.len() < READ_POOL
            {
                pool.push(conn);
            }
            result
        })
    }
}

/// Creates `dir` (and its parents) readable by this user only.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating the data directory {}", dir.display()))?;
    set_private(dir)
}

/// Makes `path` readable and writable by this user only: it holds every project's data and secrets.
pub fn set_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = if path.is_dir() { 0o700 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("making {} private", path.display()))
}

fn load_configs(conn: &Connection) -> rusqlite::Result<HashMap<String, Arc<ConfigSnapshot>>> {
    let mut all: HashMap<String, ConfigSnapshot> = HashMap::new();
    let mut stmt = conn.prepare("SELECT project, key, value, secret FROM config")?;
    let rows = stmt.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?, row.get::<_, bool>(3)?))
    })?;
    for row in rows {
        let (project, key, value, secret) = row?;
        all.entry(project).or_default().insert(key, ConfigValue::new(value, secret));
    }
    Ok(all.into_iter().map(|(project, snapshot)| (project, Arc::new(snapshot))).collect())
}

/// The writer thread: takes what is queued (up to [`WRITES_PER_COMMIT`]), applies each in a savepoint of one
/// transaction (a refused write leaves no trace), commits, then answers every one. Sweeps expired keys when idle.
fn write_loop(mut conn: Connection, queue: Receiver<Write>, mut writer: Writer) {
    let mut last_sweep = std::time::Instant::now();
    loop {
        let first = match queue.recv_timeout(SWEEP_INTERVAL) {
            Ok(write) => write,
            Err(RecvTimeoutError::Timeout) => {
                sweep(&mut conn, &writer);
                last_sweep = std::time::Instant::now();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        while batch.len() < WRITES_PER_COMMIT {
            match queue.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        commit_batch(&mut conn, batch, &mut writer);
        if last_sweep.elapsed() >= SWEEP_INTERVAL {
            sweep(&mut conn, &writer);
            last_sweep = std::time::Instant::now();
        }
    }
}

fn commit_batch(conn: &mut Connection, batch: Vec<Write>, writer: &mut Writer) {
    let before = writer.revision;
    let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(err) => {
            for write in batch {
                let _ = write.reply.send(Err(KvError::Unavailable(format!("the embedded store failed: {err}"))));
            }
            return;
        }
    };
    let mut answers = Vec::with_capacity(batch.len());
    for Write { apply, reply } in batch {
        let result = match tx.execute_batch("SAVEPOINT one") {
            Ok(()) => {
                let result = apply(&tx, writer);
                let end = if result.is_ok() { "RELEASE one" } else { "ROLLBACK TO one; RELEASE one" };
                match tx.execute_batch(end) {
                    Ok(()) => result,
                    Err(err) => Err(db_error(err)),
                }
            }
            Err(err) => Err(db_error(err)),
        };
        answers.push((reply, result));
    }
    let committed = tx
        .execute("UPDATE meta SET value = ?1 WHERE name = 'revision'", params![writer.revision as i64])
        .and_then(|_| tx.commit());
    match committed {
        Ok(()) => {
            apply_config_changes(writer);
            for (reply, result) in answers {
                let _ = reply.send(result);
            }
        }
        Err(err) => {
            tracing::error!("the embedded store could not commit: {err}");
            writer.revision = before;
            writer.config_changes.clear();
            for (reply, _) in answers {
                let _ = reply.send(Err(KvError::Unavailable(format!("the embedded store could not commit: {err}"))));
            }
        }
    }
}

fn apply_config_changes(writer: &mut Writer) {
    if writer.config_changes.is_empty() {
        return;
    }
    let Ok(mut configs) = writer.configs.write() else { return };
    for (project, key, value) in writer.config_changes.drain(..) {
        let mut snapshot = configs.get(&project).map(|s| s.as_ref().clone()).unwrap_or_default();
        match value {
            Some(value) => snapshot.insert(key, value),
            None => snapshot.remove(&key),
        };
        configs.insert(project, Arc::new(snapshot));
    }
}

/// Removes up to [`SWEEP_BATCH`] expired keys and gives their room back to their projects' usage.
fn sweep(conn: &mut Connection, writer: &Writer) {
    let swept = (|| -> rusqlite::Result<usize> {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let expired: Vec<(String, String, i64)> = {
            let mut stmt = tx.prepare(
                "SELECT project, key, length(CAST(key AS BLOB)) + length(value) FROM kv
                 WHERE expires IS NOT NULL AND expires <= ?1 LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![now_ms(), SWEEP_BATCH as i64], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for (project, key, size) in &expired {
            tx.execute("DELETE FROM kv WHERE project = ?1 AND key = ?2", params![project, key])?;
            tx.execute(
                "UPDATE usage SET keys = keys - 1, bytes = bytes - ?2 WHERE project = ?1",
                params![project, size],
            )?;
        }
        tx.commit()?;
        Ok(expired.len())
    })();
    match swept {
        Ok(0) => {}
        Ok(n) => tracing::debug!(keys = n, revision = writer.revision, "swept expired keys"),
        Err(err) => tracing::warn!("sweeping expired keys failed: {err}"),
    }
}

/// A key as the writer finds it: its size in the usage (expired or not) and, when live, its revision.
struct Found {
    size: i64,
    live_revision: Option<u64>,
    value: Vec<u8>,
    expires: Option<i64>,
}

fn find(tx: &Transaction<'_>, project: &str, key: &str, now: i64) -> Result<Option<Found>, KvError> {
    tx.query_row(
        "SELECT value, revision, expires FROM kv WHERE project = ?1 AND key = ?2",
        params![project, key],
        |row| {
            let value: Vec<u8> = row.get(0)?;
            let revision: i64 = row.get(1)?;
            let expires: Option<i64> = row.get(2)?;
            let live = expires.is_none_or(|at| at > now);
            Ok(Found {
                size: (key.len() + value.len()) as i64,
                live_revision: live.then_some(revision as u64),
                value,
                expires,
            })
        },
    )
    .optional()
    .map_err(db_error)
}

fn usage_of(conn: &Connection, project: &str) -> Result<(u64, u64), KvError> {
    let found: Option<(i64, i64)> = conn
        .query_row("SELECT keys, bytes FROM usage WHERE project = ?1", params![project], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()
        .map_err(db_error)?;
    let (keys, bytes) = found.unwrap_or((0, 0));
    Ok((keys.max(0) as u64, bytes.max(0) as u64))
}

/// Writes `value` at `key` (the condition already checked by the caller), within `quotas`; the new revision.
fn store_value(
    tx: &Transaction<'_>,
    writer: &mut Writer,
    (project, key): (&str, &str),
    value: &[u8],
    expires: Option<i64>,
    found: Option<&Found>,
    quotas: KvQuotas,
) -> Result<u64, KvError> {
    let (keys, bytes) = usage_of(tx, project)?;
    let old = found.map_or(0, |f| f.size);
    let new = (key.len() + value.len()) as i64;
    let new_keys = u64::from(found.is_none());
    let bytes_after = (bytes as i64 - old + new).max(0) as u64;
    quotas.check_write(value.len(), keys, new_keys, bytes, bytes_after)?;
    writer.revision += 1;
    let revision = writer.revision;
    tx.execute(
        "INSERT INTO kv (project, key, value, revision, expires) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (project, key) DO UPDATE SET value = ?3, revision = ?4, expires = ?5",
        params![project, key, value, revision as i64, expires],
    )
    .map_err(db_error)?;
    tx.execute(
        "INSERT INTO usage (project, keys, bytes) VALUES (?1, ?2, ?3)
         ON CONFLICT (project) DO UPDATE SET keys = keys + ?2, bytes = bytes + ?4",
        params![project, new_keys as i64, new, new - old],
    )
    .map_err(db_error)?;
    Ok(revision)
}

fn remove(tx: &Transaction<'_>, project: &str, key: &str, found: &Found) -> Result<(), KvError> {
    tx.execute("DELETE FROM kv WHERE project = ?1 AND key = ?2", params![project, key]).map_err(db_error)?;
    tx.execute("UPDATE usage SET keys = keys - 1, bytes = bytes - ?2 WHERE project = ?1", params![project, found.size])
        .map_err(db_error)?;
    Ok(())
}

fn expires_at(now: i64, ttl_seconds: Option<u32>) -> Option<i64> {
    ttl_seconds.map(|ttl| now.saturating_add(i64::from(ttl) * 1000))
}

impl Backend for Sqlite {
    fn get(&self, project: &str, key: &str) -> KvFuture<Option<Entry>> {
        let (project, key) = (project.to_owned(), key.to_owned());
        self.read(move |conn| {
            let now = now_ms();
            let found: Option<(Vec<u8>, i64, Option<i64>)> = conn
                .prepare_cached("SELECT value, revision, expires FROM kv WHERE project = ?1 AND key = ?2")
                .and_then(|mut stmt| {
                    stmt.query_row(params![project, key], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?))).optional()
                })
                .map_err(db_error)?;
            Ok(found.and_then(|(value, revision, expires)| match expires {
                Some(at) if at <= now => None,
                _ => Some(Entry {
                    value,
                    revision: revision as u64,
                    expires_in_ms: expires.map(|at| (at - now).max(0) as u64),
                }),
            }))
        })
    }

    fn put(&self, project: &str, key: &str, value: Vec<u8>, options: PutOptions, quotas: KvQuotas) -> KvFuture<u64> {
        let (project, key) = (project.to_owned(), key.to_owned());
        self.write(
            move |tx, writer| {
                let now = now_ms();
                let found = find(tx, &project, &key, now)?;
                let live = found.as_ref().and_then(|f| f.live_revision);
                let holds = match options.condition {
                    Condition::Always => true,
                    Condition::Absent => live.is_none(),
                    Condition::Revision(revision) => live == Some(revision),
                };
                if !holds {
                    return Err(KvError::Conflict(live));
                }
                let expires = expires_at(now, options.ttl_seconds);
                store_value(tx, writer, (&project, &key), &value, expires, found.as_ref(), quotas).map(Answer::Revision)
            },
            |answer| match answer {
                Answer::Revision(revision) => revision,
                _ => 0,
            },
        )
    }

    fn delete(&self, project: &str, key: &str, revision: Option<u64>) -> KvFuture<()> {
        let (project, key) = (project.to_owned(), key.to_owned());
        self.write(
            move |tx, _| {
                let found = find(tx, &project, &key, now_ms())?;
                let live = found.as_ref().and_then(|f| f.live_revision);
                if let Some(revision) = revision
                    && live != Some(revision)
                {
                    return Err(KvError::Conflict(live));
                }
                if let Some(found) = &found {
                    remove(tx, &project, &key, found)?;
                }
                Ok(Answer::Done)
            },
            |_| (),
        )
    }

    fn increment(
        &self,
        project: &str,
        key: &str,
        delta: i64,
        ttl_seconds: Option<u32>,
        quotas: KvQuotas,
    ) -> KvFuture<i64> {
        let (project, key) = (project.to_owned(), key.to_owned());
        self.write(
            move |tx, writer| {
                let now = now_ms();
                let found = find(tx, &project, &key, now)?;
                let (current, expires) = match &found {
                    Some(f) if f.live_revision.is_some() => (parse_counter(&f.value)?, f.expires),
                    _ => (0, expires_at(now, ttl_seconds)),
                };
                let sum = current
                    .checked_add(delta)
                    .ok_or_else(|| KvError::Invalid(format!("{current} + {delta} is past a 64-bit number")))?;
                let text = sum.to_string();
                store_value(tx, writer, (&project, &key), text.as_bytes(), expires, found.as_ref(), quotas)?;
                Ok(Answer::Number(sum))
            },
            |answer| match answer {
                Answer::Number(sum) => sum,
                _ => 0,
            },
        )
    }

    fn list(&self, project: &str, prefix: &str, after: Option<&str>, limit: usize) -> KvFuture<KeysPage> {
        let (project, prefix, after) = (project.to_owned(), prefix.to_owned(), after.unwrap_or("").to_owned());
        self.read(move |conn| {
            let now = now_ms();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT key FROM kv WHERE project = ?1 AND key >= ?2 AND key > ?3
                     AND (expires IS NULL OR expires > ?4) ORDER BY key",
                )
                .map_err(db_error)?;
            let mut rows = stmt.query(params![project, prefix, after, now]).map_err(db_error)?;
            let mut keys = Vec::new();
            let mut more = false;
            while let Some(row) = rows.next().map_err(db_error)? {
                let key: String = row.get(0).map_err(db_error)?;
                if !key.starts_with(&prefix) {
                    break;
                }
                if keys.len() == limit {
                    more = true;
                    break;
                }
                keys.push(key);
            }
            let next = if more { keys.last().cloned() } else { None };
            Ok(KeysPage { keys, next })
        })
    }

    fn set_many(&self, project: &str, entries: Vec<(String, Vec<u8>)>, quotas: KvQuotas) -> KvFuture<()> {
        let project = project.to_owned();
        self.write(
            move |tx, writer| {
                let now = now_ms();
                for (key, value) in &entries {
                    let found = find(tx, &project, key, now)?;
                    store_value(tx, writer, (&project, key), value, None, found.as_ref(), quotas)?;
                }
                Ok(Answer::Done)
            },
            |_| (),
        )
    }

    fn delete_many(&self, project: &str, keys: Vec<String>) -> KvFuture<()> {
        let project = project.to_owned();
        self.write(
            move |tx, _| {
                let now = now_ms();
                for key in &keys {
                    if let Some(found) = find(tx, &project, key, now)? {
                        remove(tx, &project, key, &found)?;
                    }
                }
                Ok(Answer::Done)
            },
            |_| (),
        )
    }

    fn usage(&self, project: &str) -> KvFuture<(u64, u64)> {
        let project = project.to_owned();
        self.read(move |conn| usage_of(conn, &project))
    }

    fn config(&self, project: &str) -> Arc<ConfigSnapshot> {
        self.configs.read().ok().and_then(|configs| configs.get(project).cloned()).unwrap_or_default()
    }

    fn set_config(&self, project: &str, key: &str, value: ConfigValue) -> KvFuture<()> {
        let (project, key) = (project.to_owned(), key.to_owned());
        self.write(
            move |tx, writer| {
                let count: i64 = tx
                    .query_row(
                        "SELECT count(*) FROM config WHERE project = ?1 AND key != ?2",
                        params![project, key],
                        |row| row.get(0),
                    )
                    .map_err(db_error)?;
                if count as usize >= DEFAULT_CONFIG_MAX_KEYS {
                    return Err(KvError::Limit(format!("config keys ({DEFAULT_CONFIG_MAX_KEYS})")));
                }
                tx.execute(
                    "INSERT INTO config (project, key, value, secret) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (project, key) DO UPDATE SET value = ?3, secret = ?4",
                    params![project, key, value.reveal(), value.secret],
                )
                .map_err(db_error)?;
                writer.config_changes.push((project, key, Some(value)));
                Ok(Answer::Done)
            },
            |_| (),
        )
    }

    fn unset_config(&self, project: &str, key: &str) -> KvFuture<bool> {
        let (project, key) = (project.to_owned(), key.to_owned());
        self.write(
            move |tx, writer| {
                let removed = tx
                    .execute("DELETE FROM config WHERE project = ?1 AND key = ?2", params![project, key])
                    .map_err(db_error)?;
                writer.config_changes.push((project, key, None));
                Ok(Answer::Was(removed > 0))
            },
            |answer| matches!(answer, Answer::Was(true)),
        )
    }

    fn set_alarm(&self, project: &str, alarm: Alarm, max: u32) -> KvFuture<()> {
        let project = project.to_owned();
        self.write(
            move |tx, _| {
                let others: i64 = tx
                    .query_row(
                        "SELECT count(*) FROM alarms WHERE project = ?1 AND name != ?2",
                        params![project, alarm.name],
                        |row| row.get(0),
                    )
                    .map_err(db_error)?;
                if others >= i64::from(max) {
                    return Err(KvError::Limit(format!("alarms ({max}): the project has {others} set")));
                }
                tx.execute(
                    "INSERT INTO alarms (project, name, handler, due, payload) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (project, name) DO UPDATE SET handler = ?3, due = ?4, payload = ?5",
                    params![project, alarm.name, alarm.handler, alarm.due_ms, alarm.payload],
                )
                .map_err(db_error)?;
                Ok(Answer::Done)
            },
            |_| (),
        )
    }

    fn cancel_alarm(&self, project: &str, name: &str) -> KvFuture<bool> {
        let (project, name) = (project.to_owned(), name.to_owned());
        self.write(
            move |tx, _| {
                let removed = tx
                    .execute("DELETE FROM alarms WHERE project = ?1 AND name = ?2", params![project, name])
                    .map_err(db_error)?;
                Ok(Answer::Was(removed > 0))
            },
            |answer| matches!(answer, Answer::Was(true)),
        )
    }

    fn list_alarms(&self, project: &str) -> KvFuture<Vec<Alarm>> {
        let project = project.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT name, handler, due, payload FROM alarms WHERE project = ?1 ORDER BY due, name")
                .map_err(db_error)?;
            let rows = stmt
                .query_map(params![project], |row| {
                    Ok(Alarm { name: row.get(0)?, handler: row.get(1)?, due_ms: row.get(2)?, payload: row.get(3)? })
                })
                .map_err(db_error)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error)
        })
    }

    fn next_alarm(&self) -> KvFuture<Option<i64>> {
        self.read(|conn| conn.query_row("SELECT min(due) FROM alarms", [], |row| row.get(0)).map_err(db_error))
    }

    fn take_due_alarms(&self, now_ms: i64, limit: usize) -> KvFuture<Vec<(String, Alarm)>> {
        self.write(
            move |tx, _| {
                let due: Vec<(String, Alarm)> = {
                    let mut stmt = tx
                        .prepare_cached(
                            "SELECT project, name, handler, due, payload FROM alarms WHERE due <= ?1
                             ORDER BY due, project, name LIMIT ?2",
                        )
                        .map_err(db_error)?;
                    let rows = stmt
                        .query_map(params![now_ms, limit as i64], |row| {
                            let alarm = Alarm {
                                name: row.get(1)?,
                                handler: row.get(2)?,
                                due_ms: row.get(3)?,
                                payload: row.get(4)?,
                            };
                            Ok((row.get(0)?, alarm))
                        })
                        .map_err(db_error)?;
                    rows.collect::<rusqlite::Result<_>>().map_err(db_error)?
                };
                for (project, alarm) in &due {
                    tx.execute("DELETE FROM alarms WHERE project = ?1 AND name = ?2", params![project, alarm.name])
                        .map_err(db_error)?;
                }
                Ok(Answer::Alarms(due))
            },
            |answer| match answer {
                Answer::Alarms(due) => due,
                _ => Vec::new(),
            },
        )
    }

    fn describe(&self) -> String {
        format!("the embedded store {}", self.path.display())
    }
}
