//! `wasmsock config set|list|unset PROJECT …`: a running host's project configuration and secrets, which the project's
//! handlers read through `wasi:config`. A secret is written, never shown again: `list` says only that it is set.

use std::io::Read as _;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::remote::{Body, Remote, encode, field, table};

/// Arguments of `wasmsock config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ConfigAction,
    /// The admin API.
    #[command(flatten)]
    pub remote: Remote,
}

/// What `wasmsock config` does.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Set a value (Run with `wasmsock config set examples SIGNING_KEY - --secret < key.txt`).
    Set {
        /// The project.
        project: String,
        /// The name: letters, digits, `_`, `-` and `.`.
        key: String,
        /// The value; `-` reads it from stdin (keeps a secret out of the shell history and the process list).
        value: String,
        /// It is a secret: never listed, logged or shown in the console.
        #[arg(long)]
        secret: bool,
    },
    /// List a project's configuration (secrets as `(secret)`).
    List {
        /// The project.
        project: String,
    },
    /// Remove a value.
    Unset {
        /// The project.
        project: String,
        /// The name.
        key: String,
    },
}

impl ConfigArgs {
    /// Runs the action and prints its result.
    pub async fn run(self) -> anyhow::Result<()> {
        let remote = &self.remote;
        match self.action {
            ConfigAction::Set { project, key, value, secret } => {
                let value = if value == "-" {
                    let mut text = String::new();
                    std::io::stdin().read_to_string(&mut text).context("reading the value from stdin")?;
                    text.strip_suffix('\n').map(str::to_owned).unwrap_or(text)
                } else {
                    value
                };
                let path = format!("projects/{}/config/{}", encode(&project), encode(&key));
                let body = Body::Json(json!({ "value": value, "secret": secret }));
                let answer = remote.call(reqwest::Method::PUT, &path, body).await?;
                let kind = if secret { "secret" } else { "value" };
                remote.print(&answer, |_| format!("set {kind} {key} of project {project}"));
            }
            ConfigAction::List { project } => {
                let path = format!("projects/{}/config", encode(&project));
                let value = remote.call(reqwest::Method::GET, &path, Body::Empty).await?;
                remote.print(&value, |value| {
                    let entries = value["config"].as_array().cloned().unwrap_or_default();
                    let rows = entries
                        .iter()
                        .map(|entry| {
                            let shown = match entry.get("value") {
                                Some(Value::String(text)) => text.clone(),
                                _ => "(secret)".to_owned(),
                            };
                            vec![field(entry, "key"), shown]
                        })
                        .collect();
                    table(&["key", "value"], rows)
                });
            }
            ConfigAction::Unset { project, key } => {
                let path = format!("projects/{}/config/{}", encode(&project), encode(&key));
                let answer = remote.call(reqwest::Method::DELETE, &path, Body::Empty).await?;
                let removed = answer["removed"].as_bool().unwrap_or(false);
                remote
                    .print(&answer, |_| if removed { format!("removed {key}") } else { format!("{key} was not set") });
            }
        }
        Ok(())
    }
}
