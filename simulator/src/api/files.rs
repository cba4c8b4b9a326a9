//! File-service endpoints besides the multipart copy: registering an object the caller copied into
//! its own bucket, and reading file handles (one by its creator, or in batch through entities).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use synapse_model::{
    concrete, BatchFileRequest, BatchFileResult, FileHandle, FileResult, S3FileHandleCreate,
};

use super::parse;
use crate::error::{sdk_message, ApiError};
use crate::fixture::Permission;
use crate::guard::lock;
use crate::server::App;
use crate::store::{parse_syn_id, User};
use crate::util::{iso_now, new_etag};

const MAX_BATCH: usize = 100;

pub async fn external_s3(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    body: Bytes,
) -> Result<(StatusCode, Json<FileHandle>), ApiError> {
    let request: S3FileHandleCreate = parse(&body)?;
    if request.concrete_type != concrete::S3_FILE_HANDLE {
        return Err(ApiError::BadRequest(format!(
            "Expected concreteType {}",
            concrete::S3_FILE_HANDLE
        )));
    }
    {
        let store = lock(&app.store);
        let location = store
            .locations
            .get(&request.storage_location_id)
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "Storage location {} does not exist",
                    request.storage_location_id
                ))
            })?;
        if !location.setting.is_external_s3() {
            return Err(ApiError::BadRequest(
                "Only external S3 storage locations accept caller-registered objects".into(),
            ));
        }
        if location.setting.created_by.map(|c| c.to_string()) != Some(user.id.clone()) {
            return Err(ApiError::Forbidden(
                "Only the creator of the storage location can register files in it".into(),
            ));
        }
        if location.setting.bucket.as_deref() != Some(request.bucket_name.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "The bucket {} is not the bucket of storage location {}",
                request.bucket_name, request.storage_location_id
            )));
        }
        if let Some(base) = location.setting.base_key.as_deref() {
            if !request.key.starts_with(&format!("{base}/")) {
                return Err(ApiError::BadRequest(format!(
                    "The key must start with the base key {base}/"
                )));
            }
        }
    }
    let head = app
        .s3
        .head_object()
        .bucket(&request.bucket_name)
        .key(&request.key)
        .send()
        .await
        .map_err(|e| {
            ApiError::BadRequest(format!(
                "The object s3://{}/{} cannot be read: {}",
                request.bucket_name,
                request.key,
                sdk_message(&e)
            ))
        })?;
    let actual = head.content_length().unwrap_or_default() as u64;
    if request.content_size.is_some_and(|s| s != actual) {
        return Err(ApiError::BadRequest(format!(
            "contentSize does not match the object's size {actual}"
        )));
    }
    let file_name = request.file_name.clone().unwrap_or_else(|| {
        request
            .key
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned()
    });
    let handle = lock(&app.store).add_handle(FileHandle {
        id: String::new(),
        concrete_type: concrete::S3_FILE_HANDLE.into(),
        etag: Some(new_etag()),
        created_by: Some(user.id.clone()),
        created_on: Some(iso_now()),
        bucket_name: Some(request.bucket_name),
        key: Some(request.key),
        content_type: request.content_type,
        content_md5: request.content_md5,
        content_size: Some(actual),
        file_name: Some(file_name),
        storage_location_id: Some(request.storage_location_id),
        external_url: None,
        file_path: None,
        status: Some("AVAILABLE".into()),
    });
    Ok((StatusCode::CREATED, Json(handle)))
}

/// `GET /fileHandle/{id}`: like Synapse, only the handle's creator may read it this way; others
/// go through an entity (`/fileHandle/batch`).
pub async fn get_handle(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> Result<Json<FileHandle>, ApiError> {
    let store = lock(&app.store);
    let handle = store
        .handle(&id)
        .ok_or_else(|| ApiError::NotFound(format!("FileHandle {id} does not exist")))?;
    if handle.created_by.as_deref() != Some(user.id.as_str()) {
        return Err(ApiError::Forbidden(format!(
            "Only the creator of FileHandle {id} can read it"
        )));
    }
    Ok(Json(handle.clone()))
}

pub async fn batch(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    body: Bytes,
) -> Result<(StatusCode, Json<BatchFileResult>), ApiError> {
    let request: BatchFileRequest = parse(&body)?;
    if request.requested_files.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "At most {MAX_BATCH} files can be requested at once"
        )));
    }
    let store = lock(&app.store);
    let results = request
        .requested_files
        .iter()
        .map(|assoc| {
            let mut result = FileResult {
                file_handle_id: assoc.file_handle_id.clone(),
                file_handle: None,
                pre_signed_url: None,
                failure_code: None,
            };
            let entity = parse_syn_id(&assoc.associate_object_id)
                .and_then(|id| store.entities.get(&id))
                .filter(|e| store.is_associated(e, &assoc.file_handle_id));
            match (entity, store.handle(&assoc.file_handle_id)) {
                (Some(e), Some(h)) if store.allowed(&user, e, Permission::Download) => {
                    result.file_handle = request.include_file_handles.then(|| h.clone());
                }
                (Some(_), Some(_)) => result.failure_code = Some("UNAUTHORIZED".into()),
                _ => result.failure_code = Some("NOT_FOUND".into()),
            }
            result
        })
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(BatchFileResult {
            requested_files: results,
        }),
    ))
}
