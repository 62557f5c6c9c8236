//! Channel history and recovery, over the history calls of the WIT `websockets` interface: publishing with a position
//! (an offset per channel and the stream's epoch), reading pages of a channel's history, and joining a channel from a
//! position so that a member that dropped gets what it missed, once and in order, then the live messages. The project
//! opts in with `quotas.history-size` in its `project.json`.
//!
//! ```ignore
//! use wasmsock_sdk::history::{self, StreamPosition};
//!
//! // In onopen, for a client that says it last saw offset 41 of epoch "e":
//! let since = StreamPosition { offset: 41, epoch: "e".into() };
//! let recovery = history::join_from("room", Some(&since), true)?; // envelope: {"offset":N,"epoch":"E","data":"…"}
//! if !recovery.recovered { /* some of what it missed is gone: tell the client */ }
//! ```

use crate::bindings::wasmsock::websockets::websockets as wit;

pub use wit::{
    Error, HistoryPage, JoinOptions, MessageData, Publication, PublishOptions, Published, Recovery, StreamPosition,
};

/// Publishes a text message to `channel` (as `websockets::publish`) and answers its position in the channel's history
/// (none when the project keeps no history).
pub fn publish(channel: &str, message: &str, options: PublishOptions) -> Result<Published, Error> {
    wit::publish_with(channel, message, options)
}

/// [`publish`] for a binary message.
pub fn publish_binary(channel: &str, data: &[u8], options: PublishOptions) -> Result<Published, Error> {
    wit::publish_binary_with(channel, data, options)
}

/// One page of `channel`'s history: at most `limit` (1 to 1000) publications after `since` (from the oldest kept when
/// none), oldest first. `complete` on the page says whether it continues `since` with no gap.
pub fn read(channel: &str, since: Option<&StreamPosition>, limit: u32) -> Result<HistoryPage, Error> {
    wit::get_history(channel, since, limit)
}

/// Joins the current connection to `channel` from `since`: what the history keeps after it first, then the live
/// messages, with none missed or repeated between the two. With `envelope` every message with a position reaches the
/// client as `{"offset":N,"epoch":"E","data":"TEXT"}`. `recovered` says whether nothing after `since` was lost.
pub fn join_from(channel: &str, since: Option<&StreamPosition>, envelope: bool) -> Result<Recovery, Error> {
    wit::join_from(channel, since, JoinOptions { envelope })
}
