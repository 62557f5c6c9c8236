//! The outbound allow-list: which `ws://`/`wss://` destinations a handler's project may open with `create-websocket`,
//! and which `http://`/`https://` destinations it may send requests to through `wasi:http`.
//!
//! Modelled on Spin's `allowed_outbound_hosts` (Spin crate `outbound-networking`,
//! `AllowedHostConfig::parse`; Spin docs "Granting HTTP Permissions to Components"), but
//! deliberately narrower. Nothing is granted by default: an empty [`AllowList`] refuses every
//! destination.
//!
//! # Grant grammar
//!
//! ```text
//! grant   = scheme "://" host [ ":" port ] [ "/" ]
//! scheme  = "ws" | "wss" | "http" | "https" | "*" ; case-insensitive; "*" = ws or wss (never http)
//! host    = "*." domain                         ; one or more labels below domain, never domain itself
//!         | domain                              ; exact DNS name
//!         | ipv4                                ; four decimal octets, e.g. 127.0.0.1
//!         | "[" ipv6 "]"                        ; any std::net::Ipv6Addr text, compared canonically
//! port    = 1*5DIGIT (1..=65535) | "*"          ; "*" = any port
//! domain  = label *( "." label ) [ "." ]        ; label = 1..=63 of [a-z0-9_-]; at most 253 chars
//! ```
//!
//! * Without a port the scheme's default applies (`ws` and `http` 80, `wss` and `https` 443); `*://` has no
//!   default, so it needs an explicit port (or `:*`), as in Spin.
//! * `*://` keeps meaning `ws` or `wss`, as it did before HTTP grants existed: widening it would have granted HTTP to
//!   every descriptor written for WebSockets. HTTP is granted only by an `http://` or `https://` grant, and a
//!   WebSocket client only by a `ws://`, `wss://` or `*://` one.
//! * `self` is an ordinary DNS name here, not Spin's self-request shortcut.
//! * Leading/trailing whitespace is trimmed; scheme and host are lower-cased; one trailing dot of
//!   a DNS name is dropped; a lone trailing `/` is accepted (Spin does the same).
//! * Rejected: missing scheme, any other scheme, path, query, fragment, userinfo, empty host,
//!   `*` anywhere but a leading `*.` label (so no bare `*` host), `%`, port 0, port ranges,
//!   non-digit ports, CIDR blocks, `{...}` lists, unbracketed IPv6, and
//!   "numeric" hosts that are not four decimal octets (`127.1`, `0x7f.0.0.1`, `2130706433`,
//!   `017.0.0.1`, any name whose last label is all digits or `0x`-hex). Those are what the
//!   system resolver (`inet_aton` via `getaddrinfo`) would turn into an IPv4 address no
//!   grant names, so they are refused on both sides: never granted, never connected to.
//!
//! The canonical form ([`Grant`]'s `Display`, and its serde string) always spells the port:
//! `wss://api.example.com` becomes `wss://api.example.com:443`, `[0:0:0:0:0:0:0:1]` becomes `[::1]`.
//!
//! # Destinations
//!
//! A destination is the [`http::Uri`] that the connector (tungstenite / tokio-tungstenite 0.29)
//! uses: `IntoClientRequest for &str` is `s.parse::<http::Uri>()`, and the socket goes to
//! `uri.host()` at `uri.port_u16()` or the scheme default. [`parse_destination`] performs that
//! same parse. [`AllowList::check`] refuses outright, before any grant is consulted: a scheme
//! other than `ws`/`wss`, any userinfo (`@` in the authority), an empty host, a host containing
//! `%` (IPv6 zone ids), anything in the authority besides `host[:digits]` (http accepts
//! `[::1]x:9000`, `host:70000`, `host:+80`), port 0, and the numeric forms listed above.
//! Matching then compares the scheme, the host (lower-cased, one trailing dot of a DNS name
//! stripped, IP literals as `std::net` addresses) and the effective port.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use http::Uri;

/// The configuration key named in error messages.
const SETTING: &str = "allowed-outbound-hosts";

/// A grant text that does not follow the grammar in the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid outbound grant {text:?}: {reason}")]
pub struct GrantError {
    text: String,
    reason: String,
}

impl GrantError {
    fn new(text: &str, reason: impl Into<String>) -> Self {
        Self { text: text.to_owned(), reason: reason.into() }
    }

    /// The grant text as it was given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// A scheme a connection can actually use: a WebSocket client's or an HTTP request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Ws,
    Wss,
    Http,
    Https,
}

impl Scheme {
    fn parse(text: &str) -> Option<Self> {
        [Self::Ws, Self::Wss, Self::Http, Self::Https].into_iter().find(|s| text.eq_ignore_ascii_case(s.as_str()))
    }

    fn default_port(self) -> u16 {
        match self {
            Self::Ws | Self::Http => 80,
            Self::Wss | Self::Https => 443,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Ws => "ws",
            Self::Wss => "wss",
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    fn is_websocket(self) -> bool {
        matches!(self, Self::Ws | Self::Wss)
    }
}

/// What an outbound destination is for: the schemes it may have follow from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// A WebSocket client (`create-websocket`): `ws` or `wss`.
    WebSocket,
    /// An HTTP request (`wasi:http/outgoing-handler`): `http` or `https`.
    Http,
}

impl Protocol {
    fn admits(self, scheme: Scheme) -> bool {
        scheme.is_websocket() == (self == Self::WebSocket)
    }

    fn schemes(self) -> &'static str {
        match self {
            Self::WebSocket => "ws or wss",
            Self::Http => "http or https",
        }
    }
}

