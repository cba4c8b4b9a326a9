//! The direct S3 engine: the deployment's own S3 role copies the object into an external S3
//! storage location, then one Synapse call registers it.
//!
//! Sources up to `copy_object_threshold` are copied with one CopyObject; bigger ones with a
//! multipart upload of UploadPartCopy parts. Every copy request carries
//! `x-amz-copy-source-if-match` with the source ETag seen at start, so a source that changes
//! mid-copy fails (`Fatal.Verification`) instead of yielding a mix of two versions. Completion
//! lists the parts S3 holds (so `copy_parts` needs to remember nothing), completes with their
//! ETags, checks the object's size and ETag, and registers it with the source's MD5.
//!
//! S3 may answer CopyObject, UploadPartCopy and CompleteMultipartUpload with 200 and an `<Error>`
//! body; the SDK reports those as errors (classified by their code), and an answer without the
//! result's ETag is treated as a failed copy too.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures::{stream, StreamExt, TryStreamExt};
use synapse_model::{concrete, FileHandle, S3FileHandleCreate};

use super::parts::{PartPlan, GIB};
use super::s3error::{is_no_such_upload, s3_error};
use super::{
    CopyEngine, CopyRequest, EngineConfig, EngineKind, EngineState, HandleJournal, Started,
};
use crate::error::{Error, Result};
use crate::synapse::SynapseClient;

mod keys;

pub use keys::destination_key;
pub(super) use keys::{bare, etag_is_md5};
use keys::{copy_source, multipart_etag, source_location};

/// S3's largest CopyObject.
pub const MAX_COPY_OBJECT_SIZE: u64 = 5 * GIB;

/// ListParts page size (S3's maximum).
const LIST_PARTS_PAGE: i32 = 1000;

/// User metadata of a multipart copy: the source ETag it copies. A retry that finds its upload
/// completed (gone) checks that the object is this source's multipart result before registering.
const SOURCE_ETAG_METADATA: &str = "synmigrate-source-etag";

/// Copies with the deployment's S3 permissions and registers the result in Synapse.
#[derive(Debug, Clone)]
pub struct DirectEngine {
    s3: aws_sdk_s3::Client,
    synapse: SynapseClient,
    config: EngineConfig,
}

/// What HeadObject says about the source.
#[derive(Debug, Clone)]
pub(super) struct SourceObject {
    pub size: u64,
    pub etag: String,
}

/// HeadObject of the source, checked against its file handle: the same size, and the same MD5
/// where the ETag is one. The handle we register carries the source's MD5, so it must hold.
pub(super) async fn head_source(
    s3: &aws_sdk_s3::Client,
    request: &CopyRequest,
) -> Result<SourceObject> {
    let (bucket, key) = source_location(request)?;
    let head = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| s3_error("HeadObject (source)", e))?;
    let size = head.content_length().and_then(|n| u64::try_from(n).ok());
    let etag = head.e_tag().map(str::to_owned);
    let (Some(size), Some(etag)) = (size, etag) else {
        return Err(Error::Internal(format!(
            "HeadObject of s3://{bucket}/{key} gave no size or ETag"
        )));
    };
    let expected = request.source_size()?;
    if size != expected {
        return Err(Error::Verification(format!(
            "s3://{bucket}/{key} has {size} bytes, its file handle {} says {expected}",
            request.source.id
        )));
    }
    if let Some(md5) = &request.source.content_md5 {
        if etag_is_md5(&etag) && !bare(&etag).eq_ignore_ascii_case(md5) {
            return Err(Error::Verification(format!(
                "s3://{bucket}/{key} has MD5 {}, its file handle {} says {md5}",
                bare(&etag),
                request.source.id
            )));
        }
    }
    Ok(SourceObject { size, etag })
}

/// The fields of a direct state, or an error if the state belongs to the Synapse engine.
struct Direct<'a> {
    bucket: &'a str,
    key: &'a str,
    upload_id: Option<&'a str>,
    source_etag: &'a str,
    part_size: u64,
    part_count: u32,
}

