//! The Synapse-mediated engine: Synapse's multipart copy API, parts copied by S3 through
//! presigned UploadPartCopy URLs.
//!
//! Resuming needs no state of our own: Synapse keys an upload on the request body, so sending the
//! same body with `forceRestart=false` returns the same upload and its `partsState`. Aborting has
//! nothing to do server-side: Synapse has no abort call; it forgets unfinished uploads itself and
//! the destination bucket's lifecycle rule removes the S3 parts.

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures::{stream, StreamExt, TryStreamExt};
use synapse_model::{
    add_part_state, concrete, upload_state, BatchFileRequest, FileHandle, FileHandleAssociation,
    FileResult, MultipartUploadCopyRequest, MultipartUploadStatus, PartPresignedUrl,
};

use super::{
    CopyEngine, CopyRequest, EngineConfig, EngineKind, EngineState, HandleJournal, Started,
    FILE_HANDLE_BATCH,
};
use crate::error::{Error, Result};
use crate::synapse::{SynapseClient, SynapseError};

/// Copies through Synapse's multipart copy API.
#[derive(Debug, Clone)]
pub struct SynapseEngine {
    client: SynapseClient,
    config: EngineConfig,
}

impl SynapseEngine {
    pub fn new(client: SynapseClient, config: EngineConfig) -> Self {
        Self { client, config }
    }

    /// The start body. It must be the same on every call for the same copy: Synapse finds the
    /// existing upload by hashing it.
    fn copy_request(request: &CopyRequest) -> MultipartUploadCopyRequest {
        MultipartUploadCopyRequest {
            concrete_type: concrete::MULTIPART_UPLOAD_COPY_REQUEST.to_owned(),
            file_name: request.file_name.clone(),
            generate_preview: Some(false),
            part_size_bytes: request.part_size,
            storage_location_id: request.destination.storage_location_id,
            source_file_handle_association: request.association(),
        }
    }

    /// Completes the upload; returns the new handle's id, not yet checked.
    async fn finish(&self, state: &EngineState) -> Result<String> {
        let status = self.client.complete_multipart(upload_id(state)?).await?;
        crate::crash::point(crate::crash::COMPLETE_AFTER_UPLOAD_COMPLETED);
        if status.state != upload_state::COMPLETED {
            return Err(Error::Internal(format!(
                "upload {} is {} after completing it",
                status.upload_id, status.state
            )));
        }
        result_id(&status)
    }

    /// The new handles of completed uploads, read back from Synapse (100 per call) and checked
    /// against their sources: entities are only pointed at a verified copy. Synapse gives a
    /// handle to its creator whatever object the request associates it with
    /// (`AuthorizationManagerImpl.canDownloadFile`), so a copy no entity uses yet is read through
    /// its source's entity. A copy that did not finish keeps its error; `Err` when a read failed.
    async fn verified(
        &self,
        copies: Vec<(&CopyRequest, Result<String>)>,
    ) -> Result<Vec<Result<FileHandle>>> {
        let finished: Vec<FileHandleAssociation> = copies
            .iter()
            .filter_map(|(request, id)| {
                Some(FileHandleAssociation {
                    file_handle_id: id.as_ref().ok()?.clone(),
                    associate_object_id: request.entity_id.clone(),
                    associate_object_type: request.association_type().to_owned(),
                })
            })
            .collect();
        let mut read: BTreeMap<String, FileResult> = BTreeMap::new();
        for chunk in finished.chunks(FILE_HANDLE_BATCH) {
            let request = BatchFileRequest {
                requested_files: chunk.to_vec(),
                include_file_handles: true,
                include_pre_signed_urls: false,
                include_preview_pre_signed_urls: false,
            };
            let answer = self.client.file_handle_batch(&request).await?;
            read.extend(
                answer
                    .requested_files
                    .into_iter()
                    .map(|file| (file.file_handle_id.clone(), file)),
            );
        }
        Ok(copies
            .into_iter()
            .map(|(request, id)| {
                let id = id?;
                let copy = match read.get(&id) {
                    Some(FileResult {
                        file_handle: Some(copy),
                        ..
                    }) => copy.clone(),
                    other => {
                        return Err(Error::Verification(format!(
                            "Synapse does not give back file handle {id} (copy of {}): {}",
                            request.source.id,
                            other
                                .and_then(|file| file.failure_code.as_deref())
                                .unwrap_or("no answer")
                        )))
                    }
                };
                verify_copy(
                    &request.source,
                    &copy,
                    request.destination.storage_location_id,
                )?;
                Ok(copy)
            })
            .collect())
    }

    /// [`Self::verified`] for one copy.
    async fn verified_one(&self, request: &CopyRequest, id: String) -> Result<FileHandle> {
        self.verified(vec![(request, Ok(id))])
            .await?
            .pop()
            .unwrap_or_else(|| Err(Error::Internal("a verified copy went missing".into())))
    }

