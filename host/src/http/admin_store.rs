//! The admin API's view of projects' stores and configuration (`/admin/v1/projects/{project}/kv`, `.../config`), for
//! debugging and repair: list, read, write and delete keys; set, list and remove configuration. A secret's value is
//! written here but never read back: listings say only that it is set.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

use wasmsock_wire::descriptor::check_project_name;
use wasmsock_wire::kv::{ConfigValue, KvError, PutOptions};
use wasmsock_wire::limits::DEFAULT_KV_PAGE;

use super::api_error::ApiError;
use crate::app::App;
use crate::runtime::KvService;

/// The routes, to merge into the admin router (behind its token).
pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/admin/v1/projects/{project}/kv", get(list_keys))
        .route("/admin/v1/projects/{project}/kv/{*key}", get(get_key).put(put_key).delete(delete_key))
        .route("/admin/v1/projects/{project}/config", get(list_config))
        .route("/admin/v1/projects/{project}/config/{key}", axum::routing::put(set_config).delete(unset_config))
}

impl From<KvError> for ApiError {
    fn from(err: KvError) -> Self {
        let status = match err {
            KvError::Invalid(_) => StatusCode::BAD_REQUEST,
            KvError::Limit(_) => StatusCode::UNPROCESSABLE_ENTITY,
            KvError::Conflict(_) => StatusCode::CONFLICT,
            KvError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, err.to_string())
    }
}

fn project(project: &str) -> Result<(), ApiError> {
    check_project_name(project).map_err(|err| ApiError::new(StatusCode::BAD_REQUEST, format!("{err:#}")))
}

/// A value as JSON: `value` when it is UTF-8 text, else `value_hex`.
fn value_json(value: &[u8]) -> (&'static str, Value) {
    match std::str::from_utf8(value) {
        Ok(text) => ("value", Value::String(text.to_owned())),
        Err(_) => ("value_hex", Value::String(value.iter().map(|b| format!("{b:02x}")).collect())),
    }
}

/// The query of a key listing.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    prefix: String,
    after: Option<String>,
    limit: Option<u32>,
}

/// `GET /admin/v1/projects/{project}/kv?prefix=P&after=K&limit=N`: one page of keys and the project's usage.
async fn list_keys(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    project(&name)?;
    let limit = query.limit.unwrap_or(DEFAULT_KV_PAGE as u32);
    let page = app.store.list(&name, &query.prefix, query.after.as_deref(), limit).await?;
    let usage = app.store.usage(&name).await?;
    Ok(Json(json!({ "project": name, "keys": page.keys, "next": page.next, "usage": usage })))
}

/// `GET /admin/v1/projects/{project}/kv/{key}`: the value, its revision and expiry; 404 when absent.
async fn get_key(
    State(app): State<Arc<App>>,
    Path((name, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    project(&name)?;
    let entry = app
        .store
        .get(&name, &key)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("project {name} has no key {key:?}")))?;
    let (field, value) = value_json(&entry.value);
    Ok(Json(json!({
        "project": name, "key": key, field: value, "revision": entry.revision, "expires_in_ms": entry.expires_in_ms,
    })))
}

/// The query of a key write.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PutQuery {
    /// Seconds until the key expires.
    ttl: Option<u32>,
}

/// `PUT /admin/v1/projects/{project}/kv/{key}?ttl=S` with the value as the body: the new revision.
async fn put_key(
    State(app): State<Arc<App>>,
    Path((name, key)): Path<(String, String)>,
    Query(query): Query<PutQuery>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    project(&name)?;
    let options = PutOptions { ttl_seconds: query.ttl, ..PutOptions::default() };
    let revision = app.store.put(&name, &key, body.to_vec(), options).await?;
    tracing::info!(project = name, key, revision, "a key was written through the admin API");
    Ok(Json(json!({ "project": name, "key": key, "revision": revision })))
}

/// `DELETE /admin/v1/projects/{project}/kv/{key}`.
async fn delete_key(
    State(app): State<Arc<App>>,
    Path((name, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    project(&name)?;
    app.store.delete(&name, &key, None).await?;
    tracing::info!(project = name, key, "a key was deleted through the admin API");
    Ok(Json(json!({ "project": name, "key": key, "deleted": true })))
}

/// `GET /admin/v1/projects/{project}/config`: every name, with its value unless it is a secret.
async fn list_config(State(app): State<Arc<App>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    project(&name)?;
    let snapshot = app.store.config(&name);
    let entries: Vec<Value> = snapshot
        .iter()
        .map(|(key, value)| match value.shown() {
            Some(shown) => json!({ "key": key, "secret": false, "value": shown }),
            None => json!({ "key": key, "secret": true }),
        })
        .collect();
    Ok(Json(json!({ "project": name, "config": entries })))
}

/// The body of `PUT /admin/v1/projects/{project}/config/{key}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewConfig {
    value: String,
    #[serde(default)]
    secret: bool,
}

/// `PUT /admin/v1/projects/{project}/config/{key}` with `{"value": "...", "secret": true}`.
async fn set_config(
    State(app): State<Arc<App>>,
    Path((name, key)): Path<(String, String)>,
    Json(new): Json<NewConfig>,
) -> Result<Json<Value>, ApiError> {
    project(&name)?;
    let value = ConfigValue::new(new.value, new.secret);
    app.store.set_config(&name, &key, value).await.map_err(|err| ApiError::new(refusal(&err), format!("{err:#}")))?;
    // The value itself is never logged.
    tracing::info!(project = name, key, secret = new.secret, "configuration set through the admin API");
    Ok(Json(json!({ "project": name, "key": key, "secret": new.secret })))
}

/// `DELETE /admin/v1/projects/{project}/config/{key}`.
async fn unset_config(
    State(app): State<Arc<App>>,
    Path((name, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    project(&name)?;
    let removed =
        app.store.unset_config(&name, &key).await.map_err(|err| ApiError::new(refusal(&err), format!("{err:#}")))?;
    tracing::info!(project = name, key, removed, "configuration removed through the admin API");
    Ok(Json(json!({ "project": name, "key": key, "removed": removed })))
}

/// The status of a refused configuration change: the store's own error kind, else a bad request.
fn refusal(err: &anyhow::Error) -> StatusCode {
    match err.downcast_ref::<KvError>() {
        Some(KvError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
        Some(KvError::Limit(_)) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::BAD_REQUEST,
    }
}
