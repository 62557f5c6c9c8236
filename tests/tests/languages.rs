//! Handlers in JavaScript and Python next to Rust, through one shared in-process host, JavaScript on both of its
//! engines (QuickJS, the default, and SpiderMonkey): one table of echo cases run against the Rust, JavaScript and
//! Python echo plugins; one table of channel and attachment cases run against the recorder in each language, whose
//! replies must be the same; one table of key-value store and configuration cases, likewise, with a handler of
//! another project that cannot see the keys; all four events through the recorder in each language;
//! the JavaScript chat's rooms; handlers that import the SDK as a Dirigible handler does (`sdk/net`, `sdk.net`);
//! outbound clients made by JavaScript and Python handlers, with and without a reconnect policy; a thrown exception
//! reported in the host log and costing only its own event; Python's and JavaScript's HTTP helpers and JavaScript's
//! `fetch` against a local server (and `fetch` on QuickJS saying why it cannot); `setTimeout` and `setInterval` on kept instances and their error
//! on per-event ones; and (ignored) the per-event cost of each language.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::sync::OnceLock;
use std::time::Instant;

use futures_util::SinkExt;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wasmsock::wire::Direction;
use wasmsock_tests::*;

/// The label of JavaScript on its other engine; `cargo xtask guests` builds those components as
/// `tests/components/<name>-spidermonkey.wasm`.
const JS_SPIDERMONKEY: &str = "JavaScript-SpiderMonkey";

/// The echo plugins: (language, endpoint, component).
const ECHOES: [(&str, &str, &str); 4] = [
    ("Rust", "echo", "echo"),
    ("JavaScript", "js-echo", "js-echo"),
    (JS_SPIDERMONKEY, "js-echo-sm", "js-echo-spidermonkey"),
    ("Python", "py-echo", "py-echo"),
];

/// The recorder test components: (language, endpoint, handler).
const RECORDERS: [(&str, &str, &str); 4] = [
    ("Rust", "rec", "tests/recorder"),
    ("JavaScript", "js-rec", "tests/js-recorder"),
    (JS_SPIDERMONKEY, "js-rec-sm", "tests/js-recorder-spidermonkey"),
    ("Python", "py-rec", "tests/py-recorder"),
];

/// The grant of plain HTTP to loopback, on every port.
const HTTP_LOOPBACK: &str = "http://127.0.0.1:*";

/// The JavaScript recorders on `per-connection` endpoints: (language, endpoint, handler).
const KEPT_JS_RECORDERS: [(&str, &str, &str); 2] = [
    ("JavaScript", "js-rec-kept", "tests/js-recorder"),
    (JS_SPIDERMONKEY, "js-rec-sm-kept", "tests/js-recorder-spidermonkey"),
];

/// The Python recorder on a `per-connection` endpoint.
const KEPT_PY_RECORDER: (&str, &str, &str) = ("Python", "py-rec-kept", "tests/py-recorder");

/// The recorders written with the JavaScript and Python SDKs.
const SCRIPT_RECORDERS: [(&str, &str, &str); 3] = [RECORDERS[1], RECORDERS[2], RECORDERS[3]];

/// The handlers that import the SDK the way a Dirigible handler does: (language, endpoint, handler).
const SEEDS: [(&str, &str, &str); 3] = [
    ("JavaScript", "js-seed", "tests/js-seed"),
    (JS_SPIDERMONKEY, "js-seed-sm", "tests/js-seed-spidermonkey"),
    ("Python", "py-seed", "tests/py-seed"),
];

/// The recorder installed in a project of its own (the recorders are all in project `tests`).
const OUTSIDER: &str = "outsider/recorder";

/// The host every test of this file uses: compiling the JavaScript and Python components takes seconds each.
fn host() -> &'static SharedHost {
    static HOST: OnceLock<SharedHost> = OnceLock::new();
    HOST.get_or_init(|| {
        host_log();
        let mut plugins = Plugins::new().handler("examples/js-chat", "js-chat").endpoint("js-chat", "examples/js-chat");
        for (_, endpoint, component) in ECHOES {
            let handler = format!("examples/{component}");
            plugins = plugins.handler(&handler, component).endpoint(endpoint, &handler);
        }
        for (_, endpoint, handler) in RECORDERS {
            let component = handler.trim_start_matches("tests/");
            plugins = plugins.handler(handler, component).endpoint_granted(endpoint, handler, &[LOOPBACK, HTTP_LOOPBACK]);
        }
        // The JavaScript recorders again on endpoints whose instance lives as long as the connection (`setTimeout`).
        for (_, endpoint, handler) in KEPT_JS_RECORDERS.iter().chain([&KEPT_PY_RECORDER]) {
            plugins = plugins.endpoint_with(endpoint, handler, serde_json::json!({ "instance": "per-connection", "allowed-outbound-hosts": [LOOPBACK, HTTP_LOOPBACK] }));
        }
        for (_, endpoint, handler) in SEEDS {
            plugins = plugins.handler(handler, handler.trim_start_matches("tests/")).endpoint(endpoint, handler);
        }
        // A handler of another project, to try the store cases' keys from outside their project.
        plugins = plugins.handler(OUTSIDER, "recorder").endpoint("outsider-rec", OUTSIDER);
        SharedHost::start(plugins)
    })
}

