//! The operator's dashboard on the admin listener: `GET /dashboard` serves one self-contained page (no CDN; HTML, CSS
//! and script in `index.html`, embedded in the binary) that polls the admin API (`/admin/v1/cluster`,
//! `/admin/v1/endpoints`, `/admin/v1/channels`, `/metrics`) every two seconds and draws the hosts, endpoints,
//! connections, message rates, handler failures and pauses, and usage by project.
//!
//! Behind the admin token like the rest of the listener. A browser cannot send a bearer header on a page load, so
//! `POST /dashboard/login` (the form the page shows when the token is missing) checks the token and sets it as a
//! cookie (`HttpOnly`, `SameSite=Strict`) that the listener accepts for reading only: `GET` and `HEAD` requests.

use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The page, with its style and script inline.
const PAGE: &str = include_str!("index.html");

/// The cookie that carries the admin token for the dashboard's reads.
pub const COOKIE: &str = "wasmsock_admin";

/// `GET /dashboard`.
pub async fn page() -> Response {
    html(StatusCode::OK, PAGE.to_owned())
}

/// The answer to a dashboard request without the token: 401 with the form that asks for it.
pub fn login_form(wrong: bool) -> Response {
    let note = if wrong { "<p class=\"wrong\">That is not the admin token.</p>" } else { "" };
    html(
        StatusCode::UNAUTHORIZED,
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>wasmsock dashboard: sign in</title>\
             <style>body{{font:15px system-ui,sans-serif;margin:4em auto;max-width:24em}}\
             .wrong{{color:#b00}}input{{font:inherit}}</style></head><body><h1>wasmsock dashboard</h1>\
             <p>This host's admin API needs its token (<code>--admin-token</code>).</p>{note}\
             <form method=\"post\" action=\"/dashboard/login\"><input type=\"password\" name=\"token\" id=\"token\" \
             autocomplete=\"current-password\" autofocus> <button type=\"submit\" id=\"sign-in\">Sign in</button></form>\
             </body></html>"
        ),
    )
}

/// The form's fields.
#[derive(Debug, serde::Deserialize)]
pub struct Login {
    token: String,
}

/// `POST /dashboard/login`: the right token sets the cookie and goes to the dashboard; a wrong one shows the form
/// again. A host without a token needs no sign-in.
pub async fn login(State(token): State<Option<Arc<str>>>, Form(login): Form<Login>) -> Response {
    let Some(token) = token else {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, "/dashboard")]).into_response();
    };
    if !super::admin::same_secret(login.token.as_bytes(), token.as_bytes()) {
        tracing::warn!("a wrong admin token was given to the dashboard's sign-in");
        return login_form(true);
    }
    let cookie = format!("{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/", login.token);
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/dashboard".to_owned()), (header::SET_COOKIE, cookie)]).into_response()
}

/// The admin token in a request's `Cookie` header, if it carries the dashboard's cookie.
pub fn token_in_cookie(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

fn html(status: StatusCode, body: String) -> Response {
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        // Everything the page needs is in it; it talks only to this listener.
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'",
        ),
        (header::CACHE_CONTROL, "no-store"),
    ];
    (status, headers, body).into_response()
}
