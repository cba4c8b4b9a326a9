//! Writes a run's large artifacts (the CSV report, the manifest) to the artifacts bucket a part
//! at a time, so that a stage's memory stays the same whatever the project's size: a small
//! artifact is one PutObject, a large one a multipart upload of `part_bytes` parts, aborted if
//! it cannot complete.

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use crate::context::Services;
use crate::{Error, Result};

/// Part size of a large artifact: above S3's 5 MiB minimum, a few per 10^5 report rows.
pub const ARTIFACT_PART_BYTES: usize = 8 * 1024 * 1024;

/// An artifact being written; call [`ArtifactWriter::finish`] to make it visible.
pub struct ArtifactWriter<'a> {
    services: &'a Services,
    key: String,
    content_type: &'static str,
    part_bytes: usize,
    buffer: Vec<u8>,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
}

fn s3_failure<E>(
    what: &str,
    key: &str,
    bucket: &str,
    error: aws_sdk_s3::error::SdkError<E>,
) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    Error::Transient(format!(
        "{what} of s3://{bucket}/{key}: {}",
        crate::error_chain(&error)
    ))
}

impl<'a> ArtifactWriter<'a> {
    pub fn new(services: &'a Services, key: impl Into<String>, content_type: &'static str) -> Self {
        Self::with_part_bytes(services, key, content_type, ARTIFACT_PART_BYTES)
    }

    /// With parts of `part_bytes` (at least S3's 5 MiB, but the last).
    pub fn with_part_bytes(
        services: &'a Services,
        key: impl Into<String>,
        content_type: &'static str,
        part_bytes: usize,
    ) -> Self {
        Self {
            services,
            key: key.into(),
            content_type,
            part_bytes,
            buffer: Vec::new(),
            upload_id: None,
            parts: Vec::new(),
        }
    }

    /// Appends `bytes`; uploads a part when one is full.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= self.part_bytes {
            if let Err(error) = self.upload_part().await {
                self.abort().await;
                return Err(error);
            }
        }
        Ok(())
    }

    /// Writes what is left and makes the artifact visible.
    pub async fn finish(mut self) -> Result<()> {
        if self.upload_id.is_none() {
            return self.put_whole().await;
        }
        let result = self.complete().await;
        if result.is_err() {
            self.abort().await;
        }
        result
    }

    /// A small artifact: one PutObject.
    async fn put_whole(&mut self) -> Result<()> {
        let (s3, bucket) = (&self.services.s3, &self.services.bucket);
        s3.put_object()
            .bucket(bucket)
            .key(&self.key)
            .content_type(self.content_type)
            .body(std::mem::take(&mut self.buffer).into())
            .send()
            .await
            .map(drop)
            .map_err(|e| s3_failure("PutObject", &self.key, bucket, e))
    }

    async fn upload_part(&mut self) -> Result<()> {
        let (s3, bucket) = (&self.services.s3, &self.services.bucket);
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let created = s3
                    .create_multipart_upload()
                    .bucket(bucket)
                    .key(&self.key)
                    .content_type(self.content_type)
                    .send()
                    .await
                    .map_err(|e| s3_failure("CreateMultipartUpload", &self.key, bucket, e))?;
                let id = created.upload_id().map(str::to_owned).ok_or_else(|| {
                    Error::Transient("CreateMultipartUpload gave no upload id".into())
                })?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        let number = i32::try_from(self.parts.len() + 1)
            .map_err(|_| Error::Internal("an artifact of more than 10,000 parts".into()))?;
        let body = std::mem::take(&mut self.buffer);
        let uploaded = s3
            .upload_part()
            .bucket(bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .part_number(number)
            .body(body.into())
            .send()
            .await
            .map_err(|e| s3_failure("UploadPart", &self.key, bucket, e))?;
        let etag = uploaded
            .e_tag()
            .ok_or_else(|| Error::Transient(format!("UploadPart {number} gave no ETag")))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .e_tag(etag)
                .build(),
        );
        Ok(())
    }

    async fn complete(&mut self) -> Result<()> {
        if !self.buffer.is_empty() {
            self.upload_part().await?;
        }
        let (s3, bucket) = (&self.services.s3, &self.services.bucket);
        let completed = s3
            .complete_multipart_upload()
            .bucket(bucket)
            .key(&self.key)
            .upload_id(self.upload_id.as_deref().unwrap_or_default())
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(std::mem::take(&mut self.parts)))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| s3_failure("CompleteMultipartUpload", &self.key, bucket, e))?;
        // S3 may answer 200 with an error body; without an ETag the object was not made.
        if completed.e_tag().is_none() {
            return Err(Error::Transient(format!(
                "CompleteMultipartUpload of {} answered without an ETag",
                self.key
            )));
        }
        Ok(())
    }

    /// Gives the upload up (best effort: the artifacts bucket's lifecycle rule aborts
    /// stragglers).
    async fn abort(&mut self) {
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        let (s3, bucket) = (&self.services.s3, &self.services.bucket);
        if let Err(error) = s3
            .abort_multipart_upload()
            .bucket(bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .send()
            .await
        {
            tracing::warn!(key = %self.key, error = %crate::error_chain(&error),
                           "could not abort the artifact's upload");
        }
    }
}
