//! Test handler that makes every event observable and drives the websockets API by command.
//!
//! Every event of every connection routed to it is reported as `"<id> <method> <detail>"` to each open inbound session
//! whose URI contains `observer`. Text messages on inbound sessions are commands (see `command`); the reply goes back
//! to the sender. The channel and attachment commands (`join CH`, `leave CH`, `channels`, `publish CH TEXT`,
//! `publish-skip CH TEXT`, `publish-binary CH TEXT`, `members CH LIMIT AFTER|-`, `survey-members CH LIMIT AFTER|-`
//! (`members ID,ID next ID|- missing HOST,HOST|-`), `survey-clients` (`clients ID,ID missing HOST,HOST|-`), `client-join ID CH`,
//! `client-leave ID CH`, `client-channels ID`, `set-attachment TEXT`, `set-attachment-size N`, `clear-attachment`,
//! `attachment`, `client-attachment ID`) reply exactly as the JavaScript and Python recorders do; a refusal is
//! `error <kind>: <detail>`.

#![allow(clippy::print_stderr)]

use wasmsock_sdk::websockets::{self, ClientInfo, ClientOptions, ConnectionState, Direction, Method, ReconnectPolicy};

const SELF: &str = "tests/recorder";

fn on_event() {
    let me = websockets::current_client().info();
    if websockets::is_on_close() {
        // To the host log: a test can see onclose even when no observer is left to tell (at shutdown).
        eprintln!("recorder saw onclose of {}", me.id);
    }
    report(&me);
    if websockets::is_on_message()
        && me.direction == Direction::Inbound
        && !me.uri.contains("observer")
        && let Some(text) = websockets::get_message()
    {
        let reply = command(&text);
        if !reply.is_empty() {
            let _ = websockets::send(&reply);
        }
    }
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Onopen => "onopen",
        Method::Onmessage => "onmessage",
        Method::Onerror => "onerror",
        Method::Onclose => "onclose",
    }
}

fn report(me: &ClientInfo) {
    let method = websockets::get_method();
    let detail = match method {
        Method::Onmessage => match (websockets::get_message(), websockets::get_binary_message()) {
            (Some(text), _) => text,
            (None, Some(data)) => format!("<{} bytes>", data.len()),
            (None, None) => String::new(),
        },
        Method::Onerror => websockets::get_error().unwrap_or_default(),
        _ => String::new(),
    };
    let line = format!("{} {} {}", me.id, method_name(method), detail);
    for info in websockets::get_clients() {
        let observer = info.direction == Direction::Inbound
            && info.uri.contains("observer")
            && info.state == ConnectionState::Open;
        if observer && let Some(client) = websockets::get_client(&info.id) {
            let _ = client.send(line.trim_end());
        }
    }
}

fn describe(info: &ClientInfo) -> String {
    let direction = match info.direction {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    };
    let state = match info.state {
        ConnectionState::Connecting => "connecting",
        ConnectionState::Open => "open",
        ConnectionState::Closing => "closing",
        ConnectionState::Closed => "closed",
    };
    format!("{}|{}|{}|{}|{direction}|{state}", info.id, info.uri, info.handler, info.endpoint.as_deref().unwrap_or("-"))
}

fn result(outcome: Result<(), websockets::Error>) -> String {
    match outcome {
        Ok(()) => "ok".into(),
        Err(err) => format!("error {err:?}"),
    }
}

