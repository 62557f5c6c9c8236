//! The browser console on the main listener: `GET /` serves one self-contained page (no CDN; HTML, CSS and script in
//! `index.html`, embedded in the binary) that lists the endpoints and opens a live session on the one you pick;
//! `GET /websockets/endpoints` is the list it reads. On by default when the main listener is on loopback.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::app::App;

/// The page, with its style and script inline.
const PAGE: &str = include_str!("index.html");

/// Whether to serve the console (`wasmsock serve --console`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ConsoleMode {
    /// On when the main listener is bound to a loopback address, off otherwise.
    #[default]
    Auto,
    /// Always on (it lists every endpoint with its handler to whoever can reach the listener).
    On,
    /// Off: `/` and `/websockets/endpoints` answer 404.
    Off,
}

impl ConsoleMode {
    /// Whether the console is served on a listener bound to `listen`.
    pub fn enabled_for(self, listen: SocketAddr) -> bool {
        match self {
            ConsoleMode::Auto => listen.ip().is_loopback(),
            ConsoleMode::On => true,
            ConsoleMode::Off => false,
        }
    }
}

/// The console's routes, to merge into the main router.
pub fn router() -> Router<Arc<App>> {
    Router::new().route("/", get(page)).route("/websockets/endpoints", get(endpoints))
}

fn off() -> Response {
    (StatusCode::NOT_FOUND, "the console is off (wasmsock serve --console on)\n").into_response()
}

async fn page(State(app): State<Arc<App>>) -> Response {
    if !app.console.is_on() {
        return off();
    }
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        // Everything is inline; the page may talk only to this host.
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self' ws: wss:",
        ),
    ];
    (headers, PAGE).into_response()
}

async fn endpoints(State(app): State<Arc<App>>) -> Response {
    if !app.console.is_on() {
        return off();
    }
    let endpoints: Vec<_> = app
        .registry
        .endpoints()
        .iter()
        .map(|e| {
            json!({
                "name": e.name,
                "description": e.description,
                "handler": e.handler,
                "path": format!("/websockets/service/{}", e.name),
            })
        })
        .collect();
    Json(json!({ "endpoints": endpoints })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_means_loopback_only() {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(ConsoleMode::Auto.enabled_for(local));
        assert!(!ConsoleMode::Auto.enabled_for(any));
        assert!(ConsoleMode::On.enabled_for(any));
        assert!(!ConsoleMode::Off.enabled_for(local));
    }

    #[test]
    fn the_page_needs_nothing_from_elsewhere() {
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://") && !PAGE.contains("src="), "external resource");
    }
}
