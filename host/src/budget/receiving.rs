//! What one inbound connection holds being received: the bytes read from its socket since its last message was
//! handled (tungstenite's read buffer and unfinished message hold them), shared by the socket's reader, which counts
//! them and asks before reading more, and the session, which says when a message is done.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use wasmsock_wire::Close;
use wasmsock_wire::frame::MAX_CLOSE_REASON;
use wasmsock_wire::limits::{MEMORY_ALLOWANCE, READ_AHEAD};

use super::ledger::{Holding, Kind, Refusal};

/// The reason of the 1013 a connection gets when its reading waited for the memory budget longer than the budget's
/// wait (`serve --memory-wait-ms`), or its unfinished message, holding budget, got nothing from the peer for that long.
pub const BUDGET_CLOSE_REASON: &str = "memory budget: the message could not be received in time; try again later";

/// Not refused.
const NOT_REFUSED: u8 = 0;
/// Refused for now: the budget was short for longer than its wait (1013).
const REFUSED_NOW: u8 = 1;
/// Refused for good: the message is larger than the connection could ever be given (1009).
const REFUSED_TOO_BIG: u8 = 2;

/// See the module docs. Before [`Receiving::start`] (the HTTP handshake) nothing is budgeted.
#[derive(Debug, Default)]
pub struct Receiving {
    held: AtomicUsize,
    holding: OnceLock<Holding>,
    refused: AtomicU8,
}

impl Receiving {
    /// The upgrade was accepted: from now on what is read is held against `holding`.
    pub fn start(&self, holding: Holding) {
        self.held.store(0, Ordering::Relaxed);
        let _ = self.holding.set(holding);
    }

    /// A new socket for the same connection (an outbound client connecting again): nothing is held or refused.
    pub fn restart(&self) {
        self.held.store(0, Ordering::Relaxed);
        self.refused.store(NOT_REFUSED, Ordering::Relaxed);
        if let Some(holding) = self.holding.get() {
            holding.settle(0);
        }
    }

    /// The holder, once started.
    pub fn holding(&self) -> Option<&Holding> {
        self.holding.get()
    }

    /// Whether the socket may be read again: always within the allowance (small messages never ask the budget);
    /// beyond it, when the budget covers one more read of [`READ_AHEAD`] bytes, or up to the most this connection could
    /// ever be given ([`Holding::most`]). Holding more than that already, the refusal is `never`: waiting cannot help.
    pub fn may_read(&self) -> Result<(), Refusal> {
        let held = self.held.load(Ordering::Relaxed);
        match self.holding.get() {
            Some(holding) if held > MEMORY_ALLOWANCE => {
                let most = holding.most();
                if held > most {
                    return Err(holding.too_big());
                }
                holding.cover(held.saturating_add(READ_AHEAD).min(most))
            }
            _ => Ok(()),
        }
    }

    /// Whether it holds more than the allowance (an unfinished large message, or one not yet handled) once started.
    pub fn holds_budget(&self) -> bool {
        self.holding.get().is_some() && self.held.load(Ordering::Relaxed) > MEMORY_ALLOWANCE
    }

    /// `n` bytes were read from the socket.
    pub fn read(&self, n: usize) {
        self.held.fetch_add(n, Ordering::Relaxed);
    }

    /// The message read so far was handled: what it held is free.
    pub fn delivered(&self) {
        if self.held.swap(0, Ordering::Relaxed) > MEMORY_ALLOWANCE
            && let Some(holding) = self.holding.get()
        {
            holding.settle(0);
        }
    }

    /// `n` of the bytes read are free again (a control frame read whole, while a message may be unfinished).
    pub fn freed(&self, n: usize) {
        let before = self.held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| Some(h.saturating_sub(n)));
        let before = before.unwrap_or_else(|held| held);
        if before > MEMORY_ALLOWANCE
            && let Some(holding) = self.holding.get()
        {
            holding.settle(before.saturating_sub(n));
        }
    }

    /// The connection is being closed for the budget: for good when `never` (its message can never fit, see
    /// [`Refusal::never`]), else because it waited too long for room. Counted once.
    pub fn refuse(&self, never: bool) {
        let why = if never { REFUSED_TOO_BIG } else { REFUSED_NOW };
        if self.refused.swap(why, Ordering::Relaxed) == NOT_REFUSED
            && let Some(holding) = self.holding.get()
        {
            holding.budget().count_refusal(Kind::Receiving);
        }
    }

    /// Whether [`Receiving::refuse`] was called.
    pub fn refused(&self) -> bool {
        self.refused.load(Ordering::Relaxed) != NOT_REFUSED
    }

    /// The close frame for a connection whose reading the budget refused: 1009 naming the smallest share and its
    /// figure when the message could never fit ([`Holding::too_big`]), else 1013 ([`BUDGET_CLOSE_REASON`]).
    pub fn close(&self) -> Option<Close> {
        match self.refused.load(Ordering::Relaxed) {
            NOT_REFUSED => None,
            REFUSED_TOO_BIG => {
                let refusal = self.holding.get().map(Holding::too_big)?;
                Some(Close::new(1009, too_big_reason(&refusal)))
            }
            _ => Some(Close::new(1013, BUDGET_CLOSE_REASON)),
        }
    }

    /// The bytes read since the last message was handled.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// The reason of a 1009 for a message larger than the most `refusal`'s limit lets one connection hold, cut to fit a
