//! What every admin subcommand shares: where the admin API is, its token, JSON or human output, and the HTTP calls.

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::Value;

/// How to reach a running host's admin API.
#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// The admin API of the running host.
    #[arg(long = "host", env = "WASMSOCK_ADMIN", default_value = "http://127.0.0.1:8081", global = true)]
    pub url: String,
    /// The admin bearer token, if the host requires one.
    #[arg(long, env = "WASMSOCK_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print the API's JSON instead of text for people.
    #[arg(long, global = true)]
    pub json: bool,
}

/// One admin request.
pub enum Body {
    /// No body.
    Empty,
    /// A JSON document.
    Json(Value),
    /// Raw bytes (a component).
    Bytes(Vec<u8>),
    /// Text (a descriptor).
    Text(String),
}

impl Remote {
    /// Sends a request to `/admin/v1/{path}` and returns the JSON answer; an error status becomes an error carrying
    /// the API's message.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Body) -> anyhow::Result<Value> {
        let url = format!("{}/admin/v1/{path}", self.url.trim_end_matches('/'));
        let client = reqwest::Client::new();
        let mut request = client.request(method.clone(), &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request = match body {
            Body::Empty => request,
            Body::Json(value) => request.json(&value),
            Body::Bytes(bytes) => request.header("content-type", "application/wasm").body(bytes),
            Body::Text(text) => request.header("content-type", "application/json").body(text),
        };
        let response = request.send().await.with_context(|| format!("cannot reach the admin API at {url}"))?;
        let status = response.status();
        let text = response.text().await.context("reading the admin API's answer")?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let message = value.get("error").and_then(Value::as_str).map(str::to_owned).unwrap_or(value.to_string());
            bail!("{method} {url}: {status}: {message}");
        }
        Ok(value)
    }

    /// Prints `value` as JSON when asked to, or else the text `human` makes of it.
    pub fn print(&self, value: &Value, human: impl FnOnce(&Value) -> String) {
        let text = if self.json { value.to_string() } else { human(value) };
        output(&text);
    }
}

/// Writes a command's result to stdout: this is the command's output, not a log line.
#[allow(clippy::print_stdout)]
pub fn output(text: &str) {
    println!("{}", text.trim_end());
}

/// The string at `key`, or `-`.
pub fn field(value: &Value, key: &str) -> String {
    match value.get(key) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

/// `text` percent-encoded for one segment of a URL path or a query value (everything but `A-Za-z0-9-._~`).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Formats rows as aligned columns under a header.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = vec![line(header.iter().map(|h| h.to_uppercase()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let text = table(&["id", "state"], vec![vec!["s1".into(), "open".into()], vec!["c12".into(), "-".into()]]);
        assert_eq!(text, "ID   STATE\ns1   open\nc12  -");
    }
}
