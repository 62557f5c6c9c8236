//! `.websocket` descriptor files: their format, and names of handlers and endpoints that are safe to use.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::deflate::CompressionSetting;
use crate::limits::EndpointLimits;
use crate::outbound::AllowList;

/// The file extension of descriptors.
pub const DESCRIPTOR_EXTENSION: &str = "websocket";

/// The largest descriptor file read. A descriptor is a few short strings and numbers; anything this big is a mistake.
pub const MAX_DESCRIPTOR_BYTES: u64 = 64 << 10;

/// The longest handler or endpoint name.
pub const MAX_NAME_LEN: usize = 200;

/// A `.websocket` descriptor: it makes `/websockets/service/{endpoint}` serve sessions through `handler`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Descriptor {
    /// The handler component as `project/name`, found at `<plugins root>/project/name.wasm`.
    pub handler: String,
    /// The endpoint name: the last segment of the URL path. Letters, digits, `-`, `_` and `.`.
    pub endpoint: String,
    /// What the endpoint is for, for people.
    #[serde(default)]
    pub description: String,
    /// How long a handler instance lives: see [`Lifecycle`]. Optional; `per-event` when absent.
    #[serde(default)]
    pub instance: Lifecycle,
    /// Origins (`scheme://host[:port]`) whose pages may open sessions, or `["*"]` for any. Absent: the host's list
    /// (`serve --allow-origin`), which by default admits requests without an `Origin` header and same-origin ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origins: Option<Vec<String>>,
    /// Subprotocols this endpoint speaks, most preferred first; the first one the client offers is chosen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<String>,
    /// Whether this endpoint negotiates permessage-deflate: `true`, `false` or `{ "level": 1-9, "threshold": bytes }`
    /// (see [`crate::deflate`]). Absent: the host's default (`serve --compression`, off unless given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<CompressionSetting>,
    /// Limits for this endpoint's sessions that differ from the host's.
    #[serde(default, skip_serializing_if = "EndpointLimits::is_empty")]
    pub limits: EndpointLimits,
    /// Destinations the handler's project may open clients to with `create-websocket` (`scheme://host[:port]`, `*`
    /// for any port or a leading `*.` for any subdomain: see [`crate::outbound`]). A project's grant is the union of
    /// the lists of its descriptors; none: no outbound connection at all.
    #[serde(rename = "allowed-outbound-hosts", default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_outbound_hosts: Vec<String>,
}

/// How long a handler instance lives, per endpoint (the descriptor's `"instance"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case", try_from = "String")]
pub enum Lifecycle {
    /// A fresh instance for every event: nothing survives an event (Dirigible's semantics). The safest and the
    /// dearest: an instantiation per event.
    #[default]
    PerEvent,
    /// One instance for a connection's life, dropped after its onclose: globals persist between the events of one
    /// connection and never reach another. Holds one resident instance (and its memory) per open connection.
    PerConnection,
    /// One long-lived instance per handler, shared by every connection of every endpoint that asks for it; events
    /// are run through it one at a time. The cheapest per event; state is shared like a Node.js module's.
    Shared,
}

impl TryFrom<String> for Lifecycle {
    type Error = String;

    /// Parses the descriptor spelling; the error names the field, which serde's own would not.
    fn try_from(text: String) -> Result<Self, Self::Error> {
        [Lifecycle::PerEvent, Lifecycle::PerConnection, Lifecycle::Shared]
            .into_iter()
            .find(|lifecycle| lifecycle.as_str() == text)
            .ok_or_else(|| {
                format!("field `instance`: {text:?} is not one of \"per-event\", \"per-connection\", \"shared\"")
            })
    }
}

impl Lifecycle {
    /// The descriptor spelling (`per-event`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::PerEvent => "per-event",
            Lifecycle::PerConnection => "per-connection",
            Lifecycle::Shared => "shared",
        }
    }
}

/// The most origins or protocols one descriptor may list.
pub const MAX_LIST_LEN: usize = 100;

