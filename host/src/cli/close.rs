//! `wasmsock close ID`: close a live connection (code 1000, "closed by an administrator").

use clap::Args;

use super::remote::{Body, Remote};

/// Arguments of `wasmsock close`.
#[derive(Debug, Args)]
pub struct CloseArgs {
    /// The connection id (from `wasmsock clients`).
    pub id: String,
    /// The admin API.
    #[command(flatten)]
    pub remote: Remote,
}

impl CloseArgs {
    /// Starts the closing handshake of the connection.
    pub async fn run(self) -> anyhow::Result<()> {
        let answer =
            self.remote.call(reqwest::Method::DELETE, &format!("connections/{}", self.id), Body::Empty).await?;
        self.remote.print(&answer, |_| format!("closing {}", self.id));
        Ok(())
    }
}
