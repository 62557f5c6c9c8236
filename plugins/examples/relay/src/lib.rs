//! The relay handler: sessions on its endpoint name an upstream WebSocket in their query (`?to=ws%3A%2F%2F…`); the
//! relay opens one outbound client per upstream, shared by every session that names it, and relays messages both ways:
//! from a session to the upstream, and from the upstream to every session on it. The last session to leave closes the
//! upstream client; an upstream that closes takes its sessions with it (close 1014).
//!
//! The same component handles both sides: inbound events are the sessions', outbound events the upstream clients'.
//!
//! Which upstreams it may reach is not its own business: the host allows only the destinations its descriptor grants
//! (`allowed-outbound-hosts` in `relay.websocket`, loopback), checked on the parsed URI, so a session naming anything
//! else (`ws://127.0.0.1:1@example.com/`, a public host) is refused with 4403.

// A guest logs through stderr: the host tags each line with the handler and connection.
#![allow(clippy::print_stderr)]

use wasmsock_sdk::websockets::{self, ClientInfo, ConnectionState, Direction, Error};

/// The handler name this component is deployed as (its outbound clients' events come back here).
const SELF: &str = "examples/relay";

fn on_event() {
    let me = websockets::current_client().info();
    match me.direction {
        Direction::Inbound => session_event(&me),
        Direction::Outbound => upstream_event(&me),
    }
}

fn session_event(me: &ClientInfo) {
    let Some(upstream) = upstream_of(&me.uri) else {
        if websockets::is_on_open() {
            let _ = websockets::close(Some(4400), Some("name an upstream: ?to=ws%3A%2F%2F127.0.0.1%3A9000%2Fpath"));
        }
        return;
    };
    if websockets::is_on_open() {
        if client_for(&upstream).is_none() {
            match websockets::create_websocket(&upstream, SELF) {
                Ok(_) => {}
                Err(Error::Invalid(why)) => {
                    eprintln!("refused upstream {upstream:?}: {why}");
                    let _ = websockets::close(Some(4403), Some("that upstream is not allowed by this relay"));
                }
                Err(err) => {
                    eprintln!("cannot open upstream {upstream:?}: {err:?}");
                    let _ = websockets::close(Some(1011), Some("cannot open the upstream"));
                }
            }
        }
    } else if websockets::is_on_message() {
        let Some(client) = client_for(&upstream).and_then(|info| websockets::get_client(&info.id)) else {
            let _ = websockets::send("relay: the upstream is gone");
            return;
        };
        let sent = match (websockets::get_message(), websockets::get_binary_message()) {
            (Some(text), _) => client.send(&text),
            (None, Some(data)) => client.send_binary(&data),
            (None, None) => Ok(()),
        };
        if let Err(err) = sent {
            let _ = websockets::send(&format!("relay: not sent upstream: {err:?}"));
        }
    } else if websockets::is_on_close() && sessions_on(&upstream).is_empty() {
        // This session has left the list already: nobody else uses the upstream.
        if let Some(client) = client_for(&upstream).and_then(|info| websockets::get_client(&info.id)) {
            let _ = client.close(Some(1000), Some("no sessions left"));
        }
    }
}

fn upstream_event(me: &ClientInfo) {
    let sessions = sessions_on(&me.uri);
    if websockets::is_on_message() {
        let text = websockets::get_message();
        let data = websockets::get_binary_message();
        for session in sessions {
            let Some(client) = websockets::get_client(&session.id) else {
                continue;
            };
            let _ = match (&text, &data) {
                (Some(text), _) => client.send(text),
                (None, Some(data)) => client.send_binary(data),
                (None, None) => Ok(()),
            };
        }
    } else if websockets::is_on_error() {
        eprintln!("relay: upstream {} failed: {}", me.uri, websockets::get_error().unwrap_or_default());
    } else if websockets::is_on_close() {
        for session in sessions {
            if let Some(client) = websockets::get_client(&session.id) {
                let _ = client.close(Some(1014), Some("the upstream closed"));
            }
        }
    }
}

/// The live outbound client of this relay for `upstream`.
fn client_for(upstream: &str) -> Option<ClientInfo> {
    websockets::get_clients().into_iter().find(|info| {
        info.direction == Direction::Outbound
            && info.handler == SELF
            && info.uri == upstream
            && matches!(info.state, ConnectionState::Connecting | ConnectionState::Open)
    })
}

/// The open sessions of this relay that name `upstream`.
fn sessions_on(upstream: &str) -> Vec<ClientInfo> {
    websockets::get_clients()
        .into_iter()
        .filter(|info| {
            info.direction == Direction::Inbound
                && info.handler == SELF
                && info.state == ConnectionState::Open
                && upstream_of(&info.uri).as_deref() == Some(upstream)
        })
        .collect()
}

/// The decoded `to` parameter of a request URI's query.
fn upstream_of(uri: &str) -> Option<String> {
    let query = uri.split_once('?')?.1;
    query.split('&').find_map(|pair| pair.strip_prefix("to=")).map(percent_decode)
}

fn percent_decode(text: &str) -> String {
    let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (other, _, _) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

wasmsock_sdk::handler!(on_event);
