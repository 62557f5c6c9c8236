//! `wasmsock kv list|get|set|delete PROJECT …`: a running host's project stores, for debugging and repair (through the
//! admin API; the same store the project's handlers use).

use std::io::Read as _;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::Value;

use super::remote::{Body, Remote, encode, field};

/// Arguments of `wasmsock kv`.
#[derive(Debug, Args)]
pub struct KvArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: KvAction,
    /// The admin API.
    #[command(flatten)]
    pub remote: Remote,
}

/// What `wasmsock kv` does.
#[derive(Debug, Subcommand)]
pub enum KvAction {
    /// List a project's keys, in byte order, with its usage (Run with `wasmsock kv list examples --prefix room:`).
    List {
        /// The project.
        project: String,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Keys after this one (the `next` a page before printed).
        #[arg(long)]
        after: Option<String>,
        /// At most this many keys (1 to 1000).
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Print a key's value (Run with `wasmsock kv get examples visits`).
    Get {
        /// The project.
        project: String,
        /// The key.
        key: String,
    },
    /// Write a key (Run with `wasmsock kv set examples greeting hello`).
    Set {
        /// The project.
        project: String,
        /// The key.
        key: String,
        /// The value; `-` reads it from stdin.
        value: String,
        /// Remove the key this many seconds later.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        ttl: Option<u32>,
    },
    /// Delete a key.
    Delete {
        /// The project.
        project: String,
        /// The key.
        key: String,
    },
}

impl KvArgs {
    /// Runs the action and prints its result.
    pub async fn run(self) -> anyhow::Result<()> {
        let remote = &self.remote;
        match self.action {
            KvAction::List { project, prefix, after, limit } => {
                let mut path = format!("projects/{}/kv?prefix={}&limit={limit}", encode(&project), encode(&prefix));
                if let Some(after) = after {
                    path.push_str(&format!("&after={}", encode(&after)));
                }
                let value = remote.call(reqwest::Method::GET, &path, Body::Empty).await?;
                remote.print(&value, |value| {
                    let mut lines: Vec<String> = value["keys"]
                        .as_array()
                        .map(|keys| keys.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                        .unwrap_or_default();
                    let usage = &value["usage"];
                    lines.push(format!(
                        "({} keys of {}, {} bytes of {})",
                        usage["keys"], usage["max-keys"], usage["bytes"], usage["max-bytes"]
                    ));
                    if let Some(next) = value["next"].as_str() {
                        lines.push(format!("more: --after {next}"));
                    }
                    lines.join("\n")
                });
            }
            KvAction::Get { project, key } => {
                let path = format!("projects/{}/kv/{}", encode(&project), encode(&key));
                let value = remote.call(reqwest::Method::GET, &path, Body::Empty).await?;
                remote.print(&value, |value| match value.get("value") {
                    Some(Value::String(text)) => text.clone(),
                    _ => format!("(binary) {}", field(value, "value_hex")),
                });
            }
            KvAction::Set { project, key, value, ttl } => {
                let bytes = if value == "-" {
                    let mut bytes = Vec::new();
                    std::io::stdin().read_to_end(&mut bytes).context("reading the value from stdin")?;
                    bytes
                } else {
                    value.into_bytes()
                };
                let mut path = format!("projects/{}/kv/{}", encode(&project), encode(&key));
                if let Some(ttl) = ttl {
                    path.push_str(&format!("?ttl={ttl}"));
                }
                let answer = remote.call(reqwest::Method::PUT, &path, Body::Bytes(bytes)).await?;
                remote.print(&answer, |value| format!("set {key} (revision {})", field(value, "revision")));
            }
            KvAction::Delete { project, key } => {
                let path = format!("projects/{}/kv/{}", encode(&project), encode(&key));
                let answer = remote.call(reqwest::Method::DELETE, &path, Body::Empty).await?;
                remote.print(&answer, |_| format!("deleted {key}"));
            }
        }
        Ok(())
    }
}
