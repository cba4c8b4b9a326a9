//! The multipart copy: start (idempotent per user and request), presign part URLs, add parts, complete.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use sha2::{Digest, Sha256};
use synapse_model::{
    add_part_state, concrete, AddPartResponse, BatchPresignedUploadUrlRequest,
    BatchPresignedUploadUrlResponse, FileHandle, MultipartUploadCopyRequest, MultipartUploadStatus,
};

use super::{parse, parse_number};
use crate::error::{sdk_message, ApiError};
use crate::fixture::Permission;
use crate::guard::lock;
use crate::server::App;
use crate::store::{Store, Upload, User};
use crate::util::{iso_now, new_etag};

const MIN_PART: u64 = 5 * 1024 * 1024;
const MAX_PART: u64 = 5 * 1024 * 1024 * 1024;
const MAX_PARTS: u64 = 10_000;

type Created<T> = (StatusCode, Json<T>);

/// Synapse's file name rule for copies: `^[a-zA-Z0-9,_. \-+()']+$`.
pub fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ",_. -+()'".contains(c))
}

/// What start needs from the store, gathered under the lock before any S3 call.
struct CopyPlan {
    hash: String,
    size: u64,
    part_size: u64,
    source_bucket: String,
    source_key: String,
    dest_bucket: String,
    dest_key: String,
    file_name: String,
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
    if request.part_size_bytes < MIN_PART || request.part_size_bytes > MAX_PART {
        return Err(ApiError::BadRequest(format!(
            "partSizeBytes must be between {MIN_PART} and {MAX_PART}"
        )));
    }
    let destination = store
        .locations
        .get(&request.storage_location_id)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "Storage location {} does not exist",
                request.storage_location_id
            ))
        })?;
    if destination.setting.is_external_s3()
        && destination.setting.created_by.map(|c| c.to_string()) != Some(user.id.clone())
    {
        return Err(ApiError::Forbidden(
            "Only the creator of the destination storage location can copy into it".into(),
        ));
    }
    let association = &request.source_file_handle_association;
    if association.associate_object_type != "FileEntity" {
        return Err(ApiError::BadRequest(
            "Only FileEntity associations can be copied".into(),
        ));
    }
    let entity = store.entity(&association.associate_object_id)?;
    if !store.is_associated(entity, &association.file_handle_id) {
        return Err(ApiError::NotFound(format!(
            "File handle {} is not associated with {}",
            association.file_handle_id, association.associate_object_id
        )));
    }
    store.require(user, entity, Permission::Download)?;
    let source = store.handle(&association.file_handle_id).ok_or_else(|| {
        ApiError::NotFound(format!(
            "File handle {} does not exist",
            association.file_handle_id
        ))
    })?;
    if !source.is_s3() {
        return Err(ApiError::BadRequest(format!(
            "Only S3 file handles can be copied, the source is a {}",
            source.concrete_type
        )));
    }
    if source.storage_location_id == Some(request.storage_location_id) {
        return Err(ApiError::BadRequest(
            "The source file handle is already in the destination storage location".into(),
        ));
    }
    let source_region = source
        .storage_location_id
        .and_then(|id| store.locations.get(&id))
        .map(|l| l.region.as_str());
    if source_region.is_some_and(|r| r != destination.region) {
        return Err(ApiError::BadRequest(
            "The source and destination storage locations are in different regions".into(),
        ));
    }
    let (Some(content_md5), Some(size)) = (source.content_md5.clone(), source.content_size) else {
        return Err(ApiError::BadRequest(
            "The source file handle lacks contentMd5 or contentSize".into(),
        ));
    };
    if size == 0 {
        return Err(ApiError::BadRequest(
            "The source file is empty, the minimum size is 1 byte".into(),
        ));
    }
    if size.div_ceil(request.part_size_bytes) > MAX_PARTS {
        return Err(ApiError::BadRequest(format!(
            "The part size {} gives more than {MAX_PARTS} parts",
            request.part_size_bytes
        )));
    }
    let file_name = request
        .file_name
        .clone()
        .or_else(|| source.file_name.clone())
        .unwrap_or_default();
    if !valid_file_name(&file_name) {
        return Err(ApiError::BadRequest(format!("Invalid Name: '{file_name}'")));
    }
    let prefix = destination
        .setting
        .base_key
        .as_ref()
        .map(|b| format!("{b}/"))
        .unwrap_or_default();
    Ok(CopyPlan {
        hash,
        size,
        part_size: request.part_size_bytes,
        source_bucket: source.bucket_name.clone().unwrap_or_default(),
        source_key: source.key.clone().unwrap_or_default(),
        dest_bucket: destination.setting.bucket.clone().unwrap_or_default(),
        dest_key: format!("{prefix}{}/{}/{file_name}", user.id, uuid::Uuid::new_v4()),
        file_name,
        content_type: source.content_type.clone(),
        content_md5,
        storage_location_id: request.storage_location_id,
    })
}

