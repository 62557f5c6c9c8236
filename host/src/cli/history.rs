//! `wasmsock history PROJECT/CHANNEL`: the publications a channel of a running host keeps in its history, with their
//! offsets, in pages.

use clap::Args;

use wasmsock_wire::channel::split_project_channel;

use super::remote::{Body, Remote, encode, field, table};

/// Arguments of `wasmsock history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The channel, as `project/channel` (for example `examples/lobby`).
    pub channel: String,
    /// Only the publications after this offset (the `next` a page before printed).
    #[arg(long)]
    pub since: Option<u64>,
    /// The epoch `--since` was taken in; when it is not the stream's now, the page says it is not complete.
    #[arg(long, requires = "since")]
    pub epoch: Option<String>,
    /// At most this many publications (1 to 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// The admin API.
    #[command(flatten)]
    pub remote: Remote,
}

impl HistoryArgs {
    /// Prints one page of the channel's history.
    pub async fn run(self) -> anyhow::Result<()> {
        let (project, channel) = split_project_channel(&self.channel).map_err(anyhow::Error::msg)?;
        let mut path = format!("history/{}/{}?limit={}", encode(project), encode(channel), self.limit);
        if let Some(since) = self.since {
            path.push_str(&format!("&since={since}"));
        }
        if let Some(epoch) = &self.epoch {
            path.push_str(&format!("&epoch={}", encode(epoch)));
        }
        let value = self.remote.call(reqwest::Method::GET, &path, Body::Empty).await?;
        self.remote.print(&value, |value| {
            let publications = value["publications"].as_array().cloned().unwrap_or_default();
            let rows = publications
                .iter()
                .map(|p| {
                    let message = match p.get("binary") {
                        Some(_) => format!("(binary, base64) {}", field(p, "binary")),
                        None => field(p, "text"),
                    };
                    vec![field(p, "offset"), field(p, "time_ms"), message]
                })
                .collect();
            let mut text = format!(
                "{} epoch {} top {}{}\n",
                self.channel,
                field(value, "epoch"),
                field(value, "top"),
                if value["complete"] == false { " (not complete: another epoch, or trimmed)" } else { "" }
            );
            text.push_str(&table(&["offset", "time_ms", "message"], rows));
            if let Some(next) = value["next"].as_u64() {
                text.push_str(&format!(
                    "\nmore: wasmsock history {} --since {next} --epoch {}",
                    self.channel,
                    field(value, "epoch")
                ));
            }
            text
        });
        Ok(())
    }
}
