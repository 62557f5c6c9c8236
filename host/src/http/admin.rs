//! The admin API (`/admin/v1`, JSON, on its own listener): list endpoints, handlers and connections; deploy and remove
//! handlers and descriptors; close connections; create outbound clients; list channels and their members and publish
//! to them; projects' stores and configuration are in `admin_store.rs`. Every request carries the bearer token when
//! one is set.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use wasmsock_wire::descriptor::Descriptor;
use wasmsock_wire::history::{StreamPosition, message_json};
use wasmsock_wire::{ClientOptions, Close, ConnError, Frame, Reconnect};

pub use super::api_error::ApiError;
use super::listener::Peer;
use super::secret::same_secret;
use crate::app::App;
use crate::cluster::Shared;
use crate::control::metrics::CONTENT_TYPE;

/// The largest component the admin API accepts. componentize-py components are about 18 MB; 64 MiB leaves room.
pub const DEFAULT_MAX_COMPONENT_BYTES: usize = 64 << 20;

/// The admin router. With a token, every request must carry `Authorization: Bearer <token>`.
pub fn router(app: Arc<App>, token: Option<String>) -> Router {
    let api = Router::new()
        .route("/admin/v1/endpoints", get(list_endpoints))
        .route("/admin/v1/endpoints/{name}", put(deploy_descriptor).delete(remove_endpoint))
        .route("/admin/v1/handlers", get(list_handlers))
        .route("/admin/v1/handlers/{*name}", put(deploy_handler).delete(remove_handler))
        .route("/admin/v1/connections", get(list_connections))
        .route("/admin/v1/connections/{id}", axum::routing::delete(close_connection))
        .route("/admin/v1/clients", axum::routing::post(create_client))
        .route("/admin/v1/channels", get(list_channels))
        .route("/admin/v1/channels/{project}/{*channel}", get(list_members))
        .route("/admin/v1/history/{project}/{*channel}", get(read_history))
        .route("/admin/v1/publish", axum::routing::post(publish))
        .route("/admin/v1/cluster", get(cluster))
        .route("/metrics", get(metrics))
        .route("/dashboard", get(super::dashboard::page))
        .merge(super::admin_store::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such admin route; see /admin/v1/endpoints") })
        .layer(DefaultBodyLimit::max(DEFAULT_MAX_COMPONENT_BYTES))
        .with_state(app.clone());
    let token: Option<Arc<str>> = token.map(Arc::from);
    let api = match &token {
        Some(token) => api.layer(middleware::from_fn_with_state(token.clone(), require_token)),
        None => api,
    };
    // Outside the token: a load balancer's health check carries none, and the answer reveals nothing; the dashboard's
    // sign-in checks the token itself.
    let login = Router::new().route("/dashboard/login", post(super::dashboard::login)).with_state(token);
    let api = Router::new().route("/healthz", get(healthz)).with_state(app).merge(login).merge(api);
    // Outermost: a request whose head has arrived lifts its connection's handshake deadline, so a slow upload of a
    // large component is not cut while a client that never finishes its request head is (slowloris).
    api.layer(middleware::from_fn(head_arrived))
}

async fn head_arrived(ConnectInfo(peer): ConnectInfo<Peer>, request: Request, next: Next) -> Response {
    peer.finish_handshake();
    next.run(request).await
}

async fn require_token(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    // The dashboard's cookie is good for reading only: a page elsewhere cannot make this listener change anything.
    let reading = matches!(*request.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    let cookie = if reading { super::dashboard::token_in_cookie(request.headers()) } else { None };
    if request.uri().path() == "/dashboard"
        && bearer.or(cookie).is_none_or(|given| !same_secret(given.as_bytes(), token.as_bytes()))
    {
        return super::dashboard::login_form(cookie.is_some());
    }
    match bearer.or(cookie) {
        Some(given) if same_secret(given.as_bytes(), token.as_bytes()) => next.run(request).await,
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "wrong admin token").into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this admin API needs `Authorization: Bearer <token>` (wasmsock --token or WASMSOCK_ADMIN_TOKEN)",
        )
        .into_response(),
    }
}

