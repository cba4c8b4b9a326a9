//! The multipart copy: start (idempotent per user and request), presign part URLs, add parts, complete.
//! Each rule, its order and its text follow the server (`MultipartManagerV2Impl`,
//! `MultipartUploadCopyRequestHandler`, `S3MultipartUploadDAOImpl`, `PartUtils`, `NameValidation`);
//! `simulator/rules/file-service.md` lists them with their tests.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::Value;
use sha2::{Digest, Sha256};
use synapse_model::{
    add_part_state, concrete, AddPartResponse, BatchPresignedUploadUrlRequest,
    BatchPresignedUploadUrlResponse, FileHandle, MultipartUploadCopyRequest, MultipartUploadStatus,
};

use super::files::{can_download, no_file_handle, no_storage_location};
use super::{parse, parse_number};
use crate::app::App;
use crate::error::{sdk_message, ApiError};
use crate::names::validate_name;
use crate::store::{Store, Upload, User};
use crate::util::lock;
use crate::util::{iso_now, new_etag};

/// `PartUtils`: part size bounds, the part count limit and the largest file.
const MIB: u64 = 1024 * 1024;
const MIN_PART: u64 = 5 * MIB;
const MAX_PART: u64 = 5 * 1024 * MIB;
const MAX_PARTS: u64 = 10_000;
const MAX_FILE: u64 = 5 * 1024 * 1024 * MIB;

type Created<T> = (StatusCode, Json<T>);

/// `StringUtils.isBlank`: what the copy treats as "no name given".
fn is_blank(name: Option<&str>) -> bool {
    name.is_none_or(|n| n.trim().is_empty())
}

/// `PartUtils.validatePartSize`.
fn validate_part_size(part_size: u64) -> Result<(), ApiError> {
    if part_size < MIN_PART {
        return Err(ApiError::BadRequest(format!(
            "The part size must be at least {MIN_PART} bytes."
        )));
    }
    if part_size > MAX_PART {
        return Err(ApiError::BadRequest(format!(
            "The part size must not exceed {MAX_PART} bytes."
        )));
    }
    Ok(())
}

/// `PartUtils.calculateNumberOfParts` (file size, then part count).
fn number_of_parts(size: u64, part_size: u64) -> Result<u64, ApiError> {
    if size < 1 {
        return Err(ApiError::BadRequest(
            "File size must be at least one byte".into(),
        ));
    }
    if size > MAX_FILE {
        return Err(ApiError::BadRequest("The maximum file size is 5 TB".into()));
    }
    let parts = size.div_ceil(part_size);
    if parts > MAX_PARTS {
        return Err(ApiError::BadRequest(format!(
            "File Upload would require {parts} parts, which exceeds the maximum number of allowed \
             parts of: {MAX_PARTS}. Please choose a larger part size."
        )));
    }
    Ok(parts)
}

/// A JSON number, or a string holding one (as the server's Jackson reads it).
fn number_in(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}

/// `MultipartManagerV2Impl.validateMultipartRequest` then
/// `MultipartUploadCopyRequestHandler.validateRequest`, in their order, on the raw body; then the
/// typed request.
fn validate_copy_request(body: Value) -> Result<MultipartUploadCopyRequest, ApiError> {
    const REQUEST: &str = "MultipartUploadCopyRequest";
    let absent = |v: Option<&Value>| v.is_none_or(Value::is_null);
    if absent(body.get("partSizeBytes")) {
        return Err(ApiError::required(&format!("{REQUEST}.partSizeBytes")));
    }
    if let Some(part_size) = body.get("partSizeBytes").and_then(number_in) {
        validate_part_size(part_size)?;
    }
    if absent(body.get("storageLocationId")) {
        return Err(ApiError::required(&format!("{REQUEST}.storageLocationId")));
    }
    let association = body.get("sourceFileHandleAssociation");
    if absent(association) {
        return Err(ApiError::required(&format!(
            "{REQUEST}.sourceFileHandleAssociation"
        )));
    }
    for field in ["fileHandleId", "associateObjectId", "associateObjectType"] {
        if absent(association.and_then(|a| a.get(field))) {
            return Err(ApiError::required(&format!(
                "{REQUEST}.sourceFileHandleAssociation.{field}"
            )));
        }
    }
    let request: MultipartUploadCopyRequest = serde_json::from_value(body)
        .map_err(|e| ApiError::BadRequest(format!("Invalid JSON: {e}")))?;
    if !is_blank(request.file_name.as_deref()) {
        validate_name(request.file_name.as_deref().unwrap_or_default())?;
    }
    Ok(request)
}

