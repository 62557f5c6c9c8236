//! Test handler that makes every event observable and drives the websockets API by command.
//!
//! Every event of every connection routed to it is reported as `"<id> <method> <detail>"` to each open inbound session
//! whose URI contains `observer`. Text messages on inbound sessions are commands (see `command`); the reply goes back
//! to the sender. The channel and attachment commands (`join CH`, `leave CH`, `channels`, `publish CH TEXT`,
//! `publish-skip CH TEXT`, `publish-binary CH TEXT`, `members CH LIMIT AFTER|-`, `survey-members CH LIMIT AFTER|-`
//! (`members ID,ID next ID|- missing HOST,HOST|-`), `survey-clients` (`clients ID,ID missing HOST,HOST|-`), `client-join ID CH`,
//! `client-leave ID CH`, `client-channels ID`, `set-attachment TEXT`, `set-attachment-size N`, `clear-attachment`,
//! `attachment`, `client-attachment ID`) and the store and configuration commands (`kv-…`, `config NAME`,
//! `config-all`; see `kv_command`) and the history commands (`hpublish CH TEXT`: `published Q at OFFSET|-`;
//! `history CH LIMIT [SINCE EPOCH]`: `history top T complete C next N|- epoch E items OFFSET:TEXT,…|-`) reply exactly
//! as the JavaScript and Python recorders do; a refusal is `error <kind>: <detail>`.

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
        _ => channel_command(verb, rest)
            .or_else(|| kv_command(verb, rest))
            .unwrap_or_else(|| format!("unknown command {verb:?}")),
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

