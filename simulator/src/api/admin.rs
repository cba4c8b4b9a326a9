//! Read-only views for tests and operators, plus the request log. No auth: the simulator only binds
//! loopback.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::app::{App, EntitySnapshot, TableView};
use crate::error::ApiError;
use crate::request_log::{RequestCounts, RequestRecord};
use crate::util::lock;
use synapse_model::FileHandle;

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/admin/entities/{id}", get(entity))
        .route("/admin/fileHandles/{id}", get(file_handle))
        .route("/admin/tables/{id}", get(table))
        .route("/admin/requests", get(requests))
        .route("/admin/requests/reset", post(reset))
}

async fn entity(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<EntitySnapshot>, ApiError> {
    app.snapshot(&id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("Entity {id} does not exist")))
}

async fn table(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<TableView>, ApiError> {
    app.table(&id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("Table {id} does not exist")))
}

async fn file_handle(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<FileHandle>, ApiError> {
    lock(&app.store)
        .handle(&id)
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("File handle {id} does not exist")))
}

#[derive(serde::Serialize)]
struct RequestsView {
    counts: RequestCounts,
    records: Vec<RequestRecord>,
}

async fn requests(State(app): State<Arc<App>>) -> Json<RequestsView> {
    Json(RequestsView {
        counts: app.log.counts(),
        records: app.log.records(),
    })
}

async fn reset(State(app): State<Arc<App>>) -> Json<RequestCounts> {
    app.log.reset();
    Json(app.log.counts())
}