/// Runs one command and returns the reply.
fn command(text: &str) -> String {
    let (verb, rest) = text.split_once(' ').unwrap_or((text, ""));
    match verb {
        "echo" => rest.to_owned(),
        "connect" => match websockets::create_websocket(rest, SELF) {
            Ok(client) => format!("created {}", describe(&client.info())),
            Err(err) => format!("error {err:?}"),
        },
        "connect-send" => {
            // The seed's pattern: create, then send at once, before the client can have opened.
            let (uri, message) = rest.split_once(' ').unwrap_or((rest, ""));
            match websockets::create_websocket(uri, SELF) {
                Ok(client) => {
                    let queued = result(client.send(message));
                    format!("created {} send {queued}", describe(&client.info()))
                }
                Err(err) => format!("error {err:?}"),
            }
        }
        "connect-with" => {
            let (uri, handler) = rest.split_once(' ').unwrap_or((rest, ""));
            match websockets::create_websocket(uri, handler) {
                Ok(client) => format!("created {}", describe(&client.info())),
                Err(err) => format!("error {err:?}"),
            }
        }
        "connect-reconnect" => {
            // Reconnect after 50 ms, doubling to at most 200 ms; `max` attempts in a row (0: never give up).
            let (uri, max) = rest.split_once(' ').unwrap_or((rest, "0"));
            let max_attempts = max.parse().ok().filter(|max| *max > 0);
            let policy = ReconnectPolicy { initial_delay_ms: 50, max_delay_ms: 200, max_attempts };
            match websockets::create_websocket_with(uri, SELF, ClientOptions { reconnect: Some(policy) }) {
                Ok(client) => format!("created {}", describe(&client.info())),
                Err(err) => format!("error {err:?}"),
            }
        }
        "connect-many" => {
            let mut words = rest.splitn(4, ' ');
            let count: usize = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            let uri = words.next().unwrap_or_default();
            let handler = words.next().unwrap_or_default();
            let message = words.next().unwrap_or_default();
            let mut failed = 0;
            for _ in 0..count {
                match websockets::create_websocket(uri, handler) {
                    Ok(client) if client.send(message).is_ok() => {}
                    _ => failed += 1,
                }
            }
            format!("created {count}, {failed} failed")
        }
        "connect-engine" => {
            let (uri, engine) = rest.split_once(' ').unwrap_or((rest, ""));
            match websockets::create_websocket_with_engine(uri, SELF, Some(engine)) {
                Ok(client) => format!("created {}", describe(&client.info())),
                Err(err) => format!("error {err:?}"),
            }
        }
        "client-send" => {
            let (id, message) = rest.split_once(' ').unwrap_or((rest, ""));
            match websockets::get_client(id) {
                Some(client) => result(client.send(message)),
                None => "none".into(),
            }
        }
        "client-send-binary" => {
            let (id, message) = rest.split_once(' ').unwrap_or((rest, ""));
            match websockets::get_client(id) {
                Some(client) => result(client.send_binary(message.as_bytes())),
                None => "none".into(),
            }
        }
        "client-close" => match websockets::get_client(rest) {
            Some(client) => result(client.close(Some(1000), Some("done"))),
            None => "none".into(),
        },
        "by-handler" => match websockets::get_client_by_handler(rest) {
            Some(client) => format!("found {}", describe(&client.info())),
            None => "none".into(),
        },
        "clients" => {
            let all: Vec<String> = websockets::get_clients().iter().map(describe).collect();
            format!("clients {}", all.join(";"))
        }
        "close" => {
            let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            result(websockets::close(code.parse().ok(), Some(reason)))
        }
        "protocol" => {
            let info = websockets::current_client().info();
            format!("protocol {}", info.protocol.as_deref().unwrap_or("-"))
        }
        "publish-burst" => {
            // Rust only (for load tests): `publish-burst CH N TAG SIZE` publishes `TAG i ` padded with `.` to SIZE
            // bytes, for i in 0..N, and replies with the sum of the counts.
            let mut words = rest.split(' ');
            let channel = words.next().unwrap_or_default();
            let count: usize = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            let tag = words.next().unwrap_or_default();
            let size: usize = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            let mut total: u64 = 0;
            for i in 0..count {
                let mut message = format!("{tag} {i} ");
                let pad = size.saturating_sub(message.len());
                message.extend(std::iter::repeat_n('.', pad));
                match websockets::publish(channel, &message) {
                    Ok(n) => total += u64::from(n),
                    Err(err) => return refused(&err),
                }
            }
            format!("published {count} queued {total}")
        }
        "burst" => {
            let count: usize = rest.parse().unwrap_or(0);
            let mut refused = 0;
            for i in 0..count {
                if websockets::send(&format!("burst {i}")).is_err() {
                    refused += 1;
                }
            }
            format!("burst done, {refused} refused")
        }
        _ => channel_command(verb, rest).unwrap_or_else(|| format!("unknown command {verb:?}")),
    }
}