impl<'a> Direct<'a> {
    fn of(state: &'a EngineState) -> Result<Self> {
        match state {
            EngineState::Direct {
                bucket,
                key,
                upload_id,
                source_etag,
                part_size,
                part_count,
            } => Ok(Self {
                bucket,
                key,
                upload_id: upload_id.as_deref(),
                source_etag,
                part_size: *part_size,
                part_count: *part_count,
            }),
            EngineState::Synapse { .. } => Err(Error::Internal(
                "the direct engine was given a Synapse copy's state".into(),
            )),
        }
    }

    /// The part plan the state was made with, checked against the source. A single CopyObject
    /// records one part whatever the plan says, so only a multipart state is checked.
    fn plan(&self, request: &CopyRequest) -> Result<PartPlan> {
        let plan = PartPlan::new(request.source_size()?, self.part_size)?;
        if self.upload_id.is_some() && plan.part_count() != self.part_count {
            return Err(Error::Internal(format!(
                "the copy state has {} parts, the source {}",
                self.part_count,
                plan.part_count()
            )));
        }
        Ok(plan)
    }
}

/// A part S3 holds for an upload.
struct ListedPart {
    etag: String,
    size: u64,
}

impl DirectEngine {
    /// `s3` must be allowed to read the source buckets and write the destination bucket.
    pub fn new(s3: aws_sdk_s3::Client, synapse: SynapseClient, config: EngineConfig) -> Self {
        Self {
            s3,
            synapse,
            config,
        }
    }

    fn copy_object_threshold(&self) -> u64 {
        self.config.copy_object_threshold.min(MAX_COPY_OBJECT_SIZE)
    }

    /// Every part S3 holds for the upload, or `None` if the upload no longer exists.
    async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Option<BTreeMap<u32, ListedPart>>> {
        let mut parts = BTreeMap::new();
        let mut marker: Option<String> = None;
        loop {
            let page = match self
                .s3
                .list_parts()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .max_parts(LIST_PARTS_PAGE)
                .set_part_number_marker(marker.take())
                .send()
                .await
            {
                Ok(page) => page,
                Err(e) if is_no_such_upload(&e) => return Ok(None),
                Err(e) => return Err(s3_error("ListParts", e)),
            };
            for part in page.parts() {
                let (Some(number), Some(etag)) = (part.part_number(), part.e_tag()) else {
                    continue;
                };
                let number = u32::try_from(number)
                    .map_err(|_| Error::Internal(format!("S3 listed part number {number}")))?;
                let size = part.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
                parts.insert(
                    number,
                    ListedPart {
                        etag: etag.to_owned(),
                        size,
                    },
                );
            }
            match page.next_part_number_marker() {
                Some(next) if page.is_truncated() == Some(true) => marker = Some(next.to_owned()),
                _ => return Ok(Some(parts)),
            }
        }
    }

