//! The `wasmsock` binary: parse the command line, set up logging, run, and turn an error into a message and exit code.

use std::process::ExitCode;

use clap::Parser;
use wasmsock::cli::Command;
use wasmsock::cli::logging::LogFormat;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = wasmsock::cli::Cli::parse();
    let format = match &cli.command {
        Command::Serve(args) => args.log_format,
        _ => LogFormat::Text,
    };
    wasmsock::cli::logging::init(format);
    // On a worker thread rather than the one that started the runtime: the listener's accept loop then hands each new
    // connection's task to its own worker's queue, where waking a worker from outside cost a context switch per
    // connection.
    match tokio::spawn(cli.run()).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(err)) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
        Err(err) => {
            tracing::error!("the command stopped: {err}");
            ExitCode::FAILURE
        }
    }
}
