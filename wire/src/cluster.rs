//! The cluster's names on the broker: a cluster name, a host id, and the NATS subject of a channel. Channel names may
//! hold any printable character, and NATS subject tokens may not hold `.`, `*`, `>` or whitespace, so the project
//! and channel are hex-encoded into their tokens.

/// The cluster name hosts share when `serve --cluster-name` is not given.
pub const DEFAULT_CLUSTER_NAME: &str = "wasmsock";

/// Checks a cluster name or host id: 1 to 64 ASCII letters, digits, `-` and `_` (it becomes a subject token).
pub fn check_token(what: &str, name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid { Ok(()) } else { Err(format!("{what} {name:?} must be 1 to 64 ASCII letters, digits, '-' or '_'")) }
}

/// The subject a channel's messages cross hosts on: `<cluster>.ch.<hex project>.<hex channel>`.
pub fn channel_subject(cluster: &str, project: &str, channel: &str) -> String {
    format!("{cluster}.ch.{}.{}", hex(project.as_bytes()), hex(channel.as_bytes()))
}

/// The header that marks a binary channel message on the broker (a text message has none).
pub const KIND_HEADER: &str = "Wasmsock-Kind";

/// The headers of a publication kept in the cluster's history: its offset in the channel and the epoch of the
/// channel's stream (see [`history_subject`]).
pub const OFFSET_HEADER: &str = "Wasmsock-Offset";
/// See [`OFFSET_HEADER`].
pub const EPOCH_HEADER: &str = "Wasmsock-Epoch";
/// The header naming the connection (`s12@h1`) a publication kept in the cluster's history is not delivered to.
pub const SKIP_HEADER: &str = "Wasmsock-Skip";

/// The subject a publication of a channel with history is kept on in the broker's JetStream:
/// `<cluster>.hist.<hex project>.<hex channel>`. Each project's channels are one stream ([`history_stream`]) that
/// keeps a number of messages per subject, and republishes each kept message, with its headers, on the channel's
/// [`channel_subject`], where the hosts with members listen.
pub fn history_subject(cluster: &str, project: &str, channel: &str) -> String {
    format!("{cluster}.hist.{}.{}", hex(project.as_bytes()), hex(channel.as_bytes()))
}

/// The subjects of every channel of `project` in its history stream ([`history_subject`] with a wildcard).
pub fn history_subjects(cluster: &str, project: &str) -> String {
    format!("{cluster}.hist.{}.*", hex(project.as_bytes()))
}

/// Where the history stream of `project` republishes what it keeps: the project's channel subjects, the channel's
/// token taken from the kept message's subject (the broker's subject mapping).
pub fn history_republish(cluster: &str, project: &str) -> String {
    format!("{cluster}.ch.{}.{{{{wildcard(1)}}}}", hex(project.as_bytes()))
}

/// The name of `project`'s history stream on the broker: `<cluster>_hist_<hex project>`.
pub fn history_stream(cluster: &str, project: &str) -> String {
    format!("{cluster}_hist_{}", hex(project.as_bytes()))
}

/// The project of a stream named by [`history_stream`] for `cluster`.
pub fn parse_history_stream(cluster: &str, stream: &str) -> Option<String> {
    unhex(stream.strip_prefix(cluster)?.strip_prefix("_hist_")?)
}

/// The channel of a subject made by [`history_subject`].
pub fn parse_history_subject(subject: &str) -> Option<String> {
    unhex(subject.rsplit_once('.')?.1)
}

/// A broker URL as logs and listings may show it: a password in it (`nats://user:secret@host`) becomes `***`.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((userinfo, host)) = rest.rsplit_once('@') else { return url.to_owned() };
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    if userinfo.contains(':') { format!("{scheme}://{user}:***@{host}") } else { format!("{scheme}://***@{host}") }
}

/// The host a connection id names (`s12@h1` is on host `h1`); none for an id without one (a host alone).
pub fn host_of(id: &str) -> Option<&str> {
    id.split_once('@').map(|(_, host)| host)
}

