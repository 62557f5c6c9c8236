//! The embedded history's journal: one SQLite file (`history.sqlite`) in WAL mode beside the store's in the data
//! directory, written by its own thread, which commits what is queued together (one sync for a burst of publishes).
//! It holds what the streams in memory keep (each stream's epoch and top, and its kept publications), so a restart
//! reads them back; and whether the host stopped cleanly, so that after a crash (when the last queued publications may
//! be missing though members received them) every stream starts a new epoch instead of reusing their offsets.
//!
//! Its own file rather than the store's: publishing is append-heavy and must not queue behind (or in front of) the
//! handlers' key-value writes in the store's bounded queue, and its trimming is its own.

use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender};

use anyhow::Context as _;
use rusqlite::{Connection, OpenFlags, params};
use tokio::sync::oneshot;

use wasmsock_wire::Frame;
use wasmsock_wire::history::Publication;

use crate::store::{Durability, create_private_dir, set_private};

/// The file the embedded history is kept in, under the data directory.
pub const HISTORY_FILE: &str = "history.sqlite";

/// How many journal writes may wait for its thread; past it a publish to a channel with history is a `limit` error
/// (the disk cannot keep up), never a publication kept in memory only.
const DEFAULT_JOURNAL_QUEUE: usize = 65_536;