impl Descriptor {
    /// Parses and checks a descriptor's text; errors name the field at fault.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        if text.len() as u64 > MAX_DESCRIPTOR_BYTES {
            bail!("{} bytes is too large for a descriptor (at most {MAX_DESCRIPTOR_BYTES})", text.len());
        }
        let descriptor: Descriptor = serde_json::from_str(text).context("not a valid descriptor")?;
        check_handler_name(&descriptor.handler).context("field `handler`")?;
        check_endpoint_name(&descriptor.endpoint).context("field `endpoint`")?;
        if let Some(origins) = &descriptor.origins {
            check_list(origins, check_origin).context("field `origins`")?;
        }
        check_list(&descriptor.protocols, check_protocol).context("field `protocols`")?;
        descriptor.limits.check()?;
        if descriptor.allowed_outbound_hosts.len() > MAX_LIST_LEN {
            bail!("field `allowed-outbound-hosts`: at most {MAX_LIST_LEN} entries");
        }
        descriptor.allow_list().context("field `allowed-outbound-hosts`")?;
        Ok(descriptor)
    }

    /// The parsed `allowed-outbound-hosts`; an error names the entry at fault.
    pub fn allow_list(&self) -> anyhow::Result<AllowList> {
        AllowList::parse(&self.allowed_outbound_hosts)
    }

    /// Reads and parses a descriptor file; errors name the file.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let len = std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?.len();
        if len > MAX_DESCRIPTOR_BYTES {
            bail!("{}: {len} bytes is too large for a descriptor (at most {MAX_DESCRIPTOR_BYTES})", path.display());
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        Self::parse(&text).with_context(|| path.display().to_string())
    }
}

fn check_segment(segment: &str) -> anyhow::Result<()> {
    if segment.is_empty() {
        bail!("has an empty segment");
    }
    if segment.starts_with('.') {
        bail!("segment `{segment}` starts with a dot");
    }
    if let Some(bad) = segment.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        bail!("`{segment}` contains {bad:?}; use letters, digits, `-`, `_` and `.`");
    }
    Ok(())
}

/// Checks a handler name: `project/name` segments of letters, digits, `-`, `_` and `.`, none starting with a dot.
pub fn check_handler_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        bail!("handler name must be 1 to {MAX_NAME_LEN} characters, like \"my-project/ws-handler\"");
    }
    for segment in name.split('/') {
        check_segment(segment).with_context(|| format!("handler name {name:?}"))?;
    }
    Ok(())
}

/// The project of a handler: the first segment of its name (`my-project` of `my-project/ws-handler`). Everything a
/// handler reaches through its imports is scoped to its project.
pub fn project_of(handler: &str) -> &str {
    handler.split('/').next().unwrap_or(handler)
}

/// Checks a project name (the first segment of its handlers' names): letters, digits, `-`, `_` and `.`, not starting
/// with a dot.
pub fn check_project_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        bail!("project name must be 1 to {MAX_NAME_LEN} characters");
    }
    check_segment(name).with_context(|| format!("project name {name:?}"))
}

/// Checks an endpoint name: one path segment of letters, digits, `-`, `_` and `.`.
pub fn check_endpoint_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        bail!("endpoint name must be 1 to {MAX_NAME_LEN} characters");
    }
    check_segment(name).with_context(|| format!("endpoint name {name:?}"))
}

fn check_list(items: &[String], check: fn(&str) -> anyhow::Result<()>) -> anyhow::Result<()> {
    if items.len() > MAX_LIST_LEN {
        bail!("lists {} entries; at most {MAX_LIST_LEN}", items.len());
    }
    items.iter().try_for_each(|item| check(item))
}

/// Checks an allowed origin: `*`, or `scheme://host[:port]` as a browser sends it (no path, no trailing slash).
pub fn check_origin(origin: &str) -> anyhow::Result<()> {
    if origin == "*" {
        return Ok(());
    }
    let Some((scheme, authority)) = origin.split_once("://") else {
        bail!("{origin:?} is not an origin; write it as a browser sends it, like \"https://example.com\", or \"*\"");
    };
    let scheme_ok =
        !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let authority_ok = !authority.is_empty()
        && authority.len() <= MAX_NAME_LEN
        && authority.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '[' | ']'));
    if !(scheme_ok && authority_ok) {
        bail!("{origin:?} is not an origin like \"https://example.com:8443\" (no path, no trailing slash)");
    }
    Ok(())
}

