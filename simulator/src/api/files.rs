//! File-service endpoints besides the multipart copy: registering an object the caller copied into
//! its own bucket, and reading file handles (one by its creator, or in batch through entities).
//! Each rule, its order and its text follow the server (`FileHandleManagerImpl`,
//! `AuthorizationManagerImpl`); `simulator/rules/file-service.md` lists them with their tests.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{json, Value};
use synapse_model::{
    concrete, BatchFileRequest, BatchFileResult, FileHandle, FileHandleAssociation, FileResult,
    S3FileHandleCreate,
};

use super::parse;
use crate::app::App;
use crate::error::ApiError;
use crate::fixture::Permission;
use crate::store::{parse_syn_id, Store, User, DEFAULT_STORAGE_LOCATION_ID};
use crate::util::lock;
use crate::util::{iso_now, new_etag};

/// `FileHandleManagerImpl.MAX_REQUESTS_PER_CALL`.
const MAX_BATCH: usize = 100;
/// `FileHandleManagerImpl.NOT_SET`: the name and content type of a registration that gave none.
const NOT_SET: &str = "NOT_SET";
/// The association type of a file entity's handle (`FileHandleAssociateType.FileEntity`).
const FILE_ENTITY_ASSOCIATION: &str = "FileEntity";
/// The association type of a table cell's handle (`FileHandleAssociateType.TableEntity`).
const TABLE_ENTITY_ASSOCIATION: &str = "TableEntity";
/// `FileHandleManagerImpl.PRESIGNED_URL_EXPIRE_TIME_S`: how long a download URL lives.
const DOWNLOAD_URL_EXPIRY: std::time::Duration = std::time::Duration::from_secs(30);

/// `DBOStorageLocationDAOImpl.get`: 404 for an unknown storage location.
pub(super) fn no_storage_location(id: i64) -> ApiError {
    ApiError::NotFound(format!("Storage location setting: '{id}' does not exist"))
}

/// `DBOFileHandleDaoImpl.get`: 404 for an unknown file handle.
pub(super) fn no_file_handle(id: &str) -> ApiError {
    ApiError::NotFound(format!("FileHandle: '{id}' cannot be found"))
}

/// `AuthorizationManagerImpl.canDownloadFile` for one association: the handle's creator always
/// may; anyone else needs DOWNLOAD on the associated object and the handle must be associated with
/// it: a version's data file for `FileEntity` (`FileEntityFileHandleAssociationProvider`), a
/// FILEHANDLEID cell ever written for `TableEntity` (`TableFileHandleAssociationProvider`). A
/// missing entity, a handle not associated and a missing permission are all the same "no"; other
/// association types are never associated here.
pub(super) fn can_download(
    store: &Store,
    user: &User,
    association: &FileHandleAssociation,
) -> bool {
    let handle_id = &association.file_handle_id;
    if store
        .handle(handle_id)
        .is_some_and(|h| h.created_by.as_deref() == Some(user.id.as_str()))
    {
        return true;
    }
    let Some(entity) =
        parse_syn_id(&association.associate_object_id).and_then(|id| store.entities.get(&id))
    else {
        return false;
    };
    let associated = match association.associate_object_type.as_str() {
        FILE_ENTITY_ASSOCIATION => store.is_associated(entity, handle_id),
        TABLE_ENTITY_ASSOCIATION => entity
            .table
            .as_ref()
            .is_some_and(|t| t.is_associated(handle_id)),
        _ => false,
    };
    associated && store.allowed(user, entity, Permission::Download)
}

/// The non-empty string `field` of a JSON object, or `requiredNotEmpty`'s 400 naming it `name`.
fn required_text<'a>(body: &'a Value, field: &str, name: &str) -> Result<&'a str, ApiError> {
    body.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::required_not_empty(name))
}

/// `MD5ChecksumHelper.isValidMd5Digest`: `^[0-9a-fA-F]{32}$`.
fn valid_md5(md5: &str) -> bool {
    md5.len() == 32 && md5.chars().all(|c| c.is_ascii_hexdigit())
}

