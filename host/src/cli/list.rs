//! `wasmsock list`: the endpoints and handlers of a running host.

use clap::Args;

use super::remote::{Body, Remote, field, table};

/// Arguments of `wasmsock list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The admin API.
    #[command(flatten)]
    pub remote: Remote,
}

impl ListArgs {
    /// Prints the endpoints (with their handler, version and live sessions) and the handlers.
    pub async fn run(self) -> anyhow::Result<()> {
        let endpoints = self.remote.call(reqwest::Method::GET, "endpoints", Body::Empty).await?;
        let handlers = self.remote.call(reqwest::Method::GET, "handlers", Body::Empty).await?;
        let value = serde_json::json!({ "endpoints": endpoints["endpoints"], "handlers": handlers["handlers"] });
        self.remote.print(&value, |value| {
            let endpoints = value["endpoints"].as_array().cloned().unwrap_or_default();
            let rows = endpoints
                .iter()
                .map(|e| {
                    let fields = ["name", "handler", "version", "sessions", "description"];
                    fields.iter().map(|key| field(e, key)).collect()
                })
                .collect();
            let handlers = value["handlers"].as_array().cloned().unwrap_or_default();
            let handler_rows = handlers
                .iter()
                .map(|h| ["name", "version", "size", "paused_until", "path"].iter().map(|key| field(h, key)).collect())
                .collect();
            format!(
                "{}\n\n{}",
                table(&["endpoint", "handler", "version", "sessions", "description"], rows),
                table(&["handler", "version", "bytes", "paused until", "path"], handler_rows)
            )
        });
        Ok(())
    }
}
