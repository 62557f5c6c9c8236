//! What one inbound connection holds being received: the bytes read from its socket since its last message was
//! handled (tungstenite's read buffer and unfinished message hold them), shared by the socket's reader, which counts
//! them and asks before reading more, and the session, which says when a message is done.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use wasmsock_wire::limits::{MEMORY_ALLOWANCE, READ_AHEAD};

use super::ledger::{Holding, Kind, Refusal};

/// See the module docs. Before [`Receiving::start`] (the HTTP handshake) nothing is budgeted.
#[derive(Debug, Default)]
pub struct Receiving {
    held: AtomicUsize,
    holding: OnceLock<Holding>,
    refused: AtomicBool,
}

impl Receiving {
    /// The upgrade was accepted: from now on what is read is held against `holding`.
    pub fn start(&self, holding: Holding) {
        self.held.store(0, Ordering::Relaxed);
        let _ = self.holding.set(holding);
    }

    /// The holder, once started.
    pub fn holding(&self) -> Option<&Holding> {
        self.holding.get()
    }

    /// Whether the socket may be read again: always within the allowance (small messages never ask the budget);
    /// beyond it, when the budget covers one more read of [`READ_AHEAD`] bytes.
    pub fn may_read(&self) -> Result<(), Refusal> {
        let held = self.held.load(Ordering::Relaxed);
        match self.holding.get() {
            Some(holding) if held > MEMORY_ALLOWANCE => holding.cover(held.saturating_add(READ_AHEAD)),
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

    /// The connection waited too long for room and is being closed for the budget.
    pub fn refuse(&self) {
        if !self.refused.swap(true, Ordering::Relaxed)
            && let Some(holding) = self.holding.get()
        {
            holding.budget().count_refusal(Kind::Receiving);
        }
    }

    /// Whether [`Receiving::refuse`] was called.
    pub fn refused(&self) -> bool {
        self.refused.load(Ordering::Relaxed)
    }

    /// The bytes read since the last message was handled.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::ledger::Budget;
    use super::*;

    #[test]
    fn reading_beyond_the_allowance_asks_the_budget_and_a_handled_message_frees_it() {
        let budget = Arc::new(Budget::new(&wasmsock_wire::Limits { memory_budget: 64 << 20, ..Default::default() }));
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
        let err = receiving.may_read().unwrap_err();
        assert!(err.to_string().contains("endpoint e"), "{err}");
        receiving.delivered();
        assert_eq!(budget.held(), 0);
        assert!(receiving.may_read().is_ok());
    }
}