/// `POST /externalFileHandle/s3` (`FileHandleManagerImpl.createExternalS3FileHandle`), 200.
pub async fn external_s3(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    body: Bytes,
) -> Result<Json<FileHandle>, ApiError> {
    let mut value: Value = parse(&body)?;
    if value.get("storageLocationId").is_none_or(Value::is_null) {
        return Err(ApiError::required("FileHandle.storageLocationId"));
    }
    required_text(&value, "bucketName", "FileHandle.bucket")?;
    required_text(&value, "key", "FileHandle.key")?;
    let md5 = required_text(&value, "contentMd5", "FileHandle.contentMd5")?;
    if !valid_md5(md5) {
        return Err(ApiError::BadRequest(
            "The content MD5 digest must be a valid hexadecimal string of length 32.".into(),
        ));
    }
    // The body is bound to S3FileHandle whatever it says; the manager never reads concreteType.
    if let Some(object) = value.as_object_mut() {
        object.insert("concreteType".into(), concrete::S3_FILE_HANDLE.into());
    }
    let request: S3FileHandleCreate = serde_json::from_value(value)
        .map_err(|e| ApiError::BadRequest(format!("Invalid JSON: {e}")))?;
    let id = request.storage_location_id;
    {
        let store = lock(&app.store);
        let setting = &store
            .locations
            .get(&id)
            .ok_or_else(|| no_storage_location(id))?
            .setting;
        if !setting.is_external_s3() {
            return Err(ApiError::BadRequest(format!(
                "StorageLocationSetting.id={id} was not of the expected type: {}",
                concrete::EXTERNAL_S3_STORAGE_LOCATION
            )));
        }
        if setting.bucket.as_deref() != Some(request.bucket_name.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "The bucket for ExternalS3StorageLocationSetting.id={id} does not match the \
                 provided bucket: {}",
                request.bucket_name
            )));
        }
        // The base key binds only STS-enabled locations, as a plain prefix.
        if setting.sts_enabled == Some(true)
            && setting
                .base_key
                .as_deref()
                .is_some_and(|base| !request.key.starts_with(base))
        {
            return Err(ApiError::BadRequest(format!(
                "The baseKey for ExternalS3StorageLocationSetting.id={id} does not match the \
                 provided key: {}",
                request.key
            )));
        }
        if setting.created_by.map(|c| c.to_string()) != Some(user.id.clone()) {
            return Err(ApiError::Forbidden(format!(
                "Only the creator of ExternalS3StorageLocationSetting.id={id} can create an \
                 external S3FileHandle with storageLocationId = {id}"
            )));
        }
    }
    let head = app
        .s3
        .head_object()
        .bucket(&request.bucket_name)
        .key(&request.key)
        .send()
        .await
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "Unable to access the file at bucket: {} key: {}.",
                request.bucket_name, request.key
            ))
        })?;
    // A given size is kept as given; only a missing one comes from S3.
    let content_size = request
        .content_size
        .unwrap_or(head.content_length().unwrap_or_default() as u64);
    let handle = lock(&app.store).add_handle(FileHandle {
        id: String::new(),
        concrete_type: concrete::S3_FILE_HANDLE.into(),
        etag: Some(new_etag()),
        created_by: Some(user.id.clone()),
        created_on: Some(iso_now()),
        bucket_name: Some(request.bucket_name),
        key: Some(request.key),
        content_type: Some(request.content_type.unwrap_or_else(|| NOT_SET.into())),
        content_md5: request.content_md5,
        content_size: Some(content_size),
        file_name: Some(request.file_name.unwrap_or_else(|| NOT_SET.into())),
        storage_location_id: Some(id),
        external_url: None,
        file_path: None,
        status: Some("AVAILABLE".into()),
    });
    Ok(Json(handle))
}

