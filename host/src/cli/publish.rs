//! `wasmsock publish PROJECT/CHANNEL MESSAGE`: queue a text message on every member of a channel of a running host
//! (and keep it in the channel's history, with its offset, when the project keeps one).

use clap::Args;
use serde_json::json;

use wasmsock_wire::channel::split_project_channel;

use super::remote::{Body, Remote, field};

/// Arguments of `wasmsock publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The channel, as `project/channel` (for example `examples/lobby`).
    pub channel: String,
    /// The text message.
    pub message: String,
    /// The admin API.
    #[command(flatten)]
    pub remote: Remote,
}

impl PublishArgs {
    /// Publishes the message and prints how many connections it was queued for.
    pub async fn run(self) -> anyhow::Result<()> {
        let (project, channel) = split_project_channel(&self.channel).map_err(anyhow::Error::msg)?;
        let body = json!({ "project": project, "channel": channel, "message": self.message });
        let answer = self.remote.call(reqwest::Method::POST, "publish", Body::Json(body)).await?;
        self.remote.print(&answer, |value| {
            let mut text = format!("queued for {} connections in {}", field(value, "queued"), self.channel);
            if value.get("offset").is_some() {
                text.push_str(&format!(" at offset {} of epoch {}", field(value, "offset"), field(value, "epoch")));
            }
            text
        });
        Ok(())
    }
}
