//! `wasmsock undeploy NAME`: remove an endpoint (closing its sessions with 1001) or a handler no endpoint uses.

use clap::Args;
use serde_json::Value;

use super::remote::{Body, Remote};

/// Arguments of `wasmsock undeploy`.
#[derive(Debug, Args)]
pub struct UndeployArgs {
    /// An endpoint name, or a handler name (`project/name`, which has a slash).
    pub name: String,
    /// The admin API.
    #[command(flatten)]
    pub remote: Remote,
}

impl UndeployArgs {
    /// Removes the endpoint or handler.
    pub async fn run(self) -> anyhow::Result<()> {
        let route = if self.name.contains('/') {
            format!("handlers/{}", self.name)
        } else {
            format!("endpoints/{}", self.name)
        };
        let answer = self.remote.call(reqwest::Method::DELETE, &route, Body::Empty).await?;
        self.remote.print(&answer, |_: &Value| format!("removed {}", self.name));
        Ok(())
    }
}