/// What start needs from the store, gathered under the lock before any S3 call: the checks of
/// `MultipartUploadCopyRequestHandler.initiateRequest` up to the source object's ETag.
struct CopyPlan {
    hash: String,
    size: u64,
    part_size: u64,
    source_is_s3: bool,
    source_bucket: String,
    source_key: String,
    source_file_name: Option<String>,
    /// Region of the source's storage location, when known.
    source_region: Option<String>,
    dest_region: String,
    dest_bucket: String,
    dest_base_key: Option<String>,
    request_file_name: Option<String>,
    content_type: Option<String>,
    content_md5: String,
    storage_location_id: i64,
}

fn plan_copy(
    store: &Store,
    user: &User,
    request: &MultipartUploadCopyRequest,
    hash: String,
) -> Result<CopyPlan, ApiError> {
    let destination = store
        .locations
        .get(&request.storage_location_id)
        .ok_or_else(|| no_storage_location(request.storage_location_id))?;
    let association = &request.source_file_handle_association;
    if !can_download(store, user, association) {
        return Err(ApiError::Forbidden(
            "The user is not authorized to access the source file.".into(),
        ));
    }
    // Every kind of destination, Synapse's own storage included (the simulator has no admins).
    if destination.setting.created_by.map(|c| c.to_string()) != Some(user.id.clone()) {
        return Err(ApiError::Forbidden(
            "The user does not own the destination storage location.".into(),
        ));
    }
    let source = store
        .handle(&association.file_handle_id)
        .ok_or_else(|| no_file_handle(&association.file_handle_id))?;
    let Some(size) = source.content_size else {
        return Err(ApiError::BadRequest(
            "The source file handle does not define its size.".into(),
        ));
    };
    let Some(content_md5) = source.content_md5.clone() else {
        return Err(ApiError::BadRequest(
            "The source file handle does not define its content MD5.".into(),
        ));
    };
    if source.storage_location_id == Some(request.storage_location_id) {
        return Err(ApiError::BadRequest(
            "The source file handle is already in the given destination storage location.".into(),
        ));
    }
    if !(source.is_s3() || source.concrete_type == concrete::GOOGLE_CLOUD_FILE_HANDLE) {
        return Err(ApiError::BadRequest(
            "The source file must be stored in a cloud bucket accessible by Synapse.".into(),
        ));
    }
    Ok(CopyPlan {
        hash,
        size,
        part_size: request.part_size_bytes,
        source_is_s3: source.is_s3(),
        source_bucket: source.bucket_name.clone().unwrap_or_default(),
        source_key: source.key.clone().unwrap_or_default(),
        source_file_name: source.file_name.clone(),
        source_region: source
            .storage_location_id
            .and_then(|id| store.locations.get(&id))
            .map(|l| l.region.clone()),
        dest_region: destination.region.clone(),
        dest_bucket: destination.setting.bucket.clone().unwrap_or_default(),
        dest_base_key: destination.setting.base_key.clone(),
        request_file_name: request.file_name.clone(),
        content_type: source.content_type.clone(),
        content_md5,
        storage_location_id: request.storage_location_id,
    })
}

/// The checks `initiateRequest` makes after reading the source's ETag, in its order: the name
/// (`MultipartUtils.createNewKey`), S3 source and region (`S3MultipartUploadDAOImpl
/// .initiateMultipartUploadCopy`), then size and part count (`PartUtils.calculateNumberOfParts`,
/// which the server runs after creating the S3 upload; here before, so no upload is left behind).
/// Returns the file name, the destination key and the part count.
fn name_and_key(plan: &CopyPlan, user: &User) -> Result<(String, String, u64), ApiError> {
    let file_name = if is_blank(plan.request_file_name.as_deref()) {
        plan.source_file_name.clone().unwrap_or_default()
    } else {
        plan.request_file_name.clone().unwrap_or_default()
    };
    validate_name(&file_name)?;
    if !plan.source_is_s3 {
        return Err(ApiError::BadRequest(
            "The file handle must point to an S3 location.".into(),
        ));
    }
    if plan.source_bucket != plan.dest_bucket
        && plan
            .source_region
            .as_ref()
            .is_some_and(|r| *r != plan.dest_region)
    {
        return Err(ApiError::BadRequest(
            "Copying a file that is stored in a different region than the destination is not \
             supported."
                .into(),
        ));
    }
    let parts = number_of_parts(plan.size, plan.part_size)?;
    let prefix = plan
        .dest_base_key
        .as_deref()
        .filter(|b| !b.is_empty())
        .map(|b| format!("{b}/"))
        .unwrap_or_default();
    let key = format!("{prefix}{}/{}/{file_name}", user.id, uuid::Uuid::new_v4());
    Ok((file_name, key, parts))
}