/// A concrete host: what a destination names and what an exact grant names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    /// Lower-case DNS name without a trailing dot.
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(ip) => write!(f, "{ip}"),
            Self::V6(ip) => write!(f, "[{ip}]"),
            Self::Name(name) => f.write_str(name),
        }
    }
}

/// Classifies host text the same way for grants and destinations. Errors are reasons, not
/// full messages.
fn parse_host(raw: &str) -> Result<Host, String> {
    if raw.is_empty() {
        return Err("the host is empty".into());
    }
    if raw.contains('%') {
        return Err("the host contains '%' (percent-encoding and IPv6 zone ids are not allowed)".into());
    }
    if let Some(inner) = raw.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return Err("the IPv6 literal is missing its closing ']'".into());
        };
        return inner.parse::<Ipv6Addr>().map(Host::V6).map_err(|_| format!("[{inner}] is not an IPv6 address"));
    }
    if raw.contains(':') {
        return Err("an IPv6 address must be written in brackets, e.g. [::1]".into());
    }
    if let Ok(ip) = raw.parse::<Ipv4Addr>() {
        return Ok(Host::V4(ip));
    }
    let lower = raw.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    validate_domain(name)?;
    Ok(Host::Name(name.to_owned()))
}

/// Checks a lower-case DNS name (trailing dot already removed).
fn validate_domain(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the host is empty".into());
    }
    if name.len() > 253 {
        return Err("the host name is longer than 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!("the host name {name:?} has an empty label"));
        }
        if label.len() > 63 {
            return Err(format!("the host name {name:?} has a label longer than 63 characters"));
        }
        if let Some(bad) =
            label.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
        {
            return Err(format!("the host name {name:?} contains {bad:?} (allowed: a-z 0-9 - _ .)"));
        }
    }
    if ends_in_number(name) {
        return Err(format!(
            "{name:?} is a numeric host that is not four decimal octets; a resolver may read it \
             as an IPv4 address, so write the address as a.b.c.d"
        ));
    }
    Ok(())
}

/// True when the last label is all digits or `0x`-hex: the shapes `inet_aton` reads as numbers.
fn ends_in_number(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    match last.strip_prefix("0x") {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SchemePattern {
    Any,
    Exact(Scheme),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(Host),
    /// Lower-case parent domain; matches names with at least one more label in front.
    Subdomain(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortPattern {
    Any,
    Exact(u16),
}

/// One entry of `allowed-outbound-hosts`: a scheme, a host (or `*.` subdomain pattern) and a
/// port (or `*`). See the module documentation for the grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    scheme: SchemePattern,
    host: HostPattern,
    port: PortPattern,
}

impl Grant {
    /// Parses one grant text such as `ws://127.0.0.1:9000` or `wss://*.example.com`.
    pub fn parse(text: &str) -> Result<Self, GrantError> {
        let fail = |reason: &str| GrantError::new(text, reason);
        let trimmed = text.trim();
        let Some((scheme_text, rest)) = trimmed.split_once("://") else {
            return Err(fail("missing scheme; write ws://, wss://, http://, https:// or *:// before the host"));
        };
        let scheme = if scheme_text == "*" {
            SchemePattern::Any
        } else {
            match Scheme::parse(scheme_text) {
                Some(s) => SchemePattern::Exact(s),
                None => {
                    return Err(fail(&format!(
                        "unsupported scheme {scheme_text:?}; only ws, wss, http, https and * are allowed"
                    )));
                }
            }
        };
        if rest.contains('?') {
            return Err(fail("a query ('?') is not allowed"));
        }
        if rest.contains('#') {
            return Err(fail("a fragment ('#') is not allowed"));
        }
        let (authority, path) = match rest.split_once('/') {
            Some((authority, path)) => (authority, Some(path)),
            None => (rest, None),
        };
        if path.is_some_and(|p| !p.is_empty()) {
            return Err(fail("a path is not allowed; give only scheme://host[:port]"));
        }
        if authority.contains('@') {
            return Err(fail("userinfo ('user@') is not allowed"));
        }
        let (host_text, port_text) = split_host_port(authority).map_err(|r| fail(&r))?;
        let host = parse_host_pattern(host_text).map_err(|r| fail(&r))?;
        let port = match port_text {
            None => match scheme {
                SchemePattern::Exact(s) => PortPattern::Exact(s.default_port()),
                SchemePattern::Any => {
                    return Err(fail("the * scheme has no default port; add :PORT or :* (e.g. *://host:443)"));
                }
            },
            Some("*") => PortPattern::Any,
            Some(p) => PortPattern::Exact(parse_port(p).map_err(|r| fail(&r))?),
        };
        Ok(Self { scheme, host, port })
    }

    /// Whether this grant admits the destination.
    pub fn allows(&self, dest: &Destination) -> bool {
        let scheme_ok = match self.scheme {
            SchemePattern::Any => dest.scheme.is_websocket(),
            SchemePattern::Exact(s) => s == dest.scheme,
        };
        let host_ok = match &self.host {
            HostPattern::Exact(h) => *h == dest.host,
            HostPattern::Subdomain(parent) => match &dest.host {
                Host::Name(name) => name
                    .strip_suffix(parent.as_str())
                    .and_then(|front| front.strip_suffix('.'))
                    .is_some_and(|front| !front.is_empty()),
                Host::V4(_) | Host::V6(_) => false,
            },
        };
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Exact(p) => p == dest.port,
        };
        scheme_ok && host_ok && port_ok
    }
}

/// Splits `host[:port]` / `[v6][:port]`; the port text is returned raw.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), String> {
    if authority.is_empty() {
        return Err("the host is empty".into());
    }
    if authority.starts_with('[') {
        let Some(close) = authority.find(']') else {
            return Err("the IPv6 literal is missing its closing ']'".into());
        };
        let (host, after) = authority.split_at(close + 1);
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(format!("unexpected {after:?} after the IPv6 literal")),
            },
        };
    }
    match authority.split_once(':') {
        None => Ok((authority, None)),
        Some((host, port)) if !port.contains(':') => Ok((host, Some(port))),
        Some(_) => Err("an IPv6 address must be written in brackets, e.g. [::1]".into()),
    }
}

