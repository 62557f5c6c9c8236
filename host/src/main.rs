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
    match cli.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}
