//! The Synapse REST endpoints (repo and file services) and the unauthenticated admin endpoints.

mod admin;
mod entity;
mod files;
mod multipart;
mod permissions;
mod tables;

use std::sync::Arc;

use axum::routing::{get, post, put};
use axum::Router;
use serde::de::DeserializeOwned;

use crate::app::App;
use crate::error::ApiError;
use crate::guard::api_guard;

const REPO: &str = "/repo/v1";
const FILE: &str = "/file/v1";

pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route(&format!("{REPO}/userProfile"), get(entity::user_profile))
        .route(
            &format!("{REPO}/storageLocation/{{id}}"),
            get(entity::storage_location),
        )
        .route(&format!("{REPO}/entity/children"), post(entity::children))
        .route(
            &format!("{REPO}/entity/{{id}}"),
            get(entity::get_entity).put(entity::put_entity),
        )
        .route(
            &format!("{REPO}/entity/{{id}}/bundle2"),
            post(entity::bundle),
        )
        .route(
            &format!("{REPO}/entity/{{id}}/permissions"),
            get(permissions::get_permissions),
        )
        .route(
            &format!("{REPO}/entity/{{id}}/version"),
            get(entity::versions),
        )
        .route(
            &format!("{REPO}/entity/{{id}}/version/{{version}}"),
            get(entity::get_entity_version),
        )
        .route(
            &format!("{REPO}/entity/{{id}}/version/{{version}}/bundle2"),
            post(entity::bundle_version),
        )
        .route(
            &format!("{REPO}/entity/{{id}}/version/{{version}}/filehandle"),
            put(entity::swap_handle),
        )
        .route(
            &format!("{REPO}/entity/{{id}}/version/{{version}}/annotations2"),
            get(entity::get_version_annotations),
        )
        .route(
            &format!("{REPO}/entity/{{id}}/annotations2"),
            get(entity::get_annotations).put(entity::put_annotations),
        )
        .route(&format!("{REPO}/column/{{id}}"), get(tables::get_column))
        .route(
            &format!("{REPO}/entity/{{id}}/column"),
            get(tables::entity_columns),
        )
        .route(
            &format!("{REPO}/entity/{{id}}/table/query/async/start"),
            post(tables::start_query),
        )
        .route(
            &format!("{REPO}/entity/{{id}}/table/query/async/get/{{token}}"),
            get(tables::get_query),
        )
        .route(
            &format!("{REPO}/entity/{{id}}/table/query/nextPage/async/start"),
            post(tables::start_next_page),
        )
        .route(
            &format!("{REPO}/entity/{{id}}/table/query/nextPage/async/get/{{token}}"),
            get(tables::get_next_page),
        )
        .route(
            &format!("{REPO}/entity/{{id}}/table/download/csv/async/start"),
            post(tables::start_csv),
        )
        .route(
            &format!("{REPO}/entity/{{id}}/table/download/csv/async/get/{{token}}"),
            get(tables::get_csv),
        )
        .route(
            &format!("{REPO}/entity/{{id}}/table/transaction/async/start"),
            post(tables::start_transaction),
        )
        .route(
            &format!("{REPO}/entity/{{id}}/table/transaction/async/get/{{token}}"),
            get(tables::get_transaction),
        )
        .route(
            &format!("{REPO}/entity/{{id}}/table/snapshot"),
            post(tables::create_snapshot),
        )
        .route(&format!("{FILE}/file/multipart"), post(multipart::start))
        .route(
            &format!("{FILE}/file/multipart/{{upload}}/presigned/url/batch"),
            post(multipart::presign),
        )
        .route(
            &format!("{FILE}/file/multipart/{{upload}}/add/{{part}}"),
            put(multipart::add_part),
        )
        .route(
            &format!("{FILE}/file/multipart/{{upload}}/complete"),
            put(multipart::complete),
        )
        .route(
            &format!("{FILE}/externalFileHandle/s3"),
            post(files::external_s3),
        )
        .route(
            &format!("{FILE}/entity/{{id}}/uploadDestination"),
            get(files::upload_destination),
        )
        .route(&format!("{FILE}/fileHandle/batch"), post(files::batch))
        .route(
            &format!("{FILE}/fileHandle/{{id}}"),
            get(files::get_handle).delete(files::delete_handle),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(app.clone(), api_guard));
    Router::new()
        .merge(admin::router())
        .merge(api)
        .with_state(app)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("The requested resource does not exist".into())
}

/// Parses a JSON body; malformed JSON is a 400 with a `reason`, like the server.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("Invalid JSON: {e}")))
}

fn parse_number<T: std::str::FromStr>(what: &str, value: &str) -> Result<T, ApiError> {
    value
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("Invalid {what}: {value}")))
}