fn parse_host_pattern(text: &str) -> Result<HostPattern, String> {
    if let Some(parent) = text.strip_prefix("*.") {
        if parent.contains('*') {
            return Err("'*' is only allowed as the whole leftmost label ('*.example.com')".into());
        }
        return match parse_host(parent)? {
            Host::Name(name) => Ok(HostPattern::Subdomain(name)),
            Host::V4(_) | Host::V6(_) => Err("'*.' must be followed by a DNS name, not an IP address".into()),
        };
    }
    if text.contains('*') {
        return Err("'*' is only allowed as the whole leftmost label ('*.example.com'); \
                    a bare '*' host is not supported"
            .into());
    }
    parse_host(text).map(HostPattern::Exact)
}

fn parse_port(text: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Err("the port after ':' is empty".into());
    }
    if text.contains("..") {
        return Err(format!("port ranges ({text:?}) are not supported; use one port or *"));
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) || text.len() > 5 {
        return Err(format!("port {text:?} is not a number between 1 and 65535"));
    }
    match text.parse::<u16>() {
        Ok(0) => Err("port 0 cannot be connected to".into()),
        Ok(p) => Ok(p),
        Err(_) => Err(format!("port {text:?} is not a number between 1 and 65535")),
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scheme {
            SchemePattern::Any => f.write_str("*://")?,
            SchemePattern::Exact(s) => write!(f, "{}://", s.as_str())?,
        }
        match &self.host {
            HostPattern::Exact(h) => write!(f, "{h}")?,
            HostPattern::Subdomain(parent) => write!(f, "*.{parent}")?,
        }
        match self.port {
            PortPattern::Any => f.write_str(":*"),
            PortPattern::Exact(p) => write!(f, ":{p}"),
        }
    }
}

impl FromStr for Grant {
    type Err = GrantError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for Grant {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Grant {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Where a URI would actually connect: scheme, host and effective port, already vetted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    scheme: Scheme,
    host: Host,
    port: u16,
    connect_host: String,
}

impl Destination {
    /// Vets a WebSocket connector URI and extracts what it would connect to. The `Err` says why the URI
    /// is refused regardless of grants (userinfo, `%`, odd numeric host, bad authority, ...).
    pub fn from_uri(uri: &Uri) -> Result<Self, String> {
        Self::from_uri_for(uri, Protocol::WebSocket)
    }

    /// [`Destination::from_uri`] for a destination of `protocol`: its scheme must be one of that protocol's.
    pub fn from_uri_for(uri: &Uri, protocol: Protocol) -> Result<Self, String> {
        let expected = protocol.schemes();
        let Some(scheme_text) = uri.scheme_str() else {
            return Err(format!("refused outbound URI {uri}: it has no scheme (expected {expected})"));
        };
        let Some(scheme) = Scheme::parse(scheme_text).filter(|s| protocol.admits(*s)) else {
            return Err(format!("refused outbound URI {uri}: scheme {scheme_text:?} is not {expected}"));
        };
        let Some(authority) = uri.authority() else {
            return Err(format!("refused outbound URI {uri}: it has no host"));
        };
        let authority = authority.as_str();
        if authority.contains('@') {
            // Do not echo the URI: the userinfo may be a credential.
            return Err(format!(
                "refused outbound {}:// URI: it contains userinfo ('user@'); credentials in the URI \
                 are not allowed and the destination is not matched against any grant",
                scheme.as_str()
            ));
        }
        let Some(host_text) = uri.host() else {
            return Err(format!("refused outbound URI {uri}: it has no host"));
        };
        let refuse = |why: String| format!("refused outbound URI {uri}: {why}");
        let port = match authority.strip_prefix(host_text) {
            Some("") => scheme.default_port(),
            Some(after) => {
                let digits = after.strip_prefix(':').unwrap_or("");
                match uri.port_u16() {
                    Some(p) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && p != 0 => p,
                    _ => {
                        return Err(refuse(format!(
                            "the authority {authority:?} is not host[:port] with a port in 1..=65535"
                        )));
                    }
                }
            }
            None => return Err(refuse(format!("the authority {authority:?} is malformed"))),
        };
        let host = parse_host(host_text).map_err(refuse)?;
        Ok(Self { scheme, host, port, connect_host: host_text.to_owned() })
    }

    /// The host text the connector resolves (`uri.host()`, brackets kept for IPv6).
    pub fn connect_host(&self) -> &str {
        &self.connect_host
    }

    /// The effective port: the explicit one, or 80 for ws and http, 443 for wss and https.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the connection is made over TLS (`wss`, `https`).
    pub fn is_tls(&self) -> bool {
        matches!(self.scheme, Scheme::Wss | Scheme::Https)
    }

    /// The IP address the URI names literally, if its host is one.
    pub fn literal_ip(&self) -> Option<IpAddr> {
        match self.host {
            Host::V4(ip) => Some(IpAddr::V4(ip)),
            Host::V6(ip) => Some(IpAddr::V6(ip)),
            Host::Name(_) => None,
        }
    }

    /// The host as a DNS name or address text without brackets, for resolving and for TLS server names.
    pub fn host_name(&self) -> String {
        match &self.host {
            Host::V4(ip) => ip.to_string(),
            Host::V6(ip) => ip.to_string(),
            Host::Name(name) => name.clone(),
        }
    }
}

/// Why an address a name resolved to may not be connected to unless it is granted by itself: what kind of inside
/// address it is. `None` for a public address.
///
/// Covered: unspecified, loopback, private (RFC 1918, IPv6 unique local `fc00::/7`), link-local (`169.254.0.0/16`,
/// `fe80::/10`), shared address space (`100.64.0.0/10`), broadcast and multicast, the "this network" block
/// `0.0.0.0/8`, and IPv4 addresses written in IPv6 (`::ffff:a.b.c.d`, `::a.b.c.d`), judged as the IPv4 address.
pub fn inside_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => inside_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return inside_v4(v4);
            }
            let first = v6.segments()[0];
            if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_loopback() {
                Some("loopback")
            } else if first & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if let Some(v4) = v6.to_ipv4().filter(|_| v6.segments()[..6].iter().all(|s| *s == 0)) {
                inside_v4(v4) // IPv4-compatible ::a.b.c.d
            } else {
                None
            }
        }
    }
}