    /// Aborts the multipart uploads S3 holds for exactly `key`. The key belongs to one source
    /// handle, whose copy the caller has claimed, so such an upload is left by an attempt that
    /// crashed before saving its id; aborted, it cannot linger as an unfinished upload.
    async fn abort_uploads_at(&self, bucket: &str, key: &str) -> Result<()> {
        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .s3
                .list_multipart_uploads()
                .bucket(bucket)
                .prefix(key)
                .set_key_marker(markers.0.take())
                .set_upload_id_marker(markers.1.take())
                .send()
                .await
                .map_err(|e| s3_error("ListMultipartUploads", e))?;
            for upload in page.uploads() {
                let (Some(found), Some(upload_id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                if found == key {
                    tracing::warn!(key, upload_id, "aborting an upload an earlier attempt left");
                    self.abort_upload(bucket, key, upload_id).await?;
                }
            }
            if page.is_truncated() != Some(true) {
                return Ok(());
            }
            markers = (
                page.next_key_marker().map(str::to_owned),
                page.next_upload_id_marker().map(str::to_owned),
            );
        }
    }

    async fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        match self
            .s3
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_no_such_upload(&e) => Ok(()),
            Err(e) => Err(s3_error("AbortMultipartUpload", e)),
        }
    }

    async fn create_upload(
        &self,
        request: &CopyRequest,
        bucket: &str,
        key: &str,
        source_etag: &str,
    ) -> Result<String> {
        self.abort_uploads_at(bucket, key).await?;
        let created = self
            .s3
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .set_content_type(request.source.content_type.clone())
            .metadata(SOURCE_ETAG_METADATA, bare(source_etag))
            .send()
            .await
            .map_err(|e| s3_error("CreateMultipartUpload", e))?;
        created
            .upload_id()
            .map(str::to_owned)
            .ok_or_else(|| Error::Internal("CreateMultipartUpload gave no upload id".into()))
    }

    async fn copy_whole(&self, request: &CopyRequest, state: &Direct<'_>) -> Result<()> {
        let copied = self
            .s3
            .copy_object()
            .bucket(state.bucket)
            .key(state.key)
            .copy_source(copy_source(request)?)
            .copy_source_if_match(state.source_etag)
            .send()
            .await
            .map_err(|e| s3_error("CopyObject", e))?;
        // S3 may answer 200 with an error body; without a result the copy did not happen.
        if copied
            .copy_object_result()
            .and_then(|r| r.e_tag())
            .is_none()
        {
            return Err(Error::Transient(
                "CopyObject answered without a CopyObjectResult ETag".into(),
            ));
        }
        Ok(())
    }

    async fn copy_part(
        &self,
        request: &CopyRequest,
        state: &Direct<'_>,
        upload_id: &str,
        plan: &PartPlan,
        number: u32,
    ) -> Result<()> {
        let part = plan.part(number).ok_or_else(|| {
            Error::InvalidInput(format!(
                "part {number} is outside 1..={} of upload {upload_id}",
                plan.part_count()
            ))
        })?;
        let copied = self
            .s3
            .upload_part_copy()
            .bucket(state.bucket)
            .key(state.key)
            .upload_id(upload_id)
            .part_number(i32::try_from(number).expect("at most 10,000 parts"))
            .copy_source(copy_source(request)?)
            .copy_source_range(part.copy_source_range())
            .copy_source_if_match(state.source_etag)
            .send()
            .await
            .map_err(|e| s3_error(&format!("UploadPartCopy of part {number}"), e))?;
        if copied.copy_part_result().and_then(|r| r.e_tag()).is_none() {
            return Err(Error::Transient(format!(
                "UploadPartCopy of part {number} answered without a CopyPartResult ETag"
            )));
        }
        crate::crash::point(crate::crash::AFTER_PART_COPIED);
        Ok(())
    }

    /// Aborts after a failure no retry can fix; the failure is what the caller sees.
    async fn abort_after(&self, state: &EngineState, error: Error) -> Error {
        if !error.is_retryable() {
            if let Err(abort) = self.abort(state).await {
                tracing::warn!(%abort, "could not abort the upload after: {error}");
            }
        }
        error
    }

    /// Completes the multipart upload with the parts S3 holds; returns the expected ETag of the
    /// object, or `None` if the upload was already completed by an earlier attempt.
    async fn complete_upload(
        &self,
        state: &Direct<'_>,
        upload_id: &str,
        plan: &PartPlan,
    ) -> Result<Option<String>> {
        let Some(listed) = self.list_parts(state.bucket, state.key, upload_id).await? else {
            tracing::info!(upload_id, "upload already gone; checking the object");
            return Ok(None);
        };
        let missing: Vec<u32> = plan
            .parts()
            .filter(|p| listed.get(&p.number).is_none_or(|l| l.size != p.size()))
            .map(|p| p.number)
            .collect();
        if !missing.is_empty() {
            return Err(Error::Conflict(format!(
                "upload {upload_id} lacks parts {missing:?}; copy them before completing"
            )));
        }
        let parts: Vec<CompletedPart> = listed
            .iter()
            .filter(|(n, _)| **n <= plan.part_count())
            .map(|(n, part)| {
                CompletedPart::builder()
                    .part_number(i32::try_from(*n).expect("at most 10,000 parts"))
                    .e_tag(&part.etag)
                    .build()
            })
            .collect();
        let expected = multipart_etag(parts.iter().map(|p| p.e_tag().unwrap_or_default()))?;
        let completed = self
            .s3
            .complete_multipart_upload()
            .bucket(state.bucket)
            .key(state.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| s3_error("CompleteMultipartUpload", e))?;
        if completed.e_tag().is_none() {
            return Err(Error::Transient(
                "CompleteMultipartUpload answered without an ETag".into(),
            ));
        }
        crate::crash::point(crate::crash::COMPLETE_AFTER_UPLOAD_COMPLETED);
        Ok(Some(expected))
    }

    /// Registers the copied object in Synapse with the source's MD5 and checks what comes back.
    async fn register(&self, request: &CopyRequest, bucket: &str, key: &str) -> Result<FileHandle> {
        let size = request.source_size()?;
        let handle = self
            .synapse
            .create_external_s3_file_handle(&S3FileHandleCreate {
                concrete_type: concrete::S3_FILE_HANDLE.to_owned(),
                bucket_name: bucket.to_owned(),
                key: key.to_owned(),
                storage_location_id: request.destination.storage_location_id,
                content_md5: request.source.content_md5.clone(),
                content_size: Some(size),
                file_name: Some(request.target_file_name()?.to_owned()),
                content_type: request.source.content_type.clone(),
            })
            .await?;
        if handle.content_size != Some(size) || handle.content_md5 != request.source.content_md5 {
            return Err(Error::Verification(format!(
                "Synapse registered handle {} with size {:?} and MD5 {:?}, the source has {size} and {:?}",
                handle.id, handle.content_size, handle.content_md5, request.source.content_md5
            )));
        }
        Ok(handle)
    }
}