/// `GET /fileHandle/{id}` (`FileHandleManagerImpl.getRawFileHandle`): only the handle's creator
/// may read it this way; others go through an entity (`/fileHandle/batch`).
pub async fn get_handle(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> Result<Json<FileHandle>, ApiError> {
    let store = lock(&app.store);
    let handle = store.handle(&id).ok_or_else(|| no_file_handle(&id))?;
    if handle.created_by.as_deref() != Some(user.id.as_str()) {
        return Err(ApiError::Forbidden(format!(
            "Only the creator of a FileHandle can access it directly by its ID.  FileHandleId = \
             '{id}', UserId = '{}'",
            user.id
        )));
    }
    Ok(Json(handle.clone()))
}

/// `GET /entity/{id}/uploadDestination` (file service; `UploadController.
/// getDefaultUploadDestination` -> `FileHandleManagerImpl.getDefaultUploadDestination`), 200:
/// where files under the node go, from the nearest upload setting ([`Store::upload_location`]).
/// No permission is checked (S3 destinations need none), so an unknown entity gets the default;
/// an id that is no Synapse id is a 400 (`KeyFactory.stringToKey`).
pub async fn upload_destination(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let node = parse_syn_id(&id)
        .ok_or_else(|| ApiError::BadRequest(format!("{id} is not a valid Synapse ID.")))?;
    let store = lock(&app.store);
    let location_id = store.upload_location(node);
    let default = json!({
        "concreteType": concrete::S3_UPLOAD_DESTINATION,
        "storageLocationId": location_id,
        "uploadType": "S3",
    });
    if location_id == DEFAULT_STORAGE_LOCATION_ID {
        return Ok(Json(default));
    }
    let setting = &store
        .locations
        .get(&location_id)
        .ok_or_else(|| no_storage_location(location_id))?
        .setting;
    let mut destination = default;
    if setting.concrete_type == concrete::EXTERNAL_S3_STORAGE_LOCATION {
        destination["concreteType"] = json!(concrete::EXTERNAL_S3_UPLOAD_DESTINATION);
        destination["bucket"] = json!(setting.bucket);
    }
    for (field, value) in [
        ("uploadType", setting.upload_type.as_ref().map(|v| json!(v))),
        ("baseKey", setting.base_key.as_ref().map(|v| json!(v))),
        ("stsEnabled", setting.sts_enabled.map(|v| json!(v))),
        ("banner", setting.banner.as_ref().map(|v| json!(v))),
    ] {
        if let Some(value) = value {
            destination[field] = value;
        }
    }
    Ok(Json(destination))
}

/// `DELETE /fileHandle/{id}` (`UploadController.deleteFileHandle` ->
/// `FileHandleManagerImpl.deleteFileHandle`), 200 with no body. An unknown handle is already
/// deleted (200); only its creator may delete it (403, the text of `getRawFileHandle`); a handle
/// an entity version still uses cannot go (the `ON DELETE RESTRICT` key of `NODE_REVISION`, 409
/// `FileHandleLinkedException`; the server counts versions of entities in the trash too, which
/// the simulator does not keep). The S3 object is deleted when at most one *other* handle names
/// the same bucket and key (the server counts after deleting the row, and deletes on `<= 1`),
/// case-insensitively as its collation compares them.
pub async fn delete_handle(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let object = {
        let mut store = lock(&app.store);
        let Some(handle) = store.handle(&id).cloned() else {
            return Ok(StatusCode::OK);
        };
        if handle.created_by.as_deref() != Some(user.id.as_str()) {
            return Err(ApiError::Forbidden(format!(
                "Only the creator of a FileHandle can access it directly by its ID.  FileHandleId = \
                 '{id}', UserId = '{}'",
                user.id
            )));
        }
        if store.entities.values().any(|e| store.is_associated(e, &id)) {
            return Err(ApiError::Linked(format!(
                "Cannot delete a file handle that has been assigned to an owner object. \
                 FileHandle id: {id}"
            )));
        }
        if let Ok(n) = id.parse::<u64>() {
            store.handles.remove(&n);
        }
        match (&handle.bucket_name, &handle.key) {
            (Some(bucket), Some(key)) if handle.is_s3() => {
                let same = |h: &&FileHandle| {
                    h.bucket_name
                        .as_deref()
                        .is_some_and(|b| b.eq_ignore_ascii_case(bucket))
                        && h.key
                            .as_deref()
                            .is_some_and(|k| k.eq_ignore_ascii_case(key))
                };
                let others = store.handles.values().filter(same).count();
                (others <= 1).then(|| (bucket.clone(), key.clone()))
            }
            _ => None,
        }
    };
    if let Some((bucket, key)) = object {
        app.s3
            .delete_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| ApiError::BadGateway(format!("deleting s3://{bucket}/{key}: {e}")))?;
    }
    Ok(StatusCode::OK)
}