fn inside_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 100 && (b & 0xc0) == 64 {
        Some("shared address space")
    } else if ip.is_broadcast() || ip.is_multicast() {
        Some("broadcast or multicast")
    } else {
        None
    }
}

impl fmt::Display for Destination {
    /// The canonical `scheme://host:port`, which is also the grant that would admit it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme.as_str(), self.host, self.port)
    }
}

/// Parses a `create-websocket` URI exactly as tungstenite 0.29's `IntoClientRequest for &str`
/// does (`str::parse::<http::Uri>`), so the checked URI is the one that connects.
pub fn parse_destination(uri: &str) -> Result<Uri, String> {
    uri.parse::<Uri>().map_err(|e| format!("refused outbound URI {uri:?}: not a valid URI ({e})"))
}

/// The grants of one project. Empty (the default) means no outbound connection is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    grants: Vec<Grant>,
}

impl AllowList {
    /// Parses `allowed-outbound-hosts` entries; the error names the item's index and text.
    pub fn parse(items: &[String]) -> anyhow::Result<Self> {
        let mut grants = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            match Grant::parse(item) {
                Ok(grant) => grants.push(grant),
                Err(err) => anyhow::bail!("{SETTING}[{index}] is invalid: {err}"),
            }
        }
        Ok(Self { grants })
    }

    /// True when nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// Every grant of `lists`, in order, each once.
    pub fn union<'a>(lists: impl IntoIterator<Item = &'a AllowList>) -> Self {
        let mut grants: Vec<Grant> = Vec::new();
        for grant in lists.into_iter().flat_map(|list| &list.grants) {
            if !grants.contains(grant) {
                grants.push(grant.clone());
            }
        }
        Self { grants }
    }

    /// The parsed grants, in configuration order.
    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// Allows the connection only if the URI is sound and some grant admits it. The `Err` names
    /// the grant that is missing, or why the URI is refused outright.
    pub fn check(&self, uri: &Uri) -> Result<(), String> {
        let dest = Destination::from_uri(uri)?;
        if self.grants.iter().any(|g| g.allows(&dest)) {
            Ok(())
        } else {
            Err(format!("no grant for {dest} (add \"{dest}\" to {SETTING})"))
        }
    }

    /// [`parse_destination`] then [`AllowList::check`]; returns the URI to hand to the connector.
    pub fn authorize(&self, uri: &str) -> Result<Uri, String> {
        let parsed = parse_destination(uri)?;
        self.check(&parsed)?;
        Ok(parsed)
    }

    /// Allows an HTTP request to `uri` (the URI the connector uses) only if it is sound and some `http://` or
    /// `https://` grant admits it; what it would connect to. The `Err` names the missing grant or why the URI is
    /// refused outright. The addresses its host resolves to are checked apart, by [`AllowList::check_address`].
    pub fn check_http(&self, uri: &Uri) -> Result<Destination, String> {
        let dest = Destination::from_uri_for(uri, Protocol::Http)?;
        if self.grants.iter().any(|g| g.allows(&dest)) {
            Ok(dest)
        } else {
            Err(format!("no grant for {dest} (add \"{dest}\" to {SETTING})"))
        }
    }

    /// Whether `dest`'s host may be connected to at `ip`, an address it resolved to: a public address may; an inside
    /// one ([`inside_address`]) only when a grant names that very address for `dest`'s scheme and port (a grant of
    /// a name never covers the inside addresses the name resolves to). The `Err` says what is missing.
    pub fn check_address(&self, dest: &Destination, ip: IpAddr) -> Result<(), String> {
        let Some(kind) = inside_address(ip) else { return Ok(()) };
        let host = match ip {
            IpAddr::V4(v4) => Host::V4(v4),
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(Host::V6(v6), Host::V4),
        };
        let literal = Destination { host, connect_host: String::new(), ..dest.clone() };
        if self.grants.iter().any(|g| matches!(g.host, HostPattern::Exact(_)) && g.allows(&literal)) {
            return Ok(());
        }
        Err(format!(
            "{} resolves to {ip}, a {kind} address, which no grant names (add \"{literal}\" to {SETTING} to allow it)",
            dest.host
        ))
    }
}