#[async_trait]
impl CopyEngine for DirectEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Direct
    }

    async fn start(&self, request: &CopyRequest, resume: Option<&EngineState>) -> Result<Started> {
        let plan = PartPlan::new(request.source_size()?, request.part_size)?;
        let source = head_source(&self.s3, request).await?;
        let (bucket, key) = destination_key(request)?;
        let multipart = source.size > self.copy_object_threshold();
        let part_count = if multipart { plan.part_count() } else { 1 };
        if let Some(previous) = resume {
            let same = Direct::of(previous).is_ok_and(|p| {
                p.bucket == bucket
                    && p.key == key
                    && p.upload_id.is_some() == multipart
                    && p.part_size == plan.part_size()
                    && p.part_count == part_count
            });
            if !same {
                tracing::info!("saved copy state does not fit the request; starting over");
                if previous.kind() == EngineKind::Direct {
                    self.abort(previous).await?;
                }
            } else if Direct::of(previous)?.source_etag != source.etag {
                let error = Error::Verification(format!(
                    "s3://{}/{} changed since the copy started",
                    request.source.bucket_name.as_deref().unwrap_or_default(),
                    request.source.key.as_deref().unwrap_or_default()
                ));
                return Err(self.abort_after(previous, error).await);
            } else if let Some(upload_id) = previous.upload_id() {
                if let Some(listed) = self.list_parts(&bucket, &key, upload_id).await? {
                    let parts_done = plan
                        .parts()
                        .filter(|p| listed.get(&p.number).is_some_and(|l| l.size == p.size()))
                        .map(|p| p.number)
                        .collect();
                    return Ok(Started {
                        state: previous.clone(),
                        parts_done,
                        completed: None,
                    });
                }
                tracing::info!(upload_id, "saved upload is gone; starting a new one");
            } else {
                // A single CopyObject leaves nothing to resume: it is simply made again.
                return Ok(Started {
                    state: previous.clone(),
                    parts_done: Vec::new(),
                    completed: None,
                });
            }
        }
        let upload_id = if multipart {
            Some(
                self.create_upload(request, &bucket, &key, &source.etag)
                    .await?,
            )
        } else {
            None
        };
        Ok(Started {
            state: EngineState::Direct {
                bucket,
                key,
                upload_id,
                source_etag: source.etag,
                part_size: plan.part_size(),
                part_count,
            },
            parts_done: Vec::new(),
            completed: None,
        })
    }

    async fn copy_parts(
        &self,
        request: &CopyRequest,
        state: &EngineState,
        parts: &[u32],
    ) -> Result<()> {
        let direct = Direct::of(state)?;
        let result = match direct.upload_id {
            None => match parts {
                [] => Ok(()),
                [1] => self.copy_whole(request, &direct).await,
                _ => Err(Error::InvalidInput(format!(
                    "a single-request copy has only part 1, not {parts:?}"
                ))),
            },
            Some(upload_id) => {
                let plan = direct.plan(request)?;
                stream::iter(parts.iter().copied())
                    .map(|n| self.copy_part(request, &direct, upload_id, &plan, n))
                    .buffer_unordered(self.config.concurrency())
                    .try_collect()
                    .await
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err(error) => Err(self.abort_after(state, error).await),
        }
    }

    async fn complete(
        &self,
        request: &CopyRequest,
        state: &EngineState,
        journal: &dyn HandleJournal,
    ) -> Result<FileHandle> {
        let direct = Direct::of(state)?;
        let plan = direct.plan(request)?;
        // `completed_before`: an earlier attempt completed the upload and stopped before
        // registering it (a crash); the object is checked against the upload's metadata instead.
        let (expected_etag, completed_before) = match direct.upload_id {
            Some(upload_id) => match self.complete_upload(&direct, upload_id, &plan).await? {
                Some(etag) => (Some(etag), false),
                None => (None, true),
            },
            None => (
                request
                    .source
                    .content_md5
                    .clone()
                    .filter(|_| etag_is_md5(direct.source_etag)),
                false,
            ),
        };
        let head = self
            .s3
            .head_object()
            .bucket(direct.bucket)
            .key(direct.key)
            .send()
            .await
            .map_err(|e| s3_error("HeadObject (destination)", e))?;
        let size = head.content_length().and_then(|n| u64::try_from(n).ok());
        if size != Some(plan.size()) {
            return Err(Error::Verification(format!(
                "s3://{}/{} has {size:?} bytes, the source {}",
                direct.bucket,
                direct.key,
                plan.size()
            )));
        }
        if completed_before {
            let copied = head.metadata().and_then(|m| m.get(SOURCE_ETAG_METADATA));
            let etag = head.e_tag().map(bare).unwrap_or_default();
            let parts = format!("-{}", direct.part_count);
            if copied.map(String::as_str) != Some(bare(direct.source_etag))
                || !etag.ends_with(&parts)
            {
                return Err(Error::Verification(format!(
                    "s3://{}/{} is not the multipart copy of this source (source ETag {copied:?}, \
                     ETag {etag}); expected {} in {} parts",
                    direct.bucket,
                    direct.key,
                    bare(direct.source_etag),
                    direct.part_count
                )));
            }
        }
        if let Some(expected) = expected_etag {
            let actual = head.e_tag().map(bare).unwrap_or_default();
            if !actual.eq_ignore_ascii_case(&expected) {
                return Err(Error::Verification(format!(
                    "s3://{}/{} has ETag {actual}, expected {expected}",
                    direct.bucket, direct.key
                )));
            }
        }
        journal.before_new_handle(request).await?;
        self.register(request, direct.bucket, direct.key).await
    }

    async fn abort(&self, state: &EngineState) -> Result<()> {
        let direct = Direct::of(state)?;
        match direct.upload_id {
            Some(upload_id) => {
                self.abort_upload(direct.bucket, direct.key, upload_id)
                    .await
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