/// The subjects other hosts reach one host's connections on: `<cluster>.host.<host>.<verb>` (`lookup`, `send`,
/// `close`).
pub fn host_subject(cluster: &str, host: &str, verb: &str) -> String {
    format!("{cluster}.host.{host}.{verb}")
}

/// The subject every host of `cluster` says it is alive on.
pub fn heartbeat_subject(cluster: &str) -> String {
    format!("{cluster}.hosts")
}

/// The project and channel of a subject made by [`channel_subject`] for `cluster`.
pub fn parse_channel_subject(cluster: &str, subject: &str) -> Option<(String, String)> {
    let rest = subject.strip_prefix(cluster)?.strip_prefix(".ch.")?;
    let (project, channel) = rest.split_once('.')?;
    Some((unhex(project)?, unhex(channel)?))
}

/// `bytes` as lowercase hex: a name in a subject token or object name that allows few characters.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The UTF-8 text that [`hex`] made; none for anything else.
pub fn unhex(text: &str) -> Option<String> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..text.len()).step_by(2).map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect();
    String::from_utf8(bytes?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_names_round_trip_and_republish_onto_the_channel_subject() {
        let subject = history_subject("prod", "examples", "a.b*c>d/ä");
        assert_eq!(subject.matches('.').count(), 3, "{subject}");
        assert_eq!(parse_history_subject(&subject).as_deref(), Some("a.b*c>d/ä"));
        let stream = history_stream("prod", "examples");
        assert!(!stream.contains(['.', '*', '>', ' ']), "{stream}");
        assert_eq!(parse_history_stream("prod", &stream).as_deref(), Some("examples"));
        assert_eq!(parse_history_stream("other", &stream), None);
        // The wildcard token of the kept subject is the channel's token of the channel subject.
        let republish = history_republish("prod", "examples");
        let channel_token = subject.rsplit_once('.').unwrap().1;
        assert_eq!(
            republish.replace("{{wildcard(1)}}", channel_token),
            channel_subject("prod", "examples", "a.b*c>d/ä")
        );
        assert_eq!(history_subjects("prod", "examples").replace('*', channel_token), subject);
    }

    #[test]
    fn subjects_carry_any_channel_name_in_safe_tokens() {
        let subject = channel_subject("prod", "examples", "a.b*c>d/ä");
        assert!(subject.starts_with("prod.ch.") && subject.split('.').count() == 4, "{subject}");
        assert!(!subject[8..].contains(['*', '>', ' ']), "{subject}");
        assert_eq!(parse_channel_subject("prod", &subject), Some(("examples".into(), "a.b*c>d/ä".into())));
        assert_eq!(parse_channel_subject("other", &subject), None);
        assert_eq!(parse_channel_subject("prod", "prod.ch.zz.00"), None);
    }

    #[test]
    fn secrets_in_broker_urls_are_not_shown() {
        assert_eq!(redacted("nats://user:secret@10.0.0.5:4222"), "nats://user:***@10.0.0.5:4222");
        assert_eq!(redacted("nats://token@10.0.0.5:4222"), "nats://***@10.0.0.5:4222");
        assert_eq!(redacted("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
    }

    #[test]
    fn connection_ids_name_their_host() {
        assert_eq!(host_of("s12@h1"), Some("h1"));
        assert_eq!(host_of("s12"), None);
        assert_eq!(host_subject("prod", "h1", "send"), "prod.host.h1.send");
    }

    #[test]
    fn cluster_names_and_host_ids_are_single_safe_tokens() {
        assert!(check_token("cluster name", "prod-eu_1").is_ok());
        assert!(check_token("cluster name", "a.b").unwrap_err().contains("cluster name \"a.b\""));
        assert!(check_token("host id", "").is_err());
        assert!(check_token("host id", &"x".repeat(65)).is_err());
    }
}
