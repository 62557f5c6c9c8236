//! What handlers are told happened: the method (`onopen`, …) and what they can read about it.

/// The kind of event (Dirigible's `getMethod()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The connection opened.
    OnOpen,
    /// A data message arrived.
    OnMessage,
    /// Something went wrong.
    OnError,
    /// The connection ended.
    OnClose,
    /// A timer armed on the connection fired (WIT `timers.get-event`; `get-method` answers `onmessage` for it).
    OnTimer,
    /// An alarm of the project fired; no connection is current (`get-method` answers `onmessage` for it).
    OnAlarm,
}

impl Method {
    /// The name handlers see (`onopen`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::OnOpen => "onopen",
            Method::OnMessage => "onmessage",
            Method::OnError => "onerror",
            Method::OnClose => "onclose",
            Method::OnTimer => "ontimer",
            Method::OnAlarm => "onalarm",
        }
    }
}

/// A data message's payload, the frame's own reference-counted bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A text message.
    Text(crate::frame::Utf8Bytes),
    /// A binary message.
    Binary(crate::frame::Bytes),
}

/// What happened, with what the handler can read about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// The connection opened.
    Open,
    /// A data message arrived.
    Message(Payload),
    /// Something went wrong; the text says what.
    Error(String),
    /// The connection ended.
    Close,
    /// A timer armed on the connection fired.
    Timer {
        /// The id `set-timer` returned.
        id: u64,
        /// What the handler gave it.
        payload: crate::frame::Bytes,
    },
    /// An alarm of the project fired.
    Alarm {
        /// Its name.
        name: String,
        /// What the handler gave it.
        payload: crate::frame::Bytes,
    },
}

impl EventKind {
    /// The method handlers see for this event.
    pub fn method(&self) -> Method {
        match self {
            EventKind::Open => Method::OnOpen,
            EventKind::Message(_) => Method::OnMessage,
            EventKind::Error(_) => Method::OnError,
            EventKind::Close => Method::OnClose,
            EventKind::Timer { .. } => Method::OnTimer,
            EventKind::Alarm { .. } => Method::OnAlarm,
        }
    }
}
