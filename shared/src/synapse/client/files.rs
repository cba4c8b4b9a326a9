//! The file service calls: the multipart copy (start, presign, add part, complete), file
//! handles, and the presigned S3 part copy itself.

use super::*;

impl SynapseClient {
    /// `POST /file/multipart?forceRestart=...` (file service): start or resume a copy. The server
    /// keys uploads on the body, so the same body resumes the same upload.
    pub async fn start_multipart_copy(
        &self,
        request: &MultipartUploadCopyRequest,
        force_restart: bool,
    ) -> Result<MultipartUploadStatus, SynapseError> {
        let call = Call::new(
            Method::POST,
            Service::File,
            "/file/multipart".into(),
            "POST /file/multipart",
        )
        .query("forceRestart", force_restart)
        .json(request)?;
        self.send_json(call).await
    }

    /// `POST /file/multipart/{uploadId}/presigned/url/batch`: URLs valid for 15 minutes.
    pub async fn presign_parts(
        &self,
        upload_id: &str,
        part_numbers: &[u32],
    ) -> Result<BatchPresignedUploadUrlResponse, SynapseError> {
        let request = BatchPresignedUploadUrlRequest {
            upload_id: upload_id.to_owned(),
            part_numbers: part_numbers.to_vec(),
            content_type: None,
        };
        let call = Call::new(
            Method::POST,
            Service::File,
            format!("/file/multipart/{upload_id}/presigned/url/batch"),
            "POST /file/multipart/{id}/presigned/url/batch",
        )
        .json(&request)?;
        self.send_json(call).await
    }

    /// `GET /entity/{id}/uploadDestination` (file service): where files created under the
    /// node go, inherited from the nearest folder or project with an upload setting.
    pub async fn upload_destination(
        &self,
        entity_id: &str,
    ) -> Result<UploadDestination, SynapseError> {
        let call = Call::new(
            Method::GET,
            Service::File,
            format!("/entity/{entity_id}/uploadDestination"),
            "GET /entity/{id}/uploadDestination",
        );
        self.send_json(call).await
    }

    /// `DELETE /fileHandle/{id}` (file service): 200 with no body, also for a handle already
    /// gone. Only its creator may (403); a handle an entity version uses cannot go (409).
    pub async fn delete_file_handle(&self, file_handle_id: &str) -> Result<(), SynapseError> {
        let call = Call::new(
            Method::DELETE,
            Service::File,
            format!("/fileHandle/{file_handle_id}"),
            "DELETE /fileHandle/{id}",
        );
        self.send(call).await.map(drop)
    }

    /// `PUT /file/multipart/{uploadId}/add/{n}?partMD5Hex=...`: record a copied part. An
    /// `ADD_FAILED` answer is returned as is for the caller to decide.
    pub async fn add_part(
        &self,
        upload_id: &str,
        part_number: u32,
        part_md5_hex: &str,
    ) -> Result<AddPartResponse, SynapseError> {
        let call = Call::new(
            Method::PUT,
            Service::File,
            format!("/file/multipart/{upload_id}/add/{part_number}"),
            "PUT /file/multipart/{id}/add/{n}",
        )
        .query("partMD5Hex", part_md5_hex);
        self.send_json(call).await
    }

    /// `PUT /file/multipart/{uploadId}/complete`: the answer carries `resultFileHandleId`.
    pub async fn complete_multipart(
        &self,
        upload_id: &str,
    ) -> Result<MultipartUploadStatus, SynapseError> {
        let call = Call::new(
            Method::PUT,
            Service::File,
            format!("/file/multipart/{upload_id}/complete"),
            "PUT /file/multipart/{id}/complete",
        );
        self.send_json(call).await
    }

    /// `POST /externalFileHandle/s3` (file service): register an object the direct engine copied
    /// into an external S3 storage location the caller owns.
    pub async fn create_external_s3_file_handle(
        &self,
        request: &S3FileHandleCreate,
    ) -> Result<FileHandle, SynapseError> {
        let call = Call::new(
            Method::POST,
            Service::File,
            "/externalFileHandle/s3".into(),
            "POST /externalFileHandle/s3",
        )
        .json(request)?;
        self.send_json(call).await
    }

    /// `POST /fileHandle/batch` (file service): at most 100 requested files per call.
    pub async fn file_handle_batch(
        &self,
        request: &BatchFileRequest,
    ) -> Result<BatchFileResult, SynapseError> {
        let call = Call::new(
            Method::POST,
            Service::File,
            "/fileHandle/batch".into(),
            "POST /fileHandle/batch",
        )
        .json(request)?;
        self.send_json(call).await
    }

    /// PUTs a presigned UploadPartCopy URL with exactly its signed headers and an empty body; no
    /// Synapse token and no Synapse rate limit (this goes to S3). Returns the part's ETag
    /// (unquoted). S3 5xx and SlowDown are retried; a 403 comes back as
    /// [`SynapseError::PresignedUrlRejected`] so the caller presigns the part again.
    pub async fn put_presigned_part(
        &self,
        url: &str,
        signed_headers: &BTreeMap<String, String>,
    ) -> Result<String, SynapseError> {
        const NAME: &str = "PUT presigned part URL";
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in signed_headers {
            let bad = || SynapseError::Protocol {
                endpoint: NAME.into(),
                message: format!("signed header {name} is not a valid HTTP header"),
            };
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
            let value = HeaderValue::from_str(value).map_err(|_| bad())?;
            headers.insert(name, value);
        }
        let inner = &self.inner;
        with_retries(&inner.retry, NAME, |_| async {
            let response = inner
                .http
                .put(url)
                .timeout(inner.part_copy_timeout)
                .headers(headers.clone())
                .body(Vec::new())
                .send()
                .await
                .map_err(|e| transport_error(NAME, e))?;
            let status = response.status().as_u16();
            let body = response
                .text()
                .await
                .map_err(|e| transport_error(NAME, e))?;
            parse_copy_part_response(status, &body)
        })
        .await
    }
}
