//! The auth handler: accepts or refuses a connection in onopen by the `token` in its query string, then echoes.
//!
//! The pattern: onopen looks at the request (`client-info.uri` holds the path and query of an inbound session) and
//! calls `close` with a 4xxx code to refuse. The host sends the close frame at once and delivers no onmessage for the
//! refused connection, so nothing else in the handler needs to check again. Browsers see the code in `CloseEvent.code`
//! (an HTTP status before the upgrade would reach JavaScript only as a bare 1006).
//!
//! The token list is fixed here to keep the example small; a real handler would verify a signed token (an HMAC over
//! the user id and an expiry, say) instead of comparing with constants.

use wasmsock_sdk::websockets;

/// Tokens this example accepts.
const TOKENS: &[&str] = &["let-me-in"];

/// The code and reason for a connection without a token (4401: like HTTP 401, in the application range).
const MISSING: (u16, &str) = (4401, "missing token: connect with ?token=...");

/// The code and reason for a connection whose token is not accepted (4403: like HTTP 403).
const INVALID: (u16, &str) = (4403, "invalid token");

fn on_event() {
    if websockets::is_on_open() {
        let uri = websockets::current_client().info().uri;
        let refusal = match token(&uri) {
            None => Some(MISSING),
            Some(token) if !TOKENS.contains(&token) => Some(INVALID),
            Some(_) => None,
        };
        if let Some((code, reason)) = refusal {
            let _ = websockets::close(Some(code), Some(reason));
        }
        return;
    }
    if !websockets::is_on_message() {
        return;
    }
    let _ = match (websockets::get_message(), websockets::get_binary_message()) {
        (Some(text), _) => websockets::send(&text),
        (None, Some(data)) => websockets::send_binary(&data),
        (None, None) => Ok(()),
    };
}

/// The value of the `token` query parameter of a request path, if there is one that is not empty.
fn token(uri: &str) -> Option<&str> {
    let query = uri.split_once('?')?.1;
    query.split('&').find_map(|pair| pair.strip_prefix("token=")).filter(|token| !token.is_empty())
}

wasmsock_sdk::handler!(on_event);