/// `error <kind>: <detail>`, as the JavaScript and Python SDKs word a refused call.
fn refused(err: &websockets::Error) -> String {
    match err {
        websockets::Error::UnknownClient(id) => format!("error unknown-client: {id}"),
        websockets::Error::Closed => "error closed: the connection is closing or closed".into(),
        websockets::Error::Invalid(text) => format!("error invalid: {text}"),
        websockets::Error::Limit(text) => format!("error limit: {text}"),
    }
}

fn reply<T>(outcome: Result<T, websockets::Error>, ok: impl FnOnce(T) -> String) -> String {
    outcome.map_or_else(|err| refused(&err), ok)
}

fn names(list: &[String]) -> String {
    if list.is_empty() { "-".into() } else { list.join(",") }
}

fn attachment(data: Option<Vec<u8>>) -> String {
    match data {
        Some(data) => format!("attachment {}", String::from_utf8_lossy(&data)),
        None => "attachment -".into(),
    }
}

/// The channel and attachment commands, replying exactly as the JavaScript and Python recorders do.
fn channel_command(verb: &str, rest: &str) -> Option<String> {
    let (first, second) = rest.split_once(' ').unwrap_or((rest, ""));
    let skip = |skip_self| websockets::PublishOptions { skip_self };
    Some(match verb {
        "join" => reply(websockets::join(rest), |()| "ok".into()),
        "leave" => reply(websockets::leave(rest), |left| format!("left {left}")),
        "channels" => format!("channels {}", names(&websockets::get_channels())),
        "publish" => reply(websockets::publish_with(first, second, skip(false)), |n| format!("queued {n}")),
        "publish-skip" => reply(websockets::publish_with(first, second, skip(true)), |n| format!("queued {n}")),
        "publish-binary" => {
            reply(websockets::publish_binary(first, second.as_bytes(), skip(false)), |n| format!("queued {n}"))
        }
        "members" => {
            let mut words = rest.split(' ');
            let channel = words.next().unwrap_or_default();
            let limit = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            let after = words.next().filter(|after| *after != "-");
            reply(websockets::get_members(channel, after, limit), |page| {
                let ids: Vec<String> = page.members.into_iter().map(|info| info.id).collect();
                format!("members {} next {}", names(&ids), page.next.as_deref().unwrap_or("-"))
            })
        }
        "survey-members" => {
            let mut words = rest.split(' ');
            let channel = words.next().unwrap_or_default();
            let limit = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            let after = words.next().filter(|after| *after != "-");
            reply(websockets::survey_members(channel, after, limit), |survey| {
                let ids: Vec<String> = survey.page.members.into_iter().map(|info| info.id).collect();
                let next = survey.page.next.as_deref().unwrap_or("-").to_owned();
                format!("members {} next {next} missing {}", names(&ids), names(&survey.missing_hosts))
            })
        }
        "survey-clients" => {
            let survey = websockets::survey_clients();
            let ids: Vec<String> = survey.clients.into_iter().map(|info| info.id).collect();
            format!("clients {} missing {}", names(&ids), names(&survey.missing_hosts))
        }
        "client-join" => match websockets::get_client(first) {
            Some(client) => reply(client.join(second), |()| "ok".into()),
            None => "none".into(),
        },
        "client-leave" => match websockets::get_client(first) {
            Some(client) => reply(client.leave(second), |left| format!("left {left}")),
            None => "none".into(),
        },
        "client-channels" => match websockets::get_client(rest) {
            Some(client) => format!("channels {}", names(&client.channels())),
            None => "none".into(),
        },
        "set-attachment" => reply(websockets::set_attachment(rest.as_bytes()), |()| "ok".into()),
        "set-attachment-size" => {
            let size = rest.parse().unwrap_or(0);
            reply(websockets::set_attachment(&vec![b'a'; size]), |()| "ok".into())
        }
        "clear-attachment" => reply(websockets::clear_attachment(), |()| "ok".into()),
        "attachment" => attachment(websockets::get_attachment()),
        "client-attachment" => match websockets::get_client(rest) {
            Some(client) => attachment(client.attachment()),
            None => "none".into(),
        },
        _ => return None,
    })
}

wasmsock_sdk::handler!(on_event);
