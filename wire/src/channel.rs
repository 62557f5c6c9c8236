//! Channel names and pages of members: what a valid name is, checked the same way for handlers, the admin API and the CLI.

use crate::conn::ClientInfo;
use crate::limits::MAX_CHANNEL_NAME_BYTES;

/// One page of a channel's members, oldest connection first.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MembersPage {
    /// The members on this page.
    pub members: Vec<ClientInfo>,
    /// The id to resume after for the next page; none when this page is the last.
    pub next: Option<String>,
}

/// Checks a channel name: 1 to [`MAX_CHANNEL_NAME_BYTES`] bytes of UTF-8 with no whitespace and no control
/// characters. The error says what is wrong, for an `invalid` answer.
pub fn check_channel(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a channel name cannot be empty".into());
    }
    if name.len() > MAX_CHANNEL_NAME_BYTES {
        return Err(format!("channel name is {} bytes; at most {MAX_CHANNEL_NAME_BYTES} are allowed", name.len()));
    }
    if let Some(bad) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "channel name {:?} contains {bad:?} (U+{:04X}); whitespace and control characters are not allowed",
            name,
            u32::from(bad)
        ));
    }
    Ok(())
}

/// Splits `PROJECT/CHANNEL` (as the CLI and admin API name a channel) at its first `/`, checking both parts.
pub fn split_project_channel(text: &str) -> Result<(&str, &str), String> {
    let Some((project, channel)) = text.split_once('/') else {
        return Err(format!("{text:?} is not PROJECT/CHANNEL (for example examples/lobby)"));
    };
    if project.is_empty() || project.contains(char::is_whitespace) {
        return Err(format!("{text:?}: the project before the first `/` must be a non-empty name without spaces"));
    }
    check_channel(channel)?;
    Ok((project, channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_and_printable() {
        assert!(check_channel("lobby").is_ok());
        assert!(check_channel("room/42:ä").is_ok());
        assert!(check_channel(&"x".repeat(MAX_CHANNEL_NAME_BYTES)).is_ok());
        let long = check_channel(&"x".repeat(MAX_CHANNEL_NAME_BYTES + 1)).unwrap_err();
        assert!(long.contains("256 bytes"), "{long}");
        // 128 two-byte characters are 256 bytes: the cap is in bytes, not characters.
        assert!(check_channel(&"ä".repeat(128)).is_err());
        assert!(check_channel("").unwrap_err().contains("empty"));
        assert!(check_channel("a b").unwrap_err().contains("' '"));
        assert!(check_channel("a\u{7}b").unwrap_err().contains("U+0007"));
    }

    #[test]
    fn project_and_channel_split_at_the_first_slash() {
        assert_eq!(split_project_channel("examples/lobby"), Ok(("examples", "lobby")));
        assert_eq!(split_project_channel("examples/a/b"), Ok(("examples", "a/b")));
        assert!(split_project_channel("lobby").unwrap_err().contains("PROJECT/CHANNEL"));
        assert!(split_project_channel("/lobby").is_err());
        assert!(split_project_channel("examples/").unwrap_err().contains("empty"));
    }
}
