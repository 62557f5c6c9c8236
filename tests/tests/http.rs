//! Outbound HTTP (`wasi:http`) through the fetch example (`plugins/examples/fetch`, Rust, `wasmsock_sdk::http`): GET
//! and POST to a local HTTP/1.1 server on 127.0.0.1 port 0; refusals (an ungranted host, another port, userinfo, a
//! name resolving to loopback that no grant names as an address), an oversized response, a server that never
//! answers (no handler timeout meanwhile), a name that does not resolve, the per-project quota of requests in
//! flight; and an ignored test printing the CPU of one request against the native `reqwest` client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::Duration;

use wasmsock::Limits;
use wasmsock::wire::limits::HttpLimits;
use wasmsock_tests::http_server::{Mode, Server};
use wasmsock_tests::*;

/// A host with the fetch example on endpoint `fetch` (its own descriptor's grant, `http://127.0.0.1:*`) and, when
/// given, endpoint `granted` running it with `grants`.
async fn host(limits: Limits, grants: &[&str]) -> TestHost {
    let mut plugins =
        Plugins::new().handler("p/fetch", "fetch").endpoint_granted("fetch", "p/fetch", &["http://127.0.0.1:*"]);
    if !grants.is_empty() {
        plugins = plugins.handler("q/fetch", "fetch").endpoint_granted("granted", "q/fetch", grants);
    }
    let host = TestHost::start_with(plugins, limits).await;
    assert!(host.load_errors.is_empty(), "{:?}", host.load_errors);
    host
}

async fn ask(ws: &mut Ws, command: &str) -> String {
    send(ws, command).await;
    text(ws).await
}

#[tokio::test]
async fn get_and_post_reach_a_local_server_through_the_fetch_example() {
    let server = Server::start(Mode::Echo).await;
    let host = host(Limits::default(), &[]).await;
    let mut ws = host.connect("fetch").await;
    assert_eq!(ask(&mut ws, &format!("GET {}", server.url("/hello?x=1"))).await, "200 GET /hello?x=1 ");
    assert_eq!(ask(&mut ws, &format!("POST {} some body", server.url("/submit"))).await, "200 POST /submit some body");
    // The body is cut at 200 bytes by the example.
    let big = Server::start(Mode::Big(1000)).await;
    assert_eq!(ask(&mut ws, &format!("GET {}", big.url("/"))).await, format!("200 {}", "x".repeat(200)));
    host.stop().await;
}

