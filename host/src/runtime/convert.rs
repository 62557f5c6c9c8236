//! Pure conversions between the host's own types and the WIT types the guest sees.

use std::time::Duration;

use wasmsock_wire::channel::MembersPage;
use wasmsock_wire::history::{HistoryPage, Publication, Published, Recovery, StreamPosition};
use wasmsock_wire::{ClientInfo, ClientOptions, ConnError, ConnState, Direction, Frame, Method, Reconnect};

use super::bindings::wasmsock::websockets::websockets as wit;
use super::services::Gathered;

impl From<Method> for wit::Method {
    fn from(method: Method) -> Self {
        match method {
            Method::OnOpen => wit::Method::Onopen,
            Method::OnMessage => wit::Method::Onmessage,
            Method::OnError => wit::Method::Onerror,
            Method::OnClose => wit::Method::Onclose,
            // `method` predates timers: their events are messages without one (`timers.get-event` tells them apart).
            Method::OnTimer | Method::OnAlarm => wit::Method::Onmessage,
        }
    }
}

impl From<Direction> for wit::Direction {
    fn from(direction: Direction) -> Self {
        match direction {
            Direction::Inbound => wit::Direction::Inbound,
            Direction::Outbound => wit::Direction::Outbound,
        }
    }
}

impl From<ConnState> for wit::ConnectionState {
    fn from(state: ConnState) -> Self {
        match state {
            ConnState::Connecting => wit::ConnectionState::Connecting,
            ConnState::Open => wit::ConnectionState::Open,
            ConnState::Closing => wit::ConnectionState::Closing,
            ConnState::Closed => wit::ConnectionState::Closed,
        }
    }
}

impl From<ClientInfo> for wit::ClientInfo {
    fn from(info: ClientInfo) -> Self {
        wit::ClientInfo {
            id: info.id,
            uri: info.uri,
            handler: info.handler,
            endpoint: info.endpoint,
            direction: info.direction.into(),
            state: info.state.into(),
            protocol: info.protocol,
        }
    }
}

impl From<StreamPosition> for wit::StreamPosition {
    fn from(position: StreamPosition) -> Self {
        Self { offset: position.offset, epoch: position.epoch }
    }
}

impl From<wit::StreamPosition> for StreamPosition {
    fn from(position: wit::StreamPosition) -> Self {
        Self { offset: position.offset, epoch: position.epoch }
    }
}

impl From<Published> for wit::Published {
    fn from(published: Published) -> Self {
        Self { queued: published.queued, position: published.position.map(Into::into) }
    }
}

impl From<Publication> for wit::Publication {
    fn from(publication: Publication) -> Self {
        let data = match publication.frame {
            Frame::Binary(data) => wit::MessageData::Binary(data.to_vec()),
            Frame::Text(text) => wit::MessageData::Text(text.as_str().to_owned()),
            // Only data frames are kept.
            _ => wit::MessageData::Binary(Vec::new()),
        };
        Self { offset: publication.offset, time_ms: publication.time_ms, data }
    }
}

impl From<HistoryPage> for wit::HistoryPage {
    fn from(page: HistoryPage) -> Self {
        Self {
            publications: page.publications.into_iter().map(Into::into).collect(),
            epoch: page.epoch,
            top: page.top,
            complete: page.complete,
            next: page.next,
        }
    }
}

impl From<Recovery> for wit::Recovery {
    fn from(recovery: Recovery) -> Self {
        Self {
            recovered: recovery.recovered,
            sent: recovery.sent,
            epoch: recovery.epoch,
            top: recovery.top,
            history: recovery.history,
        }
    }
}

impl From<MembersPage> for wit::MembersPage {
    fn from(page: MembersPage) -> Self {
        Self { members: page.members.into_iter().map(Into::into).collect(), next: page.next }
    }
}

