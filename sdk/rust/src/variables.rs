//! The configuration of a handler's project (`wasi:config/store`), named as Spin's `spin_sdk::variables`: values the
//! operator sets per project, read by name.
//!
//! ```ignore
//! let upstream = wasmsock_sdk::variables::get("upstream-url")?.unwrap_or_default();
//! ```

use crate::bindings::wasi::config::store as wit;

pub use wit::Error;

/// The value of the configuration `name`; none when the project has no such value. Within one event the answers do
/// not change, even if the operator changes the configuration meanwhile.
pub fn get(name: &str) -> Result<Option<String>, Error> {
    wit::get(name)
}

/// Every configuration value of the project, as `(name, value)` in name order.
pub fn get_all() -> Result<Vec<(String, String)>, Error> {
    wit::get_all()
}