/// `POST /file/multipart` (`MultipartManagerV2Impl.startOrResumeMultipartRequest`), 201. The
/// request is validated, then an upload with the same user and request resumes without any other
/// check; otherwise (or with `forceRestart`) a new one is created.
pub async fn start(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Created<MultipartUploadStatus>, ApiError> {
    let force_restart = query.get("forceRestart").is_some_and(|v| v == "true");
    let value: Value = parse(&body)?;
    if value.get("concreteType").and_then(|c| c.as_str())
        != Some(concrete::MULTIPART_UPLOAD_COPY_REQUEST)
    {
        return Err(ApiError::BadRequest(
            "The simulator only supports MultipartUploadCopyRequest".into(),
        ));
    }
    let request = validate_copy_request(value)?;
    // Keyed on the user and the request as the server reads it (MultipartRequestUtils
    // .calculateMD5AsHex): formatting, unknown fields and numbers sent as strings do not count.
    let canonical = serde_json::to_string(&request)
        .map_err(|e| ApiError::Internal(format!("request JSON: {e}")))?;
    let hash = hex::encode(Sha256::digest(format!("{}\n{canonical}", user.id)));
    let cached = {
        let store = lock(&app.store);
        let existing = store.uploads_by_hash.get(&hash).cloned();
        existing
            .and_then(|id| store.uploads.get(&id))
            .filter(|_| !force_restart)
            .cloned()
    };
    if let Some(upload) = cached {
        // getCachedUpload: a completed upload whose object is gone starts over.
        if !upload.completed || object_exists(&app, &upload.dest_bucket, &upload.dest_key).await {
            return Ok((StatusCode::CREATED, Json(upload.status())));
        }
    }
    let (plan, stale_upload) = {
        let mut store = lock(&app.store);
        // A refusal rolls the server's transaction back, so the old upload stays keyed.
        let plan = plan_copy(&store, &user, &request, hash)?;
        let stale = store
            .uploads_by_hash
            .remove(&plan.hash)
            .and_then(|id| store.uploads.get(&id))
            .filter(|u| !u.completed)
            .cloned();
        (plan, stale)
    };
    if let Some(stale) = stale_upload {
        // The server leaves the old upload to a garbage-collecting worker; best effort here.
        let _ = app
            .s3
            .abort_multipart_upload()
            .bucket(&stale.dest_bucket)
            .key(&stale.dest_key)
            .upload_id(&stale.s3_upload_id)
            .send()
            .await;
    }
    let head = app
        .s3
        .head_object()
        .bucket(&plan.source_bucket)
        .key(&plan.source_key)
        .send()
        .await
        .map_err(|e| {
            ApiError::BadGateway(format!(
                "Cannot read the source object s3://{}/{}: {}",
                plan.source_bucket,
                plan.source_key,
                sdk_message(&e)
            ))
        })?;
    // The Java SDK's ObjectMetadata.getETag() strips the quotes.
    let source_etag = head
        .e_tag()
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned();
    let (file_name, dest_key, parts) = name_and_key(&plan, &user)?;
    let created = app
        .s3
        .create_multipart_upload()
        .bucket(&plan.dest_bucket)
        .key(&dest_key)
        .content_type(
            plan.content_type
                .clone()
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "application/octet-stream".into()),
        )
        .send()
        .await
        .map_err(|e| {
            ApiError::BadGateway(format!(
                "Cannot start the upload in {}: {}",
                plan.dest_bucket,
                sdk_message(&e)
            ))
        })?;
    let now = iso_now();
    let mut store = lock(&app.store);
    store.next_upload_id += 1;
    let upload = Upload {
        id: store.next_upload_id.to_string(),
        started_by: user.id.clone(),
        completed: false,
        parts: vec![None; parts as usize],
        part_size: plan.part_size,
        size: plan.size,
        source_bucket: plan.source_bucket,
        source_key: plan.source_key,
        source_etag,
        dest_bucket: plan.dest_bucket,
        dest_key,
        s3_upload_id: created.upload_id().unwrap_or_default().to_owned(),
        file_name,
        content_type: plan.content_type,
        content_md5: plan.content_md5,
        storage_location_id: plan.storage_location_id,
        result_file_handle_id: None,
        started_on: now.clone(),
        updated_on: now,
    };
    let status = upload.status();
    store.uploads_by_hash.insert(plan.hash, upload.id.clone());
    store.uploads.insert(upload.id.clone(), upload);
    Ok((StatusCode::CREATED, Json(status)))
}