    /// Presigned URLs for `parts`, in the order asked; every part must come back.
    async fn presign(&self, upload_id: &str, parts: &[u32]) -> Result<Vec<PartPresignedUrl>> {
        let mut answer = self
            .client
            .presign_parts(upload_id, parts)
            .await?
            .part_presigned_urls;
        parts
            .iter()
            .map(|&n| {
                let at = answer
                    .iter()
                    .position(|url| url.part_number == n)
                    .ok_or_else(|| {
                        Error::Internal(format!(
                            "Synapse presigned no URL for part {n} of upload {upload_id}"
                        ))
                    })?;
                Ok(answer.swap_remove(at))
            })
            .collect()
    }

    /// Copies one part with its presigned URL, presigning again when S3 refuses the URL
    /// (expired), then records the part in Synapse with its ETag as MD5.
    async fn copy_part(&self, upload_id: &str, first: PartPresignedUrl) -> Result<()> {
        let part = first.part_number;
        let mut url = first;
        let mut tries = 1;
        let etag = loop {
            match self
                .client
                .put_presigned_part(&url.upload_presigned_url, &url.signed_headers)
                .await
            {
                Ok(etag) => break etag,
                Err(SynapseError::PresignedUrlRejected { code, message })
                    if tries < self.config.presign_attempts =>
                {
                    tries += 1;
                    tracing::info!(upload_id, part, tries, %code, %message, "S3 refused a presigned URL; presigning again");
                    url = self.presign(upload_id, &[part]).await?.remove(0);
                }
                Err(error) => {
                    tracing::warn!(upload_id, part, %error, "part copy failed");
                    return Err(error.into());
                }
            }
        };
        let added = self.client.add_part(upload_id, part, &etag).await?;
        if added.add_part_state != add_part_state::ADD_SUCCESS {
            return Err(Error::Transient(format!(
                "Synapse did not add part {part} of upload {upload_id} ({}): {}",
                added.add_part_state,
                added.error_message.unwrap_or_default()
            )));
        }
        crate::crash::point(crate::crash::AFTER_PART_COPIED);
        Ok(())
    }
}

/// Checks that `copy` is an S3 handle in `destination_id` with the source's size and MD5 (when
/// the source has one). The bytes themselves were checked by S3, part by part, on completion.
pub fn verify_copy(source: &FileHandle, copy: &FileHandle, destination_id: i64) -> Result<()> {
    let mismatch = |field: &str, found: &dyn std::fmt::Debug, expected: &dyn std::fmt::Debug| {
        Err(Error::Verification(format!(
            "file handle {} (copy of {}) has {field} {found:?}, expected {expected:?}",
            copy.id, source.id
        )))
    };
    if !copy.is_s3() {
        return mismatch(
            "concreteType",
            &copy.concrete_type,
            &concrete::S3_FILE_HANDLE,
        );
    }
    if copy.storage_location_id != Some(destination_id) {
        return mismatch(
            "storageLocationId",
            &copy.storage_location_id,
            &destination_id,
        );
    }
    if source.content_size.is_none() || copy.content_size != source.content_size {
        return mismatch("contentSize", &copy.content_size, &source.content_size);
    }
    if let Some(md5) = &source.content_md5 {
        if !copy
            .content_md5
            .as_deref()
            .is_some_and(|found| found.eq_ignore_ascii_case(md5))
        {
            return mismatch("contentMd5", &copy.content_md5, md5);
        }
    }
    Ok(())
}

/// Part numbers marked done (`1`) in a `partsState` string.
fn parse_parts_state(upload_id: &str, parts_state: &str) -> Result<Vec<u32>> {
    parts_state
        .chars()
        .zip(1u32..)
        .filter_map(|(state, n)| match state {
            '1' => Some(Ok(n)),
            '0' => None,
            other => Some(Err(Error::Internal(format!(
                "upload {upload_id} has partsState character {other:?}"
            )))),
        })
        .collect()
}

/// The new handle of a completed upload.
fn result_id(status: &MultipartUploadStatus) -> Result<String> {
    status.result_file_handle_id.clone().ok_or_else(|| {
        Error::Internal(format!(
            "upload {} is {} without a resultFileHandleId",
            status.upload_id, status.state
        ))
    })
}

fn upload_id(state: &EngineState) -> Result<&str> {
    match state {
        EngineState::Synapse { upload_id, .. } => Ok(upload_id),
        EngineState::Direct { .. } => Err(Error::Internal(
            "the Synapse engine was given a direct copy's state".into(),
        )),
    }
}

