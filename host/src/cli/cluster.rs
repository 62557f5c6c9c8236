//! `wasmsock cluster`: the hosts of a running host's cluster as it sees them: their ids, connections and channels,
//! when each was last heard from, and the broker's state.

use clap::Args;

use super::remote::{Body, Remote, field, table};

/// Arguments of `wasmsock cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// The admin API.
    #[command(flatten)]
    pub remote: Remote,
}

impl ClusterArgs {
    /// Prints the cluster.
    pub async fn run(self) -> anyhow::Result<()> {
        let value = self.remote.call(reqwest::Method::GET, "cluster", Body::Empty).await?;
        self.remote.print(&value, |value| {
            let broker = match (value["broker_connected"].as_bool(), value["broker_error"].as_str()) {
                (Some(true), _) => "connected".to_owned(),
                (_, Some(why)) => format!("NOT CONNECTED: it {why}"),
                _ => "UNREACHABLE".to_owned(),
            };
            let head = format!(
                "cluster {} (this host: {}), broker {} {broker}",
                field(value, "cluster"),
                field(value, "host"),
                field(value, "broker")
            );
            let hosts = value["hosts"].as_array().cloned().unwrap_or_default();
            let keys = ["host", "connections", "channels", "last_heartbeat_ms"];
            let rows = hosts.iter().map(|h| keys.iter().map(|key| field(h, key)).collect()).collect();
            format!("{head}\n{}", table(&["host", "connections", "channels", "heard ms ago"], rows))
        });
        Ok(())
    }
}