/// `doesObjectExist` on a completed upload's object.
async fn object_exists(app: &App, bucket: &str, key: &str) -> bool {
    app.s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .is_ok()
}

/// `MultipartUploadDAOImpl.getUploadStatus`: 400 for an id that is not a number, 404 for an
/// unknown one.
fn upload<'a>(store: &'a Store, id: &str) -> Result<&'a Upload, ApiError> {
    if id.parse::<i64>().is_err() {
        return Err(ApiError::BadRequest("Invalid UploadId.".into()));
    }
    store.uploads.get(id).ok_or_else(|| {
        ApiError::NotFound(format!(
            "MultipartUploadStatus cannot be found for id: {id}"
        ))
    })
}

/// `MultipartManagerV2Impl.validateStartedBy`: only the starter may use the upload (the server
/// gives the presign text for every call).
fn check_started_by(upload: &Upload, user: &User) -> Result<(), ApiError> {
    if upload.started_by != user.id {
        return Err(ApiError::Forbidden(
            "Only the user that started a multipart upload can get part upload pre-signed URLs \
             for that file upload."
                .into(),
        ));
    }
    Ok(())
}

/// `MultipartManagerV2Impl.validatePartNumber`.
fn check_part(upload: &Upload, part: u32) -> Result<(), ApiError> {
    if part < 1 {
        return Err(ApiError::BadRequest(
            "Part numbers cannot be less than one.".into(),
        ));
    }
    let parts = upload.parts.len();
    if part as usize > parts {
        return Err(ApiError::BadRequest(format!(
            "Part number cannot be larger than number of parts. Number of parts: {parts}, \
             provided part number: {part}"
        )));
    }
    Ok(())
}

