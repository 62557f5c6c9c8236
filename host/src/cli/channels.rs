//! `wasmsock channels [PROJECT/CHANNEL]`: the channels of a running host with their member counts (and, for a channel
//! keeping history, its top offset and epoch), or the members of one channel.

use clap::Args;

use wasmsock_wire::channel::split_project_channel;

use super::remote::{Body, Remote, encode, field, table};

/// Arguments of `wasmsock channels`.
#[derive(Debug, Args)]
pub struct ChannelsArgs {
    /// List the members of this channel (`project/channel`) instead of every channel.
    pub channel: Option<String>,
    /// Only the channels of this project.
    #[arg(long, conflicts_with = "channel")]
    pub project: Option<String>,
    /// At most this many members (1 to 1000).
    #[arg(long, default_value_t = 100, requires = "channel")]
    pub limit: u32,
    /// Members after this connection id (the `next` a page before printed).
    #[arg(long, requires = "channel")]
    pub after: Option<String>,
    /// The admin API.
    #[command(flatten)]
    pub remote: Remote,
}

impl ChannelsArgs {
    /// Prints the channels, or one channel's members.
    pub async fn run(self) -> anyhow::Result<()> {
        let Some(name) = &self.channel else {
            let path = match &self.project {
                Some(project) => format!("channels?project={}", encode(project)),
                None => "channels".to_owned(),
            };
            let value = self.remote.call(reqwest::Method::GET, &path, Body::Empty).await?;
            self.remote.print(&value, |value| {
                let channels = value["channels"].as_array().cloned().unwrap_or_default();
                let rows = channels
                    .iter()
                    .map(|c| {
                        ["project", "channel", "members", "top", "epoch"].iter().map(|key| field(c, key)).collect()
                    })
                    .collect();
                table(&["project", "channel", "members", "top", "epoch"], rows)
            });
            return Ok(());
        };
        let (project, channel) = split_project_channel(name).map_err(anyhow::Error::msg)?;
        let mut path = format!("channels/{}/{}?limit={}", encode(project), encode(channel), self.limit);
        if let Some(after) = &self.after {
            path.push_str(&format!("&after={}", encode(after)));
        }
        let value = self.remote.call(reqwest::Method::GET, &path, Body::Empty).await?;
        self.remote.print(&value, |value| {
            let members = value["members"].as_array().cloned().unwrap_or_default();
            let keys = ["id", "direction", "state", "endpoint", "handler", "remote", "attachment_bytes"];
            let rows = members.iter().map(|c| keys.iter().map(|key| field(c, key)).collect()).collect();
            let mut text = table(&["id", "direction", "state", "endpoint", "handler", "remote", "attachment"], rows);
            if let Some(next) = value["next"].as_str() {
                text.push_str(&format!("\nmore: wasmsock channels {name} --after {next}"));
            }
            text
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_percent_encoded_byte_by_byte() {
        assert_eq!(encode("lobby-1_a.b~"), "lobby-1_a.b~");
        assert_eq!(encode("a/b?c#d%"), "a%2Fb%3Fc%23d%25");
        assert_eq!(encode("ä"), "%C3%A4");
    }
}
