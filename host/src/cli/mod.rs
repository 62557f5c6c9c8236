//! The `wasmsock` command line: one file per subcommand.

pub mod bench;
pub mod channels;
pub mod check;
pub mod clients;
pub mod close;
pub mod cluster;
pub mod completions;
pub mod config;
pub mod connect;
pub mod deploy;
pub mod history;
pub mod kv;
pub mod list;
pub mod logging;
pub mod new;
pub mod notify;
pub mod publish;
pub mod remote;
pub mod serve;
pub mod templates;
pub mod undeploy;

use clap::{Parser, Subcommand};

/// What `--version` prints: the host's version, the WIT package it serves (read from `wit/` at build time) and the
/// engine that runs handlers.
pub fn version() -> &'static str {
    static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let wit = include_str!("../../../wit/websockets.wit");
        let package = wit.lines().find_map(|line| line.strip_prefix("package ")).unwrap_or("?;").trim_end_matches(';');
        format!("{} (WIT {package}, {})", env!("CARGO_PKG_VERSION"), crate::runtime::ENGINE)
    });
    &VERSION
}

/// Run WebSocket handlers compiled to WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "wasmsock", version = version(), about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the endpoints of a plugins root (Run with `wasmsock serve --plugins ./plugins`).
    Serve(Box<serve::ServeArgs>),
    /// Check a plugins root: parse every descriptor and compile every handler, report every problem, serve nothing.
    Check(check::CheckArgs),
    /// Deploy components and descriptors to a running host (Run with `wasmsock deploy plugins/my-project`).
    Deploy(deploy::DeployArgs),
    /// Remove an endpoint or a handler from a running host.
    Undeploy(undeploy::UndeployArgs),
    /// List a running host's endpoints and handlers.
    List(list::ListArgs),
    /// List a running host's live connections.
    Clients(clients::ClientsArgs),
    /// Close a live connection on a running host.
    Close(close::CloseArgs),
    /// Open an outbound client on a running host.
    Connect(connect::ConnectArgs),
    /// Publish a text message to a channel of a running host (Run with `wasmsock publish examples/lobby hello`).
    Publish(publish::PublishArgs),
    /// List a running host's channels with their member counts (and the top offset and epoch of those with history),
    /// or the members of one channel.
    Channels(channels::ChannelsArgs),
    /// Print the publications a channel keeps in its history, with their offsets (Run with `wasmsock history
    /// examples/lobby`).
    History(history::HistoryArgs),
    /// List the hosts of a running host's cluster (`serve --nats`) and the broker's state.
    Cluster(cluster::ClusterArgs),
    /// Read and repair a project's key-value store on a running host (Run with `wasmsock kv list examples`).
    Kv(kv::KvArgs),
    /// Set, list and remove a project's configuration and secrets (Run with `wasmsock config set examples KEY VALUE`).
    Config(config::ConfigArgs),
    /// Print the shell completion script (Run with `wasmsock completions bash > ~/.local/share/bash-completion/completions/wasmsock`).
    Completions(completions::CompletionsArgs),
    /// Write a ready handler project (Run with `wasmsock new my-handler --lang rust|js|python`).
    New(new::NewArgs),
    /// Load a WebSocket server on loopback: echo throughput and latency, handshakes/s, memory per idle connection.
    Bench(bench::BenchArgs),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(args) => (*args).run().await,
            Command::Check(args) => args.run().await,
            Command::Deploy(args) => args.run().await,
            Command::Undeploy(args) => args.run().await,
            Command::List(args) => args.run().await,
            Command::Clients(args) => args.run().await,
            Command::Close(args) => args.run().await,
            Command::Connect(args) => args.run().await,
            Command::Publish(args) => args.run().await,
            Command::Channels(args) => args.run().await,
            Command::History(args) => args.run().await,
            Command::Cluster(args) => args.run().await,
            Command::Kv(args) => args.run().await,
            Command::Config(args) => args.run().await,
            Command::New(args) => args.run().await,
            Command::Completions(args) => args.run().await,
            Command::Bench(args) => args.run().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_names_the_wit_package_and_the_engine() {
        let version = version();
        assert!(version.starts_with(env!("CARGO_PKG_VERSION")), "{version}");
        assert!(version.contains("(WIT wasmsock:websockets@0.1."), "{version}");
        assert!(version.ends_with(&format!(", {})", crate::runtime::ENGINE)), "{version}");
    }
}
