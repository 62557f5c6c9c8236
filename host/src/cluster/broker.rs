//! The connection to the cluster's broker as a production NATS needs it: credentials (in the URL, a user and password,
//! a token, an NKey seed, a `.creds` file), TLS (a private CA, a client certificate), and the broker's state as this
//! host sees it: connected, or why not (refused, TLS, unreachable), named once in the log and shown in `/healthz`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;

/// How long a host waits before it tries its broker again after a failed attempt: none after the first failure, then
/// doubling from this, up to [`DEFAULT_BROKER_RETRY_MAX`]. A broker that restarts is rejoined at once; one that refuses
/// this host is not hammered.
pub const DEFAULT_BROKER_RETRY: Duration = Duration::from_millis(100);

/// The longest wait between two attempts to reach the broker (the client's own default cap).
pub const DEFAULT_BROKER_RETRY_MAX: Duration = Duration::from_secs(4);

/// How long the one extra attempt that finds out why the broker cannot be joined may take (see [`BrokerState`]).
pub const DEFAULT_BROKER_DIAGNOSIS_TIMEOUT: Duration = Duration::from_secs(5);

/// A secret given on the command line or in the environment (a password, a token, an NKey seed): never shown by
/// `Debug`, so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that hands it to the broker client.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A clap value parser: any string, kept as a secret.
    pub fn parse(value: &str) -> Result<Self, String> {
        Ok(Self(value.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How this host proves itself to the broker and checks the broker in turn. At most one way of signing in: the URL's
/// credentials, a user and password, a token, an NKey or a `.creds` file.
#[derive(Debug, Clone, Default)]
pub struct BrokerAuth {
    /// A user name, with [`BrokerAuth::password`].
    pub user: Option<String>,
    /// The user's password.
    pub password: Option<Secret>,
    /// A token.
    pub token: Option<Secret>,
    /// An NKey user seed (`SU…`), or a file holding one.
    pub nkey: Option<Secret>,
    /// A `.creds` file: a user JWT and its NKey seed.
    pub creds: Option<PathBuf>,
    /// PEM certificates of the CA that signed the broker's certificate, trusted instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// A PEM client certificate chain to show the broker, with [`BrokerAuth::key`].
    pub cert: Option<PathBuf>,
    /// The PEM private key of [`BrokerAuth::cert`].
    pub key: Option<PathBuf>,
}

/// The broker's addresses (credentials taken out of them) and the client's options that sign in with them.
pub(super) struct Broker {
    /// The addresses to connect to, without credentials.
    pub addrs: Vec<async_nats::ServerAddr>,
    /// Name, credentials and TLS; no callbacks yet.
    pub options: async_nats::ConnectOptions,
}

/// Credentials found in a URL: `user:password@` or `token@`, percent-decoded.
#[derive(Debug, PartialEq, Eq)]
enum UrlCredentials {
    UserPassword(String, Secret),
    Token(Secret),
}

/// Splits `--nats` (one URL, or several separated by commas, as NATS tools take them) into addresses without
/// credentials and the credentials they held (the same on every URL, or refused).
fn parse_urls(urls: &str) -> anyhow::Result<(Vec<async_nats::ServerAddr>, Option<UrlCredentials>)> {
    let mut addrs = Vec::new();
    let mut found: Option<UrlCredentials> = None;
    for (i, one) in urls.split(',').map(str::trim).filter(|one| !one.is_empty()).enumerate() {
        let shown = wasmsock_wire::cluster::redacted(one);
        let addr: async_nats::ServerAddr = one.parse().with_context(|| format!("--nats {shown}"))?;
        let credentials = match (addr.username(), addr.password()) {
            (None, _) => None,
            (Some(user), Some(password)) => {
                Some(UrlCredentials::UserPassword(decoded(user)?, Secret::new(decoded(password)?)))
            }
            (Some(token), None) => Some(UrlCredentials::Token(Secret::new(decoded(token)?))),
        };
        if i > 0 && credentials != found {
            anyhow::bail!("--nats {shown}: every URL of the list must carry the same credentials (or none)");
        }
        found = credentials;
        let mut url = addr.into_inner();
        // Both only fail for URLs that cannot have credentials, which a NATS URL always can.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        addrs.push(async_nats::ServerAddr::from_url(url).with_context(|| format!("--nats {shown}"))?);
    }
    if addrs.is_empty() {
        anyhow::bail!("--nats: no broker URL given");
    }
    Ok((addrs, found))
}

/// Percent-decodes one part of a URL's user information (a password may hold `@`, `:` or `/` written as `%40`, …).
fn decoded(part: &str) -> anyhow::Result<String> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|hex| std::str::from_utf8(hex).ok());
            let byte = hex.and_then(|hex| u8::from_str_radix(hex, 16).ok());
            let Some(byte) = byte else { anyhow::bail!("--nats: a `%` in the URL's credentials is not `%XX`") };
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).context("--nats: the URL's credentials are not UTF-8 once decoded")
}

