//! The host's memory budget: what messages being received, queued outbound frames and handler instances hold, in all
//! and per project and endpoint. Holders take it in chunks ([`Holding`]) beyond a small allowance, so the hot path
//! of small messages touches no shared counter. Below the runtime: it knows names and byte counts, nothing else.

mod ledger;
mod reader;
mod receiving;

pub use ledger::{Account, Budget, Holding, Kind, Refusal, Scope, machine_memory};
pub use reader::{Budgeted, ReadGate};
pub use receiving::{BUDGET_CLOSE_REASON, Receiving};