/// `FileHandleManagerImpl.getURLForFileHandle`: a presigned GET for an S3 handle, the URL of an
/// external one; none for the kinds the simulator cannot serve (Google Cloud, proxy).
fn download_url(app: &App, handle: &FileHandle) -> Result<Option<String>, ApiError> {
    if handle.concrete_type == concrete::EXTERNAL_FILE_HANDLE {
        return Ok(handle.external_url.clone());
    }
    match (&handle.bucket_name, &handle.key) {
        (Some(bucket), Some(key)) if handle.is_s3() => app
            .presigner
            .presign_get(bucket, key, DOWNLOAD_URL_EXPIRY)
            .map(Some),
        _ => Ok(None),
    }
}

/// `POST /fileHandle/batch` (`FileHandleManagerImpl.getFileHandleAndUrlBatch`), 201. A file the
/// caller may not download is `UNAUTHORIZED` in the answer, never an HTTP error; `NOT_FOUND` is
/// for an authorised file whose handle is gone. `includePreSignedURLs` adds a download URL.
pub async fn batch(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    body: Bytes,
) -> Result<(StatusCode, Json<BatchFileResult>), ApiError> {
    let value: Value = parse(&body)?;
    if value.get("requestedFiles").is_none_or(Value::is_null) {
        return Err(ApiError::required("requestedFiles"));
    }
    let request: BatchFileRequest = serde_json::from_value(value)
        .map_err(|e| ApiError::BadRequest(format!("Invalid JSON: {e}")))?;
    if !request.include_file_handles
        && !request.include_pre_signed_urls
        && !request.include_preview_pre_signed_urls
    {
        return Err(ApiError::BadRequest(
            "Must include either FileHandles or pre-signed URLs or preview pre-signed URLs".into(),
        ));
    }
    if request.requested_files.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "Request exceeds the maximum number of objects per request: {MAX_BATCH}"
        )));
    }
    if request.requested_files.is_empty() {
        return Err(ApiError::BadRequest(
            "FileHandleAssociations is empty.  Must include at least one FileHandleAssociation"
                .into(),
        ));
    }
    let store = lock(&app.store);
    let results = request
        .requested_files
        .iter()
        .map(|association| {
            let mut result = FileResult {
                file_handle_id: association.file_handle_id.clone(),
                file_handle: None,
                pre_signed_url: None,
                failure_code: None,
            };
            if !can_download(&store, &user, association) {
                result.failure_code = Some("UNAUTHORIZED".into());
            } else if let Some(handle) = store.handle(&association.file_handle_id) {
                result.file_handle = request.include_file_handles.then(|| handle.clone());
                if request.include_pre_signed_urls {
                    result.pre_signed_url = download_url(&app, handle)?;
                }
            } else {
                result.failure_code = Some("NOT_FOUND".into());
            }
            Ok(result)
        })
        .collect::<Result<_, ApiError>>()?;
    Ok((
        StatusCode::CREATED,
        Json(BatchFileResult {
            requested_files: results,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::valid_md5;

    #[test]
    fn md5_digests_are_32_hex_characters() {
        assert!(valid_md5("0123456789abcdefABCDEF0123456789"));
        assert!(!valid_md5("0123456789abcdef0123456789abcde"));
        assert!(!valid_md5("0123456789abcdef0123456789abcdeg"));
        assert!(!valid_md5(""));
    }
}