/// `GET /metrics`: every metric in the OpenMetrics text format (behind the token like the rest of this listener).
async fn metrics(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let text =
        app.metrics.encode().map_err(|err| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{err:#}")))?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

async fn list_endpoints(State(app): State<Arc<App>>) -> Json<Value> {
    let conns = app.hub.all();
    let versions: std::collections::HashMap<String, String> =
        app.registry.handlers().iter().map(|h| (h.handler.name().to_owned(), h.version.clone())).collect();
    let endpoints: Vec<Value> = app
        .registry
        .endpoints()
        .iter()
        .map(|endpoint| {
            let sessions = conns.iter().filter(|c| c.endpoint() == Some(endpoint.name.as_str())).count();
            json!({
                "name": endpoint.name,
                "description": endpoint.description,
                "handler": endpoint.handler,
                "instance": endpoint.instance,
                "version": versions.get(&endpoint.handler),
                "sessions": sessions,
                "descriptor": endpoint.descriptor,
                "origins": endpoint.origins,
                "protocols": endpoint.protocols,
                "limits": endpoint.limits,
                "closed_for_handler_failures": app.hub.failure_closes(&endpoint.name),
            })
        })
        .collect();
    Json(json!({ "endpoints": endpoints }))
}

async fn list_handlers(State(app): State<Arc<App>>) -> Json<Value> {
    let handlers: Vec<_> = app.registry.handlers().iter().map(|h| h.info()).collect();
    Json(json!({ "handlers": handlers }))
}

/// The query of `GET /admin/v1/connections`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionsQuery {
    /// In a cluster: also the other hosts' connections of this project (surveyed with a deadline).
    cluster_project: Option<String>,
}

async fn list_connections(State(app): State<Arc<App>>, Query(query): Query<ConnectionsQuery>) -> Json<Value> {
    let connections: Vec<_> = app.hub.all().iter().map(|c| c.stats()).collect();
    let (Some(project), Some(cluster)) = (query.cluster_project, app.cluster()) else {
        return Json(json!({ "connections": connections }));
    };
    let gathered = cluster.survey_clients(&project).await;
    let (remote, missing) = (gathered.answer, gathered.missing_hosts);
    Json(
        json!({ "connections": connections, "remote": remote, "missing_hosts": missing, "partial": !missing.is_empty() }),
    )
}

async fn deploy_handler(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let loaded = app.registry.deploy_handler(&app.runtime, &name, body.to_vec()).await;
    app.metrics.deploy("handler", loaded.is_ok());
    let loaded = loaded.map_err(ApiError::refused)?;
    tracing::info!(handler = %name, version = %loaded.version, "handler deployed");
    let cluster = app.share(Shared::Handler { name, bytes: body.to_vec() }).await;
    Ok(Json(json!({ "handler": loaded.info(), "from_cache": loaded.from_cache, "cluster": cluster })))
}

async fn remove_handler(State(app): State<Arc<App>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    app.registry.remove_handler(&name).await.map_err(|err| ApiError::new(StatusCode::CONFLICT, format!("{err:#}")))?;
    tracing::info!(handler = %name, "handler removed");
    let cluster = app.share(Shared::HandlerRemoved { name: name.clone() }).await;
    Ok(Json(json!({ "removed": name, "cluster": cluster })))
}

async fn deploy_descriptor(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    body: String,
) -> Result<Json<Value>, ApiError> {
    let descriptor = Descriptor::parse(&body).inspect_err(|_| app.metrics.deploy("descriptor", false));
    let descriptor = descriptor.map_err(ApiError::refused)?;
    if descriptor.endpoint != name {
        app.metrics.deploy("descriptor", false);
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the descriptor declares endpoint {:?}, not {name:?}", descriptor.endpoint),
        ));
    }
    let endpoint = app.registry.deploy_descriptor(&app.runtime, &body).await;
    app.metrics.deploy("descriptor", endpoint.is_ok());
    let endpoint = endpoint.map_err(ApiError::refused)?;
    tracing::info!(endpoint = %endpoint.name, handler = %endpoint.handler, "descriptor deployed");
    let cluster = app.share(Shared::Descriptor { endpoint: endpoint.name.clone(), text: body }).await;
    Ok(Json(json!({ "endpoint": *endpoint, "cluster": cluster })))
}

async fn remove_endpoint(State(app): State<Arc<App>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let endpoint = app
        .registry
        .remove_endpoint(&name)
        .await
        .map_err(|err| ApiError::new(StatusCode::NOT_FOUND, format!("{err:#}")))?;
    app.close_endpoint_sessions(&name);
    tracing::info!(endpoint = %name, "endpoint removed");
    let _ = app.share(Shared::EndpointRemoved { endpoint: name.clone() }).await;
    Ok(Json(json!({ "removed": *endpoint })))
}

