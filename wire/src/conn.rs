//! Plain data about connections, shared by the runtime, the connection layer and the admin API: who a connection
//! is (`client-info`), where it is in its life, why an operation on it failed, and how an outbound client reconnects.

use std::time::Duration;

/// Which side opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// A peer connected to one of our endpoints.
    Inbound,
    /// We connected out with `create-websocket`.
    Outbound,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnState {
    /// An outbound client still connecting; sends are queued.
    Connecting = 0,
    /// Open both ways.
    Open = 1,
    /// A close frame was sent or received; sends are refused.
    Closing = 2,
    /// Gone.
    Closed = 3,
}

impl ConnState {
    /// The state stored as `value` (`self as u8`); anything past `Closed` reads as `Closed`.
    pub fn from_u8(value: u8) -> Self {
        match value {
            0 => ConnState::Connecting,
            1 => ConnState::Open,
            2 => ConnState::Closing,
            _ => ConnState::Closed,
        }
    }
}

/// What the host knows about one connection (the WIT `client-info`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClientInfo {
    /// Host-wide unique id.
    pub id: String,
    /// Request path and query (inbound) or the URI connected to (outbound).
    pub uri: String,
    /// The handler receiving this connection's events.
    pub handler: String,
    /// The endpoint of an inbound session.
    pub endpoint: Option<String>,
    /// Inbound or outbound.
    pub direction: Direction,
    /// The state when this was read.
    pub state: ConnState,
    /// The subprotocol agreed in the handshake, if any.
    pub protocol: Option<String>,
}

/// Why an operation on a connection did not happen (the WIT `error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnError {
    /// No live connection has this id.
    #[error("no connection has id {0}")]
    UnknownClient(String),
    /// The connection is closing or closed.
    #[error("the connection is closing or closed")]
    Closed,
    /// An argument was not acceptable.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A limit was reached.
    #[error("limit reached: {0}")]
    Limit(String),
}

/// Options of an outbound client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientOptions {
    /// Reconnect when the connection fails or the server ends it; none: the first end is final.
    pub reconnect: Option<Reconnect>,
    /// Held to its project's outbound grants on every attempt, reconnects included (a handler's clients: a deploy
    /// that removes the grant stops the next attempt); the operator's clients are not.
    pub grants: bool,
    /// Offer permessage-deflate and compress with these settings when the server agrees; none: no offer. A handler's
    /// clients follow the host default (`serve --compression`); the admin API's take `"compression": true`.
    pub compression: Option<crate::deflate::Compression>,
}

/// An exponential backoff with jitter between reconnect attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconnect {
    /// The delay before the first attempt; doubled after each failed one.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Attempts in a row without an open connection before giving up; none: never.
    pub max_attempts: Option<u32>,
}

impl Reconnect {
    /// The delay before attempt `attempt` (1-based): `initial × 2^(attempt-1)`, capped at `max`, then scaled by a
    /// random factor in [0.5, 1] so that many clients of one server do not reconnect in lockstep.
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let base = self.initial.saturating_mul(1 << exponent).min(self.max);
        let factor = 0.5 + (random % 1000) as f64 / 2000.0;
        base.mul_f64(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let policy = Reconnect { initial: Duration::from_millis(100), max: Duration::from_secs(1), max_attempts: None };
        for (attempt, base_ms) in [(1, 100u64), (2, 200), (3, 400), (4, 800), (5, 1000), (40, 1000)] {
            for random in [0, 499, 999, 123_456_789] {
                let delay = policy.delay(attempt, random);
                assert!(delay >= Duration::from_millis(base_ms / 2), "attempt {attempt}: {delay:?}");
                assert!(delay <= Duration::from_millis(base_ms), "attempt {attempt}: {delay:?}");
            }
        }
    }
}