/// An NKey user seed from `value`: the seed itself (`SU…`), or a file holding it (alone, or in a line of its own).
fn nkey_seed(value: &str) -> anyhow::Result<String> {
    let seed = if value.trim().starts_with("SU") {
        value.trim().to_owned()
    } else {
        let text = std::fs::read_to_string(value)
            .with_context(|| format!("--nats-nkey: {value} is neither an NKey user seed (SU…) nor a readable file"))?;
        let line = text.lines().map(str::trim).find(|line| line.starts_with("SU"));
        line.with_context(|| format!("--nats-nkey: {value} holds no NKey user seed (a line starting SU)"))?.to_owned()
    };
    nkeys::KeyPair::from_seed(&seed).map_err(|_| anyhow::anyhow!("--nats-nkey: not a valid NKey user seed"))?;
    Ok(seed)
}

/// Fails with the flag named when `path` cannot be read (so a typo is an error at start, not a retry loop).
fn readable(flag: &str, path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(path).map(drop).with_context(|| format!("{flag} {}", path.display()))
}

impl Broker {
    /// The addresses and options for `urls` with `auth`, the client named `name`. Files are checked now; a `.creds`
    /// file is read now.
    pub(super) async fn new(urls: &str, auth: &BrokerAuth, name: String) -> anyhow::Result<Self> {
        let (addrs, in_url) = parse_urls(urls)?;
        let mut options = async_nats::ConnectOptions::new().name(name);
        let ways =
            [in_url.is_some(), auth.user.is_some(), auth.token.is_some(), auth.nkey.is_some(), auth.creds.is_some()];
        if ways.iter().filter(|given| **given).count() > 1 {
            anyhow::bail!(
                "the broker's credentials are given more than once: use one of credentials in the --nats URL, \
                 --nats-user/--nats-password, --nats-token, --nats-nkey or --nats-creds"
            );
        }
        match in_url {
            Some(UrlCredentials::UserPassword(user, password)) => {
                options = options.user_and_password(user, password.expose().to_owned());
            }
            Some(UrlCredentials::Token(token)) => options = options.token(token.expose().to_owned()),
            None => {}
        }
        match (&auth.user, &auth.password) {
            (Some(user), Some(password)) => {
                options = options.user_and_password(user.clone(), password.expose().to_owned());
            }
            (None, None) => {}
            _ => anyhow::bail!("--nats-user and --nats-password go together"),
        }
        if let Some(token) = &auth.token {
            options = options.token(token.expose().to_owned());
        }
        if let Some(nkey) = &auth.nkey {
            options = options.nkey(nkey_seed(nkey.expose())?);
        }
        if let Some(creds) = &auth.creds {
            options =
                options.credentials_file(creds).await.with_context(|| format!("--nats-creds {}", creds.display()))?;
        }
        let mut tls = addrs.iter().any(async_nats::ServerAddr::tls_required);
        if let Some(ca) = &auth.ca {
            readable("--nats-ca", ca)?;
            options = options.add_root_certificates(ca.clone());
            tls = true;
        }
        match (&auth.cert, &auth.key) {
            (Some(cert), Some(key)) => {
                readable("--nats-cert", cert)?;
                readable("--nats-key", key)?;
                options = options.add_client_certificate(cert.clone(), key.clone());
                tls = true;
            }
            (None, None) => {}
            _ => anyhow::bail!("--nats-cert and --nats-key go together"),
        }
        if tls {
            options = options.require_tls(true);
        }
        Ok(Self { addrs, options })
    }
}

/// The wait before attempt `attempts` (1 for the first retry): see [`DEFAULT_BROKER_RETRY`].
pub(super) fn retry_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let doublings = u32::try_from(attempts - 2).unwrap_or(u32::MAX).min(16);
    DEFAULT_BROKER_RETRY.saturating_mul(1 << doublings).min(DEFAULT_BROKER_RETRY_MAX)
}