async fn close_connection(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let conn = app.hub.get(&id).ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no connection {id:?}")))?;
    conn.request_close(Close::new(1000, "closed by an administrator"))
        .map_err(|err| ApiError::new(StatusCode::CONFLICT, err.to_string()))?;
    Ok(Json(json!({ "closing": id })))
}

/// The body of `POST /admin/v1/clients`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewClient {
    uri: String,
    handler: String,
    /// Reconnect with backoff from this many milliseconds (doubling up to `reconnect_max_ms`).
    #[serde(default)]
    reconnect_ms: Option<u64>,
    #[serde(default)]
    reconnect_max_ms: Option<u64>,
    /// Offer permessage-deflate (level 1, no context takeover); absent: the host default (`serve --compression`).
    #[serde(default)]
    compression: Option<bool>,
}

async fn create_client(State(app): State<Arc<App>>, Json(new): Json<NewClient>) -> Result<Json<Value>, ApiError> {
    let reconnect = new.reconnect_ms.map(|initial| Reconnect {
        initial: Duration::from_millis(initial),
        max: Duration::from_millis(new.reconnect_max_ms.unwrap_or(30_000).max(initial)),
        max_attempts: None,
    });
    let compression =
        new.compression.unwrap_or(app.limits.compression).then(wasmsock_wire::deflate::Compression::default);
    let conn = app
        .create_client(&new.uri, &new.handler, ClientOptions { reconnect, compression, ..ClientOptions::default() })
        .map_err(|err| {
            let status = match err {
                ConnError::Invalid(_) | ConnError::UnknownClient(_) => StatusCode::UNPROCESSABLE_ENTITY,
                ConnError::Closed | ConnError::Limit(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            ApiError::new(status, err.to_string())
        })?;
    Ok(Json(json!({ "client": conn.info() })))
}

/// The query of `GET /admin/v1/channels`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelsQuery {
    /// Only this project's channels.
    project: Option<String>,
}

/// The channels with members on this host and the channels keeping history here, by project then name: each with
/// its member count, and for a channel with history its top offset, epoch and how many publications it keeps.
async fn list_channels(
    State(app): State<Arc<App>>,
    Query(query): Query<ChannelsQuery>,
) -> Result<Json<Value>, ApiError> {
    let project = query.project.as_deref();
    let mut listed: std::collections::BTreeMap<(String, String), Value> =
        app.channels.list(project).into_iter().map(|c| ((c.project.clone(), c.channel.clone()), json!(c))).collect();
    let streams = app.history.list_everywhere(project).await;
    let streams = streams.map_err(|err| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, err.to_string()))?;
    for stream in streams {
        let entry = listed
            .entry((stream.project.clone(), stream.channel.clone()))
            .or_insert_with(|| json!({"project": stream.project, "channel": stream.channel, "members": 0}));
        if let Some(fields) = entry.as_object_mut() {
            fields.insert("top".into(), stream.top.into());
            fields.insert("epoch".into(), stream.epoch.into());
            fields.insert("kept".into(), stream.kept.into());
        }
    }
    Ok(Json(json!({ "channels": listed.into_values().collect::<Vec<_>>() })))
}

/// The query of `GET /admin/v1/history/{project}/{channel}`: a page of a channel's history.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    /// Publications after this offset (from the oldest kept when absent).
    since: Option<u64>,
    /// The epoch `since` was taken in; when it is not the stream's, the page says it is not complete.
    epoch: Option<String>,
    /// At most this many publications (1 to 1000; 100 when absent).
    limit: Option<u32>,
}