impl serde::Serialize for AllowList {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(&self.grants)
    }
}

impl<'de> serde::Deserialize<'de> for AllowList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let grants = <Vec<Grant> as serde::Deserialize>::deserialize(deserializer)?;
        Ok(Self { grants })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::client::IntoClientRequest;

    fn list(items: &[&str]) -> AllowList {
        let items: Vec<String> = items.iter().map(|s| (*s).to_owned()).collect();
        AllowList::parse(&items).unwrap()
    }

    fn allowed(list: &AllowList, uri: &str) -> bool {
        list.authorize(uri).is_ok()
    }

    #[test]
    fn default_deny_names_the_missing_grant() {
        for empty in [AllowList::default(), list(&[])] {
            assert!(empty.is_empty());
            assert_eq!(
                empty.authorize("ws://localhost:9001/chat").unwrap_err(),
                r#"no grant for ws://localhost:9001 (add "ws://localhost:9001" to allowed-outbound-hosts)"#
            );
            assert_eq!(
                empty.authorize("wss://API.example.com/x").unwrap_err(),
                r#"no grant for wss://api.example.com:443 (add "wss://api.example.com:443" to allowed-outbound-hosts)"#
            );
        }
        let other = list(&["ws://localhost:9000"]);
        assert!(!other.is_empty());
        assert!(other.authorize("ws://localhost:9001").unwrap_err().starts_with("no grant for ws://localhost:9001 "));
    }

    #[test]
    fn exact_grant() {
        let l = list(&["ws://127.0.0.1:9000", "wss://api.example.com"]);
        assert!(allowed(&l, "ws://127.0.0.1:9000"));
        assert!(allowed(&l, "ws://127.0.0.1:9000/path?q=1"));
        assert!(!allowed(&l, "ws://127.0.0.1:9001"));
        assert!(!allowed(&l, "ws://127.0.0.2:9000"));
        assert!(!allowed(&l, "ws://127.0.0.1"));
        assert!(allowed(&l, "wss://api.example.com"));
        assert!(allowed(&l, "wss://api.example.com:443/v1"));
        assert!(!allowed(&l, "wss://api.example.com:8443"));
        assert!(!allowed(&l, "wss://www.api.example.com"));
        assert_eq!(l.grants()[1].to_string(), "wss://api.example.com:443");
    }

    #[test]
    fn port_wildcard() {
        let l = list(&["ws://localhost:*"]);
        for uri in ["ws://localhost:1", "ws://localhost:9000", "ws://localhost:65535", "ws://localhost"] {
            assert!(allowed(&l, uri), "{uri}");
        }
        assert!(!allowed(&l, "wss://localhost:9000"));
        assert!(!allowed(&l, "ws://127.0.0.1:9000"));
        assert!(!allowed(&l, "ws://localhost.example.com:9000"));
        assert_eq!(l.grants()[0].to_string(), "ws://localhost:*");
    }

    #[test]
    fn subdomain_wildcard_excludes_apex_and_lookalikes() {
        let l = list(&["wss://*.example.com:443"]);
        assert!(allowed(&l, "wss://a.example.com"));
        assert!(allowed(&l, "wss://a.b.example.com/x"));
        assert!(allowed(&l, "wss://A.Example.COM"));
        for uri in [
            "wss://example.com",
            "wss://badexample.com",
            "wss://a.badexample.com",
            "wss://a.example.com.evil.com",
            "wss://a.example.co",
            "wss://a.example.com:8443",
            "ws://a.example.com:443",
        ] {
            assert!(!allowed(&l, uri), "{uri}");
        }
    }

    #[test]
    fn scheme_must_match() {
        let ws = list(&["ws://localhost:9000"]);
        assert!(allowed(&ws, "ws://localhost:9000"));
        assert!(allowed(&ws, "WS://localhost:9000"));
        assert_eq!(
            ws.authorize("wss://localhost:9000").unwrap_err(),
            r#"no grant for wss://localhost:9000 (add "wss://localhost:9000" to allowed-outbound-hosts)"#
        );
        let wss = list(&["wss://localhost:9000"]);
        assert!(!allowed(&wss, "ws://localhost:9000"));
        let any = list(&["*://localhost:9000"]);
        assert!(allowed(&any, "ws://localhost:9000"));
        assert!(allowed(&any, "wss://localhost:9000"));
        assert!(!allowed(&any, "ws://localhost:9001"));
        // Only ws/wss destinations are ever considered, even under `*://`.
        assert!(any.authorize("http://localhost:9000").unwrap_err().contains("is not ws or wss"));
    }

    #[test]
    fn userinfo_is_refused_outright() {
        let l = list(&["ws://127.0.0.1:1", "ws://localhost:9000", "*://*.example.com:*"]);
        for uri in [
            "ws://127.0.0.1:1@localhost:9000/x",
            "ws://localhost:9000@127.0.0.1:1/x",
            "ws://@localhost:9000",
            "ws://user:s3cret@a.example.com",
        ] {
            let err = l.authorize(uri).unwrap_err();
            assert!(err.contains("userinfo"), "{uri}: {err}");
            assert!(!err.starts_with("no grant"), "{uri}: {err}");
            assert!(!err.contains("s3cret"), "credential echoed: {err}");
        }
    }

    #[test]
    fn uppercase_is_normalised() {
        let l = list(&["WS://LocalHost:9000", "WSS://*.EXAMPLE.com"]);
        assert_eq!(l.grants()[0].to_string(), "ws://localhost:9000");
        assert_eq!(l.grants()[1].to_string(), "wss://*.example.com:443");
        assert!(allowed(&l, "ws://LOCALHOST:9000"));
        assert!(allowed(&l, "ws://localhost:9000"));
        assert!(allowed(&l, "wss://Api.Example.Com"));
    }

    #[test]
    fn trailing_dot_matches_but_cannot_escape() {
        let l = list(&["ws://localhost:9000", "wss://*.example.com", "ws://127.0.0.1:9000"]);
        assert!(allowed(&l, "ws://localhost.:9000"));
        assert!(allowed(&l, "wss://a.example.com."));
        assert_eq!(list(&["ws://localhost.:9000"]).grants()[0].to_string(), "ws://localhost:9000");
        // Only one dot is stripped; the apex stays excluded; other names stay other names.
        assert!(l.authorize("ws://localhost..:9000").unwrap_err().contains("empty label"));
        assert!(l.authorize("wss://.example.com").unwrap_err().contains("empty label"));
        assert!(l.authorize("ws://.:9000").unwrap_err().contains("empty"));
        assert!(l.authorize("wss://example.com.").unwrap_err().starts_with("no grant for wss://example.com:443"));
        assert!(!allowed(&l, "ws://localhost.evil.com.:9000"));
        assert!(!allowed(&l, "wss://a.example.com.evil."));
        // An IP literal with a dot is not an IP literal to the resolver: refused.
        assert!(l.authorize("ws://127.0.0.1.:9000").unwrap_err().contains("IPv4"));
    }

    #[test]
    fn ipv6_literals_compare_canonically() {
        let l = list(&["ws://[0:0:0:0:0:0:0:1]:9000"]);
        assert_eq!(l.grants()[0].to_string(), "ws://[::1]:9000");
        for uri in ["ws://[::1]:9000", "ws://[0:0:0:0:0:0:0:1]:9000", "ws://[0000::0001]:9000/x"] {
            assert!(allowed(&l, uri), "{uri}");
        }
        assert!(!allowed(&l, "ws://[::2]:9000"));
        assert!(!allowed(&l, "ws://[::1]:9001"));
        assert!(!allowed(&l, "ws://127.0.0.1:9000"));
        assert!(!allowed(&l, "ws://[::ffff:127.0.0.1]:9000"));
        assert_eq!(
            list(&[]).authorize("ws://[0:0::1]:9000").unwrap_err(),
            r#"no grant for ws://[::1]:9000 (add "ws://[::1]:9000" to allowed-outbound-hosts)"#
        );
        // http::Uri accepts these; the connector would use host() and drop the junk / zone.
        assert!(l.authorize("ws://[::1]x:9000").unwrap_err().contains("not host[:port]"));
        assert!(l.authorize("ws://[::1%25lo]:9000").unwrap_err().contains('%'));
        assert!(l.authorize("ws://[v1.x]:9000").unwrap_err().contains("not an IPv6 address"));
        assert!(Grant::parse("ws://[::1]").is_ok());
    }

    #[test]
    fn percent_encoded_hosts_never_match() {
        let l = list(&["ws://127.0.0.1:9000", "ws://localhost:9000", "ws://*.example.com:*"]);
        for uri in ["ws://127.0.0.1%2e:9000", "ws://%6c%6fcalhost:9000", "ws://a%2eexample.com:9000"] {
            // http::Uri 1.x rejects '%' in a reg-name, and so does tungstenite (same parse).
            let err = l.authorize(uri).unwrap_err();
            assert!(err.contains("not a valid URI"), "{uri}: {err}");
            assert!(uri.into_client_request().is_err(), "{uri}");
        }
        // Even a Uri that somehow carries '%' in its host is refused before matching.
        let zoned: Uri = "ws://[fe80::1%25eth0]:9000".parse().unwrap();
        let err = list(&["ws://[fe80::1]:9000"]).check(&zoned).unwrap_err();
        assert!(err.contains("'%'") && !err.starts_with("no grant"), "{err}");
        assert!(Grant::parse("ws://%6c%6fcalhost:9000").unwrap_err().reason().contains('%'));
    }

    #[test]
    fn odd_numeric_hosts_are_refused() {
        let l = list(&["ws://127.0.0.1:*", "ws://*.example.com:*"]);
        for uri in [
            "ws://127.1:9000",
            "ws://0x7f.0.0.1:9000",
            "ws://0x7f000001:9000",
            "ws://2130706433:9000",
            "ws://017.0.0.1:9000",
            "ws://127.0.0.01:9000",
            "ws://a.example.com.1:9000",
        ] {
            let err = l.authorize(uri).unwrap_err();
            assert!(err.contains("IPv4") && !err.starts_with("no grant"), "{uri}: {err}");
        }
        for grant in ["ws://127.1:9000", "ws://0x7f.0.0.1:1", "ws://2130706433:1", "ws://*.1:1"] {
            assert!(Grant::parse(grant).is_err(), "{grant}");
        }
        assert!(allowed(&l, "ws://127.0.0.1:9000"));
    }

    #[test]
    fn bad_ports_in_destinations_are_refused() {
        let l = list(&["ws://localhost:*"]);
        // http::Uri accepts all of these; tokio-tungstenite would fall back to port 80 for
        // 70000 / -1 / empty, or read +80 as 80.
        for uri in
            ["ws://localhost:70000", "ws://localhost:-1", "ws://localhost:", "ws://localhost:+80", "ws://localhost:0"]
        {
            let err = l.authorize(uri).unwrap_err();
            assert!(err.contains("not host[:port]"), "{uri}: {err}");
        }
        assert!(l.authorize("ws://:9000").unwrap_err().contains("empty"));
        assert!(l.authorize("ws://a*b.localhost:9000").unwrap_err().contains("'*'"));
        assert!(l.authorize("/relative").unwrap_err().contains("no scheme"));
    }

    #[test]
    fn bad_grants_are_rejected_with_the_text_named() {
        let cases = [
            ("localhost:9000", "missing scheme"),
            ("//localhost:9000", "missing scheme"),
            ("ftp://localhost:80", "unsupported scheme"),
            ("ws://localhost:9000/path", "path"),
            ("ws://localhost:9000?x=1", "query"),
            ("ws://localhost:9000#f", "fragment"),
            ("ws://user@localhost:9000", "userinfo"),
            ("ws://", "empty"),
            ("ws://:9000", "empty"),
            ("ws://a.*.example.com", "leftmost label"),
            ("ws://*example.com", "leftmost label"),
            ("ws://*", "bare '*'"),
            ("*://*:*", "bare '*'"),
            ("ws://*.*.example.com", "leftmost label"),
            ("ws://*.127.0.0.1", "not an IP address"),
            ("ws://localhost:abc", "not a number"),
            ("ws://localhost:70000", "not a number"),
            ("ws://localhost:+80", "not a number"),
            ("ws://localhost:0", "port 0"),
            ("ws://localhost:", "empty"),
            ("ws://localhost:1..5", "ranges"),
            ("*://localhost", "no default port"),
            ("ws://[::1", "closing ']'"),
            ("ws://[::1]9000", "after the IPv6 literal"),
            ("ws://[zz]:1", "not an IPv6 address"),
            ("ws://::1:9000", "brackets"),
            ("ws://a b:1", "contains ' '"),
            ("ws://a..b:1", "empty label"),
        ];
        for (text, needle) in cases {
            let err = Grant::parse(text).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&format!("{text:?}")), "{msg}");
            assert!(msg.contains(needle), "{text}: {msg}");
            assert_eq!(err.text(), text);
        }
        // `self` parses as an ordinary DNS name, never Spin's self-request shortcut.
        assert_eq!(Grant::parse("ws://self").unwrap().to_string(), "ws://self:80");
    }

    #[test]
    fn allow_list_errors_name_index_and_text() {
        let items = vec!["ws://localhost:9000".to_owned(), "ws://localhost:9000/x".to_owned()];
        let msg = AllowList::parse(&items).unwrap_err().to_string();
        assert!(msg.starts_with("allowed-outbound-hosts[1] is invalid"), "{msg}");
        assert!(msg.contains("\"ws://localhost:9000/x\""), "{msg}");
        assert!(msg.contains("path"), "{msg}");
    }

    #[test]
    fn display_round_trips_and_serde_uses_strings() {
        for text in [
            "ws://127.0.0.1:9000",
            "wss://api.example.com:443",
            "ws://localhost:*",
            "wss://*.example.com:443",
            "*://host:8080",
            "ws://[2001:db8::1]:9000",
        ] {
            let g = Grant::parse(text).unwrap();
            assert_eq!(g.to_string(), text);
            assert_eq!(text.parse::<Grant>().unwrap(), g);
            assert_eq!(serde_json::to_string(&g).unwrap(), format!("{text:?}"));
        }
        assert_eq!(Grant::parse(" ws://x.test/ ").unwrap().to_string(), "ws://x.test:80");
        let l: AllowList = serde_json::from_str(r#"["ws://localhost", "wss://*.a.test:*"]"#).unwrap();
        assert_eq!(serde_json::to_string(&l).unwrap(), r#"["ws://localhost:80","wss://*.a.test:*"]"#);
        let err = serde_json::from_str::<Grant>(r#""ws://x/y""#).unwrap_err().to_string();
        assert!(err.contains("\"ws://x/y\"") && err.contains("path"), "{err}");
    }

    /// The URI we check is the URI tungstenite builds, and the host/port we match is what
    /// tokio-tungstenite 0.29 connects to (`uri.host()`, `port_u16()` or ws 80 / wss 443).
    #[test]
    fn parse_matches_tungstenite_and_the_connect_target() {
        let grants = list(&["*://*.example.com:*", "*://localhost:*", "*://127.0.0.1:*", "*://[::1]:*"]);
        let cases = [
            "ws://127.0.0.1:9000",
            "WS://LocalHost:9000/x",
            "wss://api.example.com",
            "wss://a.b.example.com./p?q",
            "ws://localhost:9000#frag",
            "ws://127.0.0.1:1@localhost:9000/x",
            "ws://@localhost:9000",
            "ws://user@:9000",
            "ws://127.0.0.1%2e:9000",
            "ws://%6c%6fcalhost:9000",
            "ws://[::1]:9000",
            "ws://[0:0:0:0:0:0:0:1]:9000",
            "ws://[::1]",
            "ws://[::1]x:9000",
            "ws://[fe80::1%25eth0]:9000",
            "ws://localhost.:9000",
            "ws://127.1:9000",
            "ws://0x7f.0.0.1:9000",
            "ws://localhost:70000",
            "ws://localhost:+80",
            "ws://localhost:00080",
            "ws://localhost:",
            "ws://:9000",
            "ws:/x",
            "/x",
            "ws://::1:9000",
            "ws://local host:9000",
            "http://localhost:9000",
        ];
        let mut admitted = Vec::new();
        for s in cases {
            let ours = parse_destination(s);
            let theirs = s.into_client_request().map(|r| r.uri().clone());
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{s}"),
                (Err(_), Err(_)) => {}
                (Err(e), Ok(_)) => panic!("{s}: we fail to parse what tungstenite accepts: {e}"),
                // tungstenite refused it later (no/empty host); we must refuse it too.
                (Ok(u), Err(_)) => assert!(grants.check(u).is_err(), "{s}"),
            }
            let (Ok(uri), Ok(req_uri)) = (ours, theirs) else { continue };
            let Ok(dest) = Destination::from_uri(&uri) else {
                assert!(grants.check(&uri).is_err(), "{s}");
                continue;
            };
            let connect_host = req_uri.host().unwrap();
            assert_eq!(dest.connect_host(), connect_host, "{s}");
            let connect_port = req_uri.port_u16().or(match req_uri.scheme_str() {
                Some("wss") => Some(443),
                Some("ws") => Some(80),
                _ => None,
            });
            if let Some(p) = connect_port {
                assert_eq!(dest.port(), p, "{s}");
            }
            let lower = connect_host.to_ascii_lowercase();
            let expected = match lower.parse::<Ipv4Addr>() {
                Ok(ip) => Host::V4(ip),
                Err(_) => match lower.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                    Some(v6) => Host::V6(v6.parse().unwrap()),
                    None => Host::Name(lower.strip_suffix('.').unwrap_or(&lower).to_owned()),
                },
            };
            assert_eq!(dest.host, expected, "{s}");
            assert!(grants.check(&uri).is_ok(), "{s}");
            admitted.push(s);
        }
        assert_eq!(
            admitted,
            [
                "ws://127.0.0.1:9000",
                "WS://LocalHost:9000/x",
                "wss://api.example.com",
                "wss://a.b.example.com./p?q",
                "ws://localhost:9000#frag",
                "ws://[::1]:9000",
                "ws://[0:0:0:0:0:0:0:1]:9000",
                "ws://[::1]",
                "ws://localhost.:9000",
                "ws://localhost:00080",
            ]
        );
    }

    #[test]
    fn http_grants_admit_only_http_and_keep_every_refusal() {
        let l = list(&["http://127.0.0.1:*", "https://api.example.com", "*://ws.example.com:*"]);
        let check = |uri: &str| l.check_http(&uri.parse::<Uri>().unwrap());
        assert_eq!(check("http://127.0.0.1:8080/x?y").unwrap().port(), 8080);
        assert_eq!(check("https://api.example.com/v1").unwrap().port(), 443);
        assert!(check("https://api.example.com/").unwrap().is_tls());
        assert!(check("http://api.example.com/").unwrap_err().starts_with("no grant for http://api.example.com:80"));
        assert!(check("https://api.example.com:8443/").unwrap_err().contains("no grant"));
        assert!(check("http://localhost:8080/").unwrap_err().contains("no grant"));
        // `*://` stays WebSocket-only; HTTP grants do not admit WebSocket clients.
        assert!(check("http://ws.example.com:80/").unwrap_err().contains("no grant"));
        assert!(l.authorize("ws://127.0.0.1:9000").unwrap_err().contains("no grant"));
        assert!(check("ws://127.0.0.1:9000").unwrap_err().contains("is not http or https"));
        let err = check("http://user:pw@127.0.0.1:8080/").unwrap_err();
        assert!(err.contains("userinfo") && !err.contains("pw"), "{err}");
        assert!(check("http://127.1:8080/").unwrap_err().contains("numeric"));
        assert!(check("http://127.0.0.1:0/").unwrap_err().contains("port"));
        assert_eq!(Grant::parse("HTTPS://Api.Example.com").unwrap().to_string(), "https://api.example.com:443");
        assert_eq!(Grant::parse("http://a.example.com").unwrap().to_string(), "http://a.example.com:80");
    }

    #[test]
    fn inside_addresses_need_a_grant_of_their_own() {
        for (ip, kind) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("100.64.0.1", "shared address space"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd00::1", "private (unique local)"),
            ("fe80::1", "link-local"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
        ] {
            assert_eq!(inside_address(ip.parse().unwrap()), Some(kind), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "172.32.0.1"] {
            assert_eq!(inside_address(ip.parse().unwrap()), None, "{ip}");
        }
        let l = list(&["http://app.example.com:*", "http://127.0.0.1:8080"]);
        let dest = l.check_http(&"http://app.example.com:8080/".parse::<Uri>().unwrap()).unwrap();
        assert!(l.check_address(&dest, "93.184.216.34".parse().unwrap()).is_ok());
        assert!(l.check_address(&dest, "127.0.0.1".parse().unwrap()).is_ok(), "the address itself is granted");
        let err = l.check_address(&dest, "10.0.0.1".parse().unwrap()).unwrap_err();
        assert!(err.contains("private") && err.contains("http://10.0.0.1:8080"), "{err}");
        let other_port = l.check_http(&"http://app.example.com:9090/".parse::<Uri>().unwrap()).unwrap();
        let err = l.check_address(&other_port, "127.0.0.1".parse().unwrap()).unwrap_err();
        assert!(err.contains("loopback"), "{err}");
        // A name grant never covers the inside addresses the name resolves to.
        let names = list(&["http://localhost:8080"]);
        let dest = names.check_http(&"http://localhost:8080/".parse::<Uri>().unwrap()).unwrap();
        assert!(names.check_address(&dest, "127.0.0.1".parse().unwrap()).is_err());
    }
}
