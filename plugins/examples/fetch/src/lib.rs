//! The outbound HTTP example: a text message `GET URL` (or `POST URL BODY`) sends that request through
//! `wasmsock_sdk::http` and answers `STATUS BODY`, the body cut at 200 bytes; a refused or failed request answers
//! `error ` and the reason (the `wasi:http` error code, e.g. `error HttpRequestDenied`).

use wasmsock_sdk::{http, websockets};

/// How much of a response body the answer carries.
const BODY_SHOWN: usize = 200;

fn on_event() {
    if !websockets::is_on_message() {
        return;
    }
    let Some(text) = websockets::get_message() else { return };
    let _ = websockets::send(&run(&text));
}

/// Runs one command; the answer.
fn run(command: &str) -> String {
    let mut words = command.splitn(3, ' ');
    let (verb, url, body) = (words.next().unwrap_or(""), words.next().unwrap_or(""), words.next().unwrap_or(""));
    let result = match verb {
        "GET" => http::get(url),
        "POST" => http::post(url, &[("content-type", b"text/plain")], body.as_bytes()),
        _ => return "error commands: GET URL | POST URL BODY".to_owned(),
    };
    match result {
        Ok(response) => {
            let shown = &response.body[..response.body.len().min(BODY_SHOWN)];
            format!("{} {}", response.status, String::from_utf8_lossy(shown))
        }
        Err(err) => format!("error {err}"),
    }
}

wasmsock_sdk::handler!(on_event);