/// The channel and attachment commands, replying exactly as the JavaScript and Python recorders do (`hjoin` is this
/// recorder's alone: the cluster tests use it).
fn channel_command(verb: &str, rest: &str) -> Option<String> {
    let (first, second) = rest.split_once(' ').unwrap_or((rest, ""));
    let skip = |skip_self| websockets::PublishOptions { skip_self };
    Some(match verb {
        "join" => reply(websockets::join(rest), |()| "ok".into()),
        // A join from the history's end (no position): what a resuming client does, without envelopes.
        "hjoin" => {
            reply(wasmsock_sdk::history::join_from(rest, None, false), |recovery| format!("joined at {}", recovery.top))
        }
        "leave" => reply(websockets::leave(rest), |left| format!("left {left}")),
        "channels" => format!("channels {}", names(&websockets::get_channels())),
        "hpublish" => reply(wasmsock_sdk::history::publish(first, second, skip(false)), |published| {
            let at = published.position.map_or("-".to_owned(), |p| p.offset.to_string());
            format!("published {} at {at}", published.queued)
        }),
        "history" => {
            let mut words = rest.split(' ');
            let channel = words.next().unwrap_or_default();
            let limit = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            let since = words.next().and_then(|n| n.parse().ok());
            let epoch = words.next().unwrap_or_default().to_owned();
            let since = since.map(|offset| wasmsock_sdk::history::StreamPosition { offset, epoch });
            reply(wasmsock_sdk::history::read(channel, since.as_ref(), limit), |page| {
                let items: Vec<String> = page
                    .publications
                    .into_iter()
                    .map(|p| match p.data {
                        wasmsock_sdk::history::MessageData::Text(text) => format!("{}:{text}", p.offset),
                        wasmsock_sdk::history::MessageData::Binary(data) => format!("{}:b{}", p.offset, data.len()),
                    })
                    .collect();
                let next = page.next.map_or("-".to_owned(), |n| n.to_string());
                format!(
                    "history top {} complete {} next {next} epoch {} items {}",
                    page.top,
                    page.complete,
                    page.epoch,
                    names(&items)
                )
            })
        }
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

/// The store and configuration commands, replying exactly as the JavaScript and Python recorders do:
/// `kv-set K V`, `kv-del K`, `kv-ttl K V SECONDS`, `kv-del-if K REV`, `kv-set-size K N` (N bytes of `a`),
/// `kv-json-set K JSON`, `kv-open NAME` (each `ok`); `kv-get K` (`value V`, `none`); `kv-exists K` (`true`, `false`);
/// `kv-keys PREFIX` (every key, those with the prefix: `keys a,b`, `keys -`); `kv-list PREFIX LIMIT AFTER|-`
/// (`keys a,b next K|-`); `kv-incr K N`, `kv-incr-ttl K N SECONDS` (the new value); `kv-cas K NEW` (`read OLD|-
/// swapped true|false`); `kv-cas-race K NEW OTHER` (the same, with `OTHER` written between the read and the swap);
/// `kv-put K V always|absent|REV -|TTL` (`rev N`); `kv-entry K` (`entry V rev N ttl yes|no`, `none`); `kv-usage`
/// (`usage has-keys true|false max-keys N max-bytes N max-value-bytes N`); `kv-json-get K` (`json TEXT`, `none`);
/// `config NAME` (`config V`, `none`); `config-all` (`config a=1,b=2`, `config -`). A key and a word are single
/// words; a value is the rest of the line.
fn kv_command(verb: &str, rest: &str) -> Option<String> {
    use wasmsock_sdk::kv::{PutOptions, Store};
    use wasmsock_sdk::variables;

    if !(verb.starts_with("kv-") || verb.starts_with("config")) {
        return None;
    }
    let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
    let words: Vec<&str> = rest.split(' ').collect();
    let word = |i: usize| words.get(i).copied().unwrap_or_default();
    let number = |i: usize| word(i).parse::<i64>().unwrap_or_default();
    let ttl = |text: &str| text.parse::<u32>().ok();
    let text = |data: Vec<u8>| String::from_utf8_lossy(&data).into_owned();
    let store = match Store::open_default() {
        Ok(store) => store,
        Err(err) => return Some(format!("error {err}")),
    };
    let outcome: Result<String, wasmsock_sdk::kv::Error> = match verb {
        "kv-set" => store.set(key, value.as_bytes()).map(|()| "ok".into()),
        "kv-get" => store.get(key).map(|found| found.map_or_else(|| "none".into(), |v| format!("value {}", text(v)))),
        "kv-del" => store.delete(key).map(|()| "ok".into()),
        "kv-exists" => store.exists(key).map(|found| found.to_string()),
        "kv-keys" => store.get_keys().map(|keys| {
            let mine: Vec<String> = keys.into_iter().filter(|k| k.starts_with(key)).collect();
            format!("keys {}", names(&mine))
        }),
        "kv-list" => {
            let after = Some(word(2)).filter(|after| *after != "-");
            store
                .list(word(0), after, word(1).parse().unwrap_or(0))
                .map(|page| format!("keys {} next {}", names(&page.keys), page.next.as_deref().unwrap_or("-")))
        }
        "kv-incr" => store.increment(word(0), number(1)).map(|n| n.to_string()),
        "kv-incr-ttl" => store.increment_with_ttl(word(0), number(1), ttl(word(2))).map(|n| n.to_string()),
        "kv-cas" | "kv-cas-race" => store.cas(word(0)).and_then(|cas| {
            let read = cas.current()?.map_or_else(|| "-".into(), text);
            if verb == "kv-cas-race" {
                store.set(word(0), word(2).as_bytes())?;
            }
            Ok(format!("read {read} swapped {}", cas.swap(word(1).as_bytes())?))
        }),
        "kv-put" => {
            let options = match word(2) {
                "always" => PutOptions::always(),
                "absent" => PutOptions::if_absent(),
                revision => PutOptions::if_revision(revision.parse().unwrap_or(0)),
            };
            let options = match ttl(word(3)) {
                Some(seconds) => options.ttl(seconds),
                None => options,
            };
            store.put(word(0), word(1).as_bytes(), options).map(|revision| format!("rev {revision}"))
        }
        "kv-ttl" => store
            .put(word(0), word(1).as_bytes(), PutOptions::always().ttl(ttl(word(2)).unwrap_or(0)))
            .map(|_| "ok".into()),
        "kv-entry" => store.get_entry(key).map(|entry| match entry {
            Some(entry) => format!(
                "entry {} rev {} ttl {}",
                text(entry.value),
                entry.revision,
                if entry.expires_in_ms.is_some() { "yes" } else { "no" }
            ),
            None => "none".into(),
        }),
        "kv-del-if" => store.delete_if(word(0), word(1).parse().unwrap_or(0)).map(|()| "ok".into()),
        "kv-set-size" => store.set(word(0), &vec![b'a'; word(1).parse().unwrap_or(0)]).map(|()| "ok".into()),
        "kv-usage" => store.usage().map(|usage| {
            format!(
                "usage has-keys {} max-keys {} max-bytes {} max-value-bytes {}",
                usage.keys > 0,
                usage.max_keys,
                usage.max_bytes,
                usage.max_value_bytes
            )
        }),
        "kv-json-set" => match serde_json::from_str::<serde_json::Value>(value) {
            Ok(json) => store.set_json(key, &json).map(|()| "ok".into()),
            Err(err) => Ok(format!("bad json {err}")),
        },
        "kv-json-get" => store.get_json::<serde_json::Value>(key).map(|json| match json {
            Some(json) => format!("json {json}"),
            None => "none".into(),
        }),
        "kv-open" => Store::open(rest).map(|_| "ok".into()),
        "config" => {
            return Some(match variables::get(rest) {
                Ok(Some(value)) => format!("config {value}"),
                Ok(None) => "none".into(),
                Err(err) => format!("error {err:?}"),
            });
        }
        "config-all" => {
            return Some(match variables::get_all() {
                Ok(all) => {
                    let pairs: Vec<String> = all.into_iter().map(|(name, value)| format!("{name}={value}")).collect();
                    format!("config {}", names(&pairs))
                }
                Err(err) => format!("error {err:?}"),
            });
        }
        _ => return None,
    };
    Some(outcome.unwrap_or_else(|err| format!("error {err}")))
}

wasmsock_sdk::handler!(on_event);