impl From<Gathered<Vec<ClientInfo>>> for wit::ClientsSurvey {
    fn from(gathered: Gathered<Vec<ClientInfo>>) -> Self {
        Self { clients: gathered.answer.into_iter().map(Into::into).collect(), missing_hosts: gathered.missing_hosts }
    }
}

impl From<Gathered<MembersPage>> for wit::MembersSurvey {
    fn from(gathered: Gathered<MembersPage>) -> Self {
        Self { page: gathered.answer.into(), missing_hosts: gathered.missing_hosts }
    }
}

impl From<ConnError> for wit::Error {
    fn from(err: ConnError) -> Self {
        match err {
            ConnError::UnknownClient(id) => wit::Error::UnknownClient(id),
            ConnError::Closed => wit::Error::Closed,
            ConnError::Invalid(text) => wit::Error::Invalid(text),
            ConnError::Limit(text) => wit::Error::Limit(text),
        }
    }
}

impl From<wit::ClientOptions> for ClientOptions {
    fn from(options: wit::ClientOptions) -> Self {
        ClientOptions {
            reconnect: options.reconnect.map(|policy| Reconnect {
                initial: Duration::from_millis(policy.initial_delay_ms.into()),
                max: Duration::from_millis(policy.max_delay_ms.max(policy.initial_delay_ms).into()),
                max_attempts: policy.max_attempts,
            }),
            ..ClientOptions::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_map_one_to_one() {
        let pairs = [
            (Method::OnOpen, wit::Method::Onopen),
            (Method::OnMessage, wit::Method::Onmessage),
            (Method::OnError, wit::Method::Onerror),
            (Method::OnClose, wit::Method::Onclose),
        ];
        for (ours, theirs) in pairs {
            assert_eq!(wit::Method::from(ours), theirs);
        }
    }

    #[test]
    fn client_info_keeps_every_field() {
        let info = ClientInfo {
            id: "c7".into(),
            uri: "ws://127.0.0.1:1/x".into(),
            handler: "p/h".into(),
            endpoint: None,
            direction: Direction::Outbound,
            state: ConnState::Connecting,
            protocol: Some("chat.v1".into()),
        };
        let wit_info = wit::ClientInfo::from(info);
        assert_eq!(wit_info.id, "c7");
        assert_eq!(wit_info.uri, "ws://127.0.0.1:1/x");
        assert_eq!(wit_info.handler, "p/h");
        assert_eq!(wit_info.endpoint, None);
        assert!(matches!(wit_info.direction, wit::Direction::Outbound));
        assert!(matches!(wit_info.state, wit::ConnectionState::Connecting));
        assert_eq!(wit_info.protocol.as_deref(), Some("chat.v1"));
    }

    #[test]
    fn reconnect_options_become_durations_and_the_cap_is_never_below_the_start() {
        let options = wit::ClientOptions {
            reconnect: Some(wit::ReconnectPolicy { initial_delay_ms: 200, max_delay_ms: 50, max_attempts: Some(3) }),
        };
        let reconnect = ClientOptions::from(options).reconnect.unwrap();
        assert_eq!(reconnect.initial, Duration::from_millis(200));
        assert_eq!(reconnect.max, Duration::from_millis(200));
        assert_eq!(reconnect.max_attempts, Some(3));
        assert_eq!(ClientOptions::from(wit::ClientOptions { reconnect: None }), ClientOptions::default());
    }

    #[test]
    fn errors_keep_their_kind_and_text() {
        assert!(
            matches!(wit::Error::from(ConnError::UnknownClient("s1".into())), wit::Error::UnknownClient(id) if id == "s1")
        );
        assert!(matches!(wit::Error::from(ConnError::Closed), wit::Error::Closed));
        assert!(matches!(wit::Error::from(ConnError::Invalid("bad".into())), wit::Error::Invalid(t) if t == "bad"));
        assert!(matches!(wit::Error::from(ConnError::Limit("full".into())), wit::Error::Limit(t) if t == "full"));
    }
}
