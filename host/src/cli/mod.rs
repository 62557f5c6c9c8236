//! The `wasmsock` command line: one file per subcommand.

pub mod check;
pub mod serve;

use clap::{Parser, Subcommand};

/// Run WebSocket handlers compiled to WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "wasmsock", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the endpoints of a plugins root (Run with `wasmsock serve --plugins ./plugins`).
    Serve(serve::ServeArgs),
    /// Check a plugins root: parse every descriptor and compile every handler, report every problem, serve nothing.
    Check(check::CheckArgs),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(args) => args.run().await,
            Command::Check(args) => args.run().await,
        }
    }
}