pub async fn start(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Created<MultipartUploadStatus>, ApiError> {
    let force_restart = query.get("forceRestart").is_some_and(|v| v == "true");
    // Canonical JSON (sorted keys) so formatting differences do not defeat idempotency.
    let value: serde_json::Value = parse(&body)?;
    if value.get("concreteType").and_then(|c| c.as_str())
        != Some(concrete::MULTIPART_UPLOAD_COPY_REQUEST)
    {
        return Err(ApiError::BadRequest(
            "The simulator only supports MultipartUploadCopyRequest".into(),
        ));
    }
    let hash = hex::encode(Sha256::digest(format!("{}\n{value}", user.id)));
    let request: MultipartUploadCopyRequest = parse(&body)?;
    let (plan, stale_upload) = {
        let mut store = lock(&app.store);
        let plan = plan_copy(&store, &user, &request, hash)?;
        let existing = store.uploads_by_hash.get(&plan.hash).cloned();
        match existing.and_then(|id| store.uploads.get(&id)) {
            Some(upload) if !force_restart => {
                return Ok((StatusCode::CREATED, Json(upload.status())));
            }
            Some(upload) if !upload.completed => {
                let stale = upload.clone();
                store.uploads_by_hash.remove(&plan.hash);
                (plan, Some(stale))
            }
            _ => (plan, None),
        }
    };
    if let Some(stale) = stale_upload {
        // Best effort: the lifecycle of a real bucket would clean it up anyway.
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
    let source_etag = head.e_tag().unwrap_or_default().to_owned();
    let created = app
        .s3
        .create_multipart_upload()
        .bucket(&plan.dest_bucket)
        .key(&plan.dest_key)
        .set_content_type(plan.content_type.clone())
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
        parts: vec![None; plan.size.div_ceil(plan.part_size) as usize],
        part_size: plan.part_size,
        size: plan.size,
        source_bucket: plan.source_bucket,
        source_key: plan.source_key,
        source_etag,
        dest_bucket: plan.dest_bucket,
        dest_key: plan.dest_key,
        s3_upload_id: created.upload_id().unwrap_or_default().to_owned(),
        file_name: plan.file_name,
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

/// The upload, if `user` started it (only the starter may touch it).
fn own_upload<'a>(store: &'a Store, user: &User, id: &str) -> Result<&'a Upload, ApiError> {
    let upload = store
        .uploads
        .get(id)
        .ok_or_else(|| ApiError::NotFound(format!("Upload {id} does not exist")))?;
    if upload.started_by != user.id {
        return Err(ApiError::Forbidden(
            "Only the user that started a multipart upload can use it".into(),
        ));
    }
    Ok(upload)
}

fn check_part(upload: &Upload, part: u32) -> Result<(), ApiError> {
    if part == 0 || part as usize > upload.parts.len() {
        return Err(ApiError::BadRequest(format!(
            "Part number {part} is out of range 1..{}",
            upload.parts.len()
        )));
    }
    Ok(())
}

pub async fn presign(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path(upload_id): Path<String>,
    body: Bytes,
) -> Result<Created<BatchPresignedUploadUrlResponse>, ApiError> {
    let request: BatchPresignedUploadUrlRequest = parse(&body)?;
    if request.upload_id != upload_id {
        return Err(ApiError::BadRequest(
            "The uploadId in the body does not match the URL".into(),
        ));
    }
    if request.part_numbers.is_empty() {
        return Err(ApiError::BadRequest("partNumbers cannot be empty".into()));
    }
    let upload = own_upload(&lock(&app.store), &user, &upload_id)?.clone();
    if upload.completed {
        return Err(ApiError::BadRequest(format!(
            "Upload {upload_id} is already complete"
        )));
    }
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

pub async fn add_part(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path((upload_id, part)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Created<AddPartResponse>, ApiError> {
    let part: u32 = parse_number("part number", &part)?;
    let md5 = query
        .get("partMD5Hex")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::BadRequest("partMD5Hex is required".into()))?
        .trim_matches('"')
        .to_owned();
    let mut store = lock(&app.store);
    let upload = own_upload(&store, &user, &upload_id)?;
    check_part(upload, part)?;
    let mut response = AddPartResponse {
        upload_id: Some(upload_id.clone()),
        part_number: Some(part),
        add_part_state: add_part_state::ADD_SUCCESS.into(),
        error_message: None,
    };
    if upload.completed {
        response.add_part_state = add_part_state::ADD_FAILED.into();
        response.error_message = Some(format!("Upload {upload_id} is already complete"));
        return Ok((StatusCode::CREATED, Json(response)));
    }
    let upload = store.uploads.get_mut(&upload_id).expect("checked above");
    upload.parts[part as usize - 1] = Some(md5);
    upload.updated_on = iso_now();
    Ok((StatusCode::CREATED, Json(response)))
}

pub async fn complete(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path(upload_id): Path<String>,
) -> Result<Created<MultipartUploadStatus>, ApiError> {
    let upload = own_upload(&lock(&app.store), &user, &upload_id)?.clone();
    if upload.completed {
        return Ok((StatusCode::CREATED, Json(upload.status())));
    }
    let missing = upload.parts.iter().filter(|p| p.is_none()).count();
    if missing > 0 {
        return Err(ApiError::BadRequest(format!(
            "Missing {missing} part(s): all parts must be added before completing"
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
    use super::valid_file_name;

    #[test]
    fn file_name_rule_matches_synapse() {
        assert!(valid_file_name("data (1) final,v2+x-y_z.'csv'"));
        assert!(!valid_file_name("résumé.txt"));
        assert!(!valid_file_name("a#b"));
        assert!(!valid_file_name("a&b"));
        assert!(!valid_file_name("[x]"));
        assert!(!valid_file_name(""));
    }
}