#[tokio::test]
async fn ungranted_hosts_ports_userinfo_and_inside_addresses_are_refused_before_connecting() {
    let server = Server::start(Mode::Echo).await;
    let other = Server::start(Mode::Echo).await;
    let exact = format!("http://127.0.0.1:{}", server.port);
    let by_name = format!("http://localhost:{}", other.port);
    let host = host(Limits::default(), &[&exact, &by_name]).await;
    let mut ws = host.connect("granted").await;
    assert!(ask(&mut ws, &format!("GET {}", server.url("/"))).await.starts_with("200 GET"));
    let refusals = [
        // another host: no grant names it
        (format!("GET http://example.com:{}/", server.port), "error HttpRequestDenied"),
        // another port of the granted address
        (format!("GET {}", other.url("/")), "error HttpRequestDenied"),
        // userinfo, even before the granted address
        (format!("GET http://user:pw@127.0.0.1:{}/", server.port), "error HttpRequestDenied"),
        (format!("GET http://127.0.0.1:{}@127.0.0.1:{}/", server.port, server.port), "error HttpRequestDenied"),
        // a granted name resolving to loopback, whose address no grant names for that port
        (format!("GET http://localhost:{}/", other.port), "error DestinationIpProhibited"),
        // not HTTP
        (format!("GET ftp://127.0.0.1:{}/", server.port), "error bad URL"),
    ];
    for (command, expected) in &refusals {
        let reply = ask(&mut ws, command).await;
        assert!(reply.starts_with(expected), "{command}: {reply}");
    }
    assert_eq!(other.accepted(), 0, "a refused destination was reached");
    assert_eq!(server.accepted(), 1, "a refused request connected");
    // The name's address granted by itself (for that port) lets the name through.
    let both = [by_name.as_str(), &format!("http://127.0.0.1:{}", other.port)];
    let host2 = self::host(Limits::default(), &both).await;
    let mut ws2 = host2.connect("granted").await;
    assert!(ask(&mut ws2, &format!("GET http://localhost:{}/", other.port)).await.starts_with("200 GET"));
    host2.stop().await;
    host.stop().await;
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_a_dns_error_and_the_handler_goes_on() {
    // `.invalid` never resolves (RFC 6761); granted, so the refusal is the resolver's.
    let server = Server::start(Mode::Echo).await;
    let local = format!("http://127.0.0.1:{}", server.port);
    let host = host(Limits::default(), &["http://no-such-host.invalid:*", &local]).await;
    let mut ws = host.connect("granted").await;
    let reply = ask(&mut ws, "GET http://no-such-host.invalid:8080/").await;
    assert!(reply.starts_with("error DnsError") || reply.starts_with("error DnsTimeout"), "{reply}");
    // The connection's next request runs as usual.
    assert_eq!(ask(&mut ws, &format!("GET {}", server.url("/after"))).await, "200 GET /after ");
    host.stop().await;
}

#[tokio::test]
async fn an_oversized_response_is_refused_and_a_silent_server_times_out_without_a_handler_timeout() {
    let limits = Limits {
        // A deadline and wall bound far shorter than the requests' waits: the waits must not count against them.
        handler_deadline: Duration::from_millis(200),
        http: HttpLimits {
            max_response_bytes: 1000,
            timeout: Duration::from_millis(2500),
            connect_timeout: Duration::from_secs(1),
            ..HttpLimits::default()
        },
        ..Limits::default()
    };
    let host = host(limits, &[]).await;
    let mut ws = host.connect("fetch").await;
    let big = Server::start(Mode::Big(1001)).await;
    assert_eq!(ask(&mut ws, &format!("GET {}", big.url("/"))).await, "error HttpResponseBodySize(Some(1000))");
    let fits = Server::start(Mode::Big(1000)).await;
    assert!(ask(&mut ws, &format!("GET {}", fits.url("/"))).await.starts_with("200 xxx"));
    // 1.5 s: past the 200 ms deadline and its 1 s wall-clock bound, within the request's 2.5 s.
    let late = Server::start(Mode::Late(Duration::from_millis(1500))).await;
    assert_eq!(ask(&mut ws, &format!("GET {}", late.url("/"))).await, "200 late");
    let silent = Server::start(Mode::Silent).await;
    let started = std::time::Instant::now();
    assert_eq!(ask(&mut ws, &format!("GET {}", silent.url("/"))).await, "error HttpResponseTimeout");
    assert!(started.elapsed() >= Duration::from_millis(2400), "{:?}", started.elapsed());
    assert_eq!(silent.accepted(), 1);
    // The session is still served (no handler failure closed it).
    assert_eq!(ask(&mut ws, &format!("GET {}", fits.url("/"))).await.len(), 204);
    host.stop().await;
}

#[tokio::test]
async fn a_project_has_at_most_its_quota_of_requests_in_flight() {
    let limits = Limits { http: HttpLimits { project_requests: 1, ..HttpLimits::default() }, ..Limits::default() };
    let host = host(limits, &["http://127.0.0.1:*"]).await;
    let late = Server::start(Mode::Late(Duration::from_millis(1500))).await;
    let quick = Server::start(Mode::Echo).await;
    let mut first = host.connect("fetch").await;
    let mut second = host.connect("fetch").await;
    let mut other_project = host.connect("granted").await;
    send(&mut first, &format!("GET {}", late.url("/"))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Answered while the first waits: a handler waiting for a response holds no execution slot (the test's runtime
    // has one worker, so one slot; before runtime/host_poll.rs this got the first's 200 after 1.5 s).
    assert_eq!(ask(&mut second, &format!("GET {}", quick.url("/"))).await, "error ConnectionLimitReached");
    // Another project has its own quota.
    assert!(ask(&mut other_project, &format!("GET {}", quick.url("/"))).await.starts_with("200 GET"));
    assert_eq!(text(&mut first).await, "200 late");
    // The place is given back when the request ends.
    assert!(ask(&mut second, &format!("GET {}", quick.url("/"))).await.starts_with("200 GET"));
    host.stop().await;
}

/// Run with `cargo test -p wasmsock-tests --test http -- --ignored --nocapture http_cost`. Prints, per request, the
/// CPU of this whole process (host, server and clients) for: a native `reqwest` GET, a WebSocket round trip to the
/// echo example (the part of a fetch that is not HTTP), and a `GET URL` through the fetch example; interleaved rounds.
/// Asserts nothing about time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn http_cost() {
    const N: u32 = 500;
    const ROUNDS: usize = 5;
    let server = Server::start(Mode::Echo).await;
    let plugins = Plugins::new()
        .handler("p/fetch", "fetch")
        .endpoint_granted("fetch", "p/fetch", &["http://127.0.0.1:*"])
        .handler("p/echo", "echo")
        .endpoint("echo", "p/echo");
    let host = TestHost::start(plugins).await;
    let mut fetch = host.connect("fetch").await;
    let mut echo = host.connect("echo").await;
    let client = reqwest::Client::new();
    let url = server.url("/x");
    let command = format!("GET {url}");
    let mut rows: Vec<[f64; 3]> = Vec::new();
    for _ in 0..ROUNDS {
        let mut row = [0.0; 3];
        let start = process_cpu();
        for _ in 0..N {
            let body = client.get(&url).send().await.unwrap().text().await.unwrap();
            assert!(body.starts_with("GET"));
        }
        row[0] = (process_cpu() - start).as_secs_f64() * 1e6 / f64::from(N);
        let start = process_cpu();
        for _ in 0..N {
            assert_eq!(ask(&mut echo, &command).await, command);
        }
        row[1] = (process_cpu() - start).as_secs_f64() * 1e6 / f64::from(N);
        let start = process_cpu();
        for _ in 0..N {
            assert!(ask(&mut fetch, &command).await.starts_with("200 GET"));
        }
        row[2] = (process_cpu() - start).as_secs_f64() * 1e6 / f64::from(N);
        println!("round: reqwest {:.0} µs, ws echo {:.0} µs, ws fetch {:.0} µs", row[0], row[1], row[2]);
        rows.push(row);
    }
    let median = |i: usize| {
        let mut v: Vec<f64> = rows.iter().map(|r| r[i]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "median CPU per request: reqwest {:.0} µs; through a handler {:.0} µs, of which the WebSocket round trip {:.0} µs: \
         the outbound HTTP request itself {:.0} µs",
        median(0),
        median(2),
        median(1),
        median(2) - median(1)
    );
    host.stop().await;
}