/// Why the broker could not be joined, in words for a person: `refused this host: authorization violation`, `TLS
/// failed: invalid peer certificate: UnknownIssuer`, `is unreachable: Connection refused (os error 111)`.
pub(super) fn why(err: &async_nats::ConnectError) -> String {
    use async_nats::ConnectErrorKind as Kind;
    let detail = std::error::Error::source(err).map(ToString::to_string);
    let kind = err.kind().to_string();
    // A source that only repeats the kind (`authorization violation: authorization violation`) says it once.
    let detail = detail.filter(|detail| !detail.eq_ignore_ascii_case(&kind) && !detail.contains(&kind));
    let said = |what: &str| detail.clone().map_or_else(|| what.to_owned(), |detail| format!("{what}: {detail}"));
    match err.kind() {
        Kind::AuthorizationViolation => format!("refused this host: {}", said("authorization violation")),
        Kind::Authentication => format!("refused this host: {}", said("cannot sign the broker's challenge")),
        Kind::Tls => format!("TLS failed: {}", said("TLS error")),
        Kind::Io if tls_failure(err) => format!("TLS failed: {}", detail.unwrap_or_default()),
        Kind::TimedOut => "is unreachable: timed out".to_owned(),
        _ => format!("is unreachable: {}", detail.unwrap_or(kind)),
    }
}

/// Whether an I/O error under `err` is a TLS handshake's (rustls reports them as I/O errors with its own inside).
fn tls_failure(err: &async_nats::ConnectError) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        if inner.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = inner.downcast_ref::<std::io::Error>()
            && io.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        source = inner.source();
    }
    false
}

/// The broker connection as this host sees it: up, or down and (once found out) why. A failed attempt is followed by
/// one extra attempt made only to learn the reason (the client's own reports name only the kind, and "IO error" for
/// a TLS handshake), and the reason is logged once; the same failure again is not logged again.
#[derive(Debug, Default)]
pub struct BrokerState {
    inner: Mutex<StateInner>,
}

#[derive(Debug, Default)]
struct StateInner {
    connected: bool,
    /// Why the broker cannot be joined, once found out; cleared on connecting.
    failure: Option<String>,
    /// The client's report of the last failed attempt (the kind), so a new kind of failure is looked into again.
    reported: Option<String>,
    /// Whether the extra attempt is under way.
    diagnosing: bool,
}

impl BrokerState {
    /// Whether the connection is up.
    pub fn is_connected(&self) -> bool {
        self.inner.lock().is_ok_and(|inner| inner.connected)
    }

    /// Why the broker cannot be joined, when it is not connected and the reason is known.
    pub fn failure(&self) -> Option<String> {
        self.inner.lock().ok().and_then(|inner| if inner.connected { None } else { inner.failure.clone() })
    }

    /// Records that the connection is up (true) or lost (false); whether this changed it.
    pub(super) fn set_connected(&self, connected: bool) -> bool {
        let Ok(mut inner) = self.inner.lock() else { return false };
        let changed = inner.connected != connected;
        inner.connected = connected;
        if connected {
            inner.failure = None;
            inner.reported = None;
        }
        changed
    }

    /// Records the client's report of a failed attempt; true when it should be looked into (a kind of failure not
    /// seen since the last connection, and no look under way).
    pub(super) fn failed_attempt(&self, report: &str) -> bool {
        let Ok(mut inner) = self.inner.lock() else { return false };
        if inner.connected || inner.diagnosing || inner.reported.as_deref() == Some(report) {
            return false;
        }
        inner.reported = Some(report.to_owned());
        inner.diagnosing = true;
        true
    }

    /// Records what the extra attempt found (none: it connected); true when it is news to log.
    pub(super) fn diagnosed(&self, failure: Option<String>) -> bool {
        let Ok(mut inner) = self.inner.lock() else { return false };
        inner.diagnosing = false;
        if inner.connected || failure.is_none() || inner.failure == failure {
            return false;
        }
        inner.failure = failure;
        true
    }
}

