//! What the history's files share: what a project may keep, where a publication is fanned out, what a listing shows
//! of a channel's history, and sending a joining member what it missed.

use std::sync::Arc;

use wasmsock_wire::history::{Publication, StreamPosition, envelope};
use wasmsock_wire::{ConnError, ProjectQuotas};

use crate::channels::Channels;
use crate::conn::Conn;
use crate::control::metrics::Metrics;

/// What a project may keep, looked up per call (the host's flags with the project's `project.json` over them).
pub type QuotasOf = Arc<dyn Fn(&str) -> ProjectQuotas + Send + Sync>;

/// The channels a publication is fanned out on and the metrics that count it, as one argument.
#[derive(Debug, Clone, Copy)]
pub struct Fanout<'a> {
    /// This host's channels.
    pub channels: &'a Channels,
    /// The host's metrics.
    pub metrics: &'a Metrics,
}

/// What the admin API and `wasmsock channels` show of one channel's history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StreamStats {
    /// The project it belongs to.
    pub project: String,
    /// The channel's name.
    pub channel: String,
    /// The offset of its latest publication.
    pub top: u64,
    /// The stream's epoch.
    pub epoch: String,
    /// How many publications it keeps now.
    pub kept: usize,
}

/// Queues `missed` (publications of epoch `epoch`, oldest first) on `conn`, in the envelope when `with_envelope`; how
/// many. A `limit` error says how many went before the connection's queue filled.
pub(super) fn send_history<'a>(
    conn: &Conn,
    missed: impl Iterator<Item = &'a Publication>,
    epoch: &str,
    with_envelope: bool,
) -> Result<u32, ConnError> {
    let mut sent: u32 = 0;
    for publication in missed {
        let frame = if with_envelope {
            envelope(&StreamPosition { offset: publication.offset, epoch: epoch.to_owned() }, &publication.frame)
        } else {
            publication.frame.clone()
        };
        conn.send(frame).map_err(|err| match err {
            ConnError::Limit(why) => ConnError::Limit(format!(
                "the connection's queue filled after {sent} publications of the history: {why}"
            )),
            other => other,
        })?;
        sent = sent.saturating_add(1);
    }
    Ok(sent)
}