/// Checks a subprotocol name: an HTTP token (RFC 6455 §4.1), such as `chat.v2`.
pub fn check_protocol(protocol: &str) -> anyhow::Result<()> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if protocol.is_empty() || protocol.len() > MAX_NAME_LEN || !protocol.chars().all(token) {
        bail!("{protocol:?} is not a subprotocol name (letters, digits and !#$%&'*+-.^_`|~, 1 to {MAX_NAME_LEN})");
    }
    Ok(())
}

/// Where a handler's component lives under the plugins root.
pub fn handler_path(root: &Path, handler: &str) -> PathBuf {
    let mut path = root.to_path_buf();
    for segment in handler.split('/') {
        path.push(segment);
    }
    let mut file = path.into_os_string();
    file.push(".wasm");
    PathBuf::from(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        match Descriptor::parse(text) {
            Ok(d) => panic!("{text} parsed as {d:?}"),
            Err(err) => format!("{err:#}"),
        }
    }

    #[test]
    fn a_seed_descriptor_parses() {
        let d =
            Descriptor::parse(r#"{"handler": "my-project/ws-handler", "endpoint": "my-endpoint", "description": "d"}"#)
                .unwrap();
        assert_eq!(d.handler, "my-project/ws-handler");
        assert_eq!(d.endpoint, "my-endpoint");
        assert_eq!(d.description, "d");
        assert_eq!(Descriptor::parse(r#"{"handler": "a/b", "endpoint": "e"}"#).unwrap().description, "");
    }

    #[test]
    fn errors_name_the_field() {
        assert!(error_of(r#"{"handler": "a/b", "endpoint": "e", "colour": 1}"#).contains("unknown field `colour`"));
        assert!(error_of(r#"{"endpoint": "e"}"#).contains("missing field `handler`"));
        assert!(error_of(r#"{"handler": "../etc/passwd", "endpoint": "e"}"#).contains("field `handler`"));
        assert!(error_of(r#"{"handler": "/abs", "endpoint": "e"}"#).contains("empty segment"));
        assert!(error_of(r#"{"handler": "a/b", "endpoint": "x/y"}"#).contains("field `endpoint`"));
        assert!(error_of(r#"{"handler": "a/b", "endpoint": ""}"#).contains("field `endpoint`"));
        assert!(error_of(r#"{"handler": "a b", "endpoint": "e"}"#).contains("' '"));
        assert!(error_of("[[[[").contains("not a valid descriptor"));
        let unknown = error_of(r#"{"handler": "a/b", "endpoint": "e", "instance": "per-moon"}"#);
        assert!(unknown.contains("field `instance`: \"per-moon\" is not one of"), "{unknown}");
        assert!(error_of(r#"{"handler": "a/b", "endpoint": "e", "instance": 3}"#).contains("not a valid descriptor"));
    }

    #[test]
    fn an_unknown_lifecycle_is_an_error_naming_the_file_and_the_field() {
        let file = std::env::temp_dir().join(format!("wasmsock-lifecycle-{}.websocket", std::process::id()));
        std::fs::write(&file, r#"{"handler": "a/b", "endpoint": "e", "instance": "pooled"}"#).unwrap();
        let err = format!("{:#}", Descriptor::read(&file).unwrap_err());
        let _ = std::fs::remove_file(&file);
        assert!(err.contains(&file.display().to_string()) && err.contains("field `instance`"), "{err}");
    }

    #[test]
    fn the_instance_lifecycle_defaults_to_per_event() {
        let parse = |text: &str| Descriptor::parse(text).unwrap().instance;
        assert_eq!(parse(r#"{"handler": "a/b", "endpoint": "e"}"#), Lifecycle::PerEvent);
        assert_eq!(parse(r#"{"handler": "a/b", "endpoint": "e", "instance": "per-event"}"#), Lifecycle::PerEvent);
        let per_connection = r#"{"handler": "a/b", "endpoint": "e", "instance": "per-connection"}"#;
        assert_eq!(parse(per_connection), Lifecycle::PerConnection);
        assert_eq!(parse(r#"{"handler": "a/b", "endpoint": "e", "instance": "shared"}"#), Lifecycle::Shared);
    }

    #[test]
    fn origins_protocols_and_limits_parse_and_their_errors_name_the_field() {
        let d = Descriptor::parse(
            r#"{"handler": "a/b", "endpoint": "e", "origins": ["https://x.example:8443", "*"],
                "protocols": ["chat.v2", "chat.v1"],
                "limits": {"max-message-size": 1024, "idle-timeout-ms": 500, "slow-consumer": "error"}}"#,
        )
        .unwrap();
        assert_eq!(d.origins, Some(vec!["https://x.example:8443".to_owned(), "*".to_owned()]));
        assert_eq!(d.protocols, ["chat.v2", "chat.v1"]);
        assert_eq!(d.limits.max_message_size, Some(1024));
        assert_eq!(d.limits.idle_timeout_ms, Some(500));
        assert_eq!(d.limits.slow_consumer, Some(crate::limits::SlowConsumer::Error));
        let base = r#""handler": "a/b", "endpoint": "e""#;
        assert!(error_of(&format!(r#"{{{base}, "origins": ["https://x/path"]}}"#)).contains("field `origins`"));
        assert!(error_of(&format!(r#"{{{base}, "origins": ["example.com"]}}"#)).contains("field `origins`"));
        assert!(error_of(&format!(r#"{{{base}, "protocols": ["a b"]}}"#)).contains("field `protocols`"));
        assert!(
            error_of(&format!(r#"{{{base}, "limits": {{"max-frame-size": 0}}}}"#)).contains("limits.max-frame-size")
        );
        assert!(
            error_of(&format!(r#"{{{base}, "limits": {{"max-speed": 1}}}}"#)).contains("unknown field `max-speed`")
        );
        assert!(error_of(&format!(r#"{{{base}, "limits": {{"slow-consumer": "drop"}}}}"#)).contains("unknown variant"));
        assert!(error_of(&format!(r#"{{{base}, "limits": {{"max-connections": -1}}}}"#)).contains("invalid value"));
        let many = vec!["\"p\""; MAX_LIST_LEN + 1].join(",");
        assert!(error_of(&format!(r#"{{{base}, "protocols": [{many}]}}"#)).contains("at most"));
    }

    #[test]
    fn outbound_grants_parse_and_a_bad_one_is_named_by_field_index_and_text() {
        let base = r#""handler": "a/b", "endpoint": "e""#;
        let d = Descriptor::parse(&format!(r#"{{{base}, "allowed-outbound-hosts": ["ws://127.0.0.1:*"]}}"#)).unwrap();
        assert_eq!(d.allowed_outbound_hosts, ["ws://127.0.0.1:*"]);
        assert_eq!(d.allow_list().unwrap().grants().len(), 1);
        let err = error_of(&format!(r#"{{{base}, "allowed-outbound-hosts": ["wss://x.example", "ws://h/path"]}}"#));
        assert!(err.contains("field `allowed-outbound-hosts`"), "{err}");
        assert!(err.contains("allowed-outbound-hosts[1]") && err.contains("ws://h/path"), "{err}");
        assert!(Descriptor::parse(&format!("{{{base}}}")).unwrap().allow_list().unwrap().is_empty(), "none by default");
    }

    #[test]
    fn deeply_nested_json_is_an_error_not_a_crash() {
        let text = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
        assert!(error_of(&text).contains("not a valid descriptor"));
    }

    #[test]
    fn handler_paths_stay_under_the_root() {
        assert_eq!(handler_path(Path::new("/p"), "my-project/ws-handler"), Path::new("/p/my-project/ws-handler.wasm"));
        assert_eq!(handler_path(Path::new("/p"), "a/b.v2"), Path::new("/p/a/b.v2.wasm"));
        assert_eq!(handler_path(Path::new("p"), "x"), Path::new("p/x.wasm"));
    }
}