/// Makes one attempt to reach the broker with `broker`'s options, without retrying, and says why it failed (none
/// when it connected: the broker is reachable again and the client will join it on its next attempt).
pub(super) async fn diagnose(
    options: async_nats::ConnectOptions,
    addrs: Vec<async_nats::ServerAddr>,
) -> Option<String> {
    let attempt = options.connection_timeout(DEFAULT_BROKER_DIAGNOSIS_TIMEOUT).connect(addrs);
    match tokio::time::timeout(DEFAULT_BROKER_DIAGNOSIS_TIMEOUT, attempt).await {
        Ok(Ok(_client)) => None,
        Ok(Err(err)) => Some(why(&err)),
        Err(_) => Some("is unreachable: timed out".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_out_of_the_url_decoded() {
        let (addrs, found) = parse_urls("nats://al%40ice:p%3Ass@127.0.0.1:4222").unwrap();
        assert_eq!(found, Some(UrlCredentials::UserPassword("al@ice".into(), Secret::new("p:ss"))));
        assert_eq!(addrs[0].as_url_str(), "nats://127.0.0.1:4222");
        let (_, found) = parse_urls("tls://s3cr3t@broker:4443").unwrap();
        assert_eq!(found, Some(UrlCredentials::Token(Secret::new("s3cr3t"))));
        let (addrs, found) = parse_urls("nats://a:1,nats://b:2").unwrap();
        assert_eq!((addrs.len(), found), (2, None));
        assert!(parse_urls("nats://u:p@a:1,nats://b:2").unwrap_err().to_string().contains("same credentials"));
        assert!(parse_urls("http://a:1").is_err());
        assert!(decoded("%zz").is_err());
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let auth = BrokerAuth { password: Some(Secret::new("hunter2")), ..BrokerAuth::default() };
        assert!(!format!("{auth:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn one_way_of_signing_in_and_pairs_that_go_together() {
        let both = BrokerAuth { token: Some(Secret::new("t")), ..BrokerAuth::default() };
        let err = Broker::new("nats://u:p@127.0.0.1:4222", &both, "n".into()).await.err().unwrap();
        assert!(err.to_string().contains("more than once"), "{err}");
        let half = BrokerAuth { user: Some("u".into()), ..BrokerAuth::default() };
        assert!(Broker::new("nats://127.0.0.1:4222", &half, "n".into()).await.is_err());
        let missing = BrokerAuth { ca: Some("/nonexistent/ca.pem".into()), ..BrokerAuth::default() };
        let err = Broker::new("nats://127.0.0.1:4222", &missing, "n".into()).await.err().unwrap();
        assert!(format!("{err:#}").contains("--nats-ca /nonexistent/ca.pem"), "{err:#}");
    }

    #[test]
    fn an_nkey_is_a_seed_or_a_file_holding_one_and_is_checked() {
        let pair = nkeys::KeyPair::new_user();
        let seed = pair.seed().unwrap();
        assert_eq!(nkey_seed(&seed).unwrap(), seed);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("user.nk");
        std::fs::write(&file, format!("# a comment\n{seed}\n")).unwrap();
        assert_eq!(nkey_seed(file.to_str().unwrap()).unwrap(), seed);
        let err = nkey_seed("SUNOTASEED").unwrap_err().to_string();
        assert!(err.contains("not a valid") && !err.contains("SUNOTASEED"), "{err}");
    }

    #[test]
    fn retries_back_off_to_the_cap() {
        assert_eq!(retry_delay(1), Duration::ZERO);
        assert_eq!(retry_delay(2), DEFAULT_BROKER_RETRY);
        assert_eq!(retry_delay(3), DEFAULT_BROKER_RETRY * 2);
        assert_eq!(retry_delay(1000), DEFAULT_BROKER_RETRY_MAX);
    }

    #[test]
    fn a_failure_is_looked_into_once_and_news_only_once() {
        let state = BrokerState::default();
        assert!(state.failed_attempt("nats: authorization violation"));
        assert!(!state.failed_attempt("nats: authorization violation"), "a look is under way");
        assert!(state.diagnosed(Some("refused this host: authorization violation".into())));
        assert!(!state.failed_attempt("nats: authorization violation"), "the same report again");
        assert_eq!(state.failure().as_deref(), Some("refused this host: authorization violation"));
        assert!(state.set_connected(true));
        assert_eq!(state.failure(), None);
        assert!(state.set_connected(false));
        assert!(state.failed_attempt("nats: authorization violation"), "a new episode");
    }
}