#[async_trait]
impl CopyEngine for SynapseEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Synapse
    }

    async fn start(&self, request: &CopyRequest, resume: Option<&EngineState>) -> Result<Started> {
        let status = self
            .client
            .start_multipart_copy(&Self::copy_request(request), false)
            .await?;
        if let Some(previous) = resume.and_then(EngineState::upload_id) {
            if previous != status.upload_id {
                tracing::warn!(
                    previous,
                    current = %status.upload_id,
                    "Synapse returned another upload than the saved one"
                );
            }
        }
        let parts_state = status.parts_state.as_deref().unwrap_or_default();
        let part_count = u32::try_from(parts_state.len())
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                Error::Internal(format!(
                    "upload {} has a partsState of {} parts",
                    status.upload_id,
                    parts_state.len()
                ))
            })?;
        let parts_done = parse_parts_state(&status.upload_id, parts_state)?;
        let completed = if status.state == upload_state::COMPLETED {
            Some(self.verified_one(request, result_id(&status)?).await?)
        } else {
            None
        };
        Ok(Started {
            state: EngineState::Synapse {
                upload_id: status.upload_id,
                part_size: request.part_size,
                part_count,
            },
            parts_done,
            completed,
        })
    }

    async fn copy_parts(
        &self,
        _request: &CopyRequest,
        state: &EngineState,
        parts: &[u32],
    ) -> Result<()> {
        let upload_id = upload_id(state)?;
        if let Some(bad) = parts.iter().find(|&&n| n == 0 || n > state.part_count()) {
            return Err(Error::InvalidInput(format!(
                "part {bad} is outside 1..={} of upload {upload_id}",
                state.part_count()
            )));
        }
        // Batches are presigned lazily, when the copies before them leave room: no URL waits
        // long enough to expire.
        let batches = parts.chunks(self.config.presign_batch.max(1));
        stream::iter(batches.map(<[u32]>::to_vec))
            .then(|batch| async move { self.presign(upload_id, &batch).await })
            .map_ok(|urls| stream::iter(urls).map(Ok))
            .try_flatten()
            // Boxing erases the closures' lifetimes, which the `Send` check of the trait's
            // future cannot otherwise prove general enough.
            .boxed()
            .map_ok(|url| self.copy_part(upload_id, url))
            .try_buffer_unordered(self.config.concurrency())
            .try_collect()
            .await
    }

    /// Completing a completed upload gives its handle again: no new handle, nothing to journal.
    async fn complete(
        &self,
        request: &CopyRequest,
        state: &EngineState,
        _journal: &dyn HandleJournal,
    ) -> Result<FileHandle> {
        let id = self.finish(state).await?;
        self.verified_one(request, id).await
    }

    async fn complete_all(
        &self,
        copies: &[(&CopyRequest, &EngineState)],
        concurrency: usize,
        _journal: &dyn HandleJournal,
    ) -> Result<Vec<Result<FileHandle>>> {
        let ids: Vec<Result<String>> = stream::iter(copies)
            .map(|(_, state)| self.finish(state))
            .boxed()
            .buffered(concurrency.max(1))
            .collect()
            .await;
        let requests = copies.iter().map(|(request, _)| *request);
        self.verified(requests.zip(ids).collect()).await
    }

    async fn abort(&self, state: &EngineState) -> Result<()> {
        tracing::info!(
            upload_id = upload_id(state)?,
            "Synapse uploads cannot be aborted; left to expire"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_state_lists_done_parts() {
        assert_eq!(parse_parts_state("u", "0101").unwrap(), [2, 4]);
        assert_eq!(parse_parts_state("u", "000").unwrap(), Vec::<u32>::new());
        assert_eq!(parse_parts_state("u", "111").unwrap(), [1, 2, 3]);
        let err = parse_parts_state("u", "01x").unwrap_err();
        assert_eq!(err.error_type(), "Fatal.Internal");
    }

    fn handle(id: &str, location: i64, size: u64, md5: Option<&str>) -> FileHandle {
        serde_json::from_value(serde_json::json!({
            "id": id, "concreteType": concrete::S3_FILE_HANDLE, "storageLocationId": location,
            "contentSize": size, "contentMd5": md5, "bucketName": "b", "key": format!("k/{id}")
        }))
        .unwrap()
    }

    #[test]
    fn verify_copy_accepts_a_matching_copy() {
        let source = handle("1", 1, 10, Some("abc"));
        verify_copy(&source, &handle("2", 7, 10, Some("abc")), 7).unwrap();
        verify_copy(&source, &handle("2", 7, 10, Some("ABC")), 7).unwrap();
        // A source without an MD5 leaves nothing to compare it with.
        verify_copy(&handle("1", 1, 10, None), &handle("2", 7, 10, Some("x")), 7).unwrap();
    }

    #[test]
    fn verify_copy_names_the_handle_and_the_mismatched_field() {
        let source = handle("1", 1, 10, Some("abc"));
        let mut external = handle("2", 7, 10, Some("abc"));
        external.concrete_type = concrete::EXTERNAL_FILE_HANDLE.to_owned();
        for (copy, field) in [
            (external, "concreteType"),
            (handle("2", 8, 10, Some("abc")), "storageLocationId"),
            (handle("2", 7, 11, Some("abc")), "contentSize"),
            (handle("2", 7, 10, Some("abd")), "contentMd5"),
            (handle("2", 7, 10, None), "contentMd5"),
        ] {
            let err = verify_copy(&source, &copy, 7).unwrap_err();
            assert_eq!(err.error_type(), "Fatal.Verification", "{err}");
            let message = err.to_string();
            assert!(
                message.contains("file handle 2 ") && message.contains(field),
                "{message}"
            );
        }
    }
}