/// How many queued writes one transaction commits together.
const WRITES_PER_COMMIT: usize = 512;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS streams (
    project TEXT NOT NULL, channel TEXT NOT NULL, epoch TEXT NOT NULL, top INTEGER NOT NULL,
    PRIMARY KEY (project, channel)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS publications (
    project TEXT NOT NULL, channel TEXT NOT NULL, offset INTEGER NOT NULL, time_ms INTEGER NOT NULL,
    binary INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (project, channel, offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', 1), ('clean', 1);
";

/// One write for the journal's thread.
#[derive(Debug)]
pub enum Op {
    /// A stream exists with this epoch and top (started, or given a new epoch).
    Stream { project: String, channel: String, epoch: String, top: u64 },
    /// A publication was added to a stream (its top is now the publication's offset).
    Append { project: String, channel: String, publication: Publication },
    /// The stream keeps nothing before `first_kept` any more.
    Trim { project: String, channel: String, first_kept: u64 },
    /// The stream was let go (everything in it expired).
    Forget { project: String, channel: String },
    /// Answered once everything queued before it is committed.
    Flush(oneshot::Sender<()>),
    /// Marks the journal cleanly closed, answers, and ends the thread.
    Close(oneshot::Sender<()>),
}

/// A stream as the journal had it.
#[derive(Debug)]
pub struct LoadedStream {
    /// Its project.
    pub project: String,
    /// Its channel.
    pub channel: String,
    /// Its epoch when it was written.
    pub epoch: String,
    /// The offset of its latest publication written.
    pub top: u64,
    /// The publications it kept, in offset order.
    pub kept: Vec<Publication>,
}

/// The journal's queue to its thread.
#[derive(Debug)]
pub struct Journal {
    ops: SyncSender<Op>,
    path: std::path::PathBuf,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Journal {
    /// Opens (creating) the journal in `dir`, reads back every stream, marks it open (not clean until
    /// [`Journal::close`]) and starts its thread. Also whether the host before stopped cleanly.
    pub fn open(dir: &Path, durability: Durability) -> anyhow::Result<(Self, Vec<LoadedStream>, bool)> {
        create_private_dir(dir)?;
        let path = dir.join(HISTORY_FILE);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).with_context(|| format!("opening {}", path.display()))?;
        let sync = match durability {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        };
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .with_context(|| format!("setting WAL mode on {}", path.display()))?;
        if !mode.eq_ignore_ascii_case("wal") {
            anyhow::bail!("{} cannot use WAL mode (it is in {mode} mode)", path.display());
        }
        conn.pragma_update(None, "synchronous", sync).with_context(|| format!("configuring {}", path.display()))?;
        conn.execute_batch(SCHEMA).with_context(|| format!("creating the tables of {}", path.display()))?;
        set_private(&path)?;
        let streams = load(&conn).with_context(|| format!("reading {}", path.display()))?;
        let clean: i64 = conn
            .query_row("SELECT value FROM meta WHERE name = 'clean'", [], |row| row.get(0))
            .with_context(|| format!("reading {}", path.display()))?;
        conn.execute("UPDATE meta SET value = 0 WHERE name = 'clean'", [])
            .with_context(|| format!("marking {} open", path.display()))?;
        let (ops, queue) = std::sync::mpsc::sync_channel(DEFAULT_JOURNAL_QUEUE);
        let thread = std::thread::Builder::new()
            .name("wasmsock-history".to_owned())
            .spawn(move || write_loop(conn, queue))
            .context("starting the history's writer thread")?;
        Ok((Self { ops, path, thread: Mutex::new(Some(thread)) }, streams, clean == 1))
    }

    /// Where the journal is.
    pub fn describe(&self) -> String {
        format!("the embedded history in {}", self.path.display())
    }

    /// Queues `op` without waiting; false when the queue is full or the thread has stopped.
    pub fn send(&self, op: Op) -> bool {
        self.ops.try_send(op).is_ok()
    }

    /// Resolves once everything queued so far is committed (at once when the thread has stopped).
    pub fn flush(&self) -> impl Future<Output = ()> + Send + 'static {
        let (done, committed) = oneshot::channel();
        // Blocking on a full queue would hold the caller; a flush that cannot be queued resolves at once and the
        // publish it follows was refused anyway.
        let queued = self.ops.try_send(Op::Flush(done)).is_ok();
        async move {
            if queued {
                let _ = committed.await;
            }
        }
    }

    /// Commits what is queued, marks the journal cleanly closed and stops its thread (at shutdown, after the last
    /// publish).
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.ops.send(Op::Close(done)).is_ok() {
            let _ = closed.await;
        }
        let thread = self.thread.lock().ok().and_then(|mut thread| thread.take());
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn load(conn: &Connection) -> rusqlite::Result<Vec<LoadedStream>> {
    let mut streams: Vec<LoadedStream> = Vec::new();
    let mut stmt = conn.prepare("SELECT project, channel, epoch, top FROM streams ORDER BY project, channel")?;
    let rows = stmt.query_map([], |row| {
        Ok(LoadedStream {
            project: row.get(0)?,
            channel: row.get(1)?,
            epoch: row.get(2)?,
            top: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
            kept: Vec::new(),
        })
    })?;
    for row in rows {
        streams.push(row?);
    }
    let mut stmt = conn.prepare(
        "SELECT offset, time_ms, binary, data FROM publications WHERE project = ?1 AND channel = ?2 ORDER BY offset",
    )?;
    for stream in &mut streams {
        let rows = stmt.query_map(params![stream.project, stream.channel], |row| {
            let data: Vec<u8> = row.get(3)?;
            let frame = if row.get::<_, bool>(2)? {
                Frame::Binary(data.into())
            } else {
                Frame::Text(String::from_utf8_lossy(&data).into_owned().into())
            };
            Ok(Publication { offset: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0), time_ms: row.get(1)?, frame })
        })?;
        for row in rows {
            stream.kept.push(row?);
        }
    }
    Ok(streams)
}

/// The journal's thread: takes what is queued (up to [`WRITES_PER_COMMIT`]), applies it in one transaction, commits,
/// then answers the flushes in it.
fn write_loop(mut conn: Connection, queue: Receiver<Op>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < WRITES_PER_COMMIT {
            match queue.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut answers = Vec::new();
        let mut closing = false;
        let committed = conn.transaction().and_then(|tx| {
            for op in batch {
                match op {
                    Op::Flush(done) => answers.push(done),
                    Op::Close(done) => {
                        tx.execute("UPDATE meta SET value = 1 WHERE name = 'clean'", [])?;
                        answers.push(done);
                        closing = true;
                    }
                    op => apply(&tx, op)?,
                }
            }
            tx.commit()
        });
        if let Err(err) = committed {
            tracing::error!("the embedded history could not commit: {err}");
        }
        for done in answers {
            let _ = done.send(());
        }
        if closing {
            return;
        }
    }
}

fn apply(tx: &rusqlite::Transaction<'_>, op: Op) -> rusqlite::Result<()> {
    let signed = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    match op {
        Op::Stream { project, channel, epoch, top } => {
            tx.execute(
                "INSERT INTO streams (project, channel, epoch, top) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (project, channel) DO UPDATE SET epoch = excluded.epoch, top = excluded.top",
                params![project, channel, epoch, signed(top)],
            )?;
        }
        Op::Append { project, channel, publication } => {
            let (binary, data): (bool, &[u8]) = match &publication.frame {
                Frame::Binary(data) => (true, data),
                Frame::Text(text) => (false, text.as_bytes()),
                _ => (false, &[]),
            };
            tx.execute(
                "INSERT OR REPLACE INTO publications (project, channel, offset, time_ms, binary, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![project, channel, signed(publication.offset), publication.time_ms, binary, data],
            )?;
            tx.execute(
                "UPDATE streams SET top = ?3 WHERE project = ?1 AND channel = ?2",
                params![project, channel, signed(publication.offset)],
            )?;
        }
        Op::Trim { project, channel, first_kept } => {
            tx.execute(
                "DELETE FROM publications WHERE project = ?1 AND channel = ?2 AND offset < ?3",
                params![project, channel, signed(first_kept)],
            )?;
        }
        Op::Forget { project, channel } => {
            tx.execute("DELETE FROM publications WHERE project = ?1 AND channel = ?2", params![project, channel])?;
            tx.execute("DELETE FROM streams WHERE project = ?1 AND channel = ?2", params![project, channel])?;
        }
        Op::Flush(_) | Op::Close(_) => {}
    }
    Ok(())
}
