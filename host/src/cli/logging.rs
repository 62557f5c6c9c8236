//! The host's log: `tracing` to stderr as text for people or JSON lines for machines (`--log-format`), filtered by
//! `RUST_LOG` (default `info`; the broker client's own lines only when `RUST_LOG` names `async_nats`).

use tracing_subscriber::EnvFilter;

/// The directive that silences the broker client's own log (see [`init`]).
const QUIET_BROKER_CLIENT: &str = "async_nats=off";

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event for people: time, level, spans (at debug, `connection{conn=s1 endpoint=echo …}:event{…}`),
    /// target, message and fields; coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (the message and the event's own fields),
    /// `span` (the innermost span) and `spans` (every enclosing span with its fields).
    Json,
}

/// Installs the global subscriber; call once, first thing.
pub fn init(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // The broker client logs every failed attempt to reach the broker (an error line per retry, forever); the cluster
    // reports the broker's state itself, once per change. Its lines are shown only when RUST_LOG names it.
    if !std::env::var("RUST_LOG").is_ok_and(|directives| directives.contains("async_nats"))
        && let Ok(quiet) = QUIET_BROKER_CLIENT.parse()
    {
        filter = filter.add_directive(quiet);
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).init(),
    }
}