/// close frame (a long endpoint name loses its end, never the figure, which comes first).
fn too_big_reason(refusal: &Refusal) -> String {
    let reason = format!(
        "memory budget: message larger than the {} one connection may hold ({}, {})",
        refusal.figure(),
        refusal.what,
        refusal.flag()
    );
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::ledger::Budget;
    use super::*;

    fn budget() -> Arc<Budget> {
        // 64 MiB: receiving 32, project 32, endpoint 16.
        Arc::new(Budget::new(&wasmsock_wire::Limits { memory_budget: 64 << 20, ..Default::default() }))
    }

    #[test]
    fn reading_beyond_the_allowance_asks_the_budget_and_a_handled_message_frees_it() {
        let budget = budget();
        let receiving = Receiving::default();
        receiving.read(10 << 20);
        assert!(receiving.may_read().is_ok(), "before the upgrade nothing is budgeted");
        receiving.start(budget.connection_holding(Kind::Receiving, budget.scope("p", Some("e"))));
        receiving.read(MEMORY_ALLOWANCE);
        assert!(receiving.may_read().is_ok());
        assert_eq!(budget.held(), 0, "within the allowance no charge");
        receiving.read(8 << 20);
        assert!(receiving.may_read().is_ok());
        assert!(budget.held() >= 8 << 20);
        receiving.read(8 << 20);
        assert!(receiving.may_read().is_ok(), "up to the endpoint's whole share, without the read ahead");
        assert_eq!(budget.held(), 16 << 20);
        receiving.delivered();
        assert_eq!(budget.held(), 0);
        assert!(receiving.may_read().is_ok());
        assert_eq!(receiving.close(), None, "nothing refused");
    }

    #[test]
    fn a_message_past_the_most_it_could_ever_be_given_is_refused_for_good_with_1009() {
        let budget = budget();
        let receiving = Receiving::default();
        receiving.start(budget.connection_holding(Kind::Receiving, budget.scope("p", Some("e"))));
        receiving.read(MEMORY_ALLOWANCE + (16 << 20) + 1);
        let refusal = receiving.may_read().unwrap_err();
        assert!(refusal.never, "{refusal}");
        assert!(refusal.to_string().contains("endpoint e"), "{refusal}");
        receiving.refuse(refusal.never);
        let close = receiving.close().unwrap();
        assert_eq!(close.code, 1009, "{close:?}");
        assert!(close.reason.starts_with("memory budget: ") && close.reason.contains("16 MiB"), "{close:?}");
        assert!(close.reason.contains("endpoint e") && close.reason.len() <= MAX_CLOSE_REASON, "{close:?}");
        assert_eq!(budget.refusals(Kind::Receiving), 1);
        receiving.refuse(false);
        assert_eq!(budget.refusals(Kind::Receiving), 1, "a connection is refused once");
    }

    #[test]
    fn short_for_now_is_1013_and_a_new_socket_starts_afresh() {
        let budget = budget();
        let scope = budget.scope("p", Some("e"));
        let other = budget.connection_holding(Kind::Receiving, scope.clone());
        other.cover(MEMORY_ALLOWANCE + (12 << 20)).unwrap();
        let receiving = Receiving::default();
        receiving.start(budget.connection_holding(Kind::Receiving, scope));
        receiving.read(MEMORY_ALLOWANCE + (2 << 20));
        assert!(receiving.may_read().is_ok());
        receiving.read(4 << 20);
        let refusal = receiving.may_read().unwrap_err();
        assert!(!refusal.never, "another holder may let go: {refusal}");
        receiving.refuse(refusal.never);
        assert_eq!(receiving.close(), Some(Close::new(1013, BUDGET_CLOSE_REASON)));
        receiving.restart();
        assert!(!receiving.refused() && receiving.close().is_none());
        assert_eq!(budget.held(), 12 << 20, "what the old socket held was given back");
    }

    #[test]
    fn a_control_frame_frees_only_itself_so_pings_between_fragments_do_not_hide_a_message() {
        let budget = budget();
        let receiving = Receiving::default();
        receiving.start(budget.connection_holding(Kind::Receiving, budget.scope("p", Some("e"))));
        for _ in 0..4 {
            receiving.read(4 << 20);
            assert!(receiving.may_read().is_ok());
            // A ping of 2 bytes, masked: 8 bytes read and freed.
            receiving.read(8);
            receiving.freed(8);
        }
        assert_eq!(receiving.held(), 16 << 20);
        receiving.read(MEMORY_ALLOWANCE + 1);
        assert!(receiving.may_read().unwrap_err().never, "16 MiB of fragments with pings between are still counted");
        receiving.delivered();
        receiving.read(100);
        receiving.freed(1000);
        assert_eq!(receiving.held(), 0, "freeing more than is held leaves nothing");
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_long_name_is_cut_to_fit_a_close_frame_and_the_figure_stays() {
        let budget = budget();
        let long = "é".repeat(100);
        let receiving = Receiving::default();
        receiving.start(budget.connection_holding(Kind::Receiving, budget.scope("p", Some(&long))));
        receiving.refuse(true);
        let close = receiving.close().unwrap();
        assert!(close.reason.len() <= MAX_CLOSE_REASON && close.reason.contains("16 MiB"), "{close:?}");
    }
}
