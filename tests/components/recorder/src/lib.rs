//! Test handler that makes every event observable and drives the websockets API by command.
//!
//! Every event of every connection routed to it is reported as `"<id> <method> <detail>"` to each open inbound session
//! whose URI contains `observer`. Text messages on inbound sessions are commands (see `command`); the reply goes back
//! to the sender.

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
        _ => format!("unknown command {verb:?}"),
    }
}

wasmsock_sdk::handler!(on_event);