/// `POST /file/multipart/{uploadId}/presigned/url/batch` (`UploadController
/// .getPresignedUrlBatch` sets the body's uploadId to the path's, then `MultipartManagerV2Impl
/// .getBatchPresignedUploadUrls`), 201. A completed upload still gets URLs.
pub async fn presign(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path(upload_id): Path<String>,
    body: Bytes,
) -> Result<Created<BatchPresignedUploadUrlResponse>, ApiError> {
    let mut value: Value = parse(&body)?;
    if let Some(object) = value.as_object_mut() {
        object.insert("uploadId".into(), upload_id.clone().into());
    }
    if value.get("partNumbers").is_none_or(Value::is_null) {
        return Err(ApiError::required(
            "BatchPresignedUploadUrlRequest.partNumbers",
        ));
    }
    let request: BatchPresignedUploadUrlRequest = serde_json::from_value(value)
        .map_err(|e| ApiError::BadRequest(format!("Invalid JSON: {e}")))?;
    if request.part_numbers.is_empty() {
        return Err(ApiError::BadRequest(
            "BatchPresignedUploadUrlRequest.partNumbers must contain at least one value".into(),
        ));
    }
    let upload = {
        let store = lock(&app.store);
        let upload = upload(&store, &upload_id)?;
        check_started_by(upload, &user)?;
        upload.clone()
    };
    let normal = app.presign_expiry();
    let urls = request
        .part_numbers
        .iter()
        .map(|&part| {
            check_part(&upload, part)?;
            app.presigner.presign_part(
                &upload,
                part,
                request.content_type.as_deref(),
                app.faults.presign_expiry(normal),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        StatusCode::CREATED,
        Json(BatchPresignedUploadUrlResponse {
            part_presigned_urls: urls,
        }),
    ))
}

/// `PUT /file/multipart/{uploadId}/add/{partNumber}?partMD5Hex=` (`MultipartManagerV2Impl
/// .addMultipartPart`), 201. Order: the upload, not completed, the part number, the starter.
pub async fn add_part(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path((upload_id, part)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Created<AddPartResponse>, ApiError> {
    let part: u32 = parse_number("part number", &part)?;
    let md5 = query
        .get("partMD5Hex")
        .ok_or_else(|| {
            ApiError::BadRequest(
                "Required request parameter 'partMD5Hex' for method parameter type String is not \
                 present"
                    .into(),
            )
        })?
        .trim_matches('"')
        .to_owned();
    let mut store = lock(&app.store);
    let upload = upload(&store, &upload_id)?;
    if upload.completed {
        return Err(ApiError::BadRequest(
            "Cannot add parts to completed file upload.".into(),
        ));
    }
    check_part(upload, part)?;
    check_started_by(upload, &user)?;
    let upload = store.uploads.get_mut(&upload_id).expect("checked above");
    upload.parts[part as usize - 1] = Some(md5);
    upload.updated_on = iso_now();
    Ok((
        StatusCode::CREATED,
        Json(AddPartResponse {
            upload_id: Some(upload_id),
            part_number: Some(part),
            add_part_state: add_part_state::ADD_SUCCESS.into(),
            error_message: None,
        }),
    ))
}

/// `PUT /file/multipart/{uploadId}/complete` (`MultipartManagerV2Impl.completeMultipartUpload`),
/// 201. Order: the upload, the starter, already completed (answered again), every part added.
pub async fn complete(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path(upload_id): Path<String>,
) -> Result<Created<MultipartUploadStatus>, ApiError> {
    let upload = {
        let store = lock(&app.store);
        let upload = upload(&store, &upload_id)?;
        check_started_by(upload, &user)?;
        upload.clone()
    };
    if upload.completed {
        return Ok((StatusCode::CREATED, Json(upload.status())));
    }
    let missing = upload.parts.iter().filter(|p| p.is_none()).count();
    if missing > 0 {
        return Err(ApiError::BadRequest(format!(
            "Missing {missing} part(s).  All parts must be successfully added before a file \
             upload can be completed."
        )));
    }
    let parts = upload
        .parts
        .iter()
        .enumerate()
        .map(|(i, md5)| {
            CompletedPart::builder()
                .part_number(i as i32 + 1)
                .e_tag(format!("\"{}\"", md5.as_deref().unwrap_or_default()))
                .build()
        })
        .collect();
    app.s3
        .complete_multipart_upload()
        .bucket(&upload.dest_bucket)
        .key(&upload.dest_key)
        .upload_id(&upload.s3_upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .map_err(|e| {
            ApiError::BadRequest(format!("Cannot complete the upload: {}", sdk_message(&e)))
        })?;
    let mut store = lock(&app.store);
    if let Some(done) = store.uploads.get(&upload_id).filter(|u| u.completed) {
        return Ok((StatusCode::CREATED, Json(done.status())));
    }
    let handle = store.add_handle(FileHandle {
        id: String::new(),
        concrete_type: concrete::S3_FILE_HANDLE.into(),
        etag: Some(new_etag()),
        created_by: Some(user.id.clone()),
        created_on: Some(iso_now()),
        bucket_name: Some(upload.dest_bucket.clone()),
        key: Some(upload.dest_key.clone()),
        content_type: upload.content_type.clone(),
        content_md5: Some(upload.content_md5.clone()),
        content_size: Some(upload.size),
        file_name: Some(upload.file_name.clone()),
        storage_location_id: Some(upload.storage_location_id),
        external_url: None,
        file_path: None,
        status: Some("AVAILABLE".into()),
    });
    let upload = store.uploads.get_mut(&upload_id).expect("checked above");
    upload.completed = true;
    upload.result_file_handle_id = Some(handle.id);
    upload.updated_on = iso_now();
    Ok((StatusCode::CREATED, Json(upload.status())))
}

#[cfg(test)]
mod tests {
    use super::{number_of_parts, validate_part_size, MIB};

    fn reason(result: Result<impl std::fmt::Debug, crate::error::ApiError>) -> String {
        result.expect_err("refused").to_string()
    }

    #[test]
    fn part_sizes_and_counts_follow_part_utils() {
        assert!(validate_part_size(5 * MIB).is_ok());
        assert_eq!(
            reason(validate_part_size(5 * MIB - 1)),
            "The part size must be at least 5242880 bytes."
        );
        assert_eq!(
            reason(validate_part_size(5 * 1024 * MIB + 1)),
            "The part size must not exceed 5368709120 bytes."
        );
        assert_eq!(number_of_parts(1, 5 * MIB).unwrap(), 1);
        assert_eq!(number_of_parts(10_000 * 5 * MIB, 5 * MIB).unwrap(), 10_000);
        assert_eq!(
            reason(number_of_parts(10_000 * 5 * MIB + 1, 5 * MIB)),
            "File Upload would require 10001 parts, which exceeds the maximum number of allowed \
             parts of: 10000. Please choose a larger part size."
        );
        assert_eq!(
            reason(number_of_parts(0, 5 * MIB)),
            "File size must be at least one byte"
        );
        assert_eq!(
            reason(number_of_parts(5 * 1024 * 1024 * MIB + 1, 5 * 1024 * MIB)),
            "The maximum file size is 5 TB"
        );
    }
}
