//! `wasmsock check`: load a plugins root as `serve` would and report every descriptor or component it would refuse.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

use crate::app::App;
use wasmsock_wire::Limits;

/// Arguments of `wasmsock check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The plugins root to check.
    #[arg(long, env = "WASMSOCK_PLUGINS", default_value = "./plugins")]
    pub plugins: PathBuf,
}

impl CheckArgs {
    /// Loads the root and fails with every problem found.
    pub async fn run(self) -> anyhow::Result<()> {
        let (app, errors) = App::load(&self.plugins, Limits::default()).await?;
        for endpoint in app.registry.endpoints() {
            tracing::info!(endpoint = %endpoint.name, handler = %endpoint.handler, "ok: {}", endpoint.descriptor.display());
        }
        for err in &errors {
            tracing::error!("{err:#}");
        }
        if !errors.is_empty() {
            bail!("{} problem(s) in {}", errors.len(), self.plugins.display());
        }
        Ok(())
    }
}
