//! `wasmsock connect URI --handler H`: open an outbound client on a running host, without writing a handler that
//! does it.

use clap::Args;
use serde_json::json;

use super::remote::{Body, Remote, field};

/// Arguments of `wasmsock connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The `ws://` or `wss://` URI to connect to.
    pub uri: String,
    /// The handler that receives the client's events (`project/name`).
    #[arg(long)]
    pub handler: String,
    /// Reconnect after the connection is lost, starting after this many milliseconds and doubling (with jitter).
    #[arg(long)]
    pub reconnect_ms: Option<u64>,
    /// The longest delay between reconnect attempts, in milliseconds.
    #[arg(long, requires = "reconnect_ms")]
    pub reconnect_max_ms: Option<u64>,
    /// The admin API.
    #[command(flatten)]
    pub remote: Remote,
}

impl ConnectArgs {
    /// Creates the client and prints its id.
    pub async fn run(self) -> anyhow::Result<()> {
        let body = json!({
            "uri": self.uri,
            "handler": self.handler,
            "reconnect_ms": self.reconnect_ms,
            "reconnect_max_ms": self.reconnect_max_ms,
        });
        let answer = self.remote.call(reqwest::Method::POST, "clients", Body::Json(body)).await?;
        self.remote.print(&answer, |value| {
            let client = &value["client"];
            format!("client {} {} -> {}", field(client, "id"), field(client, "uri"), field(client, "handler"))
        });
        Ok(())
    }
}