/// The messages every echo plugin must send back unchanged, text as text and binary as binary.
fn echo_cases() -> Vec<(&'static str, Message)> {
    vec![
        ("short text", Message::text("hello")),
        ("empty text", Message::text("")),
        ("text outside ASCII", Message::text("héllo, wörld ✓ 🦀 日本語")),
        ("text that is JSON", Message::text(r#"{"a":[1,2,3],"b":null}"#)),
        ("text with a newline and a NUL", Message::text("line one\nline two\0end")),
        ("large text (256 KiB)", Message::text("x".repeat(256 << 10))),
        ("short binary", Message::binary(vec![0u8, 1, 2, 255])),
        ("empty binary", Message::binary(Vec::<u8>::new())),
        ("every byte value", Message::binary((0..=255u8).collect::<Vec<_>>())),
        ("binary that is valid UTF-8", Message::binary(b"hello".to_vec())),
        ("large binary (1 MiB)", Message::binary((0..1u32 << 20).map(|i| (i % 251) as u8).collect::<Vec<_>>())),
    ]
}

/// The JavaScript engine a component carries, by the names each embeds: componentize-qjs its `quickjs-core` crate,
/// componentize-js the StarlingMonkey runtime (around SpiderMonkey).
fn engine_of(component_name: &str) -> &'static str {
    let bytes = std::fs::read(component(component_name)).unwrap();
    let has = |name: &[u8]| bytes.windows(name.len()).any(|window| window == name);
    match (has(b"quickjs-core"), has(b"StarlingMonkey")) {
        (true, false) => "QuickJS",
        (false, true) => "SpiderMonkey",
        (qjs, sm) => panic!("{component_name}: quickjs-core {qjs}, StarlingMonkey {sm}"),
    }
}

#[test]
fn the_javascript_cases_run_on_both_engines() {
    for (language, _, component_name) in ECHOES.iter().chain(&RECORDERS).chain(&SEEDS) {
        let name = component_name.trim_start_matches("tests/");
        match *language {
            "JavaScript" => assert_eq!(engine_of(name), "QuickJS", "{name}: the SDK's default engine"),
            JS_SPIDERMONKEY => assert_eq!(engine_of(name), "SpiderMonkey", "{name}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn every_echo_case_behaves_the_same_in_rust_javascript_and_python() {
    let host = host();
    for (language, endpoint, _) in ECHOES {
        let mut ws = host.connect(endpoint).await;
        for (case, message) in echo_cases() {
            ws.send(message.clone()).await.unwrap();
            let reply = next(&mut ws).await;
            assert!(
                reply.as_ref() == Some(&message),
                "{language} echo, {case}: sent {} got {:?}",
                describe(&message),
                reply.as_ref().map(describe)
            );
        }
        // Many in flight at once come back complete and in order.
        for i in 0..50 {
            send(&mut ws, &format!("burst {i}")).await;
        }
        for i in 0..50 {
            assert_eq!(text(&mut ws).await, format!("burst {i}"), "{language} echo");
        }
        ws.close(Some(bye())).await.unwrap();
        assert!(close_frame(&mut ws).await.is_some(), "{language} echo answers the close");
    }
}

/// A normal close with a reason (the host answers with the same code; `close_frame` then returns it).
fn bye() -> CloseFrame {
    CloseFrame { code: CloseCode::Normal, reason: "bye".into() }
}

/// A message, shortened for an assertion message.
fn describe(message: &Message) -> String {
    match message {
        Message::Text(text) if text.len() > 40 => format!("text of {} bytes", text.len()),
        Message::Binary(data) if data.len() > 40 => format!("binary of {} bytes", data.len()),
        other => format!("{other:?}"),
    }
}

/// A session of the channel cases (two that share channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    A,
    B,
}

/// One step of the channel and attachment cases. Texts are patterns: `{a}`/`{b}` are the sessions' ids, `{ch}`,
/// `{ch2}` and `{nobody}` channels of this language's run, `{max}` a 255-byte name, `{long}` a 256-byte one, `{tab}`
/// and `{ctl}` names with a tab and a control character, `{a4096}` 4096 `a`s; a reply pattern ending in `…` matches
/// any rest (the host's error detail, which must still be the same in every language). Transcripts also have `{c}`
/// (the third session's id) and `{tag}` (what makes this run's names its own).
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Sends a command on a session and reads its reply.
    Ask(Who, &'static str, &'static str),
    /// Sends a command on a session; its messages are read by the steps after it.
    Tell(Who, &'static str),
    /// The next message on a session is this text.
    Text(Who, &'static str),
    /// The next message on a session is binary: these bytes.
    Binary(Who, &'static str),
}

use Step::{Ask, Binary, Tell, Text};
use Who::{A, B};

/// The channel and attachment cases, in order: each step may depend on the ones before.
const CHANNEL_CASES: &[Step] = &[
    // Join (twice is once), leave (true only for a member), the channels in join order.
    Ask(A, "channels", "channels -"),
    Ask(A, "join {ch}", "ok"),
    Ask(A, "join {ch}", "ok"),
    Ask(A, "join {ch2}", "ok"),
    Ask(A, "channels", "channels {ch},{ch2}"),
    Ask(A, "leave {ch2}", "left true"),
    Ask(A, "leave {ch2}", "left false"),
    Ask(A, "channels", "channels {ch}"),
    Ask(B, "join {ch}", "ok"),
    Ask(B, "channels", "channels {ch}"),
    // Members, oldest first, a page at a time; a channel nobody is in has none; the limit is 1 to 1000.
    Ask(A, "members {ch} 10 -", "members {a},{b} next -"),
    Ask(A, "members {ch} 1 -", "members {a} next {a}"),
    Ask(B, "members {ch} 1 {a}", "members {b} next -"),
    Ask(A, "members {nobody} 10 -", "members - next -"),
    Ask(A, "members {ch} 0 -", "error invalid: …"),
    Ask(A, "members {ch} 1001 -", "error invalid: …"),
    // The same pages with the hosts that did not answer: none, on a host alone.
    Ask(A, "survey-members {ch} 10 -", "members {a},{b} next - missing -"),
    Ask(B, "survey-members {ch} 1 {a}", "members {b} next - missing -"),
    Ask(A, "survey-members {ch} 0 -", "error invalid: …"),
    // A publish reaches every member, the publisher too (before its reply), and counts them.
    Tell(A, "publish {ch} hello, room"),
    Text(A, "hello, room"),
    Text(A, "queued 2"),
    Text(B, "hello, room"),
    Tell(A, "publish-skip {ch} not to myself"),
    Text(A, "queued 1"),
    Text(B, "not to myself"),
    Tell(B, "publish-binary {ch} bytes ✓"),
    Binary(A, "bytes ✓"),
    Binary(B, "bytes ✓"),
    Text(B, "queued 2"),
    Ask(A, "publish {nobody} anyone?", "queued 0"),
    // Another connection's channels, by id.
    Ask(A, "client-leave {b} {ch}", "left true"),
    Ask(A, "client-leave {b} {ch}", "left false"),
    Ask(B, "channels", "channels -"),
    Ask(A, "client-join {b} {ch2}", "ok"),
    Ask(A, "client-channels {b}", "channels {ch2}"),
    Ask(B, "channels", "channels {ch2}"),
    Ask(A, "client-join nobody {ch}", "none"),
    Ask(A, "client-leave nobody {ch}", "none"),
    Ask(A, "client-channels nobody", "none"),
    Tell(A, "publish {ch} only me now"),
    Text(A, "only me now"),
    Text(A, "queued 1"),
    // Names: 1 to 255 bytes with no whitespace or control characters.
    Ask(A, "join {max}", "ok"),
    Ask(A, "leave {max}", "left true"),
    Ask(A, "join {long}", "error invalid: …"),
    Ask(A, "join {tab}", "error invalid: …"),
    Ask(A, "join {ctl}", "error invalid: …"),
    Ask(A, "leave {long}", "error invalid: …"),
    Ask(A, "publish {long} x", "error invalid: …"),
    Ask(A, "publish-binary {tab} x", "error invalid: …"),
    Ask(A, "members {ctl} 1 -", "error invalid: …"),
    Ask(A, "client-join {b} {long}", "error invalid: …"),
    Ask(A, "channels", "channels {ch}"),
    // An attachment stays with its connection from one event to the next, readable by others by id.
    Ask(A, "attachment", "attachment -"),
    Ask(A, "set-attachment alice, who said héllo ✓", "ok"),
    Ask(A, "attachment", "attachment alice, who said héllo ✓"),
    Ask(B, "client-attachment {a}", "attachment alice, who said héllo ✓"),
    Ask(B, "attachment", "attachment -"),
    Ask(A, "client-attachment {b}", "attachment -"),
    Ask(A, "client-attachment nobody", "none"),
    // At most 4096 bytes; a refused one leaves the old one.
    Ask(A, "set-attachment-size 4096", "ok"),
    Ask(A, "attachment", "attachment {a4096}"),
    Ask(A, "set-attachment-size 4097", "error limit: …"),
    Ask(A, "attachment", "attachment {a4096}"),
    Ask(A, "clear-attachment", "ok"),
    Ask(A, "attachment", "attachment -"),
    Ask(B, "client-attachment {a}", "attachment -"),
    // Nothing else was queued on either session.
    Ask(A, "echo end", "end"),
    Ask(B, "echo end", "end"),
];

/// The concrete values of one language's run of [`CHANNEL_CASES`], for the patterns' placeholders.
struct Names(Vec<(&'static str, String)>);

impl Names {
    fn new(tag: &str, a: &str, b: &str, c: &str) -> Self {
        // Longest first, so that `normalize` never replaces a part of a longer value (ids `s1` and `s12`).
        let mut names = vec![
            ("{long}", "n".repeat(256)),
            ("{max}", "n".repeat(255)),
            ("{a4096}", "a".repeat(4096)),
            ("{ch}", format!("{tag}-room")),
            ("{ch2}", format!("{tag}-other-room")),
            ("{nobody}", format!("{tag}-empty-room")),
            ("{tab}", "a\tb".to_owned()),
            ("{ctl}", "a\u{1}b".to_owned()),
            ("{a}", a.to_owned()),
            ("{b}", b.to_owned()),
            ("{c}", c.to_owned()),
            ("{tag}", tag.to_owned()),
        ];
        names.sort_by_key(|(_, value)| std::cmp::Reverse(value.len()));
        Self(names)
    }

    /// A pattern with its placeholders filled in.
    fn expand(&self, pattern: &str) -> String {
        self.0.iter().fold(pattern.to_owned(), |text, (name, value)| text.replace(name, value))
    }

    /// A reply with this run's values turned back into placeholders, to compare runs.
    fn normalize(&self, reply: &str) -> String {
        self.0.iter().fold(reply.to_owned(), |text, (name, value)| text.replace(value.as_str(), name))
    }
}

/// Whether `reply` is what `pattern` (expanded) says: equal, or, for a pattern ending in `…`, starting with the rest.
fn matches(pattern: &str, reply: &str) -> bool {
    match pattern.strip_suffix('…') {
        Some(prefix) => reply.starts_with(prefix) && reply.len() > prefix.len(),
        None => reply == pattern,
    }
}

/// A reply or message, shortened for an assertion message.
fn shorten(text: &str) -> String {
    if text.chars().count() > 80 {
        format!("{}… ({} bytes)", text.chars().take(60).collect::<String>(), text.len())
    } else {
        text.to_owned()
    }
}

/// Runs [`CHANNEL_CASES`] and the channel cap against one language's recorder; returns the transcript, each line
/// `step | what was heard` with this run's ids and channel names turned back into placeholders.
async fn channel_transcript(host: &SharedHost, language: &str, endpoint: &str) -> Vec<String> {
    let tag = format!("chan-{}", language.to_lowercase());
    let mut a = connect(&format!("{}?who={tag}-a", host.url(endpoint))).await;
    let a_id = own_id(&mut a, &format!("who={tag}-a")).await;
    let mut b = connect(&format!("{}?who={tag}-b", host.url(endpoint))).await;
    let b_id = own_id(&mut b, &format!("who={tag}-b")).await;
    // C only fills its channels up to the cap, at the end.
    let mut c = connect(&format!("{}?who={tag}-c", host.url(endpoint))).await;
    let c_id = own_id(&mut c, &format!("who={tag}-c")).await;
    let names = Names::new(&tag, &a_id, &b_id, &c_id);
    let mut transcript = Vec::new();
    for (i, step) in CHANNEL_CASES.iter().enumerate() {
        let who = match *step {
            Ask(who, ..) | Tell(who, _) | Text(who, _) | Binary(who, _) => who,
        };
        let ws = if who == A { &mut a } else { &mut b };
        let (sent, heard, expected) = match *step {
            Ask(_, command, reply) => {
                send(ws, &names.expand(command)).await;
                (command, Message::text(text(ws).await), Message::text(names.expand(reply)))
            }
            Tell(_, command) => {
                send(ws, &names.expand(command)).await;
                transcript.push(format!("{who:?} tells {command}"));
                continue;
            }
            Text(_, message) => ("(reads)", next(ws).await.expect("a message"), Message::text(names.expand(message))),
            Binary(_, message) => {
                let expected = Message::binary(names.expand(message).into_bytes());
                ("(reads)", next(ws).await.expect("a message"), expected)
            }
        };
        let ok = match (&heard, &expected) {
            (Message::Text(heard), Message::Text(expected)) => matches(expected.as_str(), heard.as_str()),
            (heard, expected) => heard == expected,
        };
        let shown = match &heard {
            Message::Text(text) => text.to_string(),
            other => format!("{other:?}"),
        };
        assert!(
            ok,
            "{language}, step {i} {step:?}: expected {}, got {}",
            shorten(&format!("{expected:?}")),
            shorten(&shown)
        );
        transcript.push(format!("{who:?} {sent} | {}", names.normalize(&shown)));
    }

    // A connection leaves every channel by itself when it ends.
    b.close(Some(bye())).await.unwrap();
    assert!(close_frame(&mut b).await.is_some(), "{language}");
    let members = names.expand("members {ch2} 10 -");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let reply = command(&mut a, &members).await;
        if reply == "members - next -" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{language}: B stays in {{ch2}} after it ended: {reply}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let reply = command(&mut a, &names.expand("client-channels {b}")).await;
    assert_eq!(reply, "none", "{language}");

    // At most 128 channels per connection: the 129th join is a limit error, the others stay.
    for i in 0..128 {
        assert_eq!(command(&mut c, &format!("join {tag}-many-{i}")).await, "ok", "{language}: join {i}");
    }
    let refused = command(&mut c, &format!("join {tag}-many-128")).await;
    assert!(refused.starts_with("error limit: "), "{language}: {refused}");
    transcript.push(format!("C join the 129th channel | {}", names.normalize(&refused)));
    let channels = command(&mut c, "channels").await;
    let expected: Vec<String> = (0..128).map(|i| format!("{tag}-many-{i}")).collect();
    assert_eq!(channels, format!("channels {}", expected.join(",")), "{language}");
    c.close(Some(bye())).await.unwrap();
    assert!(close_frame(&mut c).await.is_some(), "{language}");
    a.close(Some(bye())).await.unwrap();
    assert!(close_frame(&mut a).await.is_some(), "{language}");
    transcript
}

#[tokio::test]
async fn every_channel_and_attachment_case_replies_the_same_in_rust_javascript_and_python() {
    let host = host();
    let mut transcripts = Vec::new();
    for (language, endpoint, _) in RECORDERS {
        transcripts.push((language, channel_transcript(host, language, endpoint).await));
    }
    // The replies the patterns leave open (the host's error details) are the same too, line by line.
    let (reference, expected) = &transcripts[0];
    for (language, transcript) in &transcripts[1..] {
        assert_eq!(transcript.len(), expected.len(), "{language} against {reference}");
        for (line, (got, want)) in transcript.iter().zip(expected).enumerate() {
            assert_eq!(shorten(got), shorten(want), "{language} against {reference}, line {line}");
            assert_eq!(got, want, "{language} against {reference}, line {line}");
        }
    }
}

/// One step of the store and configuration cases.
#[derive(Debug, Clone, Copy)]
enum KvStep {
    /// Sends a command and reads its reply. Patterns: `{k}` is this language's key prefix (the recorders share their
    /// project's store), `{long}` a 513-byte key; in a reply `{new-rev}` is any number, kept as `{rev}` for the steps
    /// after it (each larger than the one before: revisions are never reused), and a pattern ending in `…` matches
    /// any rest (which must still be the same in every language).
    Ask(&'static str, &'static str),
    /// Waits this many milliseconds (for a time to live to run out).
    Sleep(u64),
}

use KvStep::Sleep;

/// The JSON the store cases write and read back: keys in sorted order and no spaces, as every language prints it.
const KV_JSON: &str = r#"{"a":[1,2.5,null],"n":-3,"s":"héllo ✓"}"#;

/// The key-value store and configuration cases, in order: each step may depend on the ones before.
const KV_CASES: &[KvStep] = &[
    // Get, set, exists, delete; an empty value is a value; deleting an absent key is fine.
    KvStep::Ask("kv-get {k}a", "none"),
    KvStep::Ask("kv-exists {k}a", "false"),
    KvStep::Ask("kv-set {k}a héllo wörld ✓", "ok"),
    KvStep::Ask("kv-get {k}a", "value héllo wörld ✓"),
    KvStep::Ask("kv-exists {k}a", "true"),
    KvStep::Ask("kv-set {k}b ", "ok"),
    KvStep::Ask("kv-get {k}b", "value "),
    KvStep::Ask("kv-del {k}b", "ok"),
    KvStep::Ask("kv-get {k}b", "none"),
    KvStep::Ask("kv-del {k}b", "ok"),
    // Every key (getKeys pages through the store), and pages of keys by prefix.
    KvStep::Ask("kv-set {k}list-2 x", "ok"),
    KvStep::Ask("kv-set {k}list-1 x", "ok"),
    KvStep::Ask("kv-set {k}list-3 x", "ok"),
    KvStep::Ask("kv-keys {k}list-", "keys {k}list-1,{k}list-2,{k}list-3"),
    KvStep::Ask("kv-list {k}list- 2 -", "keys {k}list-1,{k}list-2 next {k}list-2"),
    KvStep::Ask("kv-list {k}list- 2 {k}list-2", "keys {k}list-3 next -"),
    KvStep::Ask("kv-list {k}nothing- 10 -", "keys - next -"),
    KvStep::Ask("kv-list {k}list- 0 -", "error invalid: …"),
    // Counters: decimal text, negative deltas (which SpiderMonkey's bindings cannot pass: the SDK writes them at a
    // revision instead); a value that is not a number is refused; a window counter keeps its time to live.
    KvStep::Ask("kv-incr {k}n 5", "5"),
    KvStep::Ask("kv-incr {k}n -7", "-2"),
    KvStep::Ask("kv-get {k}n", "value -2"),
    KvStep::Ask("kv-incr {k}neg -4", "-4"),
    KvStep::Ask("kv-incr {k}max 9007199254740991", "9007199254740991"),
    KvStep::Ask("kv-incr {k}a 1", "error invalid: …"),
    KvStep::Ask("kv-incr-ttl {k}rate 1 60", "1"),
    KvStep::Ask("kv-incr-ttl {k}rate 1 60", "2"),
    KvStep::Ask("kv-entry {k}rate", "entry 2 rev {new-rev} ttl yes"),
    KvStep::Ask("kv-incr-ttl {k}rate -3 60", "-1"),
    KvStep::Ask("kv-entry {k}rate", "entry -1 rev {new-rev} ttl yes"),
    // Compare-and-swap: a swap after another write fails, and the other write stays.
    KvStep::Ask("kv-cas {k}c first", "read - swapped true"),
    KvStep::Ask("kv-cas {k}c second", "read first swapped true"),
    KvStep::Ask("kv-cas-race {k}c third other", "read second swapped false"),
    KvStep::Ask("kv-get {k}c", "value other"),
    // Conditional writes and deletes by revision; a conflict names the key's current revision.
    KvStep::Ask("kv-put {k}p v1 absent -", "rev {new-rev}"),
    KvStep::Ask("kv-put {k}p v2 absent -", "error conflict: the key's revision is {rev}"),
    KvStep::Ask("kv-entry {k}p", "entry v1 rev {rev} ttl no"),
    KvStep::Ask("kv-put {k}p v2 {rev} -", "rev {new-rev}"),
    KvStep::Ask("kv-put {k}p v3 1 -", "error conflict: the key's revision is {rev}"),
    KvStep::Ask("kv-del-if {k}p 1", "error conflict: the key's revision is {rev}"),
    KvStep::Ask("kv-get {k}p", "value v2"),
    KvStep::Ask("kv-del-if {k}p {rev}", "ok"),
    KvStep::Ask("kv-entry {k}p", "none"),
    KvStep::Ask("kv-put {k}p v4 {rev} -", "error conflict: the key's revision is none (absent)"),
    KvStep::Ask("kv-put {k}p v5 absent -", "rev {new-rev}"),
    // A time to live: shown in the entry, cleared by a write without one; 0 is refused; a key past it is gone.
    KvStep::Ask("kv-ttl {k}t v 60", "ok"),
    KvStep::Ask("kv-entry {k}t", "entry v rev {new-rev} ttl yes"),
    KvStep::Ask("kv-set {k}t w", "ok"),
    KvStep::Ask("kv-entry {k}t", "entry w rev {new-rev} ttl no"),
    KvStep::Ask("kv-ttl {k}t v 0", "error invalid: …"),
    KvStep::Ask("kv-put {k}gone v always 1", "rev {new-rev}"),
    KvStep::Ask("kv-get {k}gone", "value v"),
    // Quotas and checks: the largest value fits, one byte more is a limit error naming the quota; a long key.
    KvStep::Ask("kv-set-size {k}big 131072", "ok"),
    KvStep::Ask("kv-set-size {k}big 131073", "error limit: value-bytes (131072): the value has 131073"),
    KvStep::Ask("kv-get {long}", "error invalid: a key has at most 512 bytes, this one 513"),
    KvStep::Ask("kv-set {long} x", "error invalid: a key has at most 512 bytes, this one 513"),
    KvStep::Ask("kv-del {k}big", "ok"),
    KvStep::Ask("kv-usage", "usage has-keys true max-keys 10000 max-bytes 67108864 max-value-bytes 131072"),
    // JSON written and read back (Spin's setJson/getJson), stored as its text.
    KvStep::Ask("kv-json-set {k}j {json}", "ok"),
    KvStep::Ask("kv-json-get {k}j", "json {json}"),
    KvStep::Ask("kv-get {k}j", "value {json}"),
    KvStep::Ask("kv-json-get {k}nothing", "none"),
    // Only the project's own store opens.
    KvStep::Ask("kv-open default", "ok"),
    KvStep::Ask("kv-open other", "error no-such-store"),
    // The project's configuration, secrets included.
    KvStep::Ask("config greeting", "config hello, world ✓"),
    KvStep::Ask("config missing", "none"),
    KvStep::Ask("config-all", "config greeting=hello, world ✓,token=s3cret"),
    // The key with one second to live is gone after it.
    Sleep(1_100),
    KvStep::Ask("kv-get {k}gone", "none"),
    KvStep::Ask("kv-exists {k}gone", "false"),
    KvStep::Ask("kv-entry {k}gone", "none"),
];

/// Runs [`KV_CASES`] against one language's recorder; returns the transcript (`command | reply`, with this run's
/// key prefix and revisions as placeholders).
async fn kv_transcript(host: &SharedHost, language: &str, endpoint: &str) -> Vec<String> {
    let prefix = format!("kv-{}-", language.to_lowercase());
    let long = "k".repeat(513);
    let mut rev: Option<u64> = None;
    let mut ws = host.connect(endpoint).await;
    let mut transcript = Vec::new();
    for (i, step) in KV_CASES.iter().enumerate() {
        let (command, pattern) = match *step {
            KvStep::Ask(command, pattern) => (command, pattern),
            Sleep(ms) => {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                continue;
            }
        };
        let expand = |text: &str, rev: Option<u64>| {
            let text = text.replace("{k}", &prefix).replace("{long}", &long).replace("{json}", KV_JSON);
            match rev {
                Some(rev) => text.replace("{rev}", &rev.to_string()),
                None => text,
            }
        };
        let reply = self::command(&mut ws, &expand(command, rev)).await;
        let expected = expand(pattern, rev);
        let ok = match expected.split_once("{new-rev}") {
            Some((before, after)) => {
                let number = reply.strip_prefix(before).and_then(|rest| rest.strip_suffix(after));
                match number.and_then(|n| n.parse::<u64>().ok()) {
                    Some(new) => {
                        assert!(rev.is_none_or(|old| new > old), "{language}, step {i}: revision {new} after {rev:?}");
                        rev = Some(new);
                        true
                    }
                    None => false,
                }
            }
            None => matches(&expected, &reply),
        };
        assert!(ok, "{language}, step {i} {command:?}: expected {}, got {}", shorten(&expected), shorten(&reply));
        let heard = if pattern.ends_with('…') { reply.replace(&prefix, "{k}") } else { pattern.to_owned() };
        transcript.push(format!("{command} | {heard}"));
    }
    ws.close(Some(bye())).await.unwrap();
    assert!(close_frame(&mut ws).await.is_some(), "{language}");
    transcript
}

#[tokio::test]
async fn every_store_and_configuration_case_replies_the_same_in_rust_javascript_and_python() {
    let host = host();
    for (key, value, secret) in [("greeting", "hello, world ✓", false), ("token", "s3cret", true)] {
        let value = wasmsock::wire::kv::ConfigValue::new(value.to_owned(), secret);
        host.app.store.set_config("tests", key, value).await.unwrap();
    }
    let mut transcripts = Vec::new();
    for (language, endpoint, _) in RECORDERS {
        transcripts.push((language, kv_transcript(host, language, endpoint).await));
    }
    let (reference, expected) = &transcripts[0];
    for (language, transcript) in &transcripts[1..] {
        assert_eq!(transcript, expected, "{language} against {reference}");
    }

    // A handler of another project sees none of it: not the keys, not the configuration; its own key of the same
    // name is its own.
    let mut outsider = host.connect("outsider-rec").await;
    assert_eq!(command(&mut outsider, "kv-get kv-rust-a").await, "none");
    assert_eq!(command(&mut outsider, "kv-keys kv-").await, "keys -");
    assert_eq!(command(&mut outsider, "kv-list kv- 10 -").await, "keys - next -");
    assert_eq!(command(&mut outsider, "config greeting").await, "none");
    assert_eq!(command(&mut outsider, "config-all").await, "config -");
    assert_eq!(command(&mut outsider, "kv-set kv-rust-a outsider's").await, "ok");
    assert_eq!(command(&mut outsider, "kv-get kv-rust-a").await, "value outsider's");
    let mut insider = host.connect("rec").await;
    assert_eq!(command(&mut insider, "kv-get kv-rust-a").await, "value héllo wörld ✓");
}

#[tokio::test]
async fn all_four_events_reach_the_recorder_in_every_language() {
    let host = host();
    for (language, endpoint, _) in RECORDERS {
        let mut observer = Observer::open(host, endpoint).await;
        // A clean close: onopen, the messages, onclose.
        let marker = format!("who={language}-clean");
        let mut ws = connect(&format!("{}?{marker}", host.url(endpoint))).await;
        let id = own_id(&mut ws, &marker).await;
        send(&mut ws, "echo hi").await;
        assert_eq!(text(&mut ws).await, "hi", "{language}");
        ws.send(Message::binary(vec![7u8; 3])).await.unwrap();
        ws.close(Some(bye())).await.unwrap();
        assert!(close_frame(&mut ws).await.is_some(), "{language}");
        assert_eq!(
            observer.events_until_close(&id).await,
            ["onopen", "onmessage clients", "onmessage echo hi", "onmessage <3 bytes>", "onclose"],
            "{language}"
        );

        // A client that vanishes without a close frame: onerror, then onclose.
        let marker = format!("who={language}-vanish");
        let mut ws = connect(&format!("{}?{marker}", host.url(endpoint))).await;
        let id = own_id(&mut ws, &marker).await;
        let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = ws.get_mut() else { unreachable!("plain ws") };
        tcp.shutdown().await.unwrap();
        drop(ws);
        let events = observer.events_until_close(&id).await;
        assert_eq!(events.len(), 4, "{language}: {events:?}");
        assert_eq!(events[..2], ["onopen", "onmessage clients"], "{language}");
        assert!(
            events[2].starts_with("onerror ") && events[2].contains("without a closing handshake"),
            "{language}: {events:?}"
        );
        assert_eq!(events[3], "onclose", "{language}");

        // A close the handler starts carries its code and reason; a code it may not send is refused.
        let marker = format!("who={language}-closer");
        let mut ws = connect(&format!("{}?{marker}", host.url(endpoint))).await;
        send(&mut ws, "close 1006 nope").await;
        let refused = text(&mut ws).await;
        assert!(refused.starts_with("error") && refused.to_lowercase().contains("invalid"), "{language}: {refused}");
        assert!(refused.contains("1006"), "{language}: {refused}");
        send(&mut ws, "close 4001 go away").await;
        let frame = close_frame(&mut ws).await.expect("a close frame");
        assert_eq!(u16::from(frame.code), 4001, "{language}");
        assert_eq!(frame.reason.as_str(), "go away", "{language}");
    }
}

/// Opens a js-chat session in `room` (none: no query, the lobby) and waits until it is in: its first message comes
/// back to it through the room. Every earlier member of the room gets that message too; the caller reads it there.
async fn chat_member(host: &SharedHost, query: &str, hello: &str) -> Ws {
    let mut ws = connect(&format!("{}{query}", host.url("js-chat"))).await;
    send(&mut ws, hello).await;
    assert_eq!(text(&mut ws).await, hello, "the sender of {hello:?} ({query}) gets it back through its room");
    ws
}

#[tokio::test]
async fn the_javascript_chat_publishes_every_message_to_its_room_only() {
    let host = host();
    // Two rooms and the lobby (no `room`). `grün` is URL-encoded two ways, so the two green sessions meet only if the
    // handler decodes it. This test's rooms are its own: no other test of this file uses js-chat.
    let mut red = vec![chat_member(host, "?room=red", "red 0 here").await];
    red.push(chat_member(host, "?room=red", "red 1 here").await);
    assert_eq!(text(&mut red[0]).await, "red 1 here");
    let mut green = vec![chat_member(host, "?x=1&room=gr%C3%BCn", "green 0 here").await];
    green.push(chat_member(host, "?room=gr%c3%bcn", "green 1 here").await);
    assert_eq!(text(&mut green[0]).await, "green 1 here");
    let mut lobby = chat_member(host, "", "lobby here").await;

    for (i, sender) in [0usize, 1, 0].into_iter().enumerate() {
        send(&mut red[sender], &format!("red message {i} from {sender}")).await;
        for member in red.iter_mut() {
            assert_eq!(text(member).await, format!("red message {i} from {sender}"));
        }
    }
    // The other rooms heard none of it: their next message is their own room's.
    send(&mut green[1], "green message").await;
    for member in green.iter_mut() {
        assert_eq!(text(member).await, "green message");
    }
    send(&mut lobby, "lobby message").await;
    assert_eq!(text(&mut lobby).await, "lobby message");
    // Binary stays binary.
    red[1].send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    for member in red.iter_mut() {
        assert_eq!(binary_message(member).await, [1, 2, 3]);
    }
    // A session that joins later gets what is said from then on, not what was said before.
    red.push(chat_member(host, "?room=red", "red 2 here").await);
    for member in red[..2].iter_mut() {
        assert_eq!(text(member).await, "red 2 here");
    }
    send(&mut red[0], "welcome").await;
    for member in red.iter_mut() {
        assert_eq!(text(member).await, "welcome");
    }
    // A member that leaves gets nothing more, and the others carry on.
    red[1].close(Some(bye())).await.unwrap();
    assert!(close_frame(&mut red[1]).await.is_some());
    send(&mut red[2], "after one left").await;
    for i in [0, 2] {
        assert_eq!(text(&mut red[i]).await, "after one left");
    }
    send(&mut green[0], "green again").await;
    for member in green.iter_mut() {
        assert_eq!(text(member).await, "green again");
    }
    // A room name the host refuses (a space) is told, then the session is closed as a policy violation.
    let mut refused = connect(&format!("{}?room=two+words", host.url("js-chat"))).await;
    let told = text(&mut refused).await;
    assert!(told.starts_with(r#"cannot join room "two words": invalid: "#), "{told}");
    let frame = close_frame(&mut refused).await.expect("a close frame");
    assert_eq!((u16::from(frame.code), frame.reason.as_str()), (1008, "bad room name"));
}

#[tokio::test]
async fn handlers_importing_the_sdk_as_dirigible_handlers_do_build_and_run() {
    let host = host();
    // `import { websockets } from "sdk/net"` and `from sdk.net import websockets`, each answering `seed <message>`.
    for (language, endpoint, _) in SEEDS {
        let mut ws = host.connect(endpoint).await;
        for message in ["hello", "héllo ✓"] {
            send(&mut ws, message).await;
            assert_eq!(text(&mut ws).await, format!("seed {message}"), "{language}");
        }
        ws.close(Some(bye())).await.unwrap();
        assert!(close_frame(&mut ws).await.is_some(), "{language}");
    }
}

/// Sends a command on the driver session and returns the reply.
async fn command(driver: &mut Ws, command: &str) -> String {
    send(driver, command).await;
    text(driver).await
}

/// Whether a `connect-…` reply says the client was created and the message sent with it queued. The client may have
/// opened already by the time the handler reads its state: the connect runs on the host's other threads meanwhile.
fn created_and_queued(reply: &str) -> bool {
    reply.starts_with("created ")
        && (reply.ends_with("|outbound|connecting send ok") || reply.ends_with("|outbound|open send ok"))
}

#[tokio::test]
async fn javascript_and_python_handlers_open_outbound_clients_that_reconnect_or_give_up() {
    let peer = PeerServer::start(PeerMode::Echo).await;
    let closing = PeerServer::start(PeerMode::CloseAfterFirst).await;
    // A port nothing listens on (held bound for the test, so nothing else takes it): connecting is refused at once.
    let (_held, refused_port) = refusing_port();
    let host = host();
    for (language, endpoint, handler) in SCRIPT_RECORDERS {
        let mut observer = Observer::open(host, endpoint).await;
        let mut driver = host.connect(endpoint).await;
        let uri = peer.url(&format!("/{language}"));
        // Dirigible's third argument: only "wasm" (or nothing) is an engine.
        let refused = command(&mut driver, &format!("connect-engine {uri} node")).await;
        assert!(refused.starts_with("error invalid: engine") && refused.contains("node"), "{language}: {refused}");
        // Created and sent to in one event, before it can be open: the send is queued and flushed on open.
        let reply = command(&mut driver, &format!("connect-send {uri} first")).await;
        assert!(created_and_queued(&reply), "{language}: {reply}");
        assert!(reply.contains(&format!("|{uri}|{handler}|-|")), "{language}: {reply}");
        let id = client_id(&reply);
        assert_eq!(observer.expect(&id, "onopen").await, "", "{language}");
        assert_eq!(observer.expect(&id, "onmessage").await, "first", "{language}");
        assert_eq!(
            command(&mut driver, &format!("by-handler {handler}")).await,
            format!("found {id}|{uri}|{handler}|-|outbound|open"),
            "{language}"
        );
        assert_eq!(command(&mut driver, &format!("client-send {id} second")).await, "ok", "{language}");
        assert_eq!(observer.expect(&id, "onmessage").await, "second", "{language}");
        assert_eq!(command(&mut driver, &format!("client-close {id}")).await, "ok", "{language}");
        assert_eq!(observer.expect(&id, "onclose").await, "", "{language}");
        assert_eq!(command(&mut driver, &format!("by-handler {handler}")).await, "none", "{language}");
        // The closed client is gone: sending to it is an unknown-client error, thrown and caught in the handler.
        let gone = command(&mut driver, &format!("client-send {id} third")).await;
        assert!(gone == "none" || gone.starts_with("error unknown-client"), "{language}: {gone}");

        // With a reconnect policy, a server that ends the connection gets a new onopen, not an onclose.
        let uri = closing.url(&format!("/{language}-reconnect"));
        let reply = command(&mut driver, &format!("connect-reconnect {uri} 10 50 -")).await;
        assert!(created_and_queued(&reply), "{language}: {reply}");
        let id = client_id(&reply);
        assert_eq!(observer.expect(&id, "onopen").await, "", "{language}");
        assert_eq!(observer.expect(&id, "onmessage").await, "first", "{language}");
        assert_eq!(observer.expect(&id, "onopen").await, "", "{language}: reconnected");
        assert_eq!(command(&mut driver, &format!("client-send {id} second")).await, "ok", "{language}");
        assert_eq!(observer.expect(&id, "onmessage").await, "second", "{language}");
        assert_eq!(command(&mut driver, &format!("client-close {id}")).await, "ok", "{language}");
        observer.skip_to(&id, "onclose").await;

        // A policy with a limit gives up after that many failed attempts: onerror, onclose, never onopen.
        let refused_uri = format!("ws://127.0.0.1:{refused_port}/{language}");
        let request = format!("connect-reconnect {refused_uri} 10 20 2");
        let reply = command(&mut driver, &request).await;
        let id = client_id(&reply);
        let events = observer.events_until_close(&id).await;
        assert!(events.iter().all(|e| e != "onopen"), "{language}: {events:?}");
        let last_error = events
            .iter()
            .rev()
            .find(|e| e.starts_with("onerror "))
            .unwrap_or_else(|| panic!("{language}: no onerror in {events:?}"));
        assert!(
            last_error.contains("giving up after 2 attempt(s)") && last_error.contains("\"first\""),
            "{language}: {last_error}"
        );
    }
    let outbound = host
        .app
        .hub
        .list()
        .iter()
        .filter(|c| c.direction == Direction::Outbound && c.uri.starts_with(&peer.url("/")))
        .count();
    assert_eq!(outbound, 0, "every client the test opened is gone");
}

#[tokio::test]
async fn an_exception_is_logged_with_its_message_and_costs_only_its_own_event() {
    let host = host();
    let log = host_log();
    for (language, endpoint, handler) in SCRIPT_RECORDERS {
        let mut observer = Observer::open(host, endpoint).await;
        let marker = format!("who={language}-thrower");
        let mut ws = connect(&format!("{}?{marker}", host.url(endpoint))).await;
        let id = own_id(&mut ws, &marker).await;
        let message = format!("{language} handler failed on purpose {id}");
        send(&mut ws, &format!("throw {message}")).await;
        assert_eq!(observer.skip_to(&id, "onmessage").await, "clients", "{language}");
        assert_eq!(observer.expect(&id, "onmessage").await, format!("throw {message}"), "{language}");
        // The host tells the handler, on the same connection, that its previous call failed.
        let error = observer.expect(&id, "onerror").await;
        assert!(error.contains(handler) && error.contains("trapped"), "{language}: {error}");
        // The exception's own message is in the host log, tagged with the handler.
        let line = log
            .line(&format!("the log names {message:?}"), |line| {
                line.contains(&message) && line.contains(&format!("handler={handler}"))
            })
            .await;
        assert!(line.contains("stderr"), "{language}: {line}");
        // The same connection and the other connections carry on.
        send(&mut ws, "echo after").await;
        assert_eq!(text(&mut ws).await, "after", "{language}");
        let mut other = host.connect(endpoint).await;
        send(&mut other, "echo other").await;
        assert_eq!(text(&mut other).await, "other", "{language}");
        ws.close(Some(bye())).await.unwrap();
        assert!(close_frame(&mut ws).await.is_some(), "{language}");
    }
}

/// `TextDecoder` cases: (bytes as hex, `fatal` or not, the text decoded as JSON (`None`: a TypeError), its UTF-8 as hex).
/// The replacement rules are the WHATWG decoder's: one U+FFFD per maximal bad subpart, a leading BOM dropped.
const DECODE_CASES: [(&str, bool, Option<&str>, &str); 8] = [
    ("68c3a96c6c6f20e29c9320f09fa680", false, Some("\"héllo ✓ 🦀\""), "68c3a96c6c6f20e29c9320f09fa680"),
    ("", false, Some("\"\""), ""),
    (
        "61f09f62c080eda080ff",
        false,
        Some("\"a\u{fffd}b\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\""),
        "61efbfbd62efbfbdefbfbdefbfbdefbfbdefbfbdefbfbd",
    ),
    ("efbbbf41", false, Some("\"A\""), "41"),
    ("f4908080", false, Some("\"\u{fffd}\u{fffd}\u{fffd}\u{fffd}\""), "efbfbdefbfbdefbfbdefbfbd"),
    ("41e282", false, Some("\"A\u{fffd}\""), "41efbfbd"),
    ("c3a9", true, Some("\"é\""), "c3a9"),
    ("c3", true, None, ""),
];

#[tokio::test]
async fn javascript_globals_work_the_same_on_quickjs_and_spidermonkey() {
    let host = host();
    let log = host_log();
    for (language, endpoint, handler) in RECORDERS.iter().filter(|(language, ..)| language.starts_with("JavaScript")) {
        let mut ws = host.connect(endpoint).await;
        // TextDecoder and TextEncoder, which the QuickJS prelude provides and SpiderMonkey has.
        for (hex, fatal, text, again) in DECODE_CASES {
            let reply = command(&mut ws, &format!("decode {hex} {}", if fatal { "fatal" } else { "-" })).await;
            let expected = match text {
                Some(text) => format!("decoded {text} {again}"),
                None => "decode failed: TypeError".to_owned(),
            };
            assert_eq!(reply, expected, "{language}: decode {hex}");
        }
        // console.log and console.error reach the host log, tagged with the handler, on stdout and stderr.
        let marker = format!("console-{language}-{}", std::process::id());
        assert_eq!(command(&mut ws, &format!("log {marker}")).await, "logged", "{language}");
        for stream in ["stdout", "stderr"] {
            let line = log
                .line(&format!("{language}'s console line on {stream}"), |line| {
                    line.contains(&format!("{stream} {marker}")) && line.contains(&format!("handler={handler}"))
                })
                .await;
            assert!(line.contains(&format!("stream=\"{stream}\"")), "{language}: {line}");
        }
        ws.close(Some(bye())).await.unwrap();
        assert!(close_frame(&mut ws).await.is_some(), "{language}");
    }
}

#[tokio::test]
async fn timers_fire_in_javascript_and_python_as_in_rust() {
    let host = host();
    for (language, endpoint, _) in SCRIPT_RECORDERS {
        let mut ws = host.connect(endpoint).await;
        assert_eq!(command(&mut ws, "timer 60 second").await, "armed 1", "{language}");
        assert_eq!(command(&mut ws, "timer 20 first").await, "armed 2", "{language}");
        assert_eq!(text(&mut ws).await, "fired 2 first", "{language}");
        assert_eq!(text(&mut ws).await, "fired 1 second", "{language}");
        let refused = command(&mut ws, "timer 0 never").await;
        assert!(refused.starts_with("error invalid:") && refused.contains(" 0"), "{language}: {refused}");
    }
}

#[tokio::test]
async fn every_instance_draws_its_own_random_numbers_in_javascript_and_python() {
    let host = host();
    for (language, endpoint, _) in SCRIPT_RECORDERS {
        // The recorders run per event: every command is a fresh instance of a build-time snapshot.
        let mut ws = host.connect(endpoint).await;
        let mut draws = std::collections::HashSet::new();
        for _ in 0..4 {
            let reply = command(&mut ws, "random").await;
            let mut words = reply.split(' ');
            assert_eq!(words.next(), Some("random"), "{language}: {reply}");
            let value: f64 = words.next().unwrap().parse().unwrap();
            assert!((0.0..1.0).contains(&value), "{language}: {reply}");
            if language.starts_with("JavaScript") {
                let uuid = words.next().unwrap();
                let groups: Vec<&str> = uuid.split('-').collect();
                assert_eq!(groups.iter().map(|g| g.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12], "{language}: {uuid}");
                assert!(groups[2].starts_with('4') && "89ab".contains(&groups[3][..1]), "{language}: v4 {uuid}");
                assert_eq!(words.next(), Some("2"), "{language}: getRandomValues");
                draws.insert(uuid.to_owned());
            }
            draws.insert(value.to_string());
        }
        let expected = if language.starts_with("JavaScript") { 8 } else { 4 };
        assert_eq!(draws.len(), expected, "{language}: instances drew the same numbers: {draws:?}");
    }
}

#[tokio::test]
async fn javascript_and_python_handlers_send_http_requests_under_the_grants() {
    let host = host();
    let server = http_server::Server::start(http_server::Mode::EchoHeader).await;
    let mut connected = 0;
    for (language, endpoint, _) in SCRIPT_RECORDERS {
        let mut ws = host.connect(endpoint).await;
        // JavaScript: `http.request` on both engines, and `fetch` on SpiderMonkey (QuickJS runs no promise jobs).
        let verbs: &[&str] = match language {
            "Python" => &["fetch"],
            "JavaScript" => &["http"],
            _ => &["http", "fetch"],
        };
        let tag = if language == "Python" { "py" } else { "js" };
        for verb in verbs {
            let get = command(&mut ws, &format!("{verb} GET {}", server.url("/status?x=1"))).await;
            assert_eq!(get, format!("fetched 200 text/plain GET /status?x=1 x-recorder={tag} "), "{language} {verb}");
            let post = command(&mut ws, &format!("{verb} POST {} hello there", server.url("/submit"))).await;
            assert_eq!(post, format!("fetched 200 text/plain POST /submit x-recorder={tag} hello there"), "{language}");
            // A loopback address that no grant names: refused before connecting.
            let refused = command(&mut ws, &format!("{verb} GET http://127.0.0.2:{}/", server.port)).await;
            assert_eq!(refused, "error HttpRequestDenied", "{language} {verb}");
            connected += 2;
        }
        if language == "JavaScript" {
            let refused = command(&mut ws, &format!("fetch GET {}", server.url("/"))).await;
            assert_eq!(refused, "error Unsupported", "QuickJS: fetch throws at once rather than never settle");
        }
    }
    assert_eq!(server.accepted(), connected, "each granted request connected once, no refused one did");
}

#[tokio::test]
async fn set_timeout_and_set_interval_run_their_callbacks_where_the_instance_outlives_the_event() {
    let host = host();
    for (language, endpoint, _) in KEPT_JS_RECORDERS {
        let mut ws = host.connect(endpoint).await;
        assert_eq!(command(&mut ws, "lifecycle").await, "lifecycle per-connection", "{language}");
        assert_eq!(command(&mut ws, "timeout 60 later").await, "timeout set", "{language}");
        assert_eq!(command(&mut ws, "timeout 10 sooner").await, "timeout set", "{language}");
        assert_eq!(text(&mut ws).await, "timeout sooner", "{language}");
        assert_eq!(text(&mut ws).await, "timeout later", "{language}");
        assert_eq!(command(&mut ws, "interval 15 3").await, "interval set", "{language}");
        for tick in 1..=3 {
            assert_eq!(text(&mut ws).await, format!("tick {tick}"), "{language}");
        }
        // Cleared after its third tick: the next message is the reply to the next command, not a fourth tick.
        tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        assert_eq!(command(&mut ws, "echo done").await, "done", "{language}");
    }
    for (language, endpoint, _) in SCRIPT_RECORDERS {
        let mut ws = host.connect(endpoint).await;
        assert_eq!(command(&mut ws, "lifecycle").await, "lifecycle per-event", "{language}");
        if language.starts_with("JavaScript") {
            let refused = command(&mut ws, "timeout 10 never").await;
            assert!(
                refused.starts_with("error setTimeout needs an instance that outlives the event")
                    && refused.contains("per-event"),
                "{language}: {refused}"
            );
        }
    }
}

#[tokio::test]
async fn every_event_of_a_kept_instance_reads_its_own_event() {
    // A kept instance keeps whatever its SDK holds between events: each event must still read its own message and timer.
    let host = host();
    for (language, endpoint, _) in KEPT_JS_RECORDERS.iter().chain([&KEPT_PY_RECORDER]) {
        let mut ws = host.connect(endpoint).await;
        assert_eq!(command(&mut ws, "echo one").await, "one", "{language}");
        assert_eq!(command(&mut ws, "echo two").await, "two", "{language}");
        assert_eq!(command(&mut ws, "timer 10 first").await, "armed 1", "{language}");
        assert_eq!(text(&mut ws).await, "fired 1 first", "{language}");
        assert_eq!(command(&mut ws, "timer 10 second").await, "armed 2", "{language}");
        assert_eq!(text(&mut ws).await, "fired 2 second", "{language}");
        assert_eq!(command(&mut ws, "echo three").await, "three", "{language}");
    }
}

/// Prints, for each language's echo plugin, the component's size, the time the host takes to compile it, and the mean
/// time of a round trip through the host (one event: a fresh instance, the call, the send, plus the client's own
/// WebSocket work). Figures only, never asserted.
///
/// Run with `cargo test -p wasmsock-tests --release --test languages -- --ignored --nocapture per_event_cost`.
#[tokio::test]
#[ignore = "a measurement, not a check; run it on purpose"]
async fn per_event_cost() {
    const ROUND_TRIPS: u32 = 500;
    let host = host();
    let runtime = wasmsock::runtime::Runtime::new(&wasmsock::Limits::default()).unwrap();
    for (language, endpoint, component_name) in ECHOES {
        let bytes = std::fs::read(component(component_name)).unwrap();
        let compiling = Instant::now();
        runtime.compile(component_name, bytes.clone()).unwrap();
        let compile = compiling.elapsed();
        let mut ws = host.connect(endpoint).await;
        for _ in 0..20 {
            send(&mut ws, "warm up").await;
            text(&mut ws).await;
        }
        let started = Instant::now();
        for i in 0..ROUND_TRIPS {
            send(&mut ws, &format!("round trip {i}")).await;
            assert_eq!(text(&mut ws).await, format!("round trip {i}"));
        }
        let per_event = started.elapsed() / ROUND_TRIPS;
        eprintln!(
            "{language:<10} component {:>8.0} KB, compiled by the host in {compile:>8.1?}; \
             {ROUND_TRIPS} sequential echo round trips: {per_event:>8.1?} each",
            bytes.len() as f64 / 1e3
        );
    }
}