/// One page of a channel's history: each publication's offset, time and message (`text`, or `binary` in base64).
async fn read_history(
    State(app): State<Arc<App>>,
    Path((project, channel)): Path<(String, String)>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let since = match (query.since, query.epoch) {
        (Some(offset), Some(epoch)) => Some(StreamPosition { offset, epoch }),
        // An offset without an epoch is taken to be in the stream's epoch, whatever it is now.
        (Some(offset), None) => {
            let page = app.read_history(&project, &channel, None, 1).await;
            page.ok().map(|page| StreamPosition { offset, epoch: page.epoch })
        }
        (None, _) => None,
    };
    let page = app
        .read_history(&project, &channel, since, query.limit.unwrap_or(DEFAULT_HISTORY_PAGE))
        .await
        .map_err(|err| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, err.to_string()))?;
    let publications: Vec<Value> = page
        .publications
        .iter()
        .map(|p| {
            let (kind, message) = message_json(&p.frame);
            json!({"offset": p.offset, "time_ms": p.time_ms, kind: message})
        })
        .collect();
    Ok(Json(json!({
        "project": project, "channel": channel, "epoch": page.epoch, "top": page.top, "complete": page.complete,
        "next": page.next, "publications": publications,
    })))
}

/// How many publications one admin page of history lists when the query does not say.
const DEFAULT_HISTORY_PAGE: u32 = 100;

/// The query of `GET /admin/v1/channels/{project}/{channel}`: a page of members.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MembersQuery {
    /// Resume after this connection id (the `next` of the page before).
    after: Option<String>,
    /// At most this many members (1 to 1000; 100 when absent).
    limit: Option<u32>,
    /// In a cluster: page through every live host's members (as `get-members` does), saying which hosts were missing.
    cluster: Option<bool>,
}

async fn list_members(
    State(app): State<Arc<App>>,
    Path((project, channel)): Path<(String, String)>,
    Query(query): Query<MembersQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_MEMBERS_PAGE);
    let refused = |err: ConnError| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, err.to_string());
    if let (Some(true), Some(cluster)) = (query.cluster, app.cluster()) {
        let gathered =
            cluster.survey_members(&project, &channel, query.after.as_deref(), limit).await.map_err(refused)?;
        let (page, missing) = (gathered.answer, gathered.missing_hosts);
        return Ok(Json(json!({
            "project": project, "channel": channel, "members": page.members, "next": page.next,
            "missing_hosts": missing, "partial": !missing.is_empty(),
        })));
    }
    let page = app.channels.members(&project, &channel, query.after.as_deref(), limit).map_err(refused)?;
    let members: Vec<_> = page.members.iter().filter_map(|info| app.hub.get(&info.id)).map(|c| c.stats()).collect();
    Ok(Json(json!({ "project": project, "channel": channel, "members": members, "next": page.next })))
}

/// How many members one admin page lists when the query does not say.
const DEFAULT_MEMBERS_PAGE: u32 = 100;

/// `GET /healthz`: 200 while the host serves; 503 while it drains for shutdown, or while it is in a cluster and its
/// broker is not connected (its channels then reach only its own members), with the reason once known (`refused this
/// host: authorization violation`, `TLS failed: …`).
async fn healthz(State(app): State<Arc<App>>) -> Response {
    if app.is_shutting_down() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unhealthy", "reason": "shutting down"})))
            .into_response();
    }
    if let Some(cluster) = app.cluster()
        && !cluster.is_connected()
    {
        let broker = wasmsock_wire::cluster::redacted(cluster.url());
        let reason = match cluster.broker_failure() {
            Some(failure) => format!("the cluster's broker {broker} {failure}"),
            None => format!("the cluster's broker {broker} is unreachable"),
        };
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unhealthy", "reason": reason})))
            .into_response();
    }
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /admin/v1/cluster`: the hosts of this host's cluster as it sees them; 404 when it is in none.
async fn cluster(State(app): State<Arc<App>>) -> Result<Json<Value>, ApiError> {
    let cluster = app.cluster().ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "this host is in no cluster (start it with serve --nats URL)")
    })?;
    Ok(Json(json!(cluster.status())))
}

/// The body of `POST /admin/v1/publish`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Publish {
    project: String,
    channel: String,
    /// A text message.
    message: String,
}

async fn publish(State(app): State<Arc<App>>, Json(publish): Json<Publish>) -> Result<Json<Value>, ApiError> {
    let frame = Frame::Text(publish.message.into());
    let published = app
        .publish_positioned(&publish.project, &publish.channel, &frame, None)
        .await
        .map_err(|err| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, err.to_string()))?;
    let mut answer = json!({ "project": publish.project, "channel": publish.channel, "queued": published.queued });
    if let (Some(fields), Some(position)) = (answer.as_object_mut(), published.position) {
        fields.insert("offset".into(), position.offset.into());
        fields.insert("epoch".into(), position.epoch.into());
    }
    Ok(Json(answer))
}
