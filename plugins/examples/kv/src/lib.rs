//! The key-value example: every text message is a command on the `examples` project's store or configuration, and
//! the reply is one line. The store outlives instances, restarts and deploys; every session (and every host of a
//! cluster) sees the same keys. `help` lists the commands. `get`, `set`, `del`, `incr` go through `wasi:keyvalue` (as
//! code written for Spin does); the rest through wasmsock's `kv` interface (revisions, conditions, time to live,
//! prefixes, quotas) and `wasi:config`.

use wasmsock_sdk::bindings::wasi::config::store as config;
use wasmsock_sdk::bindings::wasi::keyvalue::{atomics, store};
use wasmsock_sdk::bindings::wasmsock::websockets::kv;
use wasmsock_sdk::websockets;

const HELP: &str = "commands: get K | set K V | del K | incr K [N] | entry K | add K V | swap K REV V | \
                    del-if K REV | ttl K SECONDS V | count K SECONDS | list [PREFIX] [AFTER] | usage | config NAME";

fn on_event() {
    if !websockets::is_on_message() {
        return;
    }
    let Some(text) = websockets::get_message() else { return };
    let _ = websockets::send(&run(&text));
}

/// Runs one command and says how it went.
fn run(command: &str) -> String {
    let mut words = command.splitn(2, ' ');
    let verb = words.next().unwrap_or("");
    let rest = words.next().unwrap_or("");
    let answer = match verb {
        "get" | "set" | "del" | "incr" => standard(verb, rest),
        "config" => match config::get(rest) {
            Ok(Some(value)) => Ok(value),
            Ok(None) => Ok("none".to_owned()),
            Err(err) => Err(format!("{err:?}")),
        },
        "help" | "" => Ok(HELP.to_owned()),
        _ => extended(verb, rest),
    };
    answer.unwrap_or_else(|err| format!("error {err}"))
}

/// The commands over `wasi:keyvalue`.
fn standard(verb: &str, rest: &str) -> Result<String, String> {
    let bucket = store::open("default").map_err(describe)?;
    match (verb, rest.split_once(' ')) {
        ("get", _) => Ok(match bucket.get(rest).map_err(describe)? {
            Some(value) => String::from_utf8_lossy(&value).into_owned(),
            None => "none".to_owned(),
        }),
        ("set", Some((key, value))) => bucket.set(key, value.as_bytes()).map(|()| "ok".to_owned()).map_err(describe),
        ("del", _) => bucket.delete(rest).map(|()| "ok".to_owned()).map_err(describe),
        ("incr", split) => {
            let (key, delta) = match split {
                Some((key, delta)) => (key, delta.parse().map_err(|_| format!("invalid: {delta:?} is not a number"))?),
                None => (rest, 1),
            };
            atomics::increment(&bucket, key, delta).map(|sum| sum.to_string()).map_err(describe)
        }
        _ => Err(format!("invalid: {HELP}")),
    }
}

/// The commands over wasmsock's `kv`.
fn extended(verb: &str, rest: &str) -> Result<String, String> {
    let args: Vec<&str> = rest.splitn(3, ' ').collect();
    let number = |text: &str| text.parse::<u64>().map_err(|_| format!("invalid: {text:?} is not a number"));
    let put = |key: &str, value: &str, condition, ttl_seconds| {
        let options = kv::PutOptions { condition, ttl_seconds };
        kv::put(key, value.as_bytes(), options).map(|revision| format!("ok {revision}")).map_err(explain)
    };
    match (verb, args.as_slice()) {
        ("entry", [key]) => Ok(match kv::get_entry(key).map_err(explain)? {
            Some(entry) => {
                let expires = entry.expires_in_ms.map_or(String::new(), |ms| format!(" expires-in-ms={ms}"));
                format!("{} {}{expires}", entry.revision, String::from_utf8_lossy(&entry.value))
            }
            None => "none".to_owned(),
        }),
        ("add", [key, value @ ..]) => put(key, &value.join(" "), kv::Condition::Absent, None),
        ("swap", [key, revision, value]) => put(key, value, kv::Condition::Revision(number(revision)?), None),
        ("del-if", [key, revision]) => kv::delete_if(key, number(revision)?).map(|()| "ok".to_owned()).map_err(explain),
        ("ttl", [key, seconds, value]) => {
            let seconds = u32::try_from(number(seconds)?).map_err(|_| "invalid: too many seconds".to_owned())?;
            put(key, value, kv::Condition::Always, Some(seconds))
        }
        ("count", [key, seconds]) => {
            let seconds = u32::try_from(number(seconds)?).map_err(|_| "invalid: too many seconds".to_owned())?;
            kv::increment_with_ttl(key, 1, Some(seconds)).map(|n| n.to_string()).map_err(explain)
        }
        ("list", args) => {
            let prefix = args.first().copied().unwrap_or("");
            let after = args.get(1).map(|after| (*after).to_owned());
            let page = kv::list_keys(prefix, after.as_deref(), 1000).map_err(explain)?;
            let more = page.next.map_or(String::new(), |next| format!(" (more after {next})"));
            Ok(format!("[{}]{more}", page.keys.join(",")))
        }
        ("usage", _) => {
            let usage = kv::get_usage().map_err(explain)?;
            Ok(format!("keys {}/{} bytes {}/{}", usage.keys, usage.max_keys, usage.bytes, usage.max_bytes))
        }
        _ => Err(format!("invalid: {HELP}")),
    }
}

/// A `wasi:keyvalue` error as one line (its text already says the kind: `limit: ...`).
fn describe(err: store::Error) -> String {
    match err {
        store::Error::NoSuchStore => "no such store".to_owned(),
        store::Error::AccessDenied => "access denied".to_owned(),
        store::Error::Other(text) => text,
    }
}

/// A `kv` error as one line, starting with its kind.
fn explain(err: kv::Error) -> String {
    match err {
        kv::Error::Invalid(text) => format!("invalid: {text}"),
        kv::Error::Limit(text) => format!("limit: {text}"),
        kv::Error::Conflict(Some(revision)) => format!("conflict: the revision is {revision}"),
        kv::Error::Conflict(None) => "conflict: the key is absent".to_owned(),
        kv::Error::Unavailable(text) => format!("unavailable: {text}"),
    }
}

wasmsock_sdk::handler!(on_event);
