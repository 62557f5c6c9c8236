//! `wasmsock clients`: the live connections of a running host, inbound sessions and outbound clients.

use clap::Args;

use super::remote::{Body, Remote, field, table};

/// Arguments of `wasmsock clients`.
#[derive(Debug, Args)]
pub struct ClientsArgs {
    /// The admin API.
    #[command(flatten)]
    pub remote: Remote,
}

impl ClientsArgs {
    /// Prints every live connection with its traffic.
    pub async fn run(self) -> anyhow::Result<()> {
        let value = self.remote.call(reqwest::Method::GET, "connections", Body::Empty).await?;
        self.remote.print(&value, |value| {
            let connections = value["connections"].as_array().cloned().unwrap_or_default();
            let rows = connections
                .iter()
                .map(|c| {
                    let keys = [
                        "id",
                        "direction",
                        "state",
                        "endpoint",
                        "handler",
                        "remote",
                        "messages_in",
                        "messages_out",
                        "attachment_bytes",
                        "uri",
                    ];
                    keys.iter().map(|key| field(c, key)).collect()
                })
                .collect();
            table(
                &["id", "direction", "state", "endpoint", "handler", "remote", "in", "out", "attachment", "uri"],
                rows,
            )
        });
        Ok(())
    }
}
