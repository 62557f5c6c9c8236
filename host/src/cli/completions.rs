//! `wasmsock completions SHELL`: the shell completion script for every subcommand and option, on stdout.

use std::io::Write as _;

use anyhow::Context as _;
use clap::{Args, CommandFactory as _};
use clap_complete::Shell;

/// Arguments of `wasmsock completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

impl CompletionsArgs {
    /// Writes the script to stdout, for example into `~/.local/share/bash-completion/completions/wasmsock`.
    #[allow(clippy::unused_async)] // Every subcommand runs the same way.
    pub async fn run(self) -> anyhow::Result<()> {
        let mut command = super::Cli::command();
        let mut script = Vec::new();
        clap_complete::generate(self.shell, &mut command, "wasmsock", &mut script);
        std::io::stdout().write_all(&script).context("writing the completion script to stdout")
    }
}
